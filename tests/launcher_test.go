package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftlinux/ftl/tests/testenv"
)

// launcherSetup is the common start of every launcher test.
func launcherSetup(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedBinaries(t)
	return testenv.Home(t)
}

func launcherOneLine(t *testing.T, what, s string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") || !strings.HasPrefix(s, "ftl: ") {
		t.Errorf("%s: want exactly one line \"ftl: ...\" on stderr, got %q", what, s)
	}
}

// TestLauncherUsageErrors: every way of calling ftl wrongly gives one clear line on
// stderr, nothing on stdout, exit status 2, and starts nothing.
func TestLauncherUsageErrors(t *testing.T) {
	home := launcherSetup(t)
	cases := []struct {
		name string
		args []string
		want string // in the message
	}{
		{"missing program", []string{"run", "--", "ftl-no-such-program-xyz"}, "not found"},
		{"missing program path", []string{"run", "--", "/nonexistent/prog"}, "not found"},
		{"no program", []string{"run"}, "missing program"},
		{"bad flag", []string{"run", "--bogus", "--", "true"}, "unknown flag"},
		{"bad name", []string{"run", "--name", "a/b", "--", "true"}, "bad name"},
		{"bad name dot", []string{"run", "--name", ".hidden", "--", "true"}, "bad name"},
		{"ft mode not available", []string{"run", "--ft", "checkpoint", "--", "true"}, "not available yet"},
		{"ps unknown", []string{"ps", "nosuch"}, "no such run"},
		{"stop unknown", []string{"stop", "nosuch"}, "no such run"},
		{"kill unknown", []string{"kill", "nosuch"}, "no such run"},
		{"stop no name", []string{"stop"}, "accepts 1 arg"},
		{"ps bad flag", []string{"ps", "--bogus"}, "unknown flag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := testenv.Ftl(t, 10*time.Second, c.args...)
			if r.Code != 2 {
				t.Errorf("ftl %v: want exit 2, got %s", c.args, r)
			}
			launcherOneLine(t, fmt.Sprint(c.args), r.Stderr)
			if !strings.Contains(r.Stderr, c.want) {
				t.Errorf("ftl %v: stderr %q does not say %q", c.args, r.Stderr, c.want)
			}
			if r.Stdout != "" {
				t.Errorf("ftl %v: stdout %q, want nothing", c.args, r.Stdout)
			}
		})
	}
	ents, _ := os.ReadDir(filepath.Join(home, "run"))
	for _, e := range ents {
		if e.Name() != ".lock" {
			t.Errorf("usage errors left %s in run/", e.Name())
		}
	}
}

// TestLauncherNoShim: a missing libftl.so is a runtime failure (exit 1)
// that names where it looked, and starts nothing.
func TestLauncherNoShim(t *testing.T) {
	home := launcherSetup(t)
	t.Setenv("FTL_SHIM", filepath.Join(home, "no-such-libftl.so"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.FtlBin(), "run", "--", "true")
	cmd.Env = os.Environ() // testenv.Env would set FTL_SHIM back
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d without a shim, want 1", code)
	}
	launcherOneLine(t, "no shim", stderr.String())
	if !strings.Contains(stderr.String(), "no-such-libftl.so") {
		t.Errorf("stderr %q does not name the path", stderr.String())
	}
	if ents, _ := os.ReadDir(filepath.Join(home, "run")); len(ents) > 1 {
		t.Errorf("run/ holds %d entries after a failed start", len(ents))
	}
}

