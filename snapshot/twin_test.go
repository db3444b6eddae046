package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
