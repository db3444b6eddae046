package tests

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftlinux/ftl/tests/testenv"
)

// The corpus: tests/corpus/NAME.c, one kind of process state each (see
// the protocol in corpus/fdcorpus.h). Every program runs twice: natively
// (the control: it must PASS untouched) and under ftl, checkpointed,
// killed and restored before it checks its own state — once by a
// checkpoint that kills the tree, once by a --leave-running checkpoint
// (memory copied from copy-on-write twins) followed by `ftl kill`.

// corpusPrograms lists tests/corpus/*.c.
func corpusPrograms(t *testing.T) []string {
	t.Helper()
	srcs, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "tests", "corpus", "*.c"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("no corpus programs: %v", err)
	}
	var names []string
	for _, s := range srcs {
		names = append(names, strings.TrimSuffix(filepath.Base(s), ".c"))
	}
	sort.Strings(names)
	return names
}

func buildCorpus(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join(testenv.RepoRoot(), "tests", "corpus", name+".c")
	bin := filepath.Join(t.TempDir(), name)
	args := []string{"-O1", "-Wall", "-pthread", "-o", bin, src}
	if b, _ := os.ReadFile(src); strings.Contains(string(b), "#include <sqlite3.h>") {
		args = append(args, "-lsqlite3") // libsqlite3-dev (make deps)
	}
	out, err := exec.Command("gcc", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	return bin
}

// corpusVerdict finds the "PASS name" or "FAIL name: why" line in out.
func corpusVerdict(out, name string) (done bool, pass bool, line string) {
	for _, l := range strings.Split(out, "\n") {
		if l == "PASS "+name {
			return true, true, l
		}
		if strings.HasPrefix(l, "FAIL "+name) {
			return true, false, l
		}
	}
	return false, false, ""
}

// writesFilesOn lists the programs that go on changing files after the
// checkpoint: an image left running is restored after the original wrote
// on, and file contents are not in the image (docs/snapshot.md), so they
// only take the checkpoint that kills the tree.
var writesFilesOn = map[string]string{
	"sqlite": "commits a transaction every millisecond to its database file",
}

func TestCorpus(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedBinaries(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	for _, name := range corpusPrograms(t) {
		t.Run(name, func(t *testing.T) {
			bin := buildCorpus(t, name)
			t.Run("native", func(t *testing.T) { corpusNative(t, name, bin) })
			t.Run("restored", func(t *testing.T) { corpusRestored(t, name, bin, false) })
			if _, ok := writesFilesOn[name]; !ok {
				t.Run("restored-leave-running", func(t *testing.T) { corpusRestored(t, name, bin, true) })
			}
		})
	}
}

// corpusNative runs the program without ftl: READY, SIGUSR2, PASS.
func corpusNative(t *testing.T, name, bin string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Dir = t.TempDir()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "READY" {
		t.Fatalf("native %s: no READY: %q %v", name, sc.Text(), sc.Err())
	}
	syscall.Kill(pid, syscall.SIGUSR2)
	var all []string
	for sc.Scan() {
		all = append(all, sc.Text())
		if done, pass, line := corpusVerdict(strings.Join(all, "\n"), name); done {
			if !pass {
				t.Fatalf("native control run: %s", line)
			}
			return
		}
	}
	t.Fatalf("native %s: no verdict; output %q", name, all)
}

// waitLog waits until the run's log holds what pred looks for.
func waitLog(ctx context.Context, path string, pred func(string) bool) (string, error) {
	for {
		b, _ := os.ReadFile(path)
		if pred(string(b)) {
			return string(b), nil
		}
		select {
		case <-ctx.Done():
			return string(b), ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runHostPid is the host pid of namespace pid nspid of the run info
// describes.
func runHostPid(t *testing.T, info testenv.PSInfo, nspid int, logPath string) int {
	t.Helper()
	for _, p := range info.Processes {
		if p.Pid == nspid {
			return p.HostPid
		}
	}
	log, _ := os.ReadFile(logPath)
	t.Fatalf("run %s has no pid %d: %+v\nlog:\n%s", info.Name, nspid, info.Processes, log)
	return 0
}

// corpusRestored: ftl run --detach, READY, checkpoint (kills the tree; or
// --leave-running, then ftl kill), restore --detach, SIGUSR2 to the
// restored program, PASS.
func corpusRestored(t *testing.T, name, bin string, leave bool) {
	home := testenv.Home(t)
	run := "c-" + name
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	testenv.Detach(t, run, bin)
	logPath := filepath.Join(home, "log", run+".log")
	if out, err := waitLog(ctx, logPath, func(s string) bool { return strings.Contains(s, "READY\n") || strings.Contains(s, "FAIL") }); err != nil || strings.Contains(out, "FAIL") {
		t.Fatalf("no READY in %s: %v: %q", logPath, err, out)
	}
	img := filepath.Join(t.TempDir(), "img")
	args := []string{"checkpoint", run, "--dir", img}
	if leave {
		args = append(args, "--leave-running")
	}
	r := testenv.Ftl(t, 60*time.Second, args...)
	if r.Code != 0 {
		t.Fatalf("ftl %s: %s", strings.Join(args, " "), r)
	}
	if leave && !strings.Contains(r.Stderr, "copy-on-write twin") {
		t.Fatalf("ftl %s did not copy from twins: %s", strings.Join(args, " "), r)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if lines[len(lines)-1] != img {
		t.Fatalf("checkpoint printed %q, want the image directory %s last", r.Stdout, img)
	}
	if leave {
		if k := testenv.Ftl(t, 20*time.Second, "kill", run); k.Code != 0 {
			t.Fatalf("ftl kill %s after --leave-running: %s", run, k)
		}
	} else if ps := testenv.Ftl(t, 20*time.Second, "ps", run); ps.Code == 0 {
		t.Fatalf("run %s still listed after checkpoint without --leave-running: %s", run, ps)
	}
	r = testenv.Ftl(t, 60*time.Second, "restore", "--detach", "--name", run, img)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != run {
		t.Fatalf("ftl restore: %s", r)
	}
	info := testenv.PS(t, run)
	if len(info.Argv) != 1 || info.Argv[0] != bin {
		t.Errorf("restored run's command is %q, want [%s] (the image keeps the root's argv)", info.Argv, bin)
	}
	host := runHostPid(t, info, 2, logPath)
	if err := syscall.Kill(host, syscall.SIGUSR2); err != nil {
		t.Fatalf("SIGUSR2 to restored %s (host pid %d): %v", name, host, err)
	}
	out, err := waitLog(ctx, logPath, func(s string) bool { done, _, _ := corpusVerdict(s, name); return done })
	if err != nil {
		t.Fatalf("no verdict from restored %s: %v; log:\n%s", name, err, out)
	}
	if _, pass, line := corpusVerdict(out, name); !pass {
		t.Fatalf("restored: %s", line)
	}
}
