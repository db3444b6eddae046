package bench

import (
	"math"
	"reflect"
	"testing"

	"github.com/ftlinux/ftl/bench/loadgen"
)

func TestSpreadOf(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want Spread
	}{
		{nil, Spread{}},
		{[]float64{5}, Spread{Median: 5, Min: 5, Max: 5, N: 1}},
		{[]float64{3, 1, 2}, Spread{Median: 2, Min: 1, Max: 3, N: 3}},
		{[]float64{4, 1, 3, 2}, Spread{Median: 2.5, Min: 1, Max: 4, N: 4}},
	} {
		if got := spreadOf(tc.in); got != tc.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	in := []float64{3, 1, 2}
	spreadOf(in)
	if !reflect.DeepEqual(in, []float64{3, 1, 2}) {
		t.Errorf("spreadOf sorted its argument in place: %v", in)
	}
}

func TestSchedule(t *testing.T) {
	got := schedule([]string{"native", "none"}, 3)
	want := []slot{
		{1, "native"}, {1, "none"},
		{2, "native"}, {2, "none"},
		{3, "native"}, {3, "none"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("schedule = %v, want %v", got, want)
	}
	if got := schedule([]string{"native"}, 0); len(got) != 0 {
		t.Errorf("zero rounds scheduled %v", got)
	}
}

func TestPairedRatiosAndDiffs(t *testing.T) {
	native := map[int]float64{1: 10, 2: 20, 3: 0, 4: 40}
	mode := map[int]float64{1: 11, 2: 30, 3: 5, 5: 50}
	// Round 3 has a zero native value and round 5 no native: both skipped.
	r := spreadOf(pairedRatios(native, mode))
	if r.N != 2 || math.Abs(r.Min-1.1) > 1e-9 || math.Abs(r.Max-1.5) > 1e-9 || math.Abs(r.Median-1.3) > 1e-9 {
		t.Errorf("ratios spread = %+v, want median 1.3 min 1.1 max 1.5 n 2", r)
	}
	d := spreadOf(pairedDiffs(native, mode))
	if d.N != 3 || d.Min != 1 || d.Max != 10 || d.Median != 5 {
		t.Errorf("diffs spread = %+v, want median 5 min 1 max 10 n 3", d)
	}
}

func TestAggregatePairsRoundsWithNative(t *testing.T) {
	rd := func(round int, p50, thr, cpu float64) Round {
		return Round{Round: round, Latency: Summary{P50: p50, P90: p50 * 2, P99: p50 * 3, P999: p50 * 4},
			Throughput: thr, CPUPerRequestUs: cpu}
	}
	// Drift: round 2 is slower for both modes; paired ratios cancel it.
	native := []Round{rd(1, 20, 1000, 10), rd(2, 40, 500, 20)}
	none := []Round{rd(1, 22, 900, 11), rd(2, 44, 450, 22)}
	mr := aggregate("none", none, native)
	if mr.Ratio == nil {
		t.Fatal("no ratio against native")
	}
	for name, s := range map[string]Spread{"p50": mr.Ratio.P50, "p99": mr.Ratio.P99, "cpu": mr.Ratio.CPUPerRequest} {
		if math.Abs(s.Min-1.1) > 1e-9 || math.Abs(s.Max-1.1) > 1e-9 {
			t.Errorf("%s ratio = %+v, want exactly 1.1 in both rounds", name, s)
		}
	}
	if math.Abs(mr.Ratio.Throughput.Median-0.9) > 1e-9 {
		t.Errorf("throughput ratio = %+v, want 0.9", mr.Ratio.Throughput)
	}
	if mr.AddedP50Us.Min != 2 || mr.AddedP50Us.Max != 4 || mr.AddedP50Us.Median != 3 {
		t.Errorf("added p50 = %+v, want 2..4 median 3", mr.AddedP50Us)
	}
	if mr.P50.Median != 33 || mr.P50.Min != 22 || mr.P50.Max != 44 {
		t.Errorf("p50 spread = %+v", mr.P50)
	}
	if n := aggregate("native", native, native); n.Ratio != nil || n.AddedP50Us != nil {
		t.Error("native got a ratio against itself")
	}
}

func TestSummarizeUniform(t *testing.T) {
	h := loadgen.NewHistogram()
	for us := int64(1); us <= 10000; us++ {
		if err := h.RecordValue(us * 1000); err != nil {
			t.Fatal(err)
		}
	}
	s := summarize(h)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", s.P50, 5000}, {"p90", s.P90, 9000}, {"p99", s.P99, 9900}, {"p99.9", s.P999, 9990},
		{"mean", s.Mean, 5000.5}, {"max", s.Max, 10000},
	} {
		// 3 significant digits: within 0.1 %.
		if math.Abs(c.got-c.want) > c.want*0.001+0.001 {
			t.Errorf("%s = %v us, want %v within 0.1%%", c.name, c.got, c.want)
		}
	}
	if got := summarize(loadgen.NewHistogram()); got != (Summary{}) {
		t.Errorf("empty histogram summarized to %+v", got)
	}
}

func TestCDFIsMonotonic(t *testing.T) {
	h := loadgen.NewHistogram()
	for i := int64(1); i <= 1000; i++ {
		_ = h.RecordValue(i * i * 100)
	}
	pts := cdf(h)
	if len(pts) != len(cdfQuantiles) {
		t.Fatalf("%d points, want %d", len(pts), len(cdfQuantiles))
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Us < pts[i-1].Us || pts[i].Fraction <= pts[i-1].Fraction {
			t.Fatalf("CDF not monotonic at %d: %+v then %+v", i, pts[i-1], pts[i])
		}
	}
	if pts[0].Us != 0.1 || pts[len(pts)-1].Fraction != 1 || math.Abs(pts[len(pts)-1].Us-100000) > 100 {
		t.Errorf("CDF ends %+v .. %+v, want 0.1 us .. 100000 us at 1", pts[0], pts[len(pts)-1])
	}
}

func TestHistogramFromCumulative(t *testing.T) {
	h, err := histogramFromCumulative([]distPoint{{ns: 10000, cum: 50}, {ns: 20000, cum: 90}, {ns: 100000, cum: 100}})
	if err != nil {
		t.Fatal(err)
	}
	if h.TotalCount() != 100 {
		t.Fatalf("count %d, want 100", h.TotalCount())
	}
	s := summarize(h)
	if math.Abs(s.P50-10) > 0.01 || math.Abs(s.P90-20) > 0.02 || math.Abs(s.P99-100) > 0.1 {
		t.Errorf("summary %+v, want p50 10 p90 20 p99 100", s)
	}
	if _, err := histogramFromCumulative([]distPoint{{ns: 1, cum: 5}, {ns: 2, cum: 4}}); err == nil {
		t.Error("decreasing cumulative counts accepted")
	}
}