// TestLauncherNameInUse: a second run with a live name is refused (exit 2); two
// concurrent runs with one name cannot both win.
func TestLauncherNameInUse(t *testing.T) {
	launcherSetup(t)
	testenv.Detach(t, "busy", "sleep", "60")
	r := testenv.Ftl(t, 10*time.Second, "run", "--name", "busy", "--", "true")
	if r.Code != 2 || !strings.Contains(r.Stderr, "in use") {
		t.Errorf("second run with name busy: want exit 2 'in use', got %s", r)
	}
	launcherOneLine(t, "name in use", r.Stderr)

	// Concurrent claims of one fresh name: exactly one wins.
	const n = 4
	var wg sync.WaitGroup
	results := make([]testenv.Result, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = testenv.Ftl(t, 20*time.Second, "run", "--detach", "--name", "race", "--", "sleep", "60")
		}(i)
	}
	wg.Wait()
	t.Cleanup(func() { testenv.KillRun(t, "race") })
	won := 0
	for _, r := range results {
		switch r.Code {
		case 0:
			won++
		case 2:
			if !strings.Contains(r.Stderr, "in use") {
				t.Errorf("losing claim: %s", r)
			}
		default:
			t.Errorf("concurrent claim: %s", r)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent runs named race started, want exactly 1", won, n)
	}
}

// TestLauncherDefaultNames: without --name the program's base name, made unique.
func TestLauncherDefaultNames(t *testing.T) {
	launcherSetup(t)
	var names []string
	for i := 0; i < 2; i++ {
		r := testenv.Ftl(t, 10*time.Second, "run", "--detach", "--", "/bin/sleep", "60")
		if r.Code != 0 {
			t.Fatalf("run --detach sleep: %s", r)
		}
		name := strings.TrimSpace(r.Stdout)
		t.Cleanup(func() { testenv.KillRun(t, name) })
		names = append(names, name)
	}
	if names[0] != "sleep" || names[1] != "sleep-2" {
		t.Errorf("default names %q, want sleep, sleep-2", names)
	}
	r := testenv.Ftl(t, 10*time.Second, "ps")
	for _, n := range names {
		if !strings.Contains(r.Stdout, n+" ") {
			t.Errorf("ftl ps does not list %s:\n%s", n, r.Stdout)
		}
	}
}

// TestLauncherExitStatus: foreground ftl run exits with the program's status, 128+N
// for a signal, and leaves nothing behind.
func TestLauncherExitStatus(t *testing.T) {
	launcherSetup(t)
	cases := []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"kill -TERM $$", 128 + 15},
		{"kill -KILL $$", 128 + 9},
		{"kill -SEGV $$", 128 + 11},
	}
	for i, c := range cases {
		name := "st" + strconv.Itoa(i)
		r := testenv.Ftl(t, 10*time.Second, "run", "--name", name, "--", "sh", "-c", c.script)
		if r.Code != c.want {
			t.Errorf("ftl run -- sh -c %q: want exit %d, got %s", c.script, c.want, r)
		}
		if r.Stderr != "" {
			t.Errorf("ftl run -- sh -c %q: unexpected stderr %q", c.script, r.Stderr)
		}
		testenv.NoLeftovers(t, name)
	}
}

// TestLauncherStdio: stdin, stdout and stderr pass through.
func TestLauncherStdio(t *testing.T) {
	launcherSetup(t)
	r := testenv.FtlIn(t, 10*time.Second, "hi\n", "run", "--", "cat")
	if r.Code != 0 || r.Stdout != "hi\n" {
		t.Errorf("echo hi | ftl run -- cat: %s", r)
	}
	r = testenv.Ftl(t, 10*time.Second, "run", "--", "sh", "-c", "echo out; echo err >&2")
	if r.Code != 0 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Errorf("stdout/stderr pass-through: %s", r)
	}
	big := strings.Repeat("0123456789abcdef", 1<<14) // 256 KiB through a pipe both ways
	r = testenv.FtlIn(t, 20*time.Second, big, "run", "--", "cat")
	if r.Code != 0 || r.Stdout != big {
		t.Errorf("256 KiB through cat: exit %d, %d bytes out", r.Code, len(r.Stdout))
	}
}

