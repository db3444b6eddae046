package launcher

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftlinux/ftl/libos"
	"golang.org/x/sys/unix"
)

// StartOptions says what to run and how.
type StartOptions struct {
	Name   string   // "" picks the program's base name, made unique
	Argv   []string // program and arguments; with RestoreFrom only recorded (for ps)
	Env    []string // the program's environment; nil means os.Environ()
	Dir    string   // working directory; "" means the current one
	Detach bool     // run in the background, output to LogPath(Name)
	Mode   string   // fault-tolerance mode; "" means ModeNone
	Stdin  *os.File // foreground stdio; nil means os.Stdin, os.Stdout, os.Stderr
	Stdout *os.File
	Stderr *os.File
	// RestoreFrom, when set, makes the init call RestoreHook with this image
	// directory instead of starting Argv.
	RestoreFrom string
}

// Run is a started run.
type Run struct {
	Spec        *Spec
	MainPid     int // the program's pid inside the namespace (normally 2)
	MainHostPid int // the program's pid on the host

	// Left lists the processes of the run still alive when the program
	// exited (it daemonized); set by Wait. The init keeps running them.
	Left []Process

	cmd     *exec.Cmd
	reports chan string    // lines from the init; closed at EOF
	sigc    chan os.Signal // signals to forward (foreground)
	stdin   *os.File
	tty     bool
}

// Start claims the name, creates the run directory and region, starts the
// init and waits for its "started" report (or the reason the program could
// not start). A detached run is on its own when Start returns; a foreground
// run must be waited for with Wait.
func Start(opts StartOptions) (*Run, error) {
	if opts.Mode == "" {
		opts.Mode = ModeNone
	}
	if opts.Mode != ModeNone {
		return nil, fmt.Errorf("%w: --ft %s (available: %s)", ErrBadMode, opts.Mode, ModeNone)
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	if opts.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("current directory: %w", err)
		}
		opts.Dir = wd
	}
	var program string
	if opts.RestoreFrom == "" {
		if len(opts.Argv) == 0 || opts.Argv[0] == "" {
			return nil, fmt.Errorf("%w: no program given", ErrNoProgram)
		}
		p, err := lookPath(opts.Argv[0], opts.Dir, opts.Env)
		if err != nil {
			return nil, err
		}
		program = p
	} else if RestoreHook == nil {
		return nil, ErrNoRestore
	}
	shim, err := ShimPath()
	if err != nil {
		return nil, err
	}
	if opts.Name != "" {
		if err := ValidName(opts.Name); err != nil {
			return nil, err
		}
	}
	if opts.Stdin == nil {
		opts.Stdin = os.Stdin
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}

	ownStart, err := startTime(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("own start time: %w", err)
	}
	spec := &Spec{
		Argv: opts.Argv, Program: program, Env: opts.Env, Dir: opts.Dir,
		Mode: opts.Mode, Detached: opts.Detach, OwnerPid: os.Getpid(), OwnerStart: ownStart,
		Created: time.Now().UTC(), Shim: shim, RestoredFrom: opts.RestoreFrom,
		Terminal: !opts.Detach && opts.RestoreFrom == "" && ownsTerminal(opts.Stdin),
	}
	base := opts.Name
	if base == "" {
		if len(opts.Argv) > 0 {
			base = baseName(opts.Argv[0])
		} else {
			base = baseName(opts.RestoreFrom)
		}
	}
	if err := claim(spec, base, opts.Name == ""); err != nil {
		return nil, err
	}
	dir := spec.RunDir()
	r, err := startInit(spec, opts)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

// claim creates run/NAME for spec under the run lock, choosing NAME from
// base (base, base-2, base-3, ... when unique is set) and writes the spec.
func claim(spec *Spec, base string, unique bool) error {
	unlock, err := lockRuns()
	if err != nil {
		return err
	}
	defer unlock()
	for i := 1; i < 10000; i++ {
		name := base
		if i > 1 {
			name = base + "-" + strconv.Itoa(i)
		}
		_, err := checkEntry(name) // removes a stale entry
		if err == nil {
			if !unique {
				return fmt.Errorf("%w: %s (stop it with `ftl stop %s`, or pick another --name)", ErrNameInUse, name, name)
			}
			continue
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		dir := RunDir(name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) && unique {
				continue
			}
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%w: %s", ErrNameInUse, name)
			}
			return fmt.Errorf("create %s: %w", dir, err)
		}
		spec.Name = name
		spec.Region = filepath.Join(dir, "region")
		if spec.Detached {
			spec.Log = LogPath(name)
		}
		if err := writeSpec(dir, spec); err != nil {
			os.RemoveAll(dir)
			return err
		}
		return nil
	}
	return fmt.Errorf("%w: no free name for %s", ErrNameInUse, base)
}

