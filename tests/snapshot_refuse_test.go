package tests

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftlinux/ftl/tests/testenv"
)

// Up-front refusals of state the snapshot engine cannot save
// (snapshot/precheck.go and the fd layer): a traced process, seccomp
// (filter or strict mode, in any thread), io_uring (an fd, or a ring kept
// only by its mapping). tests/progs/untraceable.c sets each up. A refused
// `ftl checkpoint --pid` exits 1 with one error line naming the pid and the
// kind, the process runs on (not stopped: nothing was frozen), and no
// image directory is left.

// rfStart runs `untraceable ARGS...` in its own process group, killed at
// cleanup, and returns the pid it reports ready and the program's own pid.
// It skips the test if the kernel refuses the set-up (exit status 3).
func rfStart(t *testing.T, bin string, args ...string) (ready, self int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		cmd.Wait()
		close(done)
	}()
	select {
	case line, ok := <-lines:
		if !ok {
			<-done
			if cmd.ProcessState.ExitCode() == 3 {
				t.Skipf("untraceable %v: the kernel refuses the set-up: %s", args, strings.TrimSpace(stderr.String()))
			}
			t.Fatalf("untraceable %v ended without getting ready: %v: %s", args, cmd.ProcessState, stderr.String())
		}
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != "ready" {
			t.Fatalf("untraceable %v printed %q", args, line)
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("untraceable %v printed %q", args, line)
		}
		return pid, cmd.Process.Pid
	case <-time.After(10 * time.Second):
		t.Fatalf("untraceable %v not ready after 10s: %s", args, stderr.String())
	}
	return 0, 0
}

// rfUntouched fails unless pid is alive and not stopped, now and a moment
// later (a tree left frozen would show 't' or 'T').
func rfUntouched(t *testing.T, what string, pid int) {
	t.Helper()
	for i := 0; i < 2; i++ {
		if st := pfState(pid); st == "" || st == "Z" || st == "X" || st == "t" || st == "T" {
			t.Errorf("%s: pid %d is in state %q after the refused checkpoint, want running", what, pid, st)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rfNoImages fails if anything was left under $FTL_HOME/images.
func rfNoImages(t *testing.T, what, home string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(home, "images"))
	for _, e := range ents {
		t.Errorf("%s: a refused checkpoint left %s/images/%s", what, home, e.Name())
	}
}

// TestRefuseUntraceable: each kind of refused state, plus the control (the
// same program holding none of it checkpoints fine).
func TestRefuseUntraceable(t *testing.T) {
	home := pfSetup(t)
	pfNoStrayFds() // an fd inherited from the caller would be refused first
	bin := pfBuild(t, "untraceable", "-lpthread")
	cases := []struct {
		mode string
		want []string // besides the pid; "%TRACER" is the tracer's pid
	}{
		{"ptrace", []string{"(untraceable)", "ptraced by process %TRACER", "unsupported state"}},
		{"seccomp", []string{"(untraceable)", "seccomp filter", "unsupported state"}},
		{"seccomp-thread", []string{"(untraceable) thread ", "seccomp filter", "unsupported state"}},
		{"seccomp-strict", []string{"(untraceable) thread ", "seccomp strict mode", "unsupported state"}},
		// Refused by the fd layer (snapshot/files), in its own words.
		{"uring", []string{"fd 3 (io_uring)", "io_uring rings hold in-flight kernel state", "not supported"}},
		{"uring-map", []string{"(untraceable)", "maps an io_uring ring", "anon_inode:[io_uring]", "unsupported state"}},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			pid, self := rfStart(t, bin, c.mode, "60")
			r := testenv.Ftl(t, 30*time.Second, "checkpoint", "--pid", strconv.Itoa(pid))
			want := []string{fmt.Sprintf("process %d ", pid)}
			for _, w := range c.want {
				want = append(want, strings.ReplaceAll(w, "%TRACER", strconv.Itoa(self)))
			}
			pfFails(t, c.mode, r, 1, want...)
			rfUntouched(t, c.mode, pid)
			rfNoImages(t, c.mode, home)
			if c.mode == "ptrace" {
				// The tracer still owns its tracee: ftl did not touch it.
				b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
				if !strings.Contains(string(b), fmt.Sprintf("TracerPid:\t%d\n", self)) {
					t.Errorf("after the refusal, pid %d is no longer traced by %d", pid, self)
				}
			}
		})
	}
	t.Run("traced-child", func(t *testing.T) {
		// The tracer and its tracee in one tree: still refused (the tracee
		// is named), and neither is stopped.
		tracee, tracer := rfStart(t, bin, "ptrace", "60")
		r := testenv.Ftl(t, 30*time.Second, "checkpoint", "--pid", strconv.Itoa(tracer))
		pfFails(t, "tracer and tracee", r, 1, fmt.Sprintf("process %d (untraceable) is ptraced by process %d", tracee, tracer))
		rfUntouched(t, "tracer", tracer)
		rfUntouched(t, "tracee", tracee)
		rfNoImages(t, "tracer and tracee", home)
	})
	t.Run("plain", func(t *testing.T) {
		pid, _ := rfStart(t, bin, "plain", "60")
		img := filepath.Join(t.TempDir(), "img")
		pfCheckpoint(t, img, "--pid", strconv.Itoa(pid), "--leave-running")
		rfUntouched(t, "plain", pid)
	})
}

// TestRefuseSeccompInherited: a seccomp filter that ftl itself runs under
// (a container's profile, inherited by everything) is not refused: the
// restored tree inherits it from the restorer. One filter more than ftl's
// is.
func TestRefuseSeccompInherited(t *testing.T) {
	pfSetup(t)
	pfNoStrayFds()
	bin := pfBuild(t, "untraceable", "-lpthread")
	checkpoint := func(t *testing.T, pid int, img string) testenv.Result {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "exec-seccomp", testenv.FtlBin(), "checkpoint", "--pid", strconv.Itoa(pid), "--leave-running", "--dir", img)
		cmd.Env = testenv.Env()
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("checkpoint under a filter: timed out: %s", errb.String())
		}
		return testenv.Result{Stdout: out.String(), Stderr: errb.String(), Code: cmd.ProcessState.ExitCode()}
	}
	t.Run("same-filters", func(t *testing.T) {
		pid, _ := rfStart(t, bin, "exec-seccomp", bin, "plain", "60")
		img := filepath.Join(t.TempDir(), "img")
		r := checkpoint(t, pid, img)
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != img {
			t.Fatalf("checkpoint of a tree with ftl's own filter: %s", r)
		}
		rfUntouched(t, "same filters", pid)
	})
	t.Run("one-more", func(t *testing.T) {
		pid, _ := rfStart(t, bin, "exec-seccomp", bin, "seccomp", "60")
		img := filepath.Join(t.TempDir(), "img")
		r := checkpoint(t, pid, img)
		pfFails(t, "a filter beyond ftl's", r, 1, fmt.Sprintf("process %d (untraceable)", pid), "2 filter(s); ftl runs under 1")
		rfUntouched(t, "one more filter", pid)
		if _, err := os.Stat(img); err == nil {
			t.Errorf("a refused checkpoint left %s", img)
		}
	})
}
