// Package testenv holds the helpers ftl's end-to-end tests share: where the
// binaries are, a private $FTL_HOME per test, free loopback ports, running ftl
// commands with a deadline, process checks, and minimal memcached, redis and
// HTTP text-protocol clients that return raw reply bytes (for differential
// tests that compare a wrapped server with a native one byte for byte).
//
// Invariants: every helper is bounded in time; every process a helper starts
// is killed by pid in t.Cleanup; nothing outside t.TempDir() is written.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftlinux/ftl/libos/procfs"
)

// RepoRoot is the directory holding go.mod, found upward from the working
// directory (go test runs in the package's directory).
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// FtlBin is the ftl binary under test: $FTL_BIN, else bin/ftl of the repo.
func FtlBin() string {
	if p := os.Getenv("FTL_BIN"); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	return filepath.Join(RepoRoot(), "bin", "ftl")
}

// ShimPath is the libftl.so under test: $FTL_SHIM, else bin/libftl.so.
func ShimPath() string {
	if p := os.Getenv("FTL_SHIM"); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	return filepath.Join(RepoRoot(), "bin", "libftl.so")
}

// NeedBinaries fails the test unless bin/ftl and bin/libftl.so exist (they
// are build products: `make build` makes them).
func NeedBinaries(t testing.TB) {
	t.Helper()
	for _, p := range []string{FtlBin(), ShimPath()} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing (run `make build`, or set FTL_BIN/FTL_SHIM): %v", p, err)
		}
	}
}

// NeedRoot skips the test unless it runs as root (namespaces need it).
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: ftl run creates pid and mount namespaces")
	}
}

// NeedProgram skips the test when a server program is not installed.
func NeedProgram(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (make deps installs it)", name)
	}
	return p
}