// TestLauncherNamespace: the program is pid 2 under an init that is pid 1 and has no
// LD_PRELOAD; the program's tree has LD_PRELOAD, FTL_REGION and FTL_NAME;
// /proc is the namespace's own.
func TestLauncherNamespace(t *testing.T) {
	home := launcherSetup(t)
	script := `echo pid=$$; sh -c 'echo child=$$'; ` +
		`echo init=$(tr '\0' ' ' </proc/1/cmdline); ` +
		`echo initpreload=$(tr '\0' '\n' </proc/1/environ | grep -c '^LD_PRELOAD='); ` +
		`echo preload=$LD_PRELOAD; echo name=$FTL_NAME; echo region=$FTL_REGION; ` +
		`echo grandchild=$(sh -c 'echo $LD_PRELOAD'); ` +
		`echo cleared=$(env -i /bin/sh -c 'echo $LD_PRELOAD $FTL_NAME'); ` +
		`echo nprocs=$(ls /proc | grep -c '^[0-9]')`
	r := testenv.Ftl(t, 10*time.Second, "run", "--name", "ns", "--", "sh", "-c", script)
	if r.Code != 0 {
		t.Fatalf("ftl run: %s", r)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = strings.TrimSpace(v)
	}
	want := map[string]string{
		"pid": "2", "child": "3", "initpreload": "0",
		"preload": testenv.ShimPath(), "grandchild": testenv.ShimPath(), "name": "ns",
		"cleared": testenv.ShimPath() + " ns", // the shim's exec wrappers put them back
		"region":  filepath.Join(home, "run", "ns", "region"),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (output %q)", k, got[k], v, r.Stdout)
		}
	}
	if !strings.Contains(got["init"], "__init") {
		t.Errorf("pid 1 is %q, want the ftl init", got["init"])
	}
	// init, sh, the $(...) subshell, ls, grep: a handful, not the host's hundreds.
	if n, _ := strconv.Atoi(got["nprocs"]); n < 2 || n > 10 {
		t.Errorf("the program sees %q processes in /proc, want its own few", got["nprocs"])
	}
}

// TestLauncherSignalForwarding: SIGTERM (and SIGINT, SIGHUP) sent to a foreground
// ftl run reach the program's handler.
func TestLauncherSignalForwarding(t *testing.T) {
	launcherSetup(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			script := fmt.Sprintf(`trap 'echo got %d; exit 7' %d; echo ready; while :; do sleep 0.05 & wait $!; done`, sig, sig)
			cmd := testenv.Command(ctx, "run", "--name", "sig", "--", "bash", "-c", script)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(out)
			if line, err := br.ReadString('\n'); err != nil || line != "ready\n" {
				t.Fatalf("program did not start: %q %v", line, err)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(br)
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 7 {
				t.Errorf("exit %d, want 7 (the handler's); stderr %q", code, stderr.String())
			}
			if want := fmt.Sprintf("got %d\n", sig); string(rest) != want {
				t.Errorf("program printed %q after the signal, want %q", rest, want)
			}
			testenv.NoLeftovers(t, "sig")
		})
	}
}

// TestLauncherDaemonize: a program that forks and exits leaves its tree running
// under the init; ftl run says so; ps lists it; stop ends it; nothing is left.
func TestLauncherDaemonize(t *testing.T) {
	launcherSetup(t)
	r := testenv.Ftl(t, 10*time.Second, "run", "--name", "dm", "--", "sh", "-c", "sleep 60 & echo started")
	t.Cleanup(func() { testenv.KillRun(t, "dm") })
	if r.Code != 0 || r.Stdout != "started\n" {
		t.Fatalf("daemonizing program: %s", r)
	}
	launcherOneLine(t, "daemonized", r.Stderr)
	if !strings.Contains(r.Stderr, "ftl stop dm") {
		t.Errorf("stderr %q does not point at ftl stop dm", r.Stderr)
	}
	info := testenv.PS(t, "dm")
	if len(info.Processes) != 1 || info.Processes[0].Comm != "sleep" || info.Processes[0].Pid != 3 || info.Processes[0].PPid != 1 {
		t.Fatalf("ps dm: want the orphaned sleep as pid 3 under the init, got %+v", info.Processes)
	}
	pids := append(info.HostPids(), info.InitPid)
	if !testenv.Alive(info.InitPid) {
		t.Errorf("init %d not alive while its tree runs", info.InitPid)
	}
	if r := testenv.Ftl(t, 20*time.Second, "stop", "dm"); r.Code != 0 {
		t.Fatalf("ftl stop dm: %s", r)
	}
	testenv.NoLeftovers(t, "dm", pids...)
	testenv.NamespaceGone(t, info.PidNS)
}

