package tests

import (
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

// TestCheckpointRefusesPosixTimers: a process with a timer_create timer
// cannot be restored faithfully yet, so the checkpoint must fail up front,
// naming the process, and leave it running (interval timers are covered by
// the itimer corpus program).
func TestCheckpointRefusesPosixTimers(t *testing.T) {
	testenv.NeedBinaries(t)
	testenv.NeedRoot(t)
	testenv.Home(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "ptimer.c")
	os.WriteFile(src, []byte(`#include <signal.h>
#include <time.h>
#include <unistd.h>
int main(void) {
  timer_t t; struct sigevent ev = {0}; ev.sigev_notify = SIGEV_NONE;
  if (timer_create(CLOCK_MONOTONIC, &ev, &t)) return 1;
  for (int i = 0; i < 600; i++) sleep(1);
  return 0;
}
`), 0o644)
	bin := filepath.Join(tmp, "ptimer")
	if out, err := exec.Command("gcc", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/timers")
		if strings.Contains(string(b), "ID:") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test program made no POSIX timer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	img := filepath.Join(tmp, "img")
	r := testenv.Ftl(t, 30*time.Second, "checkpoint", "--pid", strconv.Itoa(pid), "--dir", img)
	if r.Code != 1 || !strings.Contains(r.Stderr, "POSIX timer") || !strings.Contains(r.Stderr, strconv.Itoa(pid)) {
		t.Errorf("checkpoint of a process with a POSIX timer: want exit 1 naming the process and the timer, got %s", r)
	}
	if _, err := os.Stat(img); err == nil {
		t.Errorf("a refused checkpoint left %s", img)
	}
	st, err := procfs.ReadStat("/proc", pid)
	if err != nil || st.Dead() || st.State == 't' || st.State == 'T' {
		t.Errorf("process after the refused checkpoint: state %c, %v (want running, not stopped)", st.State, err)
	}
}
