package bench

import (
	"math"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ftlinux/ftl/bench/loadgen"
)

// Summary is the latency distribution of one measurement in microseconds.
type Summary struct {
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p99_9_us"`
	Mean float64 `json:"mean_us"`
	Max  float64 `json:"max_us"`
}

// summarize reads the summary percentiles from a histogram in nanoseconds.
// An empty histogram summarizes to all zeros.
func summarize(h *hdrhistogram.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	return Summary{
		P50:  nsToUs(h.ValueAtQuantile(50)),
		P90:  nsToUs(h.ValueAtQuantile(90)),
		P99:  nsToUs(h.ValueAtQuantile(99)),
		P999: nsToUs(h.ValueAtQuantile(99.9)),
		Mean: h.Mean() / 1e3,
		Max:  nsToUs(h.Max()),
	}
}

func nsToUs(ns int64) float64 { return float64(ns) / 1e3 }

// CDFPoint is one point of a latency CDF: Fraction of requests took at
// most Us microseconds.
type CDFPoint struct {
	Us       float64 `json:"us"`
	Fraction float64 `json:"fraction"`
}

// cdfQuantiles are the quantiles (percent) at which a CDF is sampled: dense
// in the body, then logarithmically towards the tail.
var cdfQuantiles = func() []float64 {
	var qs []float64
	for q := 0.0; q < 90; q += 2.5 {
		qs = append(qs, q)
	}
	return append(qs, 90, 92.5, 95, 96, 97, 98, 98.5, 99, 99.25, 99.5, 99.75, 99.9, 99.95, 99.99, 99.999, 100)
}()

// cdf samples a histogram (ns) into CDF points (µs) at cdfQuantiles.
func cdf(h *hdrhistogram.Histogram) []CDFPoint {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	pts := make([]CDFPoint, 0, len(cdfQuantiles))
	for _, q := range cdfQuantiles {
		v := h.ValueAtQuantile(q)
		if q == 0 {
			v = h.Min()
		}
		pts = append(pts, CDFPoint{Us: nsToUs(v), Fraction: q / 100})
	}
	return pts
}

// distPoint is one (value, cumulative count) pair printed by an external
// load generator.
type distPoint struct {
	ns  int64
	cum int64
}

// histogramFromCumulative rebuilds a histogram from cumulative counts: the
// requests between two points are recorded at the upper point's value, so
// every percentile read back is an upper bound at the tool's resolution.
// Points must be sorted by value; counts must not decrease.
func histogramFromCumulative(pts []distPoint) (*hdrhistogram.Histogram, error) {
	h := loadgen.NewHistogram()
	var prev int64
	for _, p := range pts {
		if p.cum < prev {
			return nil, ErrParse
		}
		if n := p.cum - prev; n > 0 {
			if err := h.RecordValues(max(p.ns, 1), n); err != nil {
				return nil, ErrParse
			}
		}
		prev = p.cum
	}
	return h, nil
}

// finite reports whether every value is a usable number.
func finite(xs ...float64) bool {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}
