package launcher

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary stands in for ftl: Start re-executes os.Executable() as
// `__init RUNDIR`, and TestMain then runs the init, with a fake RestoreHook.

func init() {
	if len(os.Args) > 1 && os.Args[1] == InitCommand {
		runtime.LockOSThread() // as cmd/ftl does: the hook runs on the main thread
	}
}

func TestMain(m *testing.M) {
	RestoreHook = fakeRestore // as cmd/ftl/restore.go does, in ftl and in its init
	if len(os.Args) > 1 && os.Args[1] == InitCommand {
		os.Exit(RunInit(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// fakeRestore checks what the hook is promised and "restores" by starting a
// shell that prints what it was given and exits 5.
func fakeRestore(ctx RestoreContext) (int, error) {
	if os.Getpid() != 1 {
		return 0, errors.New("hook not run as pid 1")
	}
	if tid := syscall.Gettid(); tid != 1 {
		return 0, errors.New("hook not run on the init's main thread")
	}
	if _, err := os.Stat(ctx.Region); err != nil {
		return 0, err
	}
	if ctx.Name == "" || ctx.RunDir == "" || ctx.Stdout == nil {
		return 0, errors.New("incomplete RestoreContext")
	}
	if ctx.ImageDir == "fail" {
		return 0, errors.New("image is bad")
	}
	// A real hook uses clone3 with set_tid; this one moves the next pid.
	if err := setLastPid(1); err != nil {
		return 0, err
	}
	return syscall.ForkExec("/bin/sh", []string{"sh", "-c", "echo restored $0 as $$; exit 5", ctx.ImageDir},
		&syscall.ProcAttr{Files: []uintptr{0, ctx.Stdout.Fd(), 2}})
}

// setup gives the test its own FTL_HOME and a do-nothing libftl.so.
func setup(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: namespaces")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("needs gcc to build a stand-in libftl.so")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "empty.c")
	os.WriteFile(src, []byte("int ftl_test_empty;\n"), 0o644)
	so := filepath.Join(dir, "libftl.so")
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-o", so, src).CombinedOutput(); err != nil {
		t.Fatalf("build stand-in shim: %v %s", err, out)
	}
	t.Setenv("FTL_SHIM", so)
	home := filepath.Join(dir, "home")
	t.Setenv("FTL_HOME", home)
	return home
}

func tempOut(t *testing.T) *os.File {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"a", "mc", "memcached-2", "A.b_c-9", strings.Repeat("x", 63)} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "_a", "a/b", "a b", "ä", strings.Repeat("x", 64), ".."} {
		if err := ValidName(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("ValidName(%q) = %v, want ErrBadName", bad, err)
		}
	}
	for in, want := range map[string]string{"/usr/bin/memcached": "memcached", "./a b": "a-b", "..": "run", "redis-server": "redis-server"} {
		if got := baseName(in); got != want || ValidName(got) != nil {
			t.Errorf("baseName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestProgramEnv(t *testing.T) {
	s := &Spec{Name: "n", Shim: "/s/libftl.so", Region: "/r/region",
		Env: []string{"A=1", "LD_PRELOAD=/x.so /s/libftl.so", "FTL_NAME=old", "FTL_REGION=old"}}
	got := strings.Join(programEnv(s), ",")
	want := "A=1,LD_PRELOAD=/s/libftl.so:/x.so,FTL_REGION=/r/region,FTL_NAME=n"
	if got != want {
		t.Errorf("programEnv = %q, want %q", got, want)
	}
}

func TestPidAlive(t *testing.T) {
	start, err := startTime(os.Getpid())
	if err != nil || start == 0 {
		t.Fatalf("startTime(self) = %d, %v", start, err)
	}
	if pidAlive(os.Getpid(), start+1) {
		t.Error("pidAlive with a wrong start time says alive")
	}
	if !pidAlive(os.Getpid(), start) {
		t.Error("pidAlive(self) says dead")
	}
}

// TestStartWaitAPI drives the API as cmd/ftl and the snapshot engine do.
func TestStartWaitAPI(t *testing.T) {
	setup(t)
	out := tempOut(t)
	r, err := Start(StartOptions{Argv: []string{"sh", "-c", "echo $$ $FTL_NAME; exit 4"}, Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	if r.Spec.Name != "sh" || r.MainPid != 2 || r.MainHostPid <= 0 || r.Spec.InitPid <= 0 {
		t.Errorf("run %+v, spec %+v", r, r.Spec)
	}
	status, err := r.Wait()
	if err != nil || status != 4 {
		t.Errorf("Wait = %d, %v; want 4", status, err)
	}
	b, _ := os.ReadFile(out.Name())
	if string(b) != "2 sh\n" {
		t.Errorf("program printed %q", b)
	}
	if _, err := os.Stat(RunDir("sh")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir left: %v", err)
	}
	if _, err := Lookup("sh"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup after the end: %v", err)
	}
}

func TestDetachedListStop(t *testing.T) {
	setup(t)
	r, err := Start(StartOptions{Name: "sl", Argv: []string{"sleep", "60"}, Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Start(StartOptions{Name: "sl", Argv: []string{"true"}, Detach: true}); !errors.Is(err, ErrNameInUse) {
		t.Errorf("second Start with name sl: %v", err)
	}
	specs, err := List()
	if err != nil || len(specs) != 1 || specs[0].Name != "sl" || specs[0].PidNS == "" || specs[0].Log == "" {
		t.Fatalf("List = %+v, %v", specs, err)
	}
	procs, err := specs[0].Processes()
	if err != nil || len(procs) != 1 || procs[0].NSPid != 2 || procs[0].PPid != 1 || procs[0].Comm != "sleep" || procs[0].HostPid != r.MainHostPid {
		t.Fatalf("Processes = %+v, %v", procs, err)
	}
	if err := Stop("sl", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if pidAlive(procs[0].HostPid, 0) || pidAlive(specs[0].InitPid, specs[0].InitStart) {
		t.Error("processes alive after Stop")
	}
	if err := Stop("sl", time.Second); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stop again: %v", err)
	}
}

func TestStaleEntry(t *testing.T) {
	setup(t)
	dir := RunDir("old")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// An init pid that cannot be alive with this start time.
	writeSpec(dir, &Spec{Name: "old", InitPid: os.Getpid(), InitStart: 1})
	if _, err := Lookup("old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup of a stale entry: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale entry not removed: %v", err)
	}
}

func TestRestoreHook(t *testing.T) {
	setup(t)
	out := tempOut(t)
	r, err := Start(StartOptions{Name: "rs", RestoreFrom: "/images/rs/1", Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	if r.Spec.RestoredFrom != "/images/rs/1" || r.MainPid != 2 {
		t.Errorf("restored run: %+v", r.Spec)
	}
	status, err := r.Wait()
	if err != nil || status != 5 {
		t.Errorf("Wait = %d, %v; want 5", status, err)
	}
	b, _ := os.ReadFile(out.Name())
	if string(b) != "restored /images/rs/1 as 2\n" {
		t.Errorf("restored program printed %q", b)
	}

	_, err = Start(StartOptions{Name: "rf", RestoreFrom: "fail"})
	if !errors.Is(err, ErrExec) || !strings.Contains(err.Error(), "image is bad") {
		t.Errorf("failing hook: %v", err)
	}
	if _, err := os.Stat(RunDir("rf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed restore left its run dir: %v", err)
	}
}

// TestPid2Verified: when the first starts miss pid 2 (forced with
// FTL_INIT_TEST_SKIP_PID), the init kills each miss at its exec, before it
// runs, and tries again until the program is pid 2; past the attempts it
// gives up with ErrPid2 and nothing ran.
func TestPid2Verified(t *testing.T) {
	setup(t)
	marks := filepath.Join(t.TempDir(), "ran")
	argv := []string{"sh", "-c", "echo $$ >> " + marks}
	t.Setenv("FTL_INIT_TEST_SKIP_PID", "3")
	r, err := Start(StartOptions{Name: "p2", Argv: argv, Stdout: tempOut(t)})
	if err != nil {
		t.Fatal(err)
	}
	if status, err := r.Wait(); err != nil || status != 0 {
		t.Fatalf("Wait = %d, %v", status, err)
	}
	if b, _ := os.ReadFile(marks); r.MainPid != 2 || string(b) != "2\n" {
		t.Fatalf("main pid %d; the program ran as %q, want once as pid 2", r.MainPid, b)
	}
	os.Remove(marks)
	t.Setenv("FTL_INIT_TEST_SKIP_PID", strconv.Itoa(startAttempts+5))
	_, err = Start(StartOptions{Name: "p2b", Argv: argv, Stdout: tempOut(t)})
	if !errors.Is(err, ErrExec) || !strings.Contains(err.Error(), ErrPid2.Error()) {
		t.Fatalf("Start with every attempt missing pid 2: %v", err)
	}
	if _, err := os.Stat(marks); !errors.Is(err, os.ErrNotExist) {
		b, _ := os.ReadFile(marks)
		t.Fatalf("a missed start ran: %q", b)
	}
}
