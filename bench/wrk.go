package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript makes wrk print its whole latency histogram (µs, count) and its
// totals from the done() hook, in lines the parser recognises.
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FTLBENCH total %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
  for i = 1, #latency do
    local v, c = latency(i)
    io.write(string.format("FTLBENCH lat %d %d\n", v, c))
  end
end
`

// parseWrk reads the FTLBENCH lines of wrkScript. wrk records latency in
// whole microseconds; the histogram gets every value exactly.
func parseWrk(out []byte) (*measurement, error) {
	var m *measurement
	var pts []distPoint
	var cum int64
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 || fs[0] != "FTLBENCH" {
			continue
		}
		switch {
		case fs[1] == "total" && len(fs) == 5:
			reqs, e1 := strconv.ParseInt(fs[2], 10, 64)
			us, e2 := strconv.ParseInt(fs[3], 10, 64)
			errs, e3 := strconv.ParseInt(fs[4], 10, 64)
			if e1 != nil || e2 != nil || e3 != nil || us <= 0 || reqs < 0 {
				return nil, fmt.Errorf("%w: wrk totals %q", ErrParse, sc.Text())
			}
			m = &measurement{requests: reqs, errors: errs, elapsed: time.Duration(us) * time.Microsecond}
		case fs[1] == "lat" && len(fs) == 4:
			v, e1 := strconv.ParseInt(fs[2], 10, 64)
			c, e2 := strconv.ParseInt(fs[3], 10, 64)
			if e1 != nil || e2 != nil || v < 0 || c < 0 {
				return nil, fmt.Errorf("%w: wrk latency %q", ErrParse, sc.Text())
			}
			cum += c
			pts = append(pts, distPoint{ns: v * 1000, cum: cum})
		default:
			return nil, fmt.Errorf("%w: wrk line %q", ErrParse, sc.Text())
		}
	}
	if m == nil || len(pts) == 0 {
		return nil, fmt.Errorf("%w: wrk printed no totals or no latencies (is the Lua done() hook supported?)", ErrParse)
	}
	sortPoints(pts)
	h, err := histogramFromCumulative(pts)
	if err != nil {
		return nil, fmt.Errorf("%w: wrk latency histogram", ErrParse)
	}
	m.hist = h
	return m, nil
}

// runWrk runs wrk for d against url and parses its histogram.
func runWrk(ctx context.Context, env *runEnv, url string, conns int, d time.Duration) (*measurement, error) {
	script := filepath.Join(env.tmp, "ftlbench.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	argv := env.pinLoad([]string{"wrk", "-t", "1", "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs) + "s",
		"--timeout", "5s", "-s", script, url})
	cctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w: %s", ErrDriver, strings.Join(argv, " "), err, tail(out))
	}
	return parseWrk(out)
}
