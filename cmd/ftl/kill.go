package main

import (
	"github.com/ftlinux/ftl/libos/launcher"
	"github.com/spf13/cobra"
)

var killCmd = &cobra.Command{
	Use:   "kill NAME",
	Short: "kill a run at once (SIGKILL of its whole process namespace)",
	Long: `Kill every process of run NAME at once (SIGKILL of its init, which makes the
kernel kill the whole pid namespace). Returns when no process, namespace, mount
or shared-memory file of the run is left.`,
	Args: usageArgs(cobra.ExactArgs(1)),
	RunE: func(_ *cobra.Command, args []string) error {
		return launcherError(launcher.Kill(args[0]))
	},
}

func init() { rootCmd.AddCommand(killCmd) }
