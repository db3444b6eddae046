package bench

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"
)

func TestParseRedisBenchmark(t *testing.T) {
	out, err := os.ReadFile("testdata/redis-benchmark-get.txt")
	if err != nil {
		t.Fatal(err)
	}
	reps, err := parseRedisBenchmark(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].test != "GET" || reps[0].requests != 20000 {
		t.Fatalf("parsed %+v, want one GET test of 20000 requests", reps)
	}
	r := reps[0]
	if !r.hasSummary || r.rps <= 0 || len(r.points) < 10 {
		t.Fatalf("incomplete parse: summary %v rps %v points %d", r.hasSummary, r.rps, len(r.points))
	}
	m, err := measurementFromRedis(r)
	if err != nil {
		t.Fatal(err)
	}
	s := *m.summary
	if m.hist.TotalCount() != 20000 {
		t.Errorf("histogram holds %d requests, want 20000", m.hist.TotalCount())
	}
	if s.P50 != r.summary.P50 || s.P99 != r.summary.P99 || s.P50 <= 0 {
		t.Errorf("p50/p99 %v/%v are not redis-benchmark's exact summary %v/%v", s.P50, s.P99, r.summary.P50, r.summary.P99)
	}
	if !(s.P50 <= s.P90 && s.P90 <= s.P999 && s.P999 <= s.Max) {
		t.Errorf("percentiles out of order: %+v", s)
	}
	if math.Abs(m.elapsed.Seconds()-20000/r.rps) > 1e-6 {
		t.Errorf("elapsed %v inconsistent with %v req/s", m.elapsed, r.rps)
	}
}

func TestParseRedisBenchmarkRefusesGarbage(t *testing.T) {
	for name, in := range map[string]string{
		"empty":     "",
		"csv":       `"test","rps"` + "\n" + `"GET","1000.0"` + "\n",
		"truncated": "====== GET ======\n  100 requests completed in 0.01 seconds\n",
		"bad summary": "====== GET ======\n100 requests completed in 0.01 seconds\n" +
			"50.000% <= 0.039 milliseconds (cumulative count 100)\nthroughput summary: 1000.00 requests per second\n" +
			"  avg       min       p50       p95       p99       max\n  0.1 nan\n",
	} {
		if _, err := parseRedisBenchmark([]byte(in)); !errors.Is(err, ErrParse) {
			t.Errorf("%s: err = %v, want ErrParse", name, err)
		}
	}
}

const wrkSample = `Running 1s test @ http://127.0.0.1:18089/index.html
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    64.23us  148.64us   3.88ms   98.56%
  80870 requests in 1.10s, 18.51MB read
Requests/sec:  73546.87
FTLBENCH total 10 1000000 1
FTLBENCH lat 13 3
FTLBENCH lat 20 5
FTLBENCH lat 900 2
`

func TestParseWrk(t *testing.T) {
	m, err := parseWrk([]byte(wrkSample))
	if err != nil {
		t.Fatal(err)
	}
	if m.requests != 10 || m.errors != 1 || m.elapsed.Seconds() != 1 || m.hist.TotalCount() != 10 {
		t.Fatalf("parsed requests %d errors %d elapsed %v count %d", m.requests, m.errors, m.elapsed, m.hist.TotalCount())
	}
	s := summarize(m.hist)
	if math.Abs(s.P50-20) > 0.05 || math.Abs(s.P99-900) > 1 || math.Abs(s.Max-900) > 1 {
		t.Errorf("summary %+v, want p50 20 p99 900 max 900", s)
	}
	for name, in := range map[string]string{
		"no hook":   "Running 1s test\nRequests/sec: 1\n",
		"no lat":    "FTLBENCH total 10 1000000 0\n",
		"bad value": "FTLBENCH total 10 1000000 0\nFTLBENCH lat x 3\n",
		"bad shape": "FTLBENCH total 10\n",
	} {
		if _, err := parseWrk([]byte(in)); !errors.Is(err, ErrParse) {
			t.Errorf("%s: err = %v, want ErrParse", name, err)
		}
	}
	if !strings.Contains(wrkScript, "latency(i)") {
		t.Error("the wrk script no longer dumps the histogram")
	}
}
