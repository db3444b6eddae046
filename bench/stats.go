package bench

import (
	"slices"
)

// Spread describes one metric across rounds: the median and the extremes.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// spreadOf computes the median, minimum and maximum of xs. The median of an
// even count is the mean of the two middle values. No values: zero Spread.
func spreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Spread{Median: med, Min: s[0], Max: s[n-1], N: n}
}

// pairedRatios divides mode's value by native's value round by round (the
// two ran back to back in the same round, so slow drift cancels). Rounds
// missing on either side, or with a zero native value, are skipped.
func pairedRatios(native, mode map[int]float64) []float64 {
	var out []float64
	for r, m := range mode {
		n, ok := native[r]
		if !ok || n == 0 || !finite(m, n) {
			continue
		}
		out = append(out, m/n)
	}
	return out
}

// pairedDiffs subtracts native's value from mode's round by round.
func pairedDiffs(native, mode map[int]float64) []float64 {
	var out []float64
	for r, m := range mode {
		n, ok := native[r]
		if !ok || !finite(m, n) {
			continue
		}
		out = append(out, m-n)
	}
	return out
}

// schedule returns the order in which (round, mode) measurements run: every
// round runs each mode once, in the given order (A B A B ...), so that drift
// over the run touches every mode alike.
func schedule(modes []string, rounds int) []slot {
	out := make([]slot, 0, rounds*len(modes))
	for r := 1; r <= rounds; r++ {
		for _, m := range modes {
			out = append(out, slot{Round: r, Mode: m})
		}
	}
	return out
}

// slot is one measurement of the schedule.
type slot struct {
	Round int
	Mode  string
}
