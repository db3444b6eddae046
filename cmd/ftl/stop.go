package main

import (
	"time"

	"github.com/ftlinux/ftl/libos/launcher"
	"github.com/spf13/cobra"
)

var stopTimeout time.Duration

var stopCmd = &cobra.Command{
	Use:   "stop NAME",
	Short: "stop a run: SIGTERM, then SIGKILL after --timeout",
	Long: `Send SIGTERM to the program of run NAME (to every process of the run once the
program itself is gone); if anything of the run is still alive after --timeout,
kill the whole process namespace. Returns when no process, namespace, mount or
shared-memory file of the run is left.`,
	Args: usageArgs(cobra.ExactArgs(1)),
	RunE: func(_ *cobra.Command, args []string) error {
		if stopTimeout < 0 {
			return usagef("--timeout must not be negative")
		}
		return launcherError(launcher.Stop(args[0], stopTimeout))
	},
}

func init() {
	stopCmd.Flags().DurationVar(&stopTimeout, "timeout", 10*time.Second, "how long to wait after SIGTERM before SIGKILL")
	rootCmd.AddCommand(stopCmd)
}
