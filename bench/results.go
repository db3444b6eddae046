package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Results is everything one run measured; it is results.json.
type Results struct {
	Version   int        `json:"version"`
	Started   time.Time  `json:"started"`
	Finished  time.Time  `json:"finished"`
	Command   string     `json:"command"`
	Machine   Machine    `json:"machine"`
	Settings  Settings   `json:"settings"`
	Workloads []Workload `json:"workloads"`
	Apps      []string   `json:"summary"` // one line per app
	// The host's 1-minute load average when the run started and ended:
	// other work on the host is noise the interleaving can only spread.
	LoadStart float64 `json:"loadavg_start"`
	LoadEnd   float64 `json:"loadavg_end"`
}

// loadAvg reads the 1-minute load average, 0 when unknown.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	fs := strings.Fields(string(b))
	if len(fs) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(fs[0], 64)
	return v
}

// Machine is where the numbers were measured.
type Machine struct {
	CPUModel string `json:"cpu_model"`
	CPUs     int    `json:"cpus"`
	Kernel   string `json:"kernel"`
	MemoryGB int    `json:"memory_gib"`
	OS       string `json:"os"`
	Go       string `json:"go"`
}

// Settings are the knobs of the run.
type Settings struct {
	Apps         []string `json:"apps"`
	Modes        []string `json:"modes"`
	DurationS    float64  `json:"duration_s"`
	Rounds       int      `json:"rounds"`
	Connections  int      `json:"connections"`
	Rate         float64  `json:"rate,omitempty"`
	OpenFraction float64  `json:"open_fraction"`
	Pinning      string   `json:"pinning"`
}

// Workload is one app driven one way, in every mode.
type Workload struct {
	App    string       `json:"app"`
	Load   string       `json:"load"` // closed | open
	Driver string       `json:"driver"`
	Modes  []ModeResult `json:"modes"`
}

// ModeResult is one mode's measurements of a workload.
type ModeResult struct {
	Mode   string  `json:"mode"`
	Status string  `json:"status"` // ok | unavailable | failed
	Reason string  `json:"reason,omitempty"`
	Rounds []Round `json:"rounds,omitempty"`

	// Across rounds.
	P50             Spread  `json:"p50_us"`
	P90             Spread  `json:"p90_us"`
	P99             Spread  `json:"p99_us"`
	P999            Spread  `json:"p99_9_us"`
	Throughput      Spread  `json:"throughput_rps"`
	CPUPerRequestUs Spread  `json:"cpu_us_per_request"`
	IntendedRate    float64 `json:"intended_rate_rps,omitempty"`

	// Against native, round by round (absent for native itself).
	Ratio      *Ratios `json:"ratio_to_native,omitempty"`
	AddedP50Us *Spread `json:"added_p50_us,omitempty"`
	AddedP99Us *Spread `json:"added_p99_us,omitempty"`

	CDF      []CDFPoint `json:"cdf,omitempty"` // all rounds merged
	Failures []string   `json:"failures,omitempty"`
}

// Ratios are mode / native per metric, from rounds measured back to back.
type Ratios struct {
	P50           Spread `json:"p50"`
	P90           Spread `json:"p90"`
	P99           Spread `json:"p99"`
	P999          Spread `json:"p99_9"`
	Throughput    Spread `json:"throughput"`
	CPUPerRequest Spread `json:"cpu_per_request"`
}

// Round is one measurement.
type Round struct {
	Round           int     `json:"round"`
	Requests        int64   `json:"requests"`
	Errors          int64   `json:"errors"`
	Unanswered      int64   `json:"unanswered,omitempty"`
	Seconds         float64 `json:"seconds"`
	Throughput      float64 `json:"throughput_rps"`
	Latency         Summary `json:"latency"`
	CPUSeconds      float64 `json:"cpu_s"`
	CPUPerRequestUs float64 `json:"cpu_us_per_request"`
	ServerProcs     int     `json:"server_processes"` // processes whose CPU was counted
	IntendedRate    float64 `json:"intended_rate_rps,omitempty"`
	AchievedRate    float64 `json:"achieved_rate_rps,omitempty"`
	SendLagP50Us    float64 `json:"send_lag_p50_us,omitempty"`
	SendLagP99Us    float64 `json:"send_lag_p99_us,omitempty"`
	// ftl's generator only: replies per connection, to see whether the
	// server served its connections alike.
	PerConnRequests []int64 `json:"per_connection_requests,omitempty"`
}

// metric picks one number out of a round.
type metric func(Round) float64

var (
	mP50  metric = func(r Round) float64 { return r.Latency.P50 }
	mP90  metric = func(r Round) float64 { return r.Latency.P90 }
	mP99  metric = func(r Round) float64 { return r.Latency.P99 }
	mP999 metric = func(r Round) float64 { return r.Latency.P999 }
	mThr  metric = func(r Round) float64 { return r.Throughput }
	mCPU  metric = func(r Round) float64 { return r.CPUPerRequestUs }
)

func byRound(rs []Round, m metric) map[int]float64 {
	out := make(map[int]float64, len(rs))
	for _, r := range rs {
		out[r.Round] = m(r)
	}
	return out
}

func spreadOfMetric(rs []Round, m metric) Spread {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = m(r)
	}
	return spreadOf(xs)
}

