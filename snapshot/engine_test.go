package snapshot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// Orphans of the trees under test come to us, and we reap them at
	// once: a zombie would keep its pid and make a same-pid restore fail.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

// buildC compiles a test program from testdata.
func buildC(t testing.TB, name string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: ptrace of other processes and clone3 set_tid")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("gcc", "-O1", "-pthread", "-o", bin, filepath.Join("testdata", name+".c")).CombinedOutput()
	if err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	return bin
}

// startStateProgram builds and starts testdata/NAME.c with the path of
// its state file (in a fresh temporary directory) as its argument; the
// process is killed when the test ends.
func startStateProgram(t *testing.T, name string) (*exec.Cmd, string) {
	t.Helper()
	bin := buildC(t, name)
	out := filepath.Join(t.TempDir(), "state")
	cmd := exec.Command(bin, out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Kill(cmd.Process.Pid, unix.SIGKILL); cmd.Wait() })
	return cmd, out
}

// readCounter returns pid and count from the counter's file.
func readCounter(path string) (pid int, n int64, check int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, err
	}
	_, err = fmt.Sscanf(string(b), "%d %d %d", &pid, &n, &check)
	return
}

func waitFor(ctx context.Context, what string, f func() bool) error {
	for !f() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func TestDumpRestoreCounterSamePid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd, out := startStateProgram(t, "counter")
	dir := filepath.Dir(out)
	pid := cmd.Process.Pid
	var before int64
	if err := waitFor(ctx, "counter to reach 5", func() bool {
		_, n, _, err := readCounter(out)
		before = n
		return err == nil && n >= 5
	}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img")
	st, err := Dump(img, DumpOptions{Roots: []int{pid}, Name: "counter"})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	t.Logf("dump: %d processes %d threads %d pages frozen %v total %v", st.Processes, st.Threads, st.Pages, st.Frozen, st.Total)
	cmd.Wait()
	_, atDump, _, _ := readCounter(out)
	if atDump < before {
		t.Fatalf("counter went back before restore")
	}
	res, err := Restore(img, RestoreOptions{Warn: func(s string) { t.Log("warn:", s) }})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	defer func() {
		unix.Kill(res.Root, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(res.Root, &ws, 0, nil)
	}()
	if res.Root != pid {
		t.Fatalf("restored root pid %d, want %d", res.Root, pid)
	}
	if err := waitFor(ctx, "counter to continue", func() bool {
		p, n, c, err := readCounter(out)
		return err == nil && p == pid && n >= atDump+5 && c == 14
	}); err != nil {
		b, _ := os.ReadFile(out)
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		t.Fatalf("%v: file %q; status:\n%s", err, b, strings.Join(strings.Split(string(st), "\n")[:8], "\n"))
	}
}

type mtState struct {
	pid, child int
	n, shared  int64
	cnt        [4]int64
	tids       [4]int
}

func readMT(path string) (mtState, error) {
	var s mtState
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	_, err = fmt.Sscanf(string(b), "%d %d %d %d %d %d %d %d %d %d %d %d", &s.pid, &s.n, &s.cnt[0], &s.cnt[1], &s.cnt[2], &s.cnt[3],
		&s.shared, &s.child, &s.tids[0], &s.tids[1], &s.tids[2], &s.tids[3])
	return s, err
}

func TestDumpRestoreThreadsAndSharedChild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd, out := startStateProgram(t, "mt")
	dir := filepath.Dir(out)
	pid := cmd.Process.Pid
	var s0 mtState
	if err := waitFor(ctx, "mt to run", func() bool {
		s, err := readMT(out)
		s0 = s
		return err == nil && s.n >= 5 && s.shared > 10
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Kill(s0.child, unix.SIGKILL)
	img := filepath.Join(dir, "img")
	st, err := Dump(img, DumpOptions{Roots: []int{pid}, Name: "mt"})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	t.Logf("dump: %d processes %d threads %d pages frozen %v", st.Processes, st.Threads, st.Pages, st.Frozen)
	if st.Processes != 2 || st.Threads != 6 {
		t.Fatalf("dumped %d processes %d threads, want 2 and 6", st.Processes, st.Threads)
	}
	cmd.Wait()
	reapTasks([]int{s0.child}, 5*time.Second) // we are its subreaper now
	s1, _ := readMT(out)
	res, err := Restore(img, RestoreOptions{Warn: func(s string) { t.Log("warn:", s) }})
	if err != nil {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		t.Fatalf("restore: %v\n%s", err, st)
	}
	defer func() {
		for _, p := range res.Pids {
			unix.Kill(p, unix.SIGKILL)
			var ws unix.WaitStatus
			unix.Wait4(p, &ws, unix.WALL, nil)
		}
	}()
	var s2 mtState
	if err := waitFor(ctx, "mt to go on", func() bool {
		s, err := readMT(out)
		s2 = s
		return err == nil && s.n >= s1.n+5 && s.shared > s1.shared+10 && s.cnt[3] > s1.cnt[3]+10 && s.cnt[0] > s1.cnt[0]+10
	}); err != nil {
		t.Fatalf("%v: before %+v after %+v", err, s1, s2)
	}
	if s2.pid != pid || s2.child != s0.child || s2.tids != s0.tids {
		t.Fatalf("ids changed: before %+v after %+v", s0, s2)
	}
	for _, tid := range s0.tids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid)); err != nil {
			t.Errorf("thread %d not restored: %v", tid, err)
		}
	}
}
