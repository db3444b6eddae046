package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WriteOutputs writes results.json, results.md and the plots into dir and
// returns the paths written.
func WriteOutputs(res *Results, dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var paths []string
	jp := filepath.Join(dir, "results.json")
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bench: results.json: %w", err)
	}
	if err := os.WriteFile(jp, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	paths = append(paths, jp)
	plots, err := WritePlots(res, dir)
	if err != nil {
		return paths, err
	}
	mp := filepath.Join(dir, "results.md")
	f, err := os.Create(mp)
	if err != nil {
		return paths, fmt.Errorf("bench: %w", err)
	}
	WriteMarkdown(f, res, plots, dir)
	if err := f.Close(); err != nil {
		return paths, fmt.Errorf("bench: %w", err)
	}
	paths = append(paths, mp)
	return append(paths, plots...), nil
}

// WriteMarkdown writes the results table: per workload and mode the median
// across rounds with [min–max] spread, and the paired ratio to native.
// plots (paths) are linked relative to dir.
func WriteMarkdown(w io.Writer, res *Results, plots []string, dir string) {
	m := res.Machine
	fmt.Fprintf(w, "Command: `%s`\n\n", res.Command)
	fmt.Fprintf(w, "Machine: %s, %d CPUs, %d GiB, Linux %s, %s, %s. %s.\n\n",
		m.CPUModel, m.CPUs, m.MemoryGB, m.Kernel, m.OS, m.Go, capitalize(res.Settings.Pinning))
	fmt.Fprintf(w, "Host load average (1 min) at start / end: %.2f / %.2f; %s to %s UTC.\n\n",
		res.LoadStart, res.LoadEnd, res.Started.Format("2006-01-02 15:04"), res.Finished.Format("15:04"))
	s := res.Settings
	fmt.Fprintf(w, "%d interleaved rounds of %gs per mode, %d connections, fresh server per round; "+
		"values are the median across rounds with [min–max]; ratios are mode/native from the "+
		"rounds measured back to back; CPU is the server tree's user+system time per request.\n\n",
		s.Rounds, s.DurationS, s.Connections)
	fmt.Fprintln(w, "| app | load | mode | p50 µs | p90 µs | p99 µs | p99.9 µs | req/s | CPU µs/req | p50 vs native | p99 vs native | req/s vs native | CPU/req vs native |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, wl := range res.Workloads {
		load := wl.Load
		if wl.Load == "open" && len(wl.Modes) > 0 && wl.Modes[0].IntendedRate > 0 {
			load = fmt.Sprintf("open @ %.0f/s", wl.Modes[0].IntendedRate)
		}
		for _, mr := range wl.Modes {
			if mr.Status != "ok" {
				fmt.Fprintf(w, "| %s | %s | %s | %s: %s | | | | | | | | | |\n", wl.App, load, mr.Mode, mr.Status, mdEscape(mr.Reason))
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |", wl.App, load, mr.Mode,
				fmtSpread(mr.P50, 1), fmtSpread(mr.P90, 1), fmtSpread(mr.P99, 1), fmtSpread(mr.P999, 1),
				fmtSpread(mr.Throughput, 0), fmtSpread(mr.CPUPerRequestUs, 2))
			if mr.Ratio == nil {
				fmt.Fprintln(w, " — | — | — | — |")
				continue
			}
			fmt.Fprintf(w, " %s (%+.1f µs) | %s | %s | %s |\n", fmtRatio(mr.Ratio.P50), mr.AddedP50Us.Median,
				fmtRatio(mr.Ratio.P99), fmtRatio(mr.Ratio.Throughput), fmtRatio(mr.Ratio.CPUPerRequest))
		}
	}
	fmt.Fprintln(w)
	var notes []string
	for _, wl := range res.Workloads {
		for _, mr := range wl.Modes {
			for _, f := range mr.Failures {
				notes = append(notes, fmt.Sprintf("- %s %s %s: %s", wl.App, wl.Load, mr.Mode, mdEscape(f)))
			}
			for _, r := range mr.Rounds {
				if r.Errors > 0 || r.Unanswered > 0 {
					notes = append(notes, fmt.Sprintf("- %s %s %s round %d: %d error replies, %d unanswered",
						wl.App, wl.Load, mr.Mode, r.Round, r.Errors, r.Unanswered))
				}
			}
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "Failures and errors:")
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(notes, "\n"))
		fmt.Fprintln(w)
	}
	for _, p := range plots {
		if filepath.Ext(p) != ".svg" {
			continue
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			rel = p
		}
		fmt.Fprintf(w, "![%s](%s)\n", strings.TrimSuffix(filepath.Base(p), ".svg"), rel)
	}
}

func fmtSpread(s Spread, prec int) string {
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.*f", prec, s.Median)
	}
	return fmt.Sprintf("%.*f [%.*f–%.*f]", prec, s.Median, prec, s.Min, prec, s.Max)
}

func fmtRatio(s Spread) string {
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.3f×", s.Median)
	}
	return fmt.Sprintf("%.3f× [%.3f–%.3f]", s.Median, s.Min, s.Max)
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return "Pinning: " + s
}
