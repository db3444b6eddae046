package criu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDumpRestoreCounter dumps a counter process, restores it, and checks
// that the restored process has the same pid and counts on from where the
// dump left it, for each combination of leave-running and detach.
func TestDumpRestoreCounter(t *testing.T) {
	needCRIU(t)
	bin := buildC(t, "counter")
	for _, c := range []struct {
		name                 string
		leaveRunning, detach bool
	}{
		{"kill", false, false},
		{"kill-detach", false, true},
		{"leave-running", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			tmp := t.TempDir()
			out := filepath.Join(tmp, "count")
			img := filepath.Join(tmp, "img")
			cmd := startSession(t, bin, out)
			pid := cmd.Process.Pid
			before := waitCounterAbove(t, out, 20)

			err := Dump(ctx, DumpOptions{Pid: pid, Dir: img, LeaveRunning: c.leaveRunning})
			if err != nil {
				t.Fatalf("Dump: %v", err)
			}
			m, err := ReadMarker(img)
			if err != nil {
				t.Fatalf("ReadMarker after dump: %v", err)
			}
			t.Logf("marker: %+v", m)
			st, err := ReadDumpStats(img)
			if err != nil {
				t.Fatalf("ReadDumpStats: %v", err)
			}
			if st.PagesWritten == 0 || st.Frozen <= 0 {
				t.Errorf("dump stats look empty: %+v", st)
			}
			t.Logf("dump stats: %+v", st)

			if c.leaveRunning {
				// The original keeps counting after the dump.
				v, _ := readNumber(out)
				waitCounterAbove(t, out, v+10)
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
			}
			reapKilled(t, cmd)

			pid2, err := Restore(ctx, RestoreOptions{Dir: img, Detach: c.detach})
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			t.Cleanup(func() { killRestored(t, pid2) })
			if pid2 != pid {
				t.Fatalf("restored pid %d; want the original %d", pid2, pid)
			}
			if n := processName(pid2); n != "counter" {
				t.Fatalf("pid %d is %q after restore; want counter", pid2, n)
			}
			// The restored counter resumes from its dumped memory: never
			// below what was seen before the dump, and still counting.
			v1 := waitCounterAbove(t, out, 0)
			v2 := waitCounterAbove(t, out, v1+10)
			if v2 <= before {
				t.Errorf("restored counter at %d; the dumped one was already at %d", v2, before)
			}
			if _, err := ReadRestoreStats(img); err != nil {
				t.Errorf("ReadRestoreStats: %v", err)
			}
		})
	}
}

// TestDumpRefusesExistingImage checks that a second dump into the same
// directory is refused rather than mixing two images.
func TestDumpRefusesExistingImage(t *testing.T) {
	needCRIU(t)
	bin := buildC(t, "counter")
	tmp := t.TempDir()
	img := filepath.Join(tmp, "img")
	cmd := startSession(t, bin, filepath.Join(tmp, "count"))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := Dump(ctx, DumpOptions{Pid: cmd.Process.Pid, Dir: img, LeaveRunning: true}); err != nil {
		t.Fatalf("Dump: %v", err)
	}
	err := Dump(ctx, DumpOptions{Pid: cmd.Process.Pid, Dir: img, LeaveRunning: true})
	if !errors.Is(err, ErrImageExists) {
		t.Fatalf("second Dump into %s: %v; want ErrImageExists", img, err)
	}
}

// TestDumpFailureExplains makes CRIU refuse a dump (a unix socket whose
// peer is outside the tree, without ExtUnixSk): the error wraps ErrDump and
// carries CRIU's log lines, dump.log is kept, no marker is written, and the
// process lives on. A dead pid is refused before CRIU runs.
func TestDumpFailureExplains(t *testing.T) {
	needCRIU(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ours"), os.NewFile(uintptr(fds[1]), "theirs")
	defer ours.Close()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	img := filepath.Join(t.TempDir(), "img")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err = Dump(ctx, DumpOptions{Pid: cmd.Process.Pid, Dir: img})
	if !errors.Is(err, ErrDump) {
		t.Fatalf("Dump with an external unix socket: %v; want ErrDump", err)
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), DumpLog+": ") || !strings.Contains(err.Error(), "Error (") {
		t.Errorf("error does not quote %s: %v", DumpLog, err)
	}
	if _, err := os.Stat(filepath.Join(img, MarkerFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed dump left a marker (stat: %v)", err)
	}
	if _, err := os.Stat(filepath.Join(img, DumpLog)); err != nil {
		t.Errorf("failed dump left no %s: %v", DumpLog, err)
	}
	if err := unix.Kill(cmd.Process.Pid, 0); err != nil {
		t.Errorf("process gone after a failed dump: %v", err)
	}

	dead := startSession(t, "true")
	reapKilled(t, dead)
	err = Dump(ctx, DumpOptions{Pid: dead.Process.Pid, Dir: filepath.Join(t.TempDir(), "img")})
	if !errors.Is(err, ErrDump) || !strings.Contains(err.Error(), "no process") {
		t.Fatalf("Dump of a dead pid: %v; want ErrDump saying no process", err)
	}
}

// TestDumpCancelled checks that a cancelled context stops Dump with the
// context's error and that the process survives.
func TestDumpCancelled(t *testing.T) {
	needCRIU(t)
	bin := buildC(t, "counter")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "count")
	cmd := startSession(t, bin, out)
	waitCounterAbove(t, out, 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := Dump(ctx, DumpOptions{Pid: cmd.Process.Pid, Dir: filepath.Join(tmp, "img")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Dump with a cancelled context: %v; want context.Canceled", err)
	}
	v, _ := readNumber(out)
	waitCounterAbove(t, out, v+5)
}

// TestCancelKillsCriu runs a stand-in criu that never answers: cancelling
// the context must kill it and end the call with the context's error.
func TestCancelKillsCriu(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: Find needs root")
	}
	p := filepath.Join(t.TempDir(), "criu")
	script := "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Version: 4.2.1'; exit 0; fi\nexec sleep 30\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Dump(ctx, DumpOptions{Pid: os.Getpid(), Dir: filepath.Join(t.TempDir(), "img"), CriuPath: p})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrDump) {
		t.Fatalf("Dump against a silent criu: %v; want ErrDump and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("Dump returned after %v: the silent criu was not killed", d)
	}
}
