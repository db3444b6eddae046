// Package bench owns `ftl bench`: it measures what ftl costs against the
// same server run natively. For each app (memcached, redis, nginx) and each
// mode (native, none, and the modes that do not exist yet, reported as
// unavailable) it starts a fresh server per round on a free loopback port,
// warms it up, drives it with a real load generator (ftl's own Go memcached
// generator, redis-benchmark, wrk), and samples the CPU time of the server's
// whole process tree around each measurement. Rounds interleave the modes
// (A B A B ...) so drift over the run touches every mode alike; ratios to
// native are computed round by round from the pair measured back to back.
//
// Outputs (see report.go and plot.go): results.json, results.md, and latency
// CDF and throughput plots as SVG and PNG.
//
// Invariants: every server and load run is bounded in time; servers are
// stopped by pid (native) or by name (`ftl stop`), never by process name; all
// files live in one temporary directory removed at the end; a mode that does
// not exist is never estimated.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ftlinux/ftl/bench/loadgen"
)

// Errors returned by this package.
var (
	ErrConfig      = errors.New("bench: invalid configuration")
	ErrUnavailable = errors.New("bench: mode not available")
	ErrServer      = errors.New("bench: server")
	ErrDriver      = errors.New("bench: load driver")
	ErrParse       = errors.New("bench: cannot parse load generator output")
)

// Config is one `ftl bench` invocation.
type Config struct {
	Apps        []string      // memcached, redis, nginx
	Modes       []string      // native, none, checkpoint, log
	Duration    time.Duration // per measurement
	Rounds      int           // interleaved rounds per app
	Connections int           // client connections
	// Rate is the memcached open-loop rate in requests per second; 0 means
	// OpenFraction of the first closed-loop throughput measured.
	Rate         float64
	OpenFraction float64
	Pin          bool      // pin server and load generator to different cores when there are >= 2
	FTLBin       string    // the ftl binary for ftl modes
	Progress     io.Writer // one line per measurement; nil for none
	Command      string    // the command line, for the report
}

func (c *Config) validate() error {
	if len(c.Apps) == 0 || len(c.Modes) == 0 {
		return fmt.Errorf("%w: no app or no mode", ErrConfig)
	}
	for _, a := range c.Apps {
		if _, ok := appByName(a); !ok {
			return fmt.Errorf("%w: unknown app %q (want %s)", ErrConfig, a, strings.Join(Apps, ", "))
		}
	}
	seen := map[string]bool{}
	for _, m := range c.Modes {
		if _, _, ok := modeInfo(m); !ok {
			return fmt.Errorf("%w: unknown mode %q (want native, none, checkpoint, log)", ErrConfig, m)
		}
		if seen[m] {
			return fmt.Errorf("%w: mode %q given twice", ErrConfig, m)
		}
		seen[m] = true
	}
	switch {
	case c.Duration < time.Second:
		return fmt.Errorf("%w: duration %v < 1s", ErrConfig, c.Duration)
	case c.Duration > 10*time.Minute:
		return fmt.Errorf("%w: duration %v > 10m", ErrConfig, c.Duration)
	case c.Rounds < 1 || c.Rounds > 100:
		return fmt.Errorf("%w: rounds %d out of 1..100", ErrConfig, c.Rounds)
	case c.Connections < 1 || c.Connections > 1000:
		return fmt.Errorf("%w: connections %d out of 1..1000", ErrConfig, c.Connections)
	case c.Rate < 0:
		return fmt.Errorf("%w: rate %v < 0", ErrConfig, c.Rate)
	case c.OpenFraction <= 0 || c.OpenFraction > 1:
		return fmt.Errorf("%w: open-loop fraction %v out of (0,1]", ErrConfig, c.OpenFraction)
	}
	return nil
}

// runEnv is the state one Run shares with servers and drivers.
type runEnv struct {
	Config
	tmp       string
	serverCPU string // taskset list, "" for no pinning
	loadCPU   string
}

