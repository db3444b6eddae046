package snapshot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type cowState struct {
	pid                  int
	passes, errors       int64
	dontfork, wipeonfork int
}

func readCow(path string) (cowState, error) {
	var s cowState
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	_, err = fmt.Sscanf(string(b), "%d %d %d %d %d", &s.pid, &s.passes, &s.errors, &s.dontfork, &s.wipeonfork)
	return s, err
}

// startCow starts testdata/cow.c and waits for its first pass.
func startCow(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	cmd, out := startStateProgram(t, "cow")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitFor(ctx, "cow to run", func() bool { s, err := readCow(out); return err == nil && s.passes >= 1 }); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// TestLeaveRunningCopyOnWrite checkpoints a program that rewrites its
// memory all the time, with --leave-running through copy-on-write twins
// and with the copy made while frozen: both images must be a consistent
// cut (the restored writer finds every page one pass behind where it
// stands), keep the MADV_DONTFORK and MADV_WIPEONFORK regions, and leave
// the running program undisturbed with no child or zombie.
func TestLeaveRunningCopyOnWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd, out := startStateProgram(t, "cow")
	dir := filepath.Dir(out)
	pid := cmd.Process.Pid
	progress := func(what string, min int64) cowState {
		t.Helper()
		var s cowState
		if err := waitFor(ctx, what, func() bool {
			var err error
			s, err = readCow(out)
			return err == nil && s.pid == pid && s.passes >= min
		}); err != nil {
			t.Fatalf("%v (last state %+v)", err, s)
		}
		if s.errors != 0 || s.dontfork != 1 || s.wipeonfork != 1 {
			t.Fatalf("%s: program reports %+v", what, s)
		}
		return s
	}
	s := progress("cow to run", 3)
	images := map[string]string{}
	for _, mode := range []string{"twin", "frozen"} {
		img := filepath.Join(dir, mode)
		st, err := Dump(img, DumpOptions{Roots: []int{pid}, LeaveRunning: true, FrozenCopy: mode == "frozen"})
		if err != nil {
			t.Fatalf("dump (%s): %v", mode, err)
		}
		t.Logf("%s: frozen %v, memory %v, twins %d, warnings %q", mode, st.Frozen, st.Memory, st.Twins, st.Warnings)
		if want := map[string]int{"twin": 1, "frozen": 0}[mode]; st.Twins != want || len(st.Warnings) != 0 {
			t.Fatalf("%s: %d twins (want %d), warnings %q", mode, st.Twins, want, st.Warnings)
		}
		if c := children(pid); len(c) != 0 {
			t.Fatalf("%s: the program has children %v after the dump", mode, c)
		}
		s = progress("cow to go on after the dump", s.passes+3)
		images[mode] = img
	}
	unix.Kill(pid, unix.SIGKILL)
	cmd.Wait()
	for _, mode := range []string{"twin", "frozen"} {
		res, err := Restore(images[mode], RestoreOptions{Warn: func(s string) { t.Log("warn:", s) }})
		if err != nil {
			t.Fatalf("restore (%s): %v", mode, err)
		}
		os.Remove(out)
		// The first pass after the restore finds pages stamped too late,
		// the second pages stamped too early.
		s := progress("restored cow ("+mode+") to write", 1)
		progress("restored cow ("+mode+") to go on", s.passes+2)
		unix.Kill(res.Root, unix.SIGKILL)
		reapTasks([]int{res.Root}, 5*time.Second)
	}
}

// pidsCgroup puts pid in a new pids cgroup allowing max tasks (v1
// hierarchy at /sys/fs/cgroup/pids, or v2 with the pids controller); the
// process goes back to the root and the cgroup is removed at cleanup.
func pidsCgroup(t *testing.T, pid, max int) {
	t.Helper()
	root := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		root = "/sys/fs/cgroup"
		if b, err := os.ReadFile(filepath.Join(root, "cgroup.subtree_control")); err != nil || !strings.Contains(string(b), "pids") {
			t.Skip("no pids cgroup controller on this host (neither v1 /sys/fs/cgroup/pids nor v2 with pids enabled)")
		}
	}
	dir, err := os.MkdirTemp(root, "ftl-test-")
	if err != nil {
		t.Skipf("cannot create a pids cgroup: %v", err)
	}
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		os.Remove(dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.Itoa(max)), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		t.Fatal(err)
	}
}

// TestTwinForkFailsFallsBack: where the twin cannot be forked (a pids
// cgroup at its limit), the --leave-running dump copies while frozen,
// says so in a warning, and the image restores consistent.
func TestTwinForkFailsFallsBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd, out := startCow(t)
	pid := cmd.Process.Pid
	pidsCgroup(t, pid, 2) // main thread and writer: no room for a twin
	img := filepath.Join(filepath.Dir(out), "img")
	st, err := Dump(img, DumpOptions{Roots: []int{pid}, LeaveRunning: true})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	if st.Twins != 0 || len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "copy-on-write twin") || !strings.Contains(st.Warnings[0], "copied while frozen") {
		t.Fatalf("twins %d, warnings %q; want none and one warning about the frozen copy", st.Twins, st.Warnings)
	}
	t.Logf("warning: %s", st.Warnings[0])
	if c := children(pid); len(c) != 0 {
		t.Fatalf("the program has children %v after the dump", c)
	}
	unix.Kill(pid, unix.SIGKILL)
	cmd.Wait()
	res, err := Restore(img, RestoreOptions{})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	defer func() { unix.Kill(res.Root, unix.SIGKILL); reapTasks([]int{res.Root}, 5*time.Second) }()
	os.Remove(out)
	var s cowState
	if err := waitFor(ctx, "restored cow to do two passes", func() bool {
		s, err = readCow(out)
		return err == nil && s.passes >= 2 && s.pid == pid
	}); err != nil {
		t.Fatal(err)
	}
	first := s.passes
	if err := waitFor(ctx, "restored cow to go on", func() bool {
		s, err = readCow(out)
		return err == nil && s.passes >= first+2
	}); err != nil {
		t.Fatal(err)
	}
	if s.errors != 0 || s.dontfork != 1 || s.wipeonfork != 1 {
		t.Fatalf("restored program reports %+v", s)
	}
}
