package launcher

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ftlinux/ftl/libos/procfs"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/libos"
)

// RestoreContext is what the init hands RestoreHook.
type RestoreContext struct {
	ImageDir string // the image to restore
	Name     string // the run's name
	RunDir   string // run/NAME
	Region   string // the run's shared-memory region (already created)
	Stdin    *os.File
	Stdout   *os.File
	Stderr   *os.File
}

// RestoreHook is set by the snapshot engine (from cmd/ftl). When a run is
// started with StartOptions.RestoreFrom, the init calls it instead of
// starting the program: on the init's main OS thread, locked
// (runtime.LockOSThread, since ptrace must be done from one thread), inside
// the new pid and mount namespaces, as pid 1, with /proc already the
// namespace's own. The hook creates the processes as children of the init
// with their exact pids (clone3 set_tid), detaches from them, and returns the
// root pid (normally 2); the init then treats it as the program. The init
// starts reaping only after the hook returns, so the hook may wait for its
// own children. While the hook runs, the namespace's ns_last_pid is near
// pid_max so that threads the init's runtime creates keep clear of the
// image's pids; the hook should write the image's last pid to
// /proc/sys/kernel/ns_last_pid when done, so later forks continue from there.
var RestoreHook func(ctx RestoreContext) (rootPid int, err error)

// reportFD is the init's end of the report pipe (ExtraFiles[0]).
const reportFD = 3

// Stage2Flag marks the init's second stage: `ftl __init --stage2 RUNDIR`.
const Stage2Flag = "--stage2"

// threadPidGap is how far below pid_max the init's own threads are placed.
const threadPidGap = 1024

// RunInit is the init's main, started by Start in new pid and mount
// namespaces as `ftl __init RUNDIR`. It returns the init's exit status.
//
// The init runs in two stages so the program can be pid 2: a Go process's
// threads take pids of its namespace, so stage 1 (pid 1, its threads holding
// pids 2..N) only moves the namespace's next pid near pid_max
// (/proc/sys/kernel/ns_last_pid) and re-executes itself as stage 2. The exec
// frees the old threads' pids; stage 2's threads are allocated up high; then
// stage 2 sets ns_last_pid back to 1 and starts the program, which gets pid 2.
func RunInit(args []string) int {
	// Only stdin, stdout and stderr reach the program: fds that ftl itself
	// inherited without close-on-exec (a shell's, a test harness's) would
	// leak into the tree and tie it to processes outside it.
	unix.CloseRange(reportFD+1, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC)
	unix.CloseOnExec(reportFD) // stage 1 undoes this before its exec
	report := os.NewFile(reportFD, "report")
	say := func(format string, args ...any) {
		if _, err := fmt.Fprintf(report, format+"\n", args...); err != nil && errors.Is(err, unix.EBADF) {
			fmt.Fprintf(os.Stderr, "ftl: init: "+format+"\n", args...) // not started by ftl run
		}
	}
	if len(args) == 2 && args[0] == Stage2Flag {
		return initStage2(args[1], say)
	}
	if len(args) != 1 {
		say("error usage: ftl %s RUNDIR", InitCommand)
		return 1
	}
	runDir := args[0]
	if err := checkInit(runDir); err != nil {
		say("error %s", err)
		return 1
	}
	fail := func(err error) int {
		say("error %s", strings.ReplaceAll(err.Error(), "\n", " "))
		os.RemoveAll(runDir)
		return 1
	}
	maxb, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return fail(fmt.Errorf("read pid_max: %w", err))
	}
	pidMax, err := strconv.Atoi(strings.TrimSpace(string(maxb)))
	if err != nil {
		return fail(fmt.Errorf("parse pid_max: %w", err))
	}
	high := pidMax - threadPidGap
	if high < 1000 {
		high = pidMax / 2
	}
	if err := setLastPid(high); err != nil {
		return fail(err)
	}
	if _, err := unix.FcntlInt(reportFD, unix.F_SETFD, 0); err != nil {
		return fail(fmt.Errorf("keep report pipe: %w", err))
	}
	// /proc/self/exe: the same binary even if its file was replaced since.
	err = unix.Exec("/proc/self/exe", []string{"ftl-init", InitCommand, Stage2Flag, runDir}, os.Environ())
	return fail(fmt.Errorf("exec init stage 2: %w", err))
}

// checkInit refuses to run as an init (which removes runDir when it ends)
// unless this process is pid 1 of a pid namespace and runDir is a run
// directory under Home() with a spec in it.
func checkInit(runDir string) error {
	if os.Getpid() != 1 {
		return errors.New("the init must be pid 1 of a new pid namespace (ftl run starts it)")
	}
	name := filepath.Base(runDir)
	if ValidName(name) != nil || filepath.Clean(runDir) != RunDir(name) {
		return fmt.Errorf("%s is not a run directory under %s", runDir, filepath.Join(Home(), "run"))
	}
	if _, err := os.Stat(filepath.Join(runDir, specFile)); err != nil {
		return fmt.Errorf("no spec in %s: %w", runDir, err)
	}
	return nil
}