func (e *runEnv) pinServer(argv []string) []string { return pin(e.serverCPU, argv) }
func (e *runEnv) pinLoad(argv []string) []string   { return pin(e.loadCPU, argv) }

func pin(cpus string, argv []string) []string {
	if cpus == "" {
		return argv
	}
	return append([]string{"taskset", "-c", cpus}, argv...)
}

func (e *runEnv) openRate(closedThroughput float64) float64 {
	if e.Rate > 0 {
		return e.Rate
	}
	return max(100, closedThroughput*e.OpenFraction)
}

// Run measures every app in every mode and returns the results; it fails
// only when the bench itself cannot run (bad config, no temp dir). A round
// that fails is recorded in the results and the run goes on.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	env := &runEnv{Config: cfg}
	tmp, err := os.MkdirTemp("", "ftl-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	// nginx workers run as nobody: they must be able to traverse it.
	if err := os.Chmod(tmp, 0o711); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	env.tmp = tmp

	res := &Results{
		Version:   1,
		Started:   time.Now().UTC(),
		Command:   cfg.Command,
		Machine:   describeMachine(),
		Settings:  settingsOf(cfg),
		LoadStart: loadAvg(),
	}
	if cfg.Pin && runtime.NumCPU() >= 2 {
		if restore, perr := pinSelf(0); perr == nil {
			defer restore()
			env.serverCPU, env.loadCPU = "1", "0"
			res.Settings.Pinning = "load generators on CPU 0, servers on CPU 1 (taskset / sched_setaffinity)"
		} else {
			res.Settings.Pinning = "none: " + perr.Error()
		}
	} else {
		res.Settings.Pinning = "none"
	}

	// Which modes can run at all.
	status := map[string]string{}
	for _, m := range cfg.Modes {
		avail, how, _ := modeInfo(m)
		switch {
		case !avail:
			status[m] = how
		case m == "none":
			if why := probeFTL(ctx, cfg.FTLBin); why != "" {
				status[m] = why
			}
		}
	}
	var runnable []string
	for _, m := range cfg.Modes {
		if status[m] == "" {
			runnable = append(runnable, m)
		}
	}

	total := len(cfg.Apps) * len(runnable) * cfg.Rounds
	step := 0
	for _, name := range cfg.Apps {
		a, _ := appByName(name)
		ar := newAppRun(a, cfg.Modes, status)
		for _, sl := range schedule(runnable, cfg.Rounds) {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("bench: %w", err)
			}
			step++
			ar.runSlot(ctx, env, sl, step, total)
		}
		res.Workloads = append(res.Workloads, ar.results()...)
		res.Apps = append(res.Apps, ar.summaryLine())
		progressf(cfg.Progress, "%s\n", ar.summaryLine())
	}
	res.Finished = time.Now().UTC()
	res.LoadEnd = loadAvg()
	return res, nil
}

func progressf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}

// probeFTL returns why the ftl modes cannot run with bin, or "".
func probeFTL(ctx context.Context, bin string) string {
	if bin == "" {
		return "unavailable: no ftl binary"
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, bin, "run", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--detach") {
		return fmt.Sprintf("unavailable: %s has no working `run --detach` (%v)", bin, err)
	}
	return ""
}

// round is one mode's measurement of one load in one round, with the
// histogram kept for merging.
type roundData struct {
	Round
	hist *hdrhistogram.Histogram
}

// appRun collects one app's measurements.
type appRun struct {
	app    *app
	modes  []string
	status map[string]string // mode -> why it is unavailable ("" = runnable)
	st     appState
	data   map[string]map[string][]roundData // load -> mode -> rounds
	fails  map[string][]string               // mode -> failure messages
}

func newAppRun(a *app, modes []string, status map[string]string) *appRun {
	ar := &appRun{app: a, modes: modes, status: status, data: map[string]map[string][]roundData{}, fails: map[string][]string{}}
	for _, l := range a.loads {
		ar.data[l.name] = map[string][]roundData{}
	}
	return ar
}