// lookPath finds the program as a shell would with the program's PATH.
func lookPath(arg0, dir string, env []string) (string, error) {
	check := func(p string) error {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return fs.ErrPermission
		}
		return nil
	}
	if strings.Contains(arg0, "/") {
		p := arg0
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := check(p); err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrNoProgram, arg0, err)
		}
		return p, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, arg0)
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if check(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s (not in PATH)", ErrNoProgram, arg0)
}

// initEnv is ftl's own environment without what would make the init load
// the shim or look like a wrapped program.
func initEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "LD_PRELOAD" || k == "FTL_REGION" || k == "FTL_NAME" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// ownsTerminal reports whether f is a terminal whose foreground process
// group is this process's: only then may the program take the terminal (a
// `ftl run ... &` in a shell must not steal it from the shell).
func ownsTerminal(f *os.File) bool {
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

// startInit creates the region (and log), starts the init in new pid and
// mount namespaces and waits for its first report.
func startInit(spec *Spec, opts StartOptions) (*Run, error) {
	if err := libos.CreateRegion(spec.Region); err != nil {
		return nil, err
	}
	// /proc/self/exe: this very binary, even if its file is being replaced.
	cmd := exec.Command("/proc/self/exe", InitCommand, spec.RunDir())
	cmd.Args[0] = "ftl-init"
	cmd.Env = initEnv()
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS}
	r := &Run{Spec: spec, cmd: cmd, reports: make(chan string, 8)}
	if spec.Detached {
		if err := os.MkdirAll(filepath.Dir(spec.Log), 0o755); err != nil {
			return nil, fmt.Errorf("create log directory: %w", err)
		}
		logf, err := os.OpenFile(spec.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
		defer logf.Close()
		null, err := os.Open(os.DevNull)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		defer null.Close()
		cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logf, logf
		cmd.SysProcAttr.Setsid = true
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
		// If ftl dies, the init hears SIGTERM and passes it on, as a
		// program loses its shell.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
		r.stdin = opts.Stdin
		r.tty = spec.Terminal
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("report pipe: %w", err)
	}
	if !spec.Detached {
		// Catch the signals to forward before the program can print that it
		// is ready: Wait forwards what arrives from here on.
		r.sigc = make(chan os.Signal, 8)
		signal.Notify(r.sigc, forwarded...)
	}
	cmd.ExtraFiles = []*os.File{pw}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		r.stopSignals()
		return nil, fmt.Errorf("start init: %w", err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			r.reports <- sc.Text()
		}
		pr.Close()
		close(r.reports)
	}()

	line, ok := <-r.reports
	switch {
	case ok && strings.HasPrefix(line, "started "):
		f := strings.Fields(line)
		if len(f) == 3 {
			r.MainPid, _ = strconv.Atoi(f[1])
			r.MainHostPid, _ = strconv.Atoi(f[2])
		}
		if s, err := readSpec(spec.RunDir()); err == nil {
			r.Spec = s
		} else {
			r.Spec.InitPid = cmd.Process.Pid
		}
	case ok && strings.HasPrefix(line, "error "):
		r.stopSignals()
		cmd.Wait()
		return nil, fmt.Errorf("%w: %s", ErrExec, strings.TrimPrefix(line, "error "))
	default:
		r.stopSignals()
		err := cmd.Wait()
		return nil, fmt.Errorf("%w before the program started: %v", ErrInitDied, err)
	}
	if spec.Detached {
		pr.Close() // nobody listens to a detached init: its reports get EPIPE
		cmd.Process.Release()
		r.cmd = nil
	}
	return r, nil
}

// forwarded are the signals a foreground ftl passes to the init, which
// passes them to the program.
var forwarded = []os.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT}

