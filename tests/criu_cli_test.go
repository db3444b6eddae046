package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftlinux/ftl/snapshot/criu"
	"github.com/ftlinux/ftl/tests/testenv"
)

// TestCRIUEngineCLI drives `ftl checkpoint --engine criu`, `ftl image
// inspect` and `ftl restore` of the resulting image on a real process, and
// checks the CLI's refusals. The engine part skips where no CRIU >= 4.2 is.
func TestCRIUEngineCLI(t *testing.T) {
	testenv.NeedBinaries(t)
	testenv.NeedRoot(t)
	testenv.Home(t)

	for _, args := range [][]string{
		{"checkpoint", "--engine", "criu", "some-run"},
		{"checkpoint", "--engine", "bogus", "--pid", "1"},
	} {
		if r := testenv.Ftl(t, 10*time.Second, args...); r.Code != 2 || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("ftl %s: want one line and exit 2, got %s", strings.Join(args, " "), r)
		}
	}

	if _, _, err := criu.Find(); err != nil {
		t.Skipf("skipping the CRIU engine run: %v", err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "counter")
	src := filepath.Join(testenv.RepoRoot(), "snapshot", "criu", "testdata", "counter.c")
	if out, err := exec.Command("gcc", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	state := filepath.Join(tmp, "state")
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	cmd := exec.Command(bin, state)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() { syscall.Kill(pid, syscall.SIGKILL) }()
	waitCounter(t, state, 5)

	dir := filepath.Join(tmp, "img")
	r := testenv.Ftl(t, 60*time.Second, "checkpoint", "--engine", "criu", "--pid", strconv.Itoa(pid), "--dir", dir)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if r.Code != 0 || lines[len(lines)-1] != dir {
		t.Fatalf("checkpoint --engine criu: want exit 0 and %s as the last line, got %s", dir, r)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("process %d still alive after a checkpoint without --leave-running", pid)
	}
	dumped := readCounter(t, state)

	if r := testenv.Ftl(t, 10*time.Second, "image", "inspect", dir); r.Code != 0 || !strings.Contains(r.Stdout, "criu 4.") {
		t.Errorf("image inspect of a CRIU image: want exit 0 and the CRIU version, got %s", r)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rc := testenv.Command(ctx, "restore", dir)
	rc.Stdin, rc.Stdout, rc.Stderr = devnull, devnull, devnull
	if err := rc.Start(); err != nil {
		t.Fatal(err)
	}
	// Same pid, and the counter goes on from where it was, not from 1.
	waitCounter(t, state, dumped+5)
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
		t.Errorf("restored counter is not pid %d: %v", pid, err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	err = rc.Wait()
	if code := rc.ProcessState.ExitCode(); code != 128+int(syscall.SIGKILL) {
		t.Errorf("foreground ftl restore of a CRIU image: want exit %d after SIGKILL of the root, got %d (%v)", 128+int(syscall.SIGKILL), code, err)
	}
}

func readCounter(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// waitCounter waits (at most 10 s) until the counter file holds at least min.
func waitCounter(t *testing.T, path string, min int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for readCounter(t, path) < min {
		if time.Now().After(deadline) {
			t.Fatalf("counter in %s stuck at %d, want >= %d", path, readCounter(t, path), min)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
