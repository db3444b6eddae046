package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ftlinux/ftl/bench/loadgen"
)

// measurement is what a driver measured in one load run.
type measurement struct {
	hist         *hdrhistogram.Histogram // ns
	summary      *Summary                // overrides summarize(hist) when the driver knows better
	requests     int64
	errors       int64
	unanswered   int64
	elapsed      time.Duration
	intendedRate float64
	sendLag      *hdrhistogram.Histogram
	perConn      []int64
}

// appState is what an app learns in its first measurement and keeps for
// every later round, so that all modes get the same load.
type appState struct {
	openRate      float64 // loadgen open loop: requests per second
	redisRequests int     // redis-benchmark -n per round
}

// load is one way of driving an app (closed or open loop).
type load struct {
	name   string // "closed" or "open"
	driver string // what generates the load, for the report
	run    func(ctx context.Context, env *runEnv, st *appState, port int) (*measurement, error)
}

// app is one server the bench knows how to start and drive.
type app struct {
	name  string
	argv  func(port int, dir string) ([]string, error)
	warm  func(ctx context.Context, env *runEnv, st *appState, port int) error
	loads []load
}

// Apps lists the app names in their default order.
var Apps = []string{"memcached", "redis", "nginx"}

func appByName(name string) (*app, bool) {
	switch name {
	case "memcached":
		return memcachedApp(), true
	case "redis":
		return redisApp(), true
	case "nginx":
		return nginxApp(), true
	}
	return nil, false
}

const (
	memcachedKeys  = 10000
	memcachedValue = 32
	memcachedSets  = 10 // percent
	redisKeys      = memcachedKeys
	redisValue     = memcachedValue
	warmFor        = time.Second
)

func kvCfg(env *runEnv, protocol string, port int) loadgen.Config {
	return loadgen.Config{
		Protocol:    protocol,
		Addr:        "127.0.0.1:" + strconv.Itoa(port),
		Connections: env.Connections,
		Duration:    env.Duration,
		Drain:       time.Second,
		Keys:        memcachedKeys,
		ValueSize:   memcachedValue,
		SetPercent:  memcachedSets,
		Seed:        1,
	}
}

// kvWarm fills the key space and runs the closed loop for warmFor.
func kvWarm(ctx context.Context, env *runEnv, protocol string, port int) error {
	cfg := kvCfg(env, protocol, port)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := loadgen.Preload(pctx, cfg); err != nil {
		return err
	}
	cfg.Duration = warmFor
	_, err := loadgen.Run(ctx, cfg)
	return err
}

// kvLoads are the closed and open loops of ftl's load generator.
func kvLoads(protocol string) []load {
	return []load{
		{name: "closed", driver: "ftl loadgen (Go, closed loop)", run: func(ctx context.Context, env *runEnv, st *appState, port int) (*measurement, error) {
			r, err := loadgen.Run(ctx, kvCfg(env, protocol, port))
			if err != nil {
				return nil, err
			}
			if st.openRate == 0 {
				// The open loop runs at a fixed fraction of the first
				// closed-loop throughput, the same for every mode.
				st.openRate = env.openRate(r.Throughput())
			}
			return fromLoadgen(r), nil
		}},
		{name: "open", driver: "ftl loadgen (Go, open loop, fixed rate)", run: func(ctx context.Context, env *runEnv, st *appState, port int) (*measurement, error) {
			cfg := kvCfg(env, protocol, port)
			cfg.Rate = st.openRate
			if cfg.Rate <= 0 {
				return nil, fmt.Errorf("%w: no open-loop rate (the closed loop did not run first)", ErrDriver)
			}
			r, err := loadgen.Run(ctx, cfg)
			if err != nil {
				return nil, err
			}
			return fromLoadgen(r), nil
		}},
	}
}

func fromLoadgen(r *loadgen.Result) *measurement {
	return &measurement{
		hist:         r.Latency,
		requests:     r.Requests,
		errors:       r.Errors,
		unanswered:   r.Unanswered,
		elapsed:      r.Elapsed,
		intendedRate: r.IntendedRate,
		sendLag:      r.SendLag,
		perConn:      r.PerConn,
	}
}

