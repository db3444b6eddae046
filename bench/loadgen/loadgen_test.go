package loadgen

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// startMemcached starts a real memcached on a free loopback port.
func startMemcached(t *testing.T) string {
	return startServer(t, "memcached", func(port string) []string {
		return []string{"-u", "root", "-t", "2", "-U", "0", "-l", "127.0.0.1", "-p", port, "-m", "64"}
	})
}

// startRedis starts a real redis-server on a free loopback port.
func startRedis(t *testing.T) string {
	return startServer(t, "redis-server", func(port string) []string {
		return []string{"--port", port, "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--daemonize", "no", "--dir", t.TempDir()}
	})
}

// startServer starts program with args(port) on a free loopback port,
// killed when the test ends, and waits (at most 10 s) until it listens.
func startServer(t *testing.T, program string, args func(port string) []string) string {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		t.Skipf("%s not installed (make deps installs it): %v", program, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(program, args(strconv.Itoa(port))...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s", program, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedisProtocol(t *testing.T) {
	cfg := baseConfig(startRedis(t))
	cfg.Protocol = Redis
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Preload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// Every key now holds a ValueSize value: GET bench:0 must return it.
	c, err := dial(&cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if _, err := c.c.Write(c.redisRequest(0, false)); err != nil {
		t.Fatal(err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil || line != "$16\r\n" {
		t.Fatalf("GET bench:0 after preload: %q, %v", line, err)
	}
	for _, rate := range []float64{0, 1000} {
		cfg.Rate = rate
		res, err := Run(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Requests < 100 || res.Errors != 0 || res.Unanswered != 0 || res.Latency.TotalCount() != res.Requests {
			t.Errorf("rate %v: %d requests, %d errors, %d unanswered, %d recorded",
				rate, res.Requests, res.Errors, res.Unanswered, res.Latency.TotalCount())
		}
	}
}

func baseConfig(addr string) Config {
	return Config{Addr: addr, Connections: 2, Duration: 500 * time.Millisecond, Drain: time.Second,
		Keys: 100, ValueSize: 16, SetPercent: 10, Seed: 7}
}

func TestClosedAndOpenLoopOnMemcached(t *testing.T) {
	addr := startMemcached(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := baseConfig(addr)
	if err := Preload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	closed, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if closed.Requests < 100 || closed.Errors != 0 || closed.Unanswered != 0 {
		t.Fatalf("closed loop: %d requests, %d errors, %d unanswered", closed.Requests, closed.Errors, closed.Unanswered)
	}
	if closed.Latency.TotalCount() != closed.Requests {
		t.Errorf("closed loop recorded %d latencies for %d requests", closed.Latency.TotalCount(), closed.Requests)
	}
	if len(closed.PerConn) != 2 || closed.PerConn[0]+closed.PerConn[1] != closed.Requests {
		t.Errorf("per-connection replies %v do not add up to %d", closed.PerConn, closed.Requests)
	}
	if closed.Throughput() <= 0 || closed.SendLag != nil {
		t.Errorf("closed loop throughput %v, send lag %v", closed.Throughput(), closed.SendLag)
	}

	cfg.Rate = 2000
	open, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The schedule is exact: rate × duration requests.
	if open.Scheduled != 1000 {
		t.Errorf("scheduled %d requests, want 1000", open.Scheduled)
	}
	if open.Requests+open.Unanswered != open.Scheduled || open.Latency.TotalCount() != open.Scheduled {
		t.Errorf("open loop: %d answered + %d unanswered, %d recorded, of %d scheduled",
			open.Requests, open.Unanswered, open.Latency.TotalCount(), open.Scheduled)
	}
	if open.IntendedRate != 2000 || open.SendLag == nil || open.SendLag.TotalCount() != open.Scheduled {
		t.Errorf("open loop rate %v, send lag %v", open.IntendedRate, open.SendLag)
	}
}

// stallServer answers every memcached get with END, but once, after the
// 50th request, stops answering for stall: the server-side hiccup that a
// closed-loop generator hides (coordinated omission).
func stallServer(t *testing.T, stall time.Duration) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if !strings.HasPrefix(line, "get ") {
						_, _ = c.Write([]byte("ERROR\r\n"))
						continue
					}
					if n.Add(1) == 50 {
						time.Sleep(stall)
					}
					if _, err := c.Write([]byte("END\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestOpenLoopCountsStallForEveryDelayedRequest(t *testing.T) {
	const stall = 300 * time.Millisecond
	cfg := baseConfig(stallServer(t, stall))
	cfg.Connections, cfg.SetPercent, cfg.Duration, cfg.Rate = 1, 0, time.Second, 1000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Requests meant to go out during the stall waited for it: about
	// 300 of 1000 have latency > 100 ms, measured from the intended time.
	slow := res.Latency.TotalCount() - countBelow(res, 100*time.Millisecond)
	if slow < 200 {
		t.Errorf("only %d requests slower than 100 ms; the stall is hidden", slow)
	}
	if max := time.Duration(res.Latency.Max()); max < stall*9/10 {
		t.Errorf("max latency %v < stall %v", max, stall)
	}

	// The same stall in a closed loop shows in one request (a few more if
	// the host hiccups), not in hundreds.
	cfg.Rate = 0
	closed, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if slowClosed := closed.Latency.TotalCount() - countBelow(closed, 100*time.Millisecond); slowClosed > 10 {
		t.Errorf("closed loop saw %d slow requests, want about the one that stalled", slowClosed)
	}
}

func countBelow(r *Result, d time.Duration) int64 {
	var n int64
	for _, b := range r.Latency.Distribution() {
		if b.To < int64(d) {
			n += b.Count
		}
	}
	return n
}

func TestUnansweredAreCountedNotDropped(t *testing.T) {
	// A server that accepts and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = bufio.NewReader(c).Discard(1 << 30); c.Close() }()
		}
	}()
	cfg := baseConfig(l.Addr().String())
	cfg.Rate, cfg.Duration, cfg.Drain = 500, 200*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Unanswered != res.Scheduled || res.Scheduled != 100 {
		t.Errorf("answered %d, unanswered %d, scheduled %d; want 0, 100, 100", res.Requests, res.Unanswered, res.Scheduled)
	}
	if res.Latency.TotalCount() != 100 || time.Duration(res.Latency.Min()) < 190*time.Millisecond {
		t.Errorf("unanswered requests recorded %d times, min %v", res.Latency.TotalCount(), time.Duration(res.Latency.Min()))
	}
}

func TestConfigAndProtocolErrors(t *testing.T) {
	if _, err := Run(context.Background(), Config{}); !errors.Is(err, ErrConfig) {
		t.Errorf("empty config: %v, want ErrConfig", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("HELLO\r\n"))
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	cfg := baseConfig(l.Addr().String())
	cfg.Connections = 1
	if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrProtocol) {
		t.Errorf("garbage reply: %v, want ErrProtocol", err)
	}
}
