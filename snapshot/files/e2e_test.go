package files_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/snapshot"
)

// TestCorpusEndToEnd checkpoints each fd-kind corpus program with the
// engine (kill after dump), restores it, and lets it check its own fds:
// the program must print PASS. In the leave-running variant the original
// goes on after the dump and must pass too: the dump consumed nothing.
func TestCorpusEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	names := []string{"pipe", "socketpair", "unixsock", "eventfd", "epoll", "timerfd", "signalfd", "files", "deleted", "fifo", "tcp", "udp", "inotify"}
	if s := os.Getenv("FTL_CORPUS"); s != "" {
		names = strings.Split(s, ",")
	}
	bin := t.TempDir()
	for _, run := range []string{"restore", "leave-running"} {
		for _, n := range names {
			t.Run(run+"/"+n, func(t *testing.T) { corpusRun(t, bin, n, run == "leave-running") })
		}
	}
}

// corpusRun runs corpus program n up to READY, dumps it, and checks that
// it passes afterwards: the original (leave) or the restored tree.
func corpusRun(t *testing.T, bin, n string, leave bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exe := filepath.Join(bin, n)
	if _, err := os.Stat(exe); err != nil {
		src := filepath.Join("..", "..", "tests", "corpus", n+".c")
		if out, err := exec.Command("gcc", "-O1", "-o", exe, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	cmd.Stdout = pw
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer unix.Kill(pid, unix.SIGKILL)
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l := <-lines:
			return l
		case <-ctx.Done():
			return "timeout"
		}
	}
	if l := next(); l != "READY" {
		t.Fatalf("first line %q", l)
	}
	img := filepath.Join(t.TempDir(), "img")
	if _, err := snapshot.Dump(img, snapshot.DumpOptions{Roots: []int{pid}, Name: n, LeaveRunning: leave}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	if leave {
		unix.Kill(pid, unix.SIGUSR2)
		if l := next(); l != "PASS "+n {
			t.Errorf("%s after a leave-running dump: %q", n, l)
		}
		return
	}
	cmd.Wait()
	res, err := snapshot.Restore(img, snapshot.RestoreOptions{
		Stdio: snapshot.FileEnv{Stdin: os.Stdin, Stdout: pw, Stderr: os.Stderr},
		Warn:  func(s string) { t.Log("warn:", s) },
	})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	defer func() {
		for _, p := range res.Pids {
			unix.Kill(p, unix.SIGKILL)
		}
		for _, p := range res.Pids {
			var ws unix.WaitStatus
			unix.Wait4(p, &ws, 0, nil) // SIGKILLed: returns at once (ECHILD if not ours)
		}
	}()
	unix.Kill(res.Root, unix.SIGUSR2)
	if l := next(); l != "PASS "+n {
		t.Errorf("restored %s: %q", n, l)
	}
}