// aggregate fills a ModeResult's spreads, and its ratios against native when
// native is given.
func aggregate(mode string, rounds []Round, native []Round) ModeResult {
	mr := ModeResult{Mode: mode, Status: "ok", Rounds: rounds}
	mr.P50 = spreadOfMetric(rounds, mP50)
	mr.P90 = spreadOfMetric(rounds, mP90)
	mr.P99 = spreadOfMetric(rounds, mP99)
	mr.P999 = spreadOfMetric(rounds, mP999)
	mr.Throughput = spreadOfMetric(rounds, mThr)
	mr.CPUPerRequestUs = spreadOfMetric(rounds, mCPU)
	if len(rounds) > 0 {
		mr.IntendedRate = rounds[0].IntendedRate
	}
	if native == nil || mode == "native" {
		return mr
	}
	ratio := func(m metric) Spread { return spreadOf(pairedRatios(byRound(native, m), byRound(rounds, m))) }
	mr.Ratio = &Ratios{
		P50: ratio(mP50), P90: ratio(mP90), P99: ratio(mP99), P999: ratio(mP999),
		Throughput: ratio(mThr), CPUPerRequest: ratio(mCPU),
	}
	a50 := spreadOf(pairedDiffs(byRound(native, mP50), byRound(rounds, mP50)))
	a99 := spreadOf(pairedDiffs(byRound(native, mP99), byRound(rounds, mP99)))
	mr.AddedP50Us, mr.AddedP99Us = &a50, &a99
	return mr
}

// results turns an app's measurements into one Workload per load.
func (ar *appRun) results() []Workload {
	var out []Workload
	for _, l := range ar.app.loads {
		w := Workload{App: ar.app.name, Load: l.name, Driver: l.driver}
		plain := func(rd []roundData) []Round {
			rs := make([]Round, len(rd))
			for i, r := range rd {
				rs[i] = r.Round
			}
			return rs
		}
		native := plain(ar.data[l.name]["native"])
		if len(native) == 0 {
			native = nil
		}
		for _, m := range ar.modes {
			if why := ar.status[m]; why != "" {
				w.Modes = append(w.Modes, ModeResult{Mode: m, Status: "unavailable", Reason: why})
				continue
			}
			rd := ar.data[l.name][m]
			mr := aggregate(m, plain(rd), native)
			mr.CDF = cdf(mergeHists(rd))
			mr.Failures = ar.fails[m]
			if len(rd) == 0 {
				mr.Status = "failed"
				mr.Reason = "no round completed"
				if len(mr.Failures) > 0 {
					mr.Reason = mr.Failures[0]
				}
			}
			w.Modes = append(w.Modes, mr)
		}
		out = append(out, w)
	}
	return out
}

// summaryLine is the one line per app printed at the end.
func (ar *appRun) summaryLine() string {
	var parts []string
	for _, w := range ar.results() {
		for _, m := range w.Modes {
			switch {
			case m.Status != "ok":
				if w.Load == ar.app.loads[0].name {
					parts = append(parts, fmt.Sprintf("%s %s", m.Mode, m.Status))
				}
			case m.Ratio == nil:
				parts = append(parts, fmt.Sprintf("%s %s p50 %.1f us p99 %.1f us %.0f req/s",
					w.Load, m.Mode, m.P50.Median, m.P99.Median, m.Throughput.Median))
			default:
				parts = append(parts, fmt.Sprintf("%s %s p50 %+.1f us (x%.3f) p99 x%.3f thr x%.3f cpu/req x%.3f",
					w.Load, m.Mode, m.AddedP50Us.Median, m.Ratio.P50.Median, m.Ratio.P99.Median,
					m.Ratio.Throughput.Median, m.Ratio.CPUPerRequest.Median))
			}
		}
	}
	return ar.app.name + ": " + strings.Join(parts, "; ")
}

func settingsOf(c Config) Settings {
	return Settings{
		Apps: c.Apps, Modes: c.Modes, DurationS: c.Duration.Seconds(), Rounds: c.Rounds,
		Connections: c.Connections, Rate: c.Rate, OpenFraction: c.OpenFraction,
	}
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryGB = int((uint64(si.Totalram)*uint64(si.Unit) + 1<<29) >> 30)
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}

// pinSelf binds every thread of this process to cpu (threads created later
// inherit it) and caps GOMAXPROCS to 2; restore undoes both.
func pinSelf(cpu int) (restore func(), err error) {
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var set unix.CPUSet
	set.Set(cpu)
	tids := func() []int {
		ents, _ := os.ReadDir("/proc/self/task")
		var out []int
		for _, e := range ents {
			if t, err := strconv.Atoi(e.Name()); err == nil {
				out = append(out, t)
			}
		}
		return out
	}
	for _, t := range tids() {
		if err := unix.SchedSetaffinity(t, &set); err != nil {
			return nil, fmt.Errorf("sched_setaffinity: %w", err)
		}
	}
	// The loadgen's pacer blocks a thread in nanosleep; keep two Ps so
	// the readers are never starved of one.
	prev := runtime.GOMAXPROCS(2)
	return func() {
		for _, t := range tids() {
			_ = unix.SchedSetaffinity(t, &old)
		}
		runtime.GOMAXPROCS(prev)
	}, nil
}
