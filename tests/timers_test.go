package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftlinux/ftl/libos/procfs"
	"github.com/ftlinux/ftl/tests/testenv"
)

// POSIX timers (timer_create). The posixtimer corpus program checks them
// from inside a run ftl launched; these tests look from outside, at a
// process ftl did not launch (checkpoint --pid, restored in this pid
// namespace, so /proc/PID/timers shows the same pids before and after),
// and at what is still refused.

// buildTimerProg compiles a test program.
func buildTimerProg(t *testing.T, name, src string) string {
	t.Helper()
	tmp := t.TempDir()
	p := filepath.Join(tmp, name+".c")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, name)
	if out, err := exec.Command("gcc", "-O1", "-Wall", "-pthread", "-o", bin, p).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// waitTimers waits until pid lists want POSIX timers and returns
// /proc/PID/timers.
func waitTimers(t *testing.T, pid, want int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/timers")
		if strings.Count("\n"+string(b), "\nID:") == want {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d: want %d POSIX timers, /proc/%d/timers has %q", pid, want, pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tickProg counts the signals of a 10 ms periodic CLOCK_MONOTONIC timer
// that carry its sigev_value into argv[1] (rewritten every 10 ms); a
// CLOCK_BOOTTIME timer made between is deleted (a gap in the ids), and a
// SIGEV_NONE CLOCK_REALTIME one-shot is armed an hour ahead.
const tickProg = `#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t ticks, bad;
static void on(int s, siginfo_t *si, void *u) { (void)s; (void)u; if (si->si_code == SI_TIMER && si->si_value.sival_int == 0x5eed) ticks++; else bad++; }
int main(int argc, char **argv) {
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on; sa.sa_flags = SA_SIGINFO | SA_RESTART;
  if (argc < 2 || sigaction(SIGRTMIN + 4, &sa, NULL)) return 1;
  struct sigevent ev; memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = SIGRTMIN + 4; ev.sigev_value.sival_int = 0x5eed;
  struct sigevent none; memset(&none, 0, sizeof none); none.sigev_notify = SIGEV_NONE;
  timer_t tick, gap, far;
  if (timer_create(CLOCK_MONOTONIC, &ev, &tick) || timer_create(CLOCK_BOOTTIME, &ev, &gap) ||
      timer_create(CLOCK_REALTIME, &none, &far) || timer_delete(gap)) return 1;
  struct itimerspec p = {{0, 10000000}, {0, 10000000}}, f = {{0, 0}, {3600, 0}};
  if (timer_settime(tick, 0, &p, NULL) || timer_settime(far, 0, &f, NULL)) return 1;
  char tmp[512]; snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
  for (long i = 0; i < 60000; i++) {
    FILE *o = fopen(tmp, "w"); if (!o) return 1;
    fprintf(o, "%d %d\n", (int)ticks, (int)bad); fclose(o); rename(tmp, argv[1]);
    usleep(10000);
  }
  return 0;
}
`

// readTicks returns the good and bad timer signals the program counted.
func readTicks(path string) (ticks, bad int) {
	b, _ := os.ReadFile(path)
	fmt.Sscanf(string(b), "%d %d", &ticks, &bad)
	return
}

// waitTicks waits until the program has counted more than from signals.
func waitTicks(t *testing.T, path string, from int, what string) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, bad := readTicks(path)
		if bad != 0 {
			t.Fatalf("%s: %d timer signals with a wrong code or value", what, bad)
		}
		if n >= from+5 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the periodic timer does not fire: %d signals, want more than %d", what, n, from+5)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPosixTimersPidTree: a process ftl did not launch, with POSIX timers
// (one deleted, so the ids have a gap): a --leave-running checkpoint leaves
// its timers as they were and firing; after a checkpoint that kills it and
// a restore with the same pid, /proc/PID/timers is the same (ids, signals,
// sigev_values, notify modes, clocks) and the periodic timer fires again.
func TestPosixTimersPidTree(t *testing.T) {
	snapshotSetup(t)
	// Orphans come to us (restore --detach leaves the tree to its subreaper).
	syscall.RawSyscall6(syscall.SYS_PRCTL, 36 /* PR_SET_CHILD_SUBREAPER */, 1, 0, 0, 0, 0)
	pfNoStrayFds()
	bin := buildTimerProg(t, "ticks", tickProg)
	out := filepath.Join(t.TempDir(), "ticks")
	cmd := exec.Command(bin, out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
	})
	before := waitTimers(t, pid, 2)
	n := waitTicks(t, out, 0, "before the checkpoints")

	img := filepath.Join(t.TempDir(), "img")
	if r := testenv.Ftl(t, 60*time.Second, "checkpoint", "--pid", strconv.Itoa(pid), "--leave-running", "--dir", img); r.Code != 0 {
		t.Fatalf("checkpoint --pid --leave-running: %s", r)
	}
	if now := waitTimers(t, pid, 2); now != before {
		t.Fatalf("timers changed by a --leave-running checkpoint:\nbefore\n%s\nafter\n%s", before, now)
	}
	waitTicks(t, out, n, "after the --leave-running checkpoint")

	img2 := filepath.Join(t.TempDir(), "img2")
	if r := testenv.Ftl(t, 60*time.Second, "checkpoint", "--pid", strconv.Itoa(pid), "--dir", img2); r.Code != 0 {
		t.Fatalf("checkpoint --pid: %s", r)
	}
	cmd.Wait()
	n, _ = readTicks(out)
	r := testenv.Ftl(t, 60*time.Second, "restore", "--detach", img2)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(pid) {
		t.Fatalf("restore --pid image: want pid %d back, got %s", pid, r)
	}
	if now := waitTimers(t, pid, 2); now != before {
		t.Fatalf("timers after the restore differ:\nbefore\n%s\nafter\n%s", before, now)
	}
	waitTicks(t, out, n, "after the restore")
}

// TestCheckpointRefusesThreadCPUTimer: a timer on CLOCK_THREAD_CPUTIME_ID
// counts the thread that created it, which /proc does not name; in a
// process with two threads and a process-directed signal the restore could
// not know which thread to bind it to, so the checkpoint fails up front,
// naming the process, creates no image and leaves the process running.
func TestCheckpointRefusesThreadCPUTimer(t *testing.T) {
	snapshotSetup(t)
	bin := buildTimerProg(t, "cputimer", `#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static void *idle(void *a) { (void)a; for (int i = 0; i < 600; i++) sleep(1); return NULL; }
int main(void) {
  pthread_t th; if (pthread_create(&th, NULL, idle, NULL)) return 1;
  timer_t t; struct sigevent ev; memset(&ev, 0, sizeof ev);
  ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = SIGRTMIN;
  signal(SIGRTMIN, SIG_IGN);
  if (timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, &t)) return 1;
  for (int i = 0; i < 600; i++) sleep(1);
  return 0;
}
`)
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitTimers(t, pid, 1)
	img := filepath.Join(t.TempDir(), "img")
	r := testenv.Ftl(t, 30*time.Second, "checkpoint", "--pid", strconv.Itoa(pid), "--dir", img)
	if r.Code != 1 || !strings.Contains(r.Stderr, "POSIX timer") || !strings.Contains(r.Stderr, strconv.Itoa(pid)) {
		t.Errorf("checkpoint of a thread-CPU-clock timer: want exit 1 naming the process and the timer, got %s", r)
	}
	if _, err := os.Stat(img); err == nil {
		t.Errorf("a refused checkpoint left %s", img)
	}
	st, err := procfs.ReadStat("/proc", pid)
	if err != nil || st.Dead() || st.State == 't' || st.State == 'T' {
		t.Errorf("process after the refused checkpoint: state %c, %v (want running, not stopped)", st.State, err)
	}
}