// Wait waits for the program of a foreground run to end and returns its
// status as a shell gives it (128+N when killed by signal N). Signals sent
// to this process meanwhile are forwarded to the program through the init.
// When other processes of the run are still alive (the program daemonized),
// Wait returns at once with them in r.Left and the init keeps running; else
// it returns once the init has cleaned up. If the init dies first (SIGKILL),
// the run's state is removed and the error wraps ErrInitDied; status is then
// 128+N for the signal that killed the init.
func (r *Run) Wait() (status int, err error) {
	if r.cmd == nil {
		return 0, fmt.Errorf("wait for %s: detached runs cannot be waited for", r.Spec.Name)
	}
	defer r.stopSignals()
	defer r.takeBackTerminal()
	sigc := r.sigc
	pid := r.cmd.Process.Pid
	for {
		select {
		case s := <-sigc:
			unix.Kill(pid, s.(syscall.Signal))
		case line, ok := <-r.reports:
			if !ok {
				return r.initGone()
			}
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "stopped" {
				r.jobStopped()
				continue
			}
			if len(f) != 3 || f[0] != "exited" {
				continue
			}
			status, _ = strconv.Atoi(f[1])
			remaining, _ := strconv.Atoi(f[2])
			if remaining > 0 && !r.initEndsWithin(leftGrace) {
				procs, _ := r.Spec.Processes()
				if len(procs) > 0 {
					r.Left = procs
					r.cmd.Process.Release()
					return status, nil
				}
			}
			// Nothing else runs: wait for the init's clean-up.
			r.cmd.Wait()
			return status, nil
		}
	}
}

// jobStopped does what a shell's job does when the program is stopped on a
// terminal (Ctrl-Z): ftl takes the terminal back and stops itself, so the
// shell sees its job stopped; when the shell continues it (fg or bg), ftl
// gives the terminal back to the program if ftl is in the foreground, and
// continues the program's process group.
func (r *Run) jobStopped() {
	if !r.tty || r.MainHostPid <= 0 {
		return
	}
	// Stop only while a shell can continue us: not when the terminal is gone
	// or we were orphaned (as the kernel does not stop orphaned groups).
	if r.takeBackTerminal() != nil || os.Getppid() == 1 {
		unix.Kill(-r.MainHostPid, unix.SIGCONT)
		return
	}
	// Stop this very thread: a SIGSTOP sent to the process could be taken
	// by another thread while this one runs on and continues the program.
	runtime.LockOSThread()
	unix.Tgkill(unix.Getpid(), unix.Gettid(), unix.SIGSTOP)
	runtime.UnlockOSThread()
	// Continued by the shell.
	fd := int(r.stdin.Fd())
	if pgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err == nil && pgrp == unix.Getpgrp() {
		unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, r.MainHostPid)
	}
	unix.Kill(-r.MainHostPid, unix.SIGCONT)
}

// leftGrace is how long Wait lets processes that outlive the program (a
// shell's last child, say) end on their own before reporting them as left
// running.
const leftGrace = 300 * time.Millisecond

// initEndsWithin reports whether the init closes its report pipe (it exits)
// within d.
func (r *Run) initEndsWithin(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case _, ok := <-r.reports:
			if !ok {
				return true
			}
		case <-t.C:
			return false
		}
	}
}

// initGone handles the init's end without an "exited" report.
func (r *Run) initGone() (int, error) {
	err := r.cmd.Wait()
	os.RemoveAll(r.Spec.RunDir())
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), fmt.Errorf("%w: the init of %s (pid %d) was killed by signal %d (%s); the program went with it; state removed",
				ErrInitDied, r.Spec.Name, r.cmd.Process.Pid, int(ws.Signal()), ws.Signal())
		}
	}
	return 1, fmt.Errorf("%w: the init of %s (pid %d) ended unexpectedly (%v); state removed", ErrInitDied, r.Spec.Name, r.cmd.Process.Pid, err)
}

// takeBackTerminal makes this process's group the terminal's foreground
// group again after the init handed the terminal to the program.
func (r *Run) takeBackTerminal() error {
	if !r.tty {
		return nil
	}
	signal.Ignore(unix.SIGTTOU)
	defer signal.Reset(unix.SIGTTOU)
	return unix.IoctlSetPointerInt(int(r.stdin.Fd()), unix.TIOCSPGRP, unix.Getpgrp())
}

func (r *Run) stopSignals() {
	if r.sigc != nil {
		signal.Stop(r.sigc)
	}
}

// Signal sends sig to the run's init, which forwards it to the program.
func (r *Run) Signal(sig syscall.Signal) error {
	if err := unix.Kill(r.Spec.InitPid, sig); err != nil {
		return fmt.Errorf("signal init of %s: %w", r.Spec.Name, err)
	}
	return nil
}