func memcachedApp() *app {
	return &app{
		name: "memcached",
		argv: func(port int, _ string) ([]string, error) {
			return []string{"memcached", "-t", "4", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-m", "1024", "-u", "root"}, nil
		},
		warm: func(ctx context.Context, env *runEnv, _ *appState, port int) error {
			return kvWarm(ctx, env, loadgen.Memcached, port)
		},
		loads: kvLoads(loadgen.Memcached),
	}
}

func redisApp() *app {
	common := func(env *runEnv) []string {
		return []string{"-c", strconv.Itoa(env.Connections), "-r", strconv.Itoa(redisKeys), "-d", strconv.Itoa(redisValue)}
	}
	return &app{
		name: "redis",
		argv: func(port int, dir string) ([]string, error) {
			return []string{"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
				"--appendonly", "no", "--daemonize", "no", "--dir", dir}, nil
		},
		warm: func(ctx context.Context, env *runEnv, st *appState, port int) error {
			if err := kvWarm(ctx, env, loadgen.Redis, port); err != nil {
				return err
			}
			// A short redis-benchmark SET run fills its own key space
			// (key:NNN) and warms its path; the first one sizes -n so
			// that a measured run lasts about --duration.
			args := append([]string{"-t", "set", "-n", strconv.Itoa(2 * redisKeys)}, common(env)...)
			rep, err := runRedisBenchmark(ctx, env, port, 60*time.Second, args...)
			if err != nil {
				return err
			}
			if st.redisRequests == 0 {
				st.redisRequests = max(10000, int(rep.rps*env.Duration.Seconds()))
			}
			return nil
		},
		loads: append(kvLoads(loadgen.Redis), load{
			name: "redis-benchmark", driver: "redis-benchmark -t get (closed loop; 8 µs histogram resolution)", run: func(ctx context.Context, env *runEnv, st *appState, port int) (*measurement, error) {
				args := append([]string{"-t", "get", "-n", strconv.Itoa(st.redisRequests)}, common(env)...)
				rep, err := runRedisBenchmark(ctx, env, port, 10*env.Duration+60*time.Second, args...)
				if err != nil {
					return nil, err
				}
				return measurementFromRedis(rep)
			}}),
	}
}

func nginxApp() *app {
	url := func(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) + "/index.html" }
	return &app{
		name: "nginx",
		argv: func(port int, dir string) ([]string, error) {
			conf, err := writeNginxConfig(port, dir)
			if err != nil {
				return nil, err
			}
			return []string{"nginx", "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log")}, nil
		},
		warm: func(ctx context.Context, env *runEnv, _ *appState, port int) error {
			_, err := runWrk(ctx, env, url(port), env.Connections, warmFor)
			return err
		},
		loads: []load{
			{name: "closed", driver: "wrk -t 1 (closed loop)", run: func(ctx context.Context, env *runEnv, _ *appState, port int) (*measurement, error) {
				return runWrk(ctx, env, url(port), env.Connections, env.Duration)
			}},
		},
	}
}

// writeNginxConfig writes a master + 2 workers configuration serving a small
// static file, with every path inside dir, and returns its path.
func writeNginxConfig(port int, dir string) (string, error) {
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	// Workers run as nobody: they must be able to read the file.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	page := make([]byte, 612)
	for i := range page {
		page[i] = 'a' + byte(i%26)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), page, 0o644); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp_body;
  proxy_temp_path %[1]s/tmp_proxy;
  fastcgi_temp_path %[1]s/tmp_fastcgi;
  uwsgi_temp_path %[1]s/tmp_uwsgi;
  scgi_temp_path %[1]s/tmp_scgi;
  server {
    listen 127.0.0.1:%[2]d;
    root %[3]s;
    location / { }
  }
}
`, dir, port, www)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return path, nil
}
