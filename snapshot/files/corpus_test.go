package files

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCorpusDumpable runs each fd-kind corpus program of tests/corpus up to
// READY, stops it, and checks that its fds pass Check, Add and Pair and
// that every description is recreated after the program is killed. (The
// end-to-end run, where the restored program checks its own fds, is the
// engine's corpus harness.)
func TestCorpusDumpable(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	names := []string{"pipe", "socketpair", "unixsock", "eventfd", "epoll", "timerfd", "signalfd", "files", "deleted", "fifo", "tcp", "udp", "inotify"}
	bin := t.TempDir()
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			src := filepath.Join("..", "..", "tests", "corpus", n+".c")
			exe := filepath.Join(bin, n)
			if out, err := exec.Command("gcc", "-O1", "-o", exe, src).CombinedOutput(); err != nil {
				t.Fatalf("gcc %s: %v\n%s", src, err, out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, exe)
			cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			out, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pgid := cmd.Process.Pid
			defer func() {
				syscall.Kill(-pgid, syscall.SIGKILL)
				cmd.Wait()
			}()
			sc := bufio.NewScanner(out)
			if !sc.Scan() || sc.Text() != "READY" {
				t.Fatalf("no READY: %q %v", sc.Text(), sc.Err())
			}
			syscall.Kill(-pgid, syscall.SIGSTOP)
			pids := []int{pgid}
			if b, err := os.ReadFile("/proc/" + itoa(pgid) + "/task/" + itoa(pgid) + "/children"); err == nil {
				for _, f := range strings.Fields(string(b)) {
					pids = append(pids, atoi(f))
				}
			}
			d := NewDumper()
			d.KeepRepair(true)
			defer d.Close()
			for _, pid := range pids {
				waitStopped(t, pid)
			}
			if err := CheckTree(pids); err != nil {
				t.Fatalf("CheckTree: %v", err)
			}
			for _, pid := range pids {
				addAll(t, d, pid)
			}
			if err := d.Pair(); err != nil {
				t.Fatalf("Pair: %v", err)
			}
			descs := d.Descs()
			d.Close()
			syscall.Kill(-pgid, syscall.SIGKILL)
			cmd.Wait()
			r := NewRestorer(descs, RestoreEnv{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
			defer r.Close()
			for _, desc := range descs {
				if _, err := r.File(desc.ID); err != nil {
					t.Errorf("File(%d %s %s): %v", desc.ID, desc.Kind, desc.Path, err)
				}
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
