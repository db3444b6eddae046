package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ftlinux/ftl/libos/launcher"
)

// Modes is the one table of ftl modes the bench knows: how each is started,
// or why it cannot be measured yet. An unavailable mode is reported as such
// in every output and never estimated.
var Modes = []struct {
	Name      string
	Available bool
	How       string
}{
	{"native", true, "the server started directly (taskset to the server core)"},
	{"none", true, "ftl run --ft none --detach --name bench-APP-PID-ROUND -- SERVER..., stopped with ftl stop"},
	{"checkpoint", false, "not available yet: ftl has no checkpoint (epoch replication) mode"},
	{"log", false, "not available yet: ftl has no log (input logging) mode"},
}

func modeInfo(name string) (available bool, how string, known bool) {
	for _, m := range Modes {
		if m.Name == name {
			return m.Available, m.How, true
		}
	}
	return false, "", false
}

const (
	startTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
)

// server is one running server instance, started natively or under ftl.
type server struct {
	mode string
	port int
	dir  string
	pids []int // host pids whose CPU time counts as the server's

	cmd  *exec.Cmd     // native
	done chan struct{} // native: closed when cmd has been waited for
	werr error

	name   string // ftl
	ftlBin string
}

// startServer starts argv (the server on port, files in dir) in mode and
// waits until it accepts connections.
func startServer(ctx context.Context, env *runEnv, mode, name string, argv []string, port int, dir string) (*server, error) {
	s := &server{mode: mode, port: port, dir: dir}
	var err error
	switch mode {
	case "native":
		err = s.startNative(env, argv)
	case "none":
		err = s.startFTL(ctx, env, name, argv)
	default:
		err = fmt.Errorf("%w: %s", ErrUnavailable, mode)
	}
	if err != nil {
		return nil, err
	}
	if err := waitListening(port, startTimeout, s.alive); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, s.logTail())
	}
	pids, err := serverTree(port)
	if err != nil {
		s.stop()
		return nil, err
	}
	s.pids = pids
	return s, nil
}

func (s *server) logPath() string { return filepath.Join(s.dir, "server.log") }

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath())
	b = bytes.TrimSpace(b)
	if len(b) > 400 {
		b = b[len(b)-400:]
	}
	if len(b) == 0 {
		return "empty"
	}
	return strings.ReplaceAll(string(b), "\n", " | ")
}

func (s *server) startNative(env *runEnv, argv []string) error {
	argv = env.pinServer(argv)
	log, err := os.Create(s.logPath())
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer log.Close()
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = log, log
	// The server dies with the bench, whatever happens to the bench. It
	// runs in its own session, as a daemon or `ftl run --detach` does: with
	// the kernel's scheduler autogroups (one per session) a native server
	// left in the bench's session would get a different share of its CPU
	// than the server under ftl, and the comparison would measure that.
	// setsid also makes a new process group, so kill(-pid) still works.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrServer, argv[0], err)
	}
	s.done = make(chan struct{})
	go func() { s.werr = s.cmd.Wait(); close(s.done) }()
	return nil
}

func (s *server) startFTL(ctx context.Context, env *runEnv, name string, argv []string) error {
	s.name, s.ftlBin = name, env.FTLBin
	full := append([]string{env.FTLBin, "run", "--ft", "none", "--detach", "--name", name, "--"}, argv...)
	full = env.pinServer(full)
	cctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, full[0], full[1:]...)
	cmd.Dir = s.dir
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(s.logPath(), out, 0o644)
	if err != nil {
		return fmt.Errorf("%w: %s: %w: %s", ErrServer, strings.Join(full, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// alive reports an error once a native server has exited.
func (s *server) alive() error {
	if s.done == nil {
		return nil
	}
	select {
	case <-s.done:
		return fmt.Errorf("%w: server exited: %v", ErrServer, s.werr)
	default:
		return nil
	}
}

// stop ends the server and waits until its port is free. Native servers
// get SIGTERM, then SIGKILL; ftl runs are stopped with `ftl stop NAME`.
func (s *server) stop() error {
	var err error
	switch {
	case s.cmd != nil:
		// Only our own child, by pid (and its process group: nginx workers).
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
			err = fmt.Errorf("%w: server pid %d ignored SIGTERM for %v", ErrServer, s.cmd.Process.Pid, stopTimeout)
		}
	case s.name != "":
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		out, cerr := exec.CommandContext(ctx, s.ftlBin, "stop", s.name).CombinedOutput()
		if cerr != nil {
			err = fmt.Errorf("%w: ftl stop %s: %w: %s", ErrServer, s.name, cerr, bytes.TrimSpace(out))
			// Do not leave the run behind: kill the tree found at start
			// (the init ftl started for us and its children), by pid.
			for _, pid := range s.pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		// ftl keeps a detached run's log after it ends; this one is ours.
		_ = os.Remove(filepath.Join(launcher.Home(), "log", s.name+".log"))
	}
	// Wait for the listener to go so the next round's port scan is clean.
	deadline := time.Now().Add(stopTimeout)
	for time.Now().Before(deadline) {
		if _, lerr := listenerInode(s.port); lerr != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.Join(err, fmt.Errorf("%w: port %d still listening %v after stop", ErrServer, s.port, stopTimeout))
}
