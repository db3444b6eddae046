package main

import (
	"os"
	"runtime"

	"github.com/ftlinux/ftl/libos/launcher"
	"github.com/spf13/cobra"
)

// initCmd is the init of a run's pid namespace (see launcher.RunInit); ftl
// starts it itself, never a user.
var initCmd = &cobra.Command{
	Use:                launcher.InitCommand + " [--stage2] RUNDIR",
	Hidden:             true,
	DisableFlagParsing: true,
	Args:               usageArgs(cobra.RangeArgs(1, 2)),
	RunE: func(_ *cobra.Command, args []string) error {
		os.Exit(launcher.RunInit(args))
		return nil
	},
}

func init() {
	// A restore hook run by the init must stay on the main OS thread (ptrace
	// is per thread): lock it while package initialisation still runs there.
	if len(os.Args) > 1 && os.Args[1] == launcher.InitCommand {
		runtime.LockOSThread()
	}
	rootCmd.AddCommand(initCmd)
}