// Home gives the test its own $FTL_HOME (a temp dir) and returns it.
func Home(t testing.TB) string {
	t.Helper()
	h := filepath.Join(t.TempDir(), "ftl-home")
	if err := os.MkdirAll(h, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FTL_HOME", h)
	return h
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is "127.0.0.1:PORT".
func Addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// WaitPort waits until a TCP connect to 127.0.0.1:port succeeds.
func WaitPort(t testing.TB, port int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", Addr(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d not accepting after %v: %v", port, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Result is a finished ftl command.
type Result struct {
	Stdout, Stderr string
	Code           int // exit status; -1 if it did not exit normally
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
}

// Env is the environment for ftl commands: this process's (with the test's
// FTL_HOME) plus FTL_SHIM.
func Env() []string {
	return append(os.Environ(), "FTL_SHIM="+ShimPath())
}

// Command prepares `ftl ARGS...` bound to ctx (killed by pid when ctx ends).
func Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, FtlBin(), args...)
	cmd.Env = Env()
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Ftl runs `ftl ARGS...` with stdin from /dev/null, at most timeout long,
// and returns what it printed and its exit status.
func Ftl(t testing.TB, timeout time.Duration, args ...string) Result {
	t.Helper()
	return FtlIn(t, timeout, "", args...)
}

// FtlIn is Ftl with stdin.
func FtlIn(t testing.TB, timeout time.Duration, stdin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := Command(ctx, args...)
	// Files, not pipes: a program that daemonizes keeps its stdout open, and
	// ftl run must not wait for it.
	outf, errf := tempFile(t), tempFile(t)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = outf, errf
	err := cmd.Run()
	out, errb := readAllFrom(outf), readAllFrom(errf)
	r := Result{Stdout: string(out), Stderr: string(errb), Code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("ftl %s: timed out after %v (%v): %s", strings.Join(args, " "), timeout, err, r)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ftl %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func readAllFrom(f *os.File) []byte {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	return b
}

func tempFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.CreateTemp("", "ftl-test-out-*")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(f.Name()) // the open file stays usable
	t.Cleanup(func() { f.Close() })
	return f
}

// Detach starts `ftl run --detach --name NAME -- ARGV...`, fails the test
// unless it prints NAME and exits 0, and kills the run at cleanup.
func Detach(t testing.TB, name string, argv ...string) {
	t.Helper()
	r := Ftl(t, 20*time.Second, append([]string{"run", "--detach", "--name", name, "--"}, argv...)...)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != name {
		t.Fatalf("ftl run --detach %s: %s", name, r)
	}
	t.Cleanup(func() { KillRun(t, name) })
}

// KillRun ends run NAME if it still exists (cleanup; errors are ignored).
func KillRun(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	Command(ctx, "kill", name).Run()
}

// Alive reports whether host pid runs (a zombie does not count).
func Alive(pid int) bool { return procfs.Alive("/proc", pid) }

// WaitGone waits until none of the host pids is alive.
func WaitGone(t testing.TB, timeout time.Duration, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, p := range pids {
			if Alive(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v still alive after %v", alive, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RunDir is $FTL_HOME/run/NAME of the test's home.
func RunDir(name string) string { return filepath.Join(os.Getenv("FTL_HOME"), "run", name) }

// NoLeftovers fails the test if any of the host pids is alive, any process
// still carries the run's region or run directory (see TreePids), or
// run/NAME (spec and region) still exists.
func NoLeftovers(t testing.TB, name string, pids ...int) {
	t.Helper()
	WaitGone(t, 10*time.Second, pids...)
	dir := RunDir(name)
	if left := TreePids(filepath.Join(dir, "region"), dir); len(left) > 0 {
		WaitGone(t, 5*time.Second, left...)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		ents, _ := os.ReadDir(dir)
		t.Fatalf("%s left behind (%d entries, stat error %v)", dir, len(ents), err)
	}
}

// Native starts a server directly (not under ftl) and kills it by pid at
// cleanup. Its output goes to the test log on failure.
func Native(t testing.TB, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", argv[0], err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its own process group
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		if t.Failed() && out.Len() > 0 {
			t.Logf("native %s output:\n%s", argv[0], out.String())
		}
	})
	return cmd
}

// PSProcess is one process in `ftl ps --json`.
type PSProcess struct {
	HostPid int    `json:"host_pid"`
	Pid     int    `json:"pid"`
	PPid    int    `json:"ppid"`
	Comm    string `json:"comm"`
}

// PSConn is one socket in `ftl ps --json`.
type PSConn struct {
	Pid      int    `json:"pid"`
	FD       int    `json:"fd"`
	Kind     string `json:"kind"`
	State    string `json:"state"`
	Local    string `json:"local"`
	Peer     string `json:"peer"`
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
}

// PSInfo is one run in `ftl ps --json`.
type PSInfo struct {
	Name      string      `json:"name"`
	Argv      []string    `json:"argv"`
	Mode      string      `json:"mode"`
	InitPid   int         `json:"init_pid"`
	PidNS     string      `json:"pid_ns"`
	Region    string      `json:"region"`
	Log       string      `json:"log"`
	Processes []PSProcess `json:"processes"`
	Stats     *struct {
		BytesIn     int64    `json:"bytes_in"`
		BytesOut    int64    `json:"bytes_out"`
		Established int      `json:"established"`
		Listening   int      `json:"listening"`
		Conns       []PSConn `json:"connections"`
	} `json:"stats"`
	StatsError string `json:"stats_error"`
}

// HostPids lists the host pids of the run's processes.
func (p PSInfo) HostPids() []int {
	var out []int
	for _, pr := range p.Processes {
		out = append(out, pr.HostPid)
	}
	return out
}

// PS runs `ftl ps NAME --json` and decodes it; the test fails unless it
// exits 0.
func PS(t testing.TB, name string) PSInfo {
	t.Helper()
	r := Ftl(t, 10*time.Second, "ps", name, "--json")
	if r.Code != 0 {
		t.Fatalf("ftl ps %s --json: %s", name, r)
	}
	var info PSInfo
	if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
		t.Fatalf("ftl ps %s --json: %v in %q", name, err, r.Stdout)
	}
	return info
}

// TreePids returns the host pids of live processes that belong to a run by
// what the launcher gives them: FTL_REGION=region in their environment (the
// program's tree) or runDir on their command line (the init).
func TreePids(region, runDir string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !Alive(pid) {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(env, []byte("FTL_REGION="+region+"\x00")) ||
			bytes.Contains(cmdline, []byte("\x00"+runDir+"\x00")) {
			out = append(out, pid)
		}
	}
	return out
}

// NamespaceGone fails the test unless, within a few seconds, no live
// process is in the pid namespace pidNS (as `ftl ps --json` gives it, e.g.
// "pid:[4026532291]"): the namespace, and the mounts of the run's mount
// namespace with it, are then gone.
func NamespaceGone(t testing.TB, pidNS string) {
	t.Helper()
	if pidNS == "" {
		t.Fatal("NamespaceGone: empty namespace")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var in []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && ns == pidNS && Alive(pid) {
				in = append(in, pid)
			}
		}
		if len(in) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes %v are still in %s", in, pidNS)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nginxConf is a config for one nginx instance: master and 2 workers, in the
// foreground, every file in dir (%[1]s), listening on 127.0.0.1:%[2]d,
// serving www (%[3]s), with extra http-level directives (%[4]s).
const nginxConf = `daemon off;
master_process on;
worker_processes 2;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
  access_log %[1]s/access.log;
  sendfile on;
  default_type application/octet-stream;
  types { text/plain txt; text/html html; }
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
%[4]s
  server {
    listen 127.0.0.1:%[2]d;
    root %[3]s;
  }
}
`

// NginxArgs writes an nginx config (master + 2 workers on 127.0.0.1:port,
// serving www, with extra http-level directives such as keepalive settings)
// into a temporary directory and returns the command line that runs it.
func NginxArgs(t testing.TB, port int, www, extraHTTP string) []string {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, port, www, extraHTTP)), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"nginx", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", conf}
}
