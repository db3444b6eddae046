package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ftlinux/ftl/libos/launcher"
)

var runFlags struct {
	name   string
	detach bool
	ft     string
}

var runCmd = &cobra.Command{
	Use:   "run [--name NAME] [--detach] [--ft none] -- PROGRAM [ARGS...]",
	Short: "run a program under ftl",
	Long: `Run PROGRAM, unmodified, in its own pid and mount namespace under a minimal
init (pid 1; the program is pid 2), with libftl.so preloaded in every process
of its tree.

In the foreground ftl run behaves like the program itself: stdin, stdout and
stderr pass through, signals are forwarded, and it exits with the program's
status (128+N when the program was killed by signal N). If the program
daemonized, ftl run says so and leaves the rest of the tree running: end it
with ftl stop NAME.

With --detach the program runs in the background, its output appended to
$FTL_HOME/log/NAME.log; ftl run prints NAME and exits.

NAME defaults to the program's base name, made unique (memcached, memcached-2).`,
	Example: `  ftl run -- memcached -p 11311 -t 4
  ftl run --name cache --detach -- memcached -p 11311
  echo hi | ftl run -- cat`,
	Args: usageArgs(func(_ *cobra.Command, args []string) error {
		if len(args) == 0 {
			return errors.New("missing program: ftl run [--name NAME] [--detach] [--ft none] -- PROGRAM [ARGS...]")
		}
		return nil
	}),
	RunE: func(_ *cobra.Command, args []string) error {
		if runFlags.ft != launcher.ModeNone {
			return usagef("--ft %s is not available yet: only --ft none works in this release", runFlags.ft)
		}
		r, err := launcher.Start(launcher.StartOptions{
			Name: runFlags.name, Argv: args, Detach: runFlags.detach, Mode: runFlags.ft,
		})
		if err != nil {
			return launcherError(err)
		}
		return followRun(r, runFlags.detach)
	},
}

// launcherError makes the launcher's "how ftl was called" errors usage
// errors (exit status 2); everything else stays a runtime failure.
func launcherError(err error) error {
	for _, target := range []error{launcher.ErrNotFound, launcher.ErrNameInUse, launcher.ErrBadName,
		launcher.ErrNoProgram, launcher.ErrBadMode} {
		if errors.Is(err, target) {
			return usageError{err}
		}
	}
	return err
}

func init() {
	f := runCmd.Flags()
	f.SetInterspersed(false) // flags after PROGRAM belong to the program
	f.StringVar(&runFlags.name, "name", "", "name of the run (default: the program's base name, made unique)")
	f.BoolVarP(&runFlags.detach, "detach", "d", false, "run in the background; output goes to $FTL_HOME/log/NAME.log")
	f.StringVar(&runFlags.ft, "ft", launcher.ModeNone, "fault-tolerance mode (only none is available yet)")
	rootCmd.AddCommand(runCmd)
}

// followRun finishes `ftl run` and `ftl restore` once the run started:
// detached, it prints the run's name; in the foreground it waits like a
// shell and returns the program's status, saying which of its processes
// still run under ftl when the program itself exited (it daemonized).
func followRun(r *launcher.Run, detach bool) error {
	if detach {
		fmt.Println(r.Spec.Name)
		return nil
	}
	status, err := r.Wait()
	if errors.Is(err, launcher.ErrInitDied) {
		fmt.Fprintf(os.Stderr, "ftl: %v\n", err)
		return exitError{status}
	}
	if err != nil {
		return err
	}
	if len(r.Left) > 0 {
		var pids []string
		for _, p := range r.Left {
			pids = append(pids, fmt.Sprintf("%d (%s, host pid %d)", p.NSPid, p.Comm, p.HostPid))
		}
		fmt.Fprintf(os.Stderr, "ftl: %s exited with status %d but its processes %s still run under ftl; end them with `ftl stop %s`\n",
			r.Spec.Name, status, strings.Join(pids, ", "), r.Spec.Name)
	}
	return exitError{status}
}