// setLastPid writes the pid namespace's last allocated pid (the next fork
// gets the next free pid after it).
// warmThreads makes the Go runtime create its spare OS threads now, while
// ns_last_pid is still high. The runtime parks idle threads and reuses them,
// so it rarely needs a new one in the window between setting ns_last_pid
// back to 1 and forking the program; a thread created there would take
// pid 2 for good and the program would be pid 3. Blocking syscalls in
// parallel goroutines make the scheduler hand their Ps to new threads.
func warmThreads() {
	var wg sync.WaitGroup
	for i := 0; i < 2*runtime.GOMAXPROCS(0)+2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := unix.Timespec{Nsec: 25 * 1000 * 1000}
			unix.Nanosleep(&ts, nil)
		}()
	}
	wg.Wait()
}

func setLastPid(pid int) error {
	if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid)), 0); err != nil {
		return fmt.Errorf("set ns_last_pid: %w", err)
	}
	return nil
}

func initStage2(runDir string, say func(string, ...any)) int {
	if err := checkInit(runDir); err != nil {
		say("error %s", err)
		return 1
	}
	fail := func(err error) int {
		say("error %s", strings.ReplaceAll(err.Error(), "\n", " "))
		os.RemoveAll(runDir)
		return 1
	}
	spec, err := readSpec(runDir)
	if err != nil {
		return fail(fmt.Errorf("read spec: %w", err))
	}

	// The host's view, before the namespace's own /proc covers it.
	self, err := os.Readlink("/proc/self")
	if err != nil {
		return fail(fmt.Errorf("own host pid: %w", err))
	}
	hostPid, err := strconv.Atoi(self)
	if err != nil {
		return fail(fmt.Errorf("own host pid %q: %w", self, err))
	}
	hostStart, err := startTime(hostPid)
	if err != nil {
		return fail(fmt.Errorf("own start time: %w", err))
	}
	hostProc, err := os.Open("/proc")
	if err != nil {
		return fail(fmt.Errorf("open host /proc: %w", err))
	}
	defer hostProc.Close()

	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("make / private: %w", err))
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail(fmt.Errorf("mount /proc: %w", err))
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("become subreaper: %w", err))
	}
	spec.InitPid, spec.InitStart = hostPid, hostStart
	if spec.PidNS, err = os.Readlink("/proc/self/ns/pid"); err != nil {
		return fail(fmt.Errorf("read pid namespace: %w", err))
	}
	if spec.MntNS, err = os.Readlink("/proc/self/ns/mnt"); err != nil {
		return fail(fmt.Errorf("read mount namespace: %w", err))
	}

	// Catch the forwarded signals and SIGCHLD before the program exists, so
	// none is lost; settle the runtime (a GC starts its workers) so that it
	// makes as few new threads as possible once the low pids are in use.
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, forwarded...)
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)
	runtime.GC()
	warmThreads()

	var mainPid int
	if spec.RestoredFrom != "" {
		mainPid, err = runRestoreHook(spec, runDir)
	} else {
		mainPid, err = startAsPid2(spec)
	}
	if err != nil {
		return fail(err)
	}
	spec.MainPid = mainPid
	if err := writeSpec(runDir, spec); err != nil {
		unix.Kill(-1, unix.SIGKILL)
		return fail(err)
	}
	mainHost := 0
	if ms, err := nsMembers(fmt.Sprintf("/proc/self/fd/%d", hostProc.Fd()), spec.PidNS, hostPid); err == nil {
		for _, p := range ms {
			if p.NSPid == mainPid {
				mainHost = p.HostPid
			}
		}
	}
	hostProc.Close()
	say("started %d %d", mainPid, mainHost)

	reap(mainPid, sigc, chld, say)
	os.RemoveAll(runDir)
	return 0
}

// reap reaps every child at once (on SIGCHLD, never blocking in wait4, so
// the init needs no extra thread), forwards signals, reports the program's
// end and returns when no process of the namespace is left.
func reap(mainPid int, sigc, chld chan os.Signal, say func(string, ...any)) {
	mainAlive := true
	tick := time.NewTicker(time.Second) // in case a SIGCHLD was coalesced away
	defer tick.Stop()
	for {
		// Reap everything that has ended; stop when no child is left.
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WUNTRACED, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil { // ECHILD: the namespace is empty
				return
			}
			if pid == 0 {
				break
			}
			if ws.Stopped() {
				if pid == mainPid {
					// Job control: a foreground ftl on a terminal stops too.
					say("stopped %d", int(ws.StopSignal()))
				}
				continue
			}
			if pid == mainPid && mainAlive {
				mainAlive = false
				others := liveOthers()
				if others > 0 {
					// The program daemonized: a foreground ftl may now leave,
					// and its end must no longer end the tree. PDEATHSIG is
					// per thread; this is the main thread (locked by cmd/ftl).
					unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0)
				}
				say("exited %d %d", shellStatus(ws), others)
			}
		}
		select {
		case s := <-sigc:
			sig := s.(syscall.Signal)
			if mainAlive {
				unix.Kill(mainPid, sig)
			} else {
				unix.Kill(-1, sig) // every process of the namespace but the init
			}
		case <-chld:
		case <-tick.C:
		}
	}
}

