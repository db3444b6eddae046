package bench

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// modeColors gives every mode the same colour in every plot.
var modeColors = map[string]color.RGBA{
	"native":     {R: 0x33, G: 0x33, B: 0x33, A: 0xff},
	"none":       {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"checkpoint": {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	"log":        {R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
}

// WritePlots writes, into dir, one latency CDF per workload
// (latency-APP-LOAD.svg/.png) and one throughput bar chart
// (throughput.svg/.png) and returns the paths written.
func WritePlots(res *Results, dir string) ([]string, error) {
	var paths []string
	for _, w := range res.Workloads {
		p, ok := cdfPlot(w)
		if !ok {
			continue
		}
		base := filepath.Join(dir, fmt.Sprintf("latency-%s-%s", w.App, w.Load))
		out, err := savePlot(p, 16*vg.Centimeter, 10*vg.Centimeter, base)
		paths = append(paths, out...)
		if err != nil {
			return paths, err
		}
		if p, ok := tailPlot(w); ok {
			base := filepath.Join(dir, fmt.Sprintf("tail-%s-%s", w.App, w.Load))
			out, err := savePlot(p, 16*vg.Centimeter, 10*vg.Centimeter, base)
			paths = append(paths, out...)
			if err != nil {
				return paths, err
			}
		}
	}
	if p, ok := throughputPlot(res); ok {
		out, err := savePlot(p, 16*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, "throughput"))
		paths = append(paths, out...)
		if err != nil {
			return paths, err
		}
	}
	return paths, nil
}

func savePlot(p *plot.Plot, w, h vg.Length, base string) ([]string, error) {
	var out []string
	for _, ext := range []string{".svg", ".png"} {
		if err := p.Save(w, h, base+ext); err != nil {
			return out, fmt.Errorf("bench: plot %s: %w", base+ext, err)
		}
		out = append(out, base+ext)
	}
	return out, nil
}

// cdfPlot draws the merged latency CDF of every measured mode of w, with a
// logarithmic latency axis so that body and tail are both visible.
func cdfPlot(w Workload) (*plot.Plot, bool) {
	p := plot.New()
	title := fmt.Sprintf("%s, %s loop: latency CDF (all rounds)", w.App, w.Load)
	if w.Load == "open" && len(w.Modes) > 0 && w.Modes[0].IntendedRate > 0 {
		title = fmt.Sprintf("%s, open loop at %.0f req/s: latency CDF", w.App, w.Modes[0].IntendedRate)
	}
	p.Title.Text = title
	p.X.Label.Text = "latency (µs, log scale)"
	p.Y.Label.Text = "fraction of requests ≤ latency"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = false
	drawn := false
	for _, m := range w.Modes {
		if m.Status != "ok" || len(m.CDF) == 0 {
			continue
		}
		xys := make(plotter.XYs, 0, len(m.CDF))
		for _, pt := range m.CDF {
			if pt.Us <= 0 {
				continue
			}
			xys = append(xys, plotter.XY{X: pt.Us, Y: pt.Fraction})
		}
		label := fmt.Sprintf("%s (p50 %.1f µs, p99 %.1f µs)", m.Mode, m.P50.Median, m.P99.Median)
		if addModeLine(p, m.Mode, xys, label) {
			drawn = true
		}
	}
	return p, drawn
}

// tailPlot draws latency against percentile with the percentile axis
// stretched towards the tail (x = -log10(1-q): 90% at 1, 99% at 2, 99.9% at
// 3), the view in which a CDF's flat top becomes readable.
func tailPlot(w Workload) (*plot.Plot, bool) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s, %s loop: latency by percentile (all rounds)", w.App, w.Load)
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (µs, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.X.Min, p.X.Max = 0, 5
	p.X.Tick.Marker = plot.ConstantTicks([]plot.Tick{
		{Value: 0, Label: "0%"}, {Value: -math.Log10(0.5), Label: "50%"}, {Value: 1, Label: "90%"},
		{Value: 2, Label: "99%"}, {Value: 3, Label: "99.9%"}, {Value: 4, Label: "99.99%"}, {Value: 5, Label: "99.999%"},
	})
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	drawn := false
	for _, m := range w.Modes {
		if m.Status != "ok" {
			continue
		}
		var xys plotter.XYs
		for _, pt := range m.CDF {
			if pt.Us <= 0 || pt.Fraction >= 1 {
				continue
			}
			xys = append(xys, plotter.XY{X: -math.Log10(1 - pt.Fraction), Y: pt.Us})
		}
		if addModeLine(p, m.Mode, xys, fmt.Sprintf("%s (p99.9 %.0f µs)", m.Mode, m.P999.Median)) {
			drawn = true
		}
	}
	return p, drawn
}

// addModeLine draws one mode's curve in the mode's colour with a legend
// entry; it reports false (and draws nothing) for fewer than two points.
func addModeLine(p *plot.Plot, mode string, xys plotter.XYs, label string) bool {
	if len(xys) < 2 {
		return false
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return false
	}
	l.Color = modeColors[mode]
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(label, l)
	return true
}

// throughputPlot draws, for every closed-loop workload, each mode's
// throughput relative to native (median of the paired round ratios) with the
// min–max spread as error bars; native's absolute rate is in the label.
func throughputPlot(res *Results) (*plot.Plot, bool) {
	type bar struct {
		vals     plotter.Values
		lo, hi   []float64
		measured bool
	}
	var groups []string
	modes := res.Settings.Modes
	bars := map[string]*bar{}
	for _, m := range modes {
		bars[m] = &bar{}
	}
	for _, w := range res.Workloads {
		if w.Load != "closed" {
			continue
		}
		nat := 0.0
		for _, m := range w.Modes {
			if m.Mode == "native" && m.Status == "ok" {
				nat = m.Throughput.Median
			}
		}
		if nat == 0 {
			continue
		}
		groups = append(groups, fmt.Sprintf("%s\n(native %.0fk req/s)", w.App, nat/1000))
		for _, m := range modes {
			b := bars[m]
			v, lo, hi := math.NaN(), 0.0, 0.0
			for _, mr := range w.Modes {
				if mr.Mode != m || mr.Status != "ok" {
					continue
				}
				switch {
				case m == "native":
					v, lo, hi = 1, mr.Throughput.Min/nat, mr.Throughput.Max/nat
				case mr.Ratio != nil && mr.Ratio.Throughput.N > 0:
					v, lo, hi = mr.Ratio.Throughput.Median, mr.Ratio.Throughput.Min, mr.Ratio.Throughput.Max
				}
			}
			if math.IsNaN(v) {
				v, lo, hi = 0, 0, 0
			} else {
				b.measured = true
			}
			b.vals = append(b.vals, v)
			b.lo = append(b.lo, v-lo)
			b.hi = append(b.hi, hi-v)
		}
	}
	if len(groups) == 0 {
		return nil, false
	}
	p := plot.New()
	p.Title.Text = "closed-loop throughput relative to native (median, min–max over rounds)"
	p.Y.Label.Text = "throughput / native"
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	var shown []string
	for _, m := range modes {
		if bars[m].measured {
			shown = append(shown, m)
		}
	}
	// Bars of one group sit side by side around the group's x, spaced in
	// data units so that the error bars land on their centres.
	k := float64(max(1, len(shown)))
	step := 0.8 / k
	// About 13 cm of the 16 cm canvas is plot area, one data unit per group.
	width := min(vg.Length(0.9*step*float64(13*vg.Centimeter)/float64(len(groups))), 3*vg.Centimeter)
	p.X.Min, p.X.Max = -0.5, float64(len(groups))-0.5
	for i, m := range shown {
		b := bars[m]
		bc, err := plotter.NewBarChart(b.vals, width)
		if err != nil {
			continue
		}
		bc.Color = modeColors[m]
		bc.LineStyle.Width = 0
		off := (float64(i) - (k-1)/2) * step
		bc.XMin = off
		p.Add(bc)
		p.Legend.Add(m, bc)
		eb := errBars{vals: b.vals, lo: b.lo, hi: b.hi, off: off}
		if e, err := plotter.NewYErrorBars(eb); err == nil {
			p.Add(e)
		}
	}
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.Padding = vg.Points(2)
	p.NominalX(groups...)
	p.Y.Max = math.Max(p.Y.Max, 1.3)
	p.X.Tick.Label.XAlign = draw.XCenter
	return p, true
}

// errBars adapts bar values and their spreads to plotter.YErrorBars.
type errBars struct {
	vals   plotter.Values
	lo, hi []float64
	off    float64
}

func (e errBars) Len() int                    { return len(e.vals) }
func (e errBars) XY(i int) (float64, float64) { return float64(i) + e.off, e.vals[i] }
func (e errBars) YError(i int) (float64, float64) {
	return e.lo[i], e.hi[i]
}
