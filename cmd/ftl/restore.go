package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ftlinux/ftl/libos/launcher"
	"github.com/ftlinux/ftl/snapshot"
)

var restoreFlags struct {
	name   string
	detach bool
}

var restoreCmd = &cobra.Command{
	Use:   "restore [--name NAME] [--detach] DIR",
	Short: "recreate a process tree from an image",
	Long: `Recreate the process tree saved in the image DIR — same pids and tids, memory,
threads, registers, signal state, files — and let it run on.

A tree that ftl launched comes back in a fresh pid namespace under a new
init, as a run that ftl ps lists again (NAME defaults to the image's). A
tree checkpointed with --pid comes back in the current pid namespace, so
its pids must be free; ftl restore then stays its parent in the foreground.

An image written by ` + "`ftl checkpoint --engine criu`" + ` is recognised by its marker
file and restored by CRIU (its pids must be free).

The image is checked whole (format version, checksums, vDSO, free pids)
before any process is created; a bad image is refused with an error that
names the bad part.`,
	Example: `  ftl restore $FTL_HOME/images/mc/3
  ftl restore --detach --name mc2 /tmp/mc.img`,
	Args: usageArgs(cobra.ExactArgs(1)),
	RunE: func(_ *cobra.Command, args []string) error {
		dir := args[0]
		if _, ok := isCRIUImage(dir); ok {
			return restoreCRIU(dir, restoreFlags.detach)
		}
		m, err := snapshot.CheckImage(dir)
		if err != nil {
			return fmt.Errorf("restore %s: %w", dir, err)
		}
		if !m.PidNS {
			return restoreHere(dir)
		}
		name := restoreFlags.name
		if name == "" {
			name = m.Name
		}
		r, err := launcher.Start(launcher.StartOptions{Name: name, Argv: m.Argv, Detach: restoreFlags.detach, RestoreFrom: dir})
		if err != nil {
			return launcherError(err)
		}
		return followRun(r, restoreFlags.detach)
	},
}

// restoreHere restores a --pid image in the current pid namespace; this
// process is the parent of the tree's top-level processes.
func restoreHere(dir string) error {
	o := snapshot.RestoreOptions{Stdio: snapshot.FileEnv{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, Warn: warnRestore}
	bar := newBar("restore")
	if bar != nil {
		o.Progress = func(done, total int64) { bar.ChangeMax64(total); bar.Set64(done) }
	}
	res, err := snapshot.Restore(dir, o)
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(os.Stderr)
	}
	if err != nil {
		return fmt.Errorf("restore %s: %w", dir, err)
	}
	fmt.Fprintf(os.Stderr, "ftl: restored %d processes (root %d) in %v\n", len(res.Pids), res.Root, res.Stats.Total.Round(10000))
	if restoreFlags.detach {
		fmt.Println(res.Root)
		return nil
	}
	// Stay the parent: reap the tree and exit with the root's status.
	return exitError{waitTree(res.Root)}
}

func warnRestore(msg string) { fmt.Fprintf(os.Stderr, "ftl: restore: %s\n", msg) }

// restoreHook runs inside a new run's init (pid 1 of a fresh pid
// namespace, on its locked main thread) and recreates the tree there.
func restoreHook(ctx launcher.RestoreContext) (int, error) {
	res, err := snapshot.Restore(ctx.ImageDir, snapshot.RestoreOptions{Region: ctx.Region, InitNS: true,
		Stdio: snapshot.FileEnv{Stdin: ctx.Stdin, Stdout: ctx.Stdout, Stderr: ctx.Stderr}, Warn: warnRestore})
	if err != nil {
		return 0, err
	}
	return res.Root, nil
}

func init() {
	f := restoreCmd.Flags()
	f.StringVar(&restoreFlags.name, "name", "", "name of the restored run (default: the image's)")
	f.BoolVarP(&restoreFlags.detach, "detach", "d", false, "run in the background")
	rootCmd.AddCommand(restoreCmd)
	launcher.RestoreHook = restoreHook
}
