package bench

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ftlBin is the ftl binary for the none mode: $FTL_BIN, or bin/ftl of the
// repository; "" when neither exists.
func ftlBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("FTL_BIN"); b != "" {
		return b
	}
	b, _ := filepath.Abs("../bin/ftl")
	if _, err := os.Stat(b); err == nil {
		return b
	}
	return ""
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it): %v", tool, err)
		}
	}
}

// TestShortRealRun runs the whole harness briefly on real servers and
// checks the structure of what it reports and writes; the numbers
// themselves are not judged.
func TestShortRealRun(t *testing.T) {
	needTools(t, "memcached", "redis-server", "redis-benchmark", "nginx", "wrk", "taskset")
	home := t.TempDir()
	t.Setenv("FTL_HOME", home)
	modes := []string{"native", "checkpoint"}
	bin := ftlBin(t)
	if bin != "" {
		modes = []string{"native", "none", "checkpoint"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress strings.Builder
	res, err := Run(ctx, Config{
		Apps: []string{"memcached", "redis", "nginx"}, Modes: modes,
		Duration: time.Second, Rounds: 2, Connections: 2, OpenFraction: 0.25,
		Pin: true, FTLBin: bin, Progress: &progress, Command: "go test",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s", progress.String())
	if logs, _ := filepath.Glob(filepath.Join(home, "log", "*")); len(logs) > 0 {
		t.Errorf("the bench left its runs' logs behind: %v", logs)
	}
	if len(res.Workloads) != 6 {
		t.Fatalf("%d workloads, want memcached closed+open, redis closed+open+redis-benchmark, nginx closed", len(res.Workloads))
	}
	for _, w := range res.Workloads {
		for _, m := range w.Modes {
			switch m.Mode {
			case "checkpoint":
				if m.Status != "unavailable" || m.Reason == "" || len(m.Rounds) != 0 || m.Ratio != nil {
					t.Errorf("%s %s checkpoint: %+v, want unavailable with a reason and no numbers", w.App, w.Load, m)
				}
				continue
			case "none":
				if m.Status == "unavailable" {
					t.Logf("none mode unavailable with %s: %s", bin, m.Reason)
					continue
				}
				if m.Ratio == nil || m.Ratio.P50.N == 0 {
					t.Errorf("%s %s none: no ratio to native: %+v", w.App, w.Load, m.Failures)
				}
			}
			if m.Status != "ok" || len(m.Rounds) != 2 {
				t.Errorf("%s %s %s: status %s, %d rounds, failures %v", w.App, w.Load, m.Mode, m.Status, len(m.Rounds), m.Failures)
				continue
			}
			for _, r := range m.Rounds {
				l := r.Latency
				if r.Requests <= 0 || r.Errors != 0 || r.Unanswered != 0 || r.Throughput <= 0 || r.CPUSeconds <= 0 || r.ServerProcs < 1 {
					t.Errorf("%s %s %s round %d: %+v", w.App, w.Load, m.Mode, r.Round, r)
				}
				if !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
					t.Errorf("%s %s %s round %d: percentiles out of order %+v", w.App, w.Load, m.Mode, r.Round, l)
				}
				if w.Load == "open" && (r.IntendedRate <= 0 || r.AchievedRate <= 0) {
					t.Errorf("open loop round without rates: %+v", r)
				}
			}
			if w.App == "nginx" && m.Mode == "native" && m.Rounds[0].ServerProcs != 3 {
				t.Errorf("nginx tree has %d processes, want master + 2 workers", m.Rounds[0].ServerProcs)
			}
			if len(m.CDF) == 0 {
				t.Errorf("%s %s %s: no CDF", w.App, w.Load, m.Mode)
			}
		}
	}
	if len(res.Apps) != 3 {
		t.Errorf("summary lines %q, want one per app", res.Apps)
	}

	dir := t.TempDir()
	paths, err := WriteOutputs(res, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"results.json", "results.md", "throughput.svg", "throughput.png",
		"latency-memcached-closed.svg", "latency-memcached-open.png", "latency-redis-closed.svg", "latency-redis-open.svg",
		"latency-redis-redis-benchmark.png", "tail-nginx-closed.svg", "latency-nginx-closed.png"} {
		st, err := os.Stat(filepath.Join(dir, want))
		if err != nil || st.Size() < 200 {
			t.Errorf("%s missing or tiny: %v", want, err)
		}
	}
	if len(paths) < 10 {
		t.Errorf("wrote only %v", paths)
	}
	var back Results
	b, _ := os.ReadFile(filepath.Join(dir, "results.json"))
	if err := json.Unmarshal(b, &back); err != nil || len(back.Workloads) != 6 || back.Machine.CPUs == 0 {
		t.Errorf("results.json does not read back: %v", err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "results.md"))
	for _, want := range []string{"| memcached | closed | native |", "checkpoint | unavailable", "Command: `go test`", "![throughput](throughput.svg)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	png, _ := os.ReadFile(filepath.Join(dir, "throughput.png"))
	if !strings.HasPrefix(string(png), "\x89PNG") {
		t.Error("throughput.png is not a PNG")
	}
}

func TestConfigRefused(t *testing.T) {
	good := Config{Apps: []string{"memcached"}, Modes: []string{"native"}, Duration: time.Second, Rounds: 1, Connections: 1, OpenFraction: 0.5}
	for name, mut := range map[string]func(*Config){
		"unknown app":   func(c *Config) { c.Apps = []string{"postgres"} },
		"unknown mode":  func(c *Config) { c.Modes = []string{"turbo"} },
		"twice":         func(c *Config) { c.Modes = []string{"native", "native"} },
		"short":         func(c *Config) { c.Duration = time.Millisecond },
		"no rounds":     func(c *Config) { c.Rounds = 0 },
		"no conns":      func(c *Config) { c.Connections = 0 },
		"bad fraction":  func(c *Config) { c.OpenFraction = 2 },
		"negative rate": func(c *Config) { c.Rate = -1 },
	} {
		c := good
		mut(&c)
		if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
}