// runSlot starts a fresh server in sl.Mode, warms it, measures every load
// and stops it. Failures are recorded against the mode.
func (ar *appRun) runSlot(ctx context.Context, env *runEnv, sl slot, step, total int) {
	fail := func(err error) {
		msg := fmt.Sprintf("round %d: %v", sl.Round, err)
		ar.fails[sl.Mode] = append(ar.fails[sl.Mode], msg)
		progressf(env.Progress, "[%d/%d] %s %s round %d: FAILED: %v\n", step, total, ar.app.name, sl.Mode, sl.Round, err)
	}
	dir, err := os.MkdirTemp(env.tmp, fmt.Sprintf("%s-%s-%d-", ar.app.name, sl.Mode, sl.Round))
	if err != nil {
		fail(err)
		return
	}
	port, err := freePort()
	if err != nil {
		fail(err)
		return
	}
	argv, err := ar.app.argv(port, dir)
	if err != nil {
		fail(err)
		return
	}
	name := fmt.Sprintf("bench-%s-%d-%d", ar.app.name, os.Getpid(), sl.Round)
	srv, err := startServer(ctx, env, sl.Mode, name, argv, port, dir)
	if err != nil {
		fail(err)
		return
	}
	defer func() {
		if err := srv.stop(); err != nil {
			fail(err)
		}
	}()
	if err := ar.app.warm(ctx, env, &ar.st, port); err != nil {
		fail(fmt.Errorf("warm-up: %w", err))
		return
	}
	for _, l := range ar.app.loads {
		// The tree may have grown (nginx workers restart, ftl helpers).
		if pids, err := serverTree(port); err == nil {
			srv.pids = pids
		}
		cpu0 := cpuNanos(srv.pids)
		m, err := l.run(ctx, env, &ar.st, port)
		cpu1 := cpuNanos(srv.pids)
		if err != nil {
			fail(fmt.Errorf("%s: %w", l.name, err))
			continue
		}
		rd := roundOf(sl, m, cpu1-cpu0)
		rd.ServerProcs = len(srv.pids)
		ar.data[l.name][sl.Mode] = append(ar.data[l.name][sl.Mode], rd)
		s := rd.Latency
		progressf(env.Progress, "[%d/%d] %-9s %-6s %-6s round %d: p50 %7.1f us  p99 %7.1f us  %9.0f req/s  %6.2f us CPU/req\n",
			step, total, ar.app.name, l.name, sl.Mode, sl.Round, s.P50, s.P99, rd.Throughput, rd.CPUPerRequestUs)
	}
}

func roundOf(sl slot, m *measurement, cpuNs int64) roundData {
	s := summarize(m.hist)
	if m.summary != nil {
		s = *m.summary
	}
	r := Round{
		Round:           sl.Round,
		Requests:        m.requests,
		Errors:          m.errors,
		Unanswered:      m.unanswered,
		Seconds:         m.elapsed.Seconds(),
		Latency:         s,
		CPUSeconds:      float64(cpuNs) / 1e9,
		PerConnRequests: m.perConn,
	}
	if m.elapsed > 0 {
		r.Throughput = float64(m.requests) / m.elapsed.Seconds()
	}
	if m.requests > 0 {
		r.CPUPerRequestUs = float64(cpuNs) / 1e3 / float64(m.requests)
	}
	if m.intendedRate > 0 {
		r.IntendedRate = m.intendedRate
		r.AchievedRate = r.Throughput
		if m.sendLag != nil && m.sendLag.TotalCount() > 0 {
			r.SendLagP50Us = nsToUs(m.sendLag.ValueAtQuantile(50))
			r.SendLagP99Us = nsToUs(m.sendLag.ValueAtQuantile(99))
		}
	}
	return roundData{Round: r, hist: m.hist}
}

// mergeHists merges round histograms for the CDF plot.
func mergeHists(rs []roundData) *hdrhistogram.Histogram {
	h := loadgen.NewHistogram()
	for _, r := range rs {
		if r.hist != nil {
			h.Merge(r.hist)
		}
	}
	return h
}
