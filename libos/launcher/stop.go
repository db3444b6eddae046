package launcher

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// killWait bounds how long Stop and Kill wait for the kernel to take a
// namespace down after SIGKILL of its init.
const killWait = 10 * time.Second

// Stop ends the run called name: SIGTERM to its init, which passes it to
// the program (or to every process of the namespace once the program is
// gone); after timeout, SIGKILL of the init, which makes the kernel kill every
// process of the namespace. It returns when no process of the run is left and
// run/NAME (spec and region) is gone.
func Stop(name string, timeout time.Duration) error {
	s, err := lookupStarted(name)
	if err != nil {
		return err
	}
	if err := unix.Kill(s.InitPid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop %s: signal init %d: %w", name, s.InitPid, err)
	}
	if waitGone(s, timeout) {
		return removeState(s)
	}
	return kill(s)
}

// Kill ends the run called name at once: SIGKILL of its init, so the kernel
// kills every process of the namespace. It returns when no process of the
// run is left and run/NAME is gone.
func Kill(name string) error {
	s, err := lookupStarted(name)
	if err != nil {
		return err
	}
	return kill(s)
}

func kill(s *Spec) error {
	if err := unix.Kill(s.InitPid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill %s: signal init %d: %w", s.Name, s.InitPid, err)
	}
	if !waitGone(s, killWait) {
		return fmt.Errorf("kill %s: init %d still alive after %v: %w", s.Name, s.InitPid, killWait, ErrTimeout)
	}
	return removeState(s)
}

// lookupStarted is Lookup that waits briefly for a run that is still
// starting (its init has not written its pid yet).
func lookupStarted(name string) (*Spec, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := Lookup(name)
		if err != nil {
			return nil, err
		}
		if s.InitPid != 0 {
			return s, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s is still starting: %w", name, ErrTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitGone polls until the run's init is gone (or a zombie) and no process
// of its namespace is left, or timeout passes.
func waitGone(s *Spec, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !pidAlive(s.InitPid, s.InitStart) {
			if ps, err := s.Processes(); err == nil && len(ps) == 0 {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// removeState removes run/NAME if its init did not (it was killed). The
// entry is only removed if it still belongs to this init.
func removeState(s *Spec) error {
	unlock, err := lockRuns()
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := readSpec(s.RunDir())
	if err != nil || cur.InitPid != s.InitPid || cur.InitStart != s.InitStart {
		return nil // already removed (or a new run took the name)
	}
	if err := os.RemoveAll(s.RunDir()); err != nil {
		return fmt.Errorf("remove %s: %w", s.RunDir(), err)
	}
	return nil
}
