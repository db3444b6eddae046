package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// redisReport is what one redis-benchmark run printed about one test.
type redisReport struct {
	test       string
	requests   int64
	seconds    float64
	rps        float64
	points     []distPoint // both printed distributions, sorted by value
	summary    Summary     // the exact avg/p50/p99/max of the "latency summary"
	hasSummary bool
}

var (
	redisTestRe    = regexp.MustCompile(`^====== (.+) ======$`)
	redisDoneRe    = regexp.MustCompile(`^(\d+) requests completed in ([0-9.]+) seconds$`)
	redisPointRe   = regexp.MustCompile(`^([0-9.]+)% <= ([0-9.]+) milliseconds \(cumulative count (\d+)\)$`)
	redisThroughRe = regexp.MustCompile(`^throughput summary: ([0-9.]+) requests per second$`)
)

// parseRedisBenchmark reads redis-benchmark 7's default (not -q, not --csv)
// output: per test a header, "N requests completed in S seconds", the
// "Latency by percentile distribution" and "Cumulative distribution of
// latencies" lines, and a summary with throughput and avg/min/p50/p95/p99/max
// in milliseconds. Progress lines separated by '\r' are skipped. Output
// without a complete test is refused with ErrParse.
func parseRedisBenchmark(out []byte) ([]redisReport, error) {
	var reps []redisReport
	var cur *redisReport
	wantSummaryValues := false
	sc := bufio.NewScanner(bytes.NewReader(bytes.ReplaceAll(out, []byte("\r"), []byte("\n"))))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := redisTestRe.FindStringSubmatch(line); m != nil {
			reps = append(reps, redisReport{test: m[1]})
			cur = &reps[len(reps)-1]
			wantSummaryValues = false
			continue
		}
		if cur == nil {
			continue
		}
		switch {
		case redisDoneRe.MatchString(line):
			m := redisDoneRe.FindStringSubmatch(line)
			cur.requests, _ = strconv.ParseInt(m[1], 10, 64)
			cur.seconds, _ = strconv.ParseFloat(m[2], 64)
		case redisPointRe.MatchString(line):
			m := redisPointRe.FindStringSubmatch(line)
			ms, err1 := strconv.ParseFloat(m[2], 64)
			cum, err2 := strconv.ParseInt(m[3], 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("%w: redis-benchmark line %q", ErrParse, line)
			}
			cur.points = append(cur.points, distPoint{ns: int64(ms*1e6 + 0.5), cum: cum})
		case redisThroughRe.MatchString(line):
			cur.rps, _ = strconv.ParseFloat(redisThroughRe.FindStringSubmatch(line)[1], 64)
		case strings.HasPrefix(line, "avg") && strings.Contains(line, "p50"):
			wantSummaryValues = true
		case wantSummaryValues:
			wantSummaryValues = false
			fs := strings.Fields(line)
			if len(fs) != 6 {
				return nil, fmt.Errorf("%w: redis-benchmark latency summary %q", ErrParse, line)
			}
			var v [6]float64
			for i, f := range fs {
				x, err := strconv.ParseFloat(f, 64)
				if err != nil || !finite(x) {
					return nil, fmt.Errorf("%w: redis-benchmark latency summary %q", ErrParse, line)
				}
				v[i] = x * 1e3
			}
			// avg min p50 p95 p99 max
			cur.summary = Summary{Mean: v[0], P50: v[2], P99: v[4], Max: v[5]}
			cur.hasSummary = true
		}
	}
	if len(reps) == 0 {
		return nil, fmt.Errorf("%w: no test in redis-benchmark output", ErrParse)
	}
	for i := range reps {
		r := &reps[i]
		if r.requests == 0 || len(r.points) == 0 || r.rps == 0 {
			return nil, fmt.Errorf("%w: redis-benchmark test %s incomplete (requests %d, %d distribution points, rps %v)",
				ErrParse, r.test, r.requests, len(r.points), r.rps)
		}
		sortPoints(r.points)
	}
	return reps, nil
}

// sortPoints orders points by value; two printed distributions interleave.
func sortPoints(p []distPoint) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && (p[j].ns < p[j-1].ns || p[j].ns == p[j-1].ns && p[j].cum < p[j-1].cum); j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

// measurementFromRedis turns one test's report into a measurement: the
// histogram is rebuilt from the printed points (percentiles read from it are
// upper bounds at redis-benchmark's print resolution), then p50, p99, mean
// and max are replaced by the exact values of redis-benchmark's own summary.
func measurementFromRedis(r redisReport) (*measurement, error) {
	h, err := histogramFromCumulative(r.points)
	if err != nil {
		return nil, fmt.Errorf("%w: redis-benchmark test %s: distribution not cumulative", ErrParse, r.test)
	}
	if h.TotalCount() != r.requests {
		return nil, fmt.Errorf("%w: redis-benchmark test %s: distribution counts %d requests, header %d",
			ErrParse, r.test, h.TotalCount(), r.requests)
	}
	s := summarize(h)
	if r.hasSummary {
		s.P50, s.P99, s.Mean, s.Max = r.summary.P50, r.summary.P99, r.summary.Mean, r.summary.Max
	}
	return &measurement{
		hist:     h,
		summary:  &s,
		requests: r.requests,
		elapsed:  time.Duration(float64(r.requests) / r.rps * float64(time.Second)),
	}, nil
}

// runRedisBenchmark runs redis-benchmark with args against port and parses
// the one test it asked for.
func runRedisBenchmark(ctx context.Context, env *runEnv, port int, timeout time.Duration, args ...string) (redisReport, error) {
	argv := append([]string{"redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)
	argv = env.pinLoad(argv)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := exec.CommandContext(cctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return redisReport{}, fmt.Errorf("%w: %s: %w: %s", ErrDriver, strings.Join(argv, " "), err, tail(out))
	}
	reps, err := parseRedisBenchmark(out)
	if err != nil {
		return redisReport{}, err
	}
	if len(reps) != 1 {
		return redisReport{}, fmt.Errorf("%w: redis-benchmark printed %d tests, want 1", ErrParse, len(reps))
	}
	return reps[0], nil
}

func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 300 {
		b = b[len(b)-300:]
	}
	return string(b)
}
