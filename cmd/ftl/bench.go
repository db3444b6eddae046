package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftlinux/ftl/bench"
)

func init() {
	var (
		apps, modes, out string
		cfg              bench.Config
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "measure latency, throughput and CPU of servers natively and under ftl",
		Long: `bench starts each server natively and under each ftl mode, drives it with a
real load generator, and interleaves the rounds (native, none, native, none, ...)
so that drift touches every mode alike.

Load: memcached and redis by ftl's Go load generator (closed loop over
--connections, then open loop at a fixed rate with latency measured from the
intended send time), redis also by redis-benchmark (GET), nginx by wrk (a
small static file).
Every request's latency goes into an HDR histogram; the report gives p50, p90,
p99, p99.9, throughput and the server tree's CPU time per request, each as a
ratio to native from the same rounds, with the spread across rounds. Modes
that do not exist yet (checkpoint, log) are reported as unavailable.

Writes DIR/results.json, DIR/results.md and latency CDF and throughput plots
(SVG and PNG) into --out.`,
		Example: `  ftl bench --app memcached
  ftl bench --app memcached,redis --modes native,none --out docs/bench`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Apps = splitList(apps)
			if len(cfg.Apps) == 1 && cfg.Apps[0] == "all" {
				cfg.Apps = bench.Apps
			}
			cfg.Modes = splitList(modes)
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench: locate the ftl binary: %w", err)
			}
			cfg.FTLBin = self
			cfg.Progress = cmd.ErrOrStderr()
			cfg.Command = "ftl bench " + strings.Join(os.Args[2:], " ")
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := bench.Run(ctx, cfg)
			if err != nil {
				if errorsIsConfig(err) {
					return usagef("%v", err)
				}
				return err
			}
			paths, err := bench.WriteOutputs(res, out)
			if err != nil {
				return err
			}
			for _, p := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&apps, "app", "memcached", "apps to measure, comma separated: memcached, redis, nginx, or all")
	f.StringVar(&modes, "modes", "native,none,checkpoint,log", "modes, comma separated, in round order: native, none, checkpoint, log")
	f.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each measurement")
	f.IntVar(&cfg.Rounds, "rounds", 4, "interleaved rounds per mode")
	f.IntVar(&cfg.Connections, "connections", 4, "client connections")
	f.Float64Var(&cfg.Rate, "rate", 0, "memcached open-loop rate in requests/s (0: --open-fraction of the first closed-loop throughput)")
	f.Float64Var(&cfg.OpenFraction, "open-fraction", 0.25, "open-loop rate as a fraction of the first closed-loop throughput")
	f.BoolVar(&cfg.Pin, "pin", true, "pin load generators to CPU 0 and servers to CPU 1 (when there are at least 2 CPUs)")
	f.StringVar(&out, "out", "bench-results", "directory for results.json, results.md and plots")
	rootCmd.AddCommand(cmd)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func errorsIsConfig(err error) bool { return errors.Is(err, bench.ErrConfig) }