// TestLauncherDetachStopKill: detached runs log to $FTL_HOME/log/NAME.log; stop and
// kill leave no process or state; stop escalates to SIGKILL after --timeout.
func TestLauncherDetachStopKill(t *testing.T) {
	home := launcherSetup(t)

	testenv.Detach(t, "lg", "sh", "-c", "echo to-log; echo err-log >&2; exec sleep 60")
	info := testenv.PS(t, "lg")
	if info.Log != filepath.Join(home, "log", "lg.log") {
		t.Errorf("log path %q", info.Log)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(home, "log", "lg.log"))
		if string(b) == "to-log\nerr-log\n" || strings.Contains(string(b), "to-log\n") && strings.Contains(string(b), "err-log\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log holds %q", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pids := append(info.HostPids(), info.InitPid)
	if r := testenv.Ftl(t, 20*time.Second, "stop", "lg"); r.Code != 0 || r.Stderr != "" {
		t.Fatalf("ftl stop lg: %s", r)
	}
	testenv.NoLeftovers(t, "lg", pids...)
	if _, err := os.Stat(filepath.Join(home, "log", "lg.log")); err != nil {
		t.Errorf("the log must outlive the run: %v", err)
	}

	// A program that ignores SIGTERM: stop kills it after --timeout.
	testenv.Detach(t, "stubborn", "sh", "-c", "trap '' TERM; sleep 60")
	info = testenv.PS(t, "stubborn")
	pids = append(info.HostPids(), info.InitPid)
	start := time.Now()
	if r := testenv.Ftl(t, 20*time.Second, "stop", "--timeout", "300ms", "stubborn"); r.Code != 0 {
		t.Fatalf("ftl stop stubborn: %s", r)
	}
	t.Logf("stop with --timeout 300ms took %v", time.Since(start))
	testenv.NoLeftovers(t, "stubborn", pids...)
	testenv.NamespaceGone(t, info.PidNS)

	testenv.Detach(t, "victim", "sleep", "60")
	info = testenv.PS(t, "victim")
	pids = append(info.HostPids(), info.InitPid)
	if r := testenv.Ftl(t, 20*time.Second, "kill", "victim"); r.Code != 0 {
		t.Fatalf("ftl kill victim: %s", r)
	}
	testenv.NoLeftovers(t, "victim", pids...)
	testenv.NamespaceGone(t, info.PidNS)

	// A detached program that exits at once cleans up by itself.
	testenv.Detach(t, "brief", "true")
	testenv.NoLeftovers(t, "brief")
}

// TestLauncherInitKilled: SIGKILL of the init ends the whole tree; a foreground ftl
// run reports it and cleans up; for a detached run the next command removes
// the stale entry and says so once.
func TestLauncherInitKilled(t *testing.T) {
	launcherSetup(t)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := testenv.Command(ctx, "run", "--name", "fg", "--", "sleep", "60")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	info := launcherWaitPS(t, "fg", 1)
	if err := syscall.Kill(info.InitPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 128+9 {
		t.Errorf("ftl run exit %d after SIGKILL of its init, want 137", code)
	}
	launcherOneLine(t, "init killed", stderr.String())
	if !strings.Contains(stderr.String(), "killed") {
		t.Errorf("stderr %q does not report the init's death", stderr.String())
	}
	testenv.NoLeftovers(t, "fg", append(info.HostPids(), info.InitPid)...)
	testenv.NamespaceGone(t, info.PidNS)

	testenv.Detach(t, "bg", "sleep", "60")
	info = testenv.PS(t, "bg")
	if err := syscall.Kill(info.InitPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testenv.WaitGone(t, 10*time.Second, append(info.HostPids(), info.InitPid)...)
	r := testenv.Ftl(t, 10*time.Second, "ps")
	if r.Code != 0 || !strings.Contains(r.Stderr, "stale") || strings.Contains(r.Stdout, "bg ") {
		t.Errorf("ftl ps after SIGKILL of a detached init: %s", r)
	}
	launcherOneLine(t, "stale entry", r.Stderr)
	if r := testenv.Ftl(t, 10*time.Second, "ps"); r.Stderr != "" {
		t.Errorf("the stale entry was reported twice: %s", r)
	}
	testenv.NoLeftovers(t, "bg")
	testenv.NamespaceGone(t, info.PidNS)
}

// waitPS polls `ftl ps NAME --json` until the run shows n processes.
func launcherWaitPS(t *testing.T, name string, n int) testenv.PSInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := testenv.Ftl(t, 10*time.Second, "ps", name, "--json")
		if r.Code == 0 {
			info := testenv.PS(t, name)
			if len(info.Processes) >= n {
				return info
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s did not show %d processes: %s", name, n, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLauncherTerminal: on a terminal the program is the foreground process
// group, so Ctrl-C reaches it exactly once (not a second time through ftl),
// and ftl run exits with its status.
func TestLauncherTerminal(t *testing.T) {
	launcherSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	script := `n=0; trap 'n=$((n+1))' INT; echo ready; ` +
		`while [ $n = 0 ]; do sleep 0.05 & wait $!; done; ` +
		`sleep 0.3 & wait $!; echo count=$n; exit 3`
	cmd, pty, err := testenv.StartOnPTY(ctx, "run", "--name", "tty", "--", "bash", "-c", script)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer pty.Master.Close()
	for !strings.Contains(pty.Output(), "ready") {
		if ctx.Err() != nil {
			t.Fatalf("program not ready; terminal shows %q", pty.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := pty.Type("\x03"); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("exit %d, want 3; terminal shows %q", code, pty.Output())
	}
	if !strings.Contains(pty.Output(), "count=1") {
		t.Errorf("want the program to see Ctrl-C once (count=1); terminal shows %q", pty.Output())
	}
	testenv.NoLeftovers(t, "tty")
}

// TestLauncherStopForeground: `ftl stop` of a run in the foreground of
// another ftl run ends the program; that ftl run exits with its status.
func TestLauncherStopForeground(t *testing.T) {
	launcherSetup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := testenv.Command(ctx, "run", "--name", "fgs", "--", "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	info := launcherWaitPS(t, "fgs", 1)
	if r := testenv.Ftl(t, 20*time.Second, "stop", "fgs"); r.Code != 0 {
		t.Fatalf("ftl stop fgs: %s", r)
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 128+15 {
		t.Errorf("foreground ftl run exit %d after ftl stop, want 143", code)
	}
	testenv.NoLeftovers(t, "fgs", append(info.HostPids(), info.InitPid)...)
	testenv.NamespaceGone(t, info.PidNS)
}

// TestLauncherNoFdLeak: only stdin, stdout and stderr reach the program, not
// other fds ftl run inherited (they would tie the tree to the outside and
// make it impossible to checkpoint).
func TestLauncherNoFdLeak(t *testing.T) {
	home := launcherSetup(t)
	leak, err := os.Create(filepath.Join(home, "leak"))
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := testenv.Command(ctx, "run", "--", "sh", "-c", "ls /proc/$$/fd | tr '\\n' ' '")
	cmd.ExtraFiles = []*os.File{leak, leak} // fds 3 and 4 of ftl run
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ftl run: %v", err)
	}
	if string(out) != "0 1 2 " {
		t.Errorf("the program has fds %q, want only 0 1 2", out)
	}
}