// liveOthers counts the processes of the namespace other than the init that
// are not zombies.
func liveOthers() int {
	pids, err := procfs.Numbers("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, pid := range pids {
		if pid == 1 {
			continue
		}
		if procfs.Alive("/proc", pid) {
			n++
		}
	}
	return n
}

// shellStatus is the status a shell reports for ws: the exit code, or 128+N
// when killed by signal N.
func shellStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// programEnv is the program's environment plus what the shim needs. An
// LD_PRELOAD the user set is kept, after libftl.so.
func programEnv(spec *Spec) []string {
	env := make([]string, 0, len(spec.Env)+3)
	preload := spec.Shim
	for _, kv := range spec.Env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "FTL_REGION", "FTL_NAME":
			continue
		case "LD_PRELOAD":
			for _, lib := range strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == ' ' }) {
				if lib != spec.Shim {
					preload += ":" + lib
				}
			}
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LD_PRELOAD="+preload, "FTL_REGION="+spec.Region, "FTL_NAME="+spec.Name)
}

// startAttempts bounds startAsPid2's tries.
const startAttempts = 20

// startAsPid2 starts the program so that it is pid 2 for sure: the Go
// runtime may create a thread between ns_last_pid = 1 and the fork and
// take pid 2 itself (warmThreads makes that rare, not impossible). The
// program is started stopped at its exec (PTRACE_TRACEME), before it runs
// one instruction of its own; with another pid it is killed there and the
// start is tried again, with pid 2 it is let go.
// FTL_INIT_TEST_SKIP_PID=N (tests) leaves ns_last_pid alone for the first
// N attempts, so that they miss.
func startAsPid2(spec *Spec) (int, error) {
	runtime.LockOSThread() // the tracer is the forking thread
	defer runtime.UnlockOSThread()
	skip, _ := strconv.Atoi(os.Getenv("FTL_INIT_TEST_SKIP_PID"))
	for attempt := 1; ; attempt++ {
		if attempt > skip {
			if err := setLastPid(1); err != nil {
				return 0, err
			}
		}
		pid, err := startProgram(spec, true)
		if err != nil {
			return 0, err
		}
		var ws unix.WaitStatus
		for {
			_, err = unix.Wait4(pid, &ws, unix.WALL, nil)
			if err != unix.EINTR {
				break
			}
		}
		if err != nil || !ws.Stopped() {
			return 0, fmt.Errorf("%s: not stopped at its exec (status %#x): %v", spec.Argv[0], uint32(ws), err)
		}
		if pid == 2 {
			if err := unix.PtraceDetach(pid); err != nil {
				unix.Kill(pid, unix.SIGKILL)
				return 0, fmt.Errorf("%s: let go after exec: %w", spec.Argv[0], err)
			}
			return pid, nil
		}
		unix.Kill(pid, unix.SIGKILL)
		unix.Wait4(pid, &ws, unix.WALL, nil)
		if attempt == startAttempts {
			return 0, fmt.Errorf("%s: got pid %d, not 2, %d times: %w", spec.Argv[0], pid, attempt, ErrPid2)
		}
	}
}

// startProgram forks and execs the program with the init's stdio. In the
// foreground on a terminal the program gets its own process group and the
// terminal, as a shell's job would. traced stops it at its exec.
func startProgram(spec *Spec, traced bool) (int, error) {
	sys := &syscall.SysProcAttr{Ptrace: traced}
	if spec.Terminal {
		sys.Setpgid, sys.Foreground, sys.Ctty = true, true, 0
	}
	pid, err := syscall.ForkExec(spec.Program, spec.Argv, &syscall.ProcAttr{
		Dir:   spec.Dir,
		Env:   programEnv(spec),
		Files: []uintptr{0, 1, 2},
		Sys:   sys,
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", spec.Argv[0], err)
	}
	return pid, nil
}

func runRestoreHook(spec *Spec, runDir string) (int, error) {
	if RestoreHook == nil {
		return 0, ErrNoRestore
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid, err := RestoreHook(RestoreContext{
		ImageDir: spec.RestoredFrom, Name: spec.Name, RunDir: runDir, Region: spec.Region,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	})
	if err != nil {
		unix.Kill(-1, unix.SIGKILL)
		return 0, fmt.Errorf("restore %s: %w", spec.RestoredFrom, err)
	}
	// The shim's slots still name the old namespace and start times; make
	// them name the restored processes so `ftl ps` sees their connections.
	// A failure here costs only counters, never the run.
	if _, err := libos.Rebind(spec.Region); err != nil {
		fmt.Fprintf(os.Stderr, "ftl: %s: restored, but its counters may show no connections: %v\n", spec.Name, err)
	}
	return pid, nil
}
