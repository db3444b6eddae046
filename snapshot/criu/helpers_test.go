package criu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// A tree restored with Detach is orphaned when criu exits; as a child
	// subreaper this test binary inherits it and can reap it by pid.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(1)
	}
	// os/exec does not close descriptors this binary inherited without
	// close-on-exec (a harness's /dev/null or pipe), so they would reach
	// every test process and CRIU would dump them too. Keep them to us.
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fmt.Fprintln(os.Stderr, "close_range:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// needCRIU skips tb unless a working criu >= 4.2 is here.
func needCRIU(tb testing.TB) {
	tb.Helper()
	path, v, err := Find()
	if err != nil {
		tb.Skipf("skipping: no working criu >= 4.2 on this host (%v); build CRIU 4.2.1 as docs/criu.md says and install it as %s, or set %s", err, DefaultPath, EnvPath)
	}
	tb.Logf("using criu %s at %s", v, path)
}

// buildC compiles testdata/<name>.c into a temporary directory.
func buildC(tb testing.TB, name string) string {
	tb.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		tb.Skipf("skipping: gcc not found to build testdata/%s.c", name)
	}
	out := filepath.Join(tb.TempDir(), name)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b, err := exec.CommandContext(ctx, gcc, "-O2", "-Wall", "-o", out, filepath.Join("testdata", name+".c")).CombinedOutput(); err != nil {
		tb.Fatalf("gcc %s.c: %v\n%s", name, err, b)
	}
	return out
}

// startSession starts argv in a new session with stdio on /dev/null, so
// that CRIU needs no shell-job handling, and kills it at cleanup.
func startSession(tb testing.TB, argv ...string) *exec.Cmd {
	tb.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", argv[0], err)
	}
	tb.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// reapKilled waits for a dumped-and-killed child so its pid is free again
// (a zombie holding the pid makes the restore fail with EEXIST).
func reapKilled(tb testing.TB, cmd *exec.Cmd) {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		tb.Fatalf("pid %d still running 10 s after a killing dump", cmd.Process.Pid)
	}
}

// killRestored kills a restored tree's root by pid and reaps it: it is our
// child (rst_sibling) or, detached, was reparented to us (subreaper).
func killRestored(tb testing.TB, pid int) {
	tb.Helper()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		tb.Errorf("kill restored pid %d: %v", pid, err)
		return
	}
	waitPid(tb, pid)
}

// waitPid reaps pid, giving up after 10 s.
func waitPid(tb testing.TB, pid int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil || got == pid {
			return // reaped, or not our child (then init reaps it)
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Errorf("pid %d not reaped within 10 s", pid)
}

// readNumber reads the fixed-width number a test program keeps in path.
func readNumber(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
}

// waitFor polls cond every 5 ms until it holds or 10 s pass.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCounterAbove waits until the counter in path exceeds n and returns it.
func waitCounterAbove(tb testing.TB, path string, n uint64) uint64 {
	tb.Helper()
	var v uint64
	waitFor(tb, fmt.Sprintf("counter in %s to exceed %d", path, n), func() bool {
		var err error
		v, err = readNumber(path)
		return err == nil && v > n
	})
	return v
}

// processName returns /proc/pid/comm, or "" when pid does not exist.
func processName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
