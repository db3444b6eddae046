package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ftlinux/ftl/libos/launcher"
	"github.com/ftlinux/ftl/snapshot"
)

var checkpointFlags struct {
	dir          string
	pid          int
	leaveRunning bool
	engine       string
}

var checkpointCmd = &cobra.Command{
	Use:   "checkpoint NAME [--leave-running] [--dir DIR] | checkpoint --pid PID [--dir DIR]",
	Short: "write an image of a whole process tree",
	Long: `Freeze every thread of every process of the run NAME (or of the tree rooted
at PID with --pid) at one instant, write an image of it and print the image
directory as the last line of stdout.

Without --leave-running the tree is killed once the image is safely on
disk. With --leave-running it is frozen only while its state is read and a
copy-on-write twin of each process is forked (a few tens of milliseconds
for a GiB); the memory is then copied from the twins while the tree runs
on, and the twins are removed before the command returns.

The default directory is $FTL_HOME/images/NAME/N, N counting generations
1, 2, 3, ...; with --pid NAME is pid-PID.

--engine criu drives a CRIU >= 4.2 instead of ftl's own engine, for trees
given with --pid (see docs/criu.md); ftl restore recognises its images.`,
	Example: `  ftl checkpoint mc
  ftl checkpoint mc --leave-running --dir /tmp/mc.img
  ftl checkpoint --pid 4242`,
	Args: usageArgs(func(_ *cobra.Command, args []string) error {
		if checkpointFlags.pid != 0 {
			return cobra.NoArgs(nil, args)
		}
		return cobra.ExactArgs(1)(nil, args)
	}),
	RunE: func(_ *cobra.Command, args []string) error {
		switch checkpointFlags.engine {
		case engineFTL:
		case engineCRIU:
			if checkpointFlags.pid == 0 {
				return usagef("--engine criu needs --pid: trees started by ftl run are checkpointed by ftl's own engine (docs/criu.md)")
			}
		default:
			return usagef("unknown engine %q: use %s or %s", checkpointFlags.engine, engineFTL, engineCRIU)
		}
		o := snapshot.DumpOptions{LeaveRunning: checkpointFlags.leaveRunning}
		var name string
		if checkpointFlags.pid != 0 {
			name = fmt.Sprintf("pid-%d", checkpointFlags.pid)
			o.Roots = []int{checkpointFlags.pid}
		} else {
			name = args[0]
			spec, err := launcher.Lookup(name)
			if err != nil {
				return launcherError(err)
			}
			if spec.InitPid == 0 {
				return fmt.Errorf("checkpoint %s: the run has not started: %w", name, snapshot.ErrNoProcess)
			}
			o.Roots = childrenOf(spec.InitPid)
			o.PidNS = true
			o.Region = spec.Region
		}
		o.Name = name
		dir := checkpointFlags.dir
		if dir == "" {
			base := filepath.Join(launcher.Home(), "images", name)
			dir = nextGeneration(base)
			defer os.Remove(base) // only if no image made it there
		}
		if checkpointFlags.engine == engineCRIU {
			return checkpointCRIU(checkpointFlags.pid, dir, o.LeaveRunning)
		}
		bar := newBar("dump")
		if bar != nil {
			o.Progress = func(done, total int64) { bar.ChangeMax64(total); bar.Set64(done) }
		}
		st, err := snapshot.Dump(dir, o)
		if bar != nil {
			bar.Finish()
			fmt.Fprintln(os.Stderr)
		}
		if err != nil {
			return fmt.Errorf("checkpoint %s: %w", name, err)
		}
		if !o.LeaveRunning && o.PidNS {
			// The tree is dead: its init sees its namespace empty and
			// removes the run's state itself; kill it only if it lingers.
			deadline := time.Now().Add(5 * time.Second)
			for {
				if _, err := launcher.Lookup(name); errors.Is(err, launcher.ErrNotFound) {
					break
				}
				if time.Now().After(deadline) {
					if err := launcher.Kill(name); err != nil && !errors.Is(err, launcher.ErrNotFound) {
						fmt.Fprintf(os.Stderr, "ftl: checkpoint %s: %v\n", name, err)
					}
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
		if st.Twins > 0 {
			fmt.Fprintf(os.Stderr, "ftl: %d processes, %d threads, %d pages; frozen %v (seize %v, state %v, fds %v, fork %v); memory copied from %d copy-on-write twin(s) after in %v; commit %v, total %v\n",
				st.Processes, st.Threads, st.Pages, r(st.Frozen), r(st.Seize), r(st.Collect), r(st.Files), r(st.Fork),
				st.Twins, r(st.Memory), r(st.Commit), r(st.Total))
		} else {
			fmt.Fprintf(os.Stderr, "ftl: %d processes, %d threads, %d pages; frozen %v (seize %v, state %v, fds %v, memory %v, commit %v), total %v\n",
				st.Processes, st.Threads, st.Pages, r(st.Frozen), r(st.Seize), r(st.Collect),
				r(st.Files), r(st.Memory), r(st.Commit), r(st.Total))
		}
		for _, w := range st.Warnings {
			fmt.Fprintf(os.Stderr, "ftl: warning: %s\n", w)
		}
		abs, _ := filepath.Abs(dir)
		fmt.Println(abs)
		return nil
	},
}

// childrenOf lists the child processes of pid (host pids).
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, e.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	sort.Ints(out)
	return out
}

// nextGeneration returns base/N for the first N above every existing one.
func nextGeneration(base string) string {
	ents, _ := os.ReadDir(base)
	n := 0
	for _, e := range ents {
		name, _, _ := strings.Cut(e.Name(), ".tmp-")
		if g, err := strconv.Atoi(name); err == nil && g > n {
			n = g
		}
	}
	return filepath.Join(base, strconv.Itoa(n+1))
}

// newBar returns a progress bar on stderr when stderr is a terminal.
func newBar(what string) *progressbar.ProgressBar {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return progressbar.NewOptions64(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(what), progressbar.OptionThrottle(100_000_000))
}

func init() {
	f := checkpointCmd.Flags()
	f.StringVar(&checkpointFlags.dir, "dir", "", "image directory (default $FTL_HOME/images/NAME/N)")
	f.IntVar(&checkpointFlags.pid, "pid", 0, "checkpoint the tree rooted at this pid (not launched by ftl)")
	f.BoolVar(&checkpointFlags.leaveRunning, "leave-running", false, "let the tree run on after the dump")
	f.StringVar(&checkpointFlags.engine, "engine", engineFTL, "checkpoint engine: ftl, or criu (needs --pid and a CRIU >= 4.2)")
	rootCmd.AddCommand(checkpointCmd)
}
