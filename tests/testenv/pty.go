package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// PTY is a pseudo-terminal whose slave side is a command's controlling
// terminal; the test plays the user at the master side.
type PTY struct {
	Master *os.File
	mu     sync.Mutex
	out    []byte
	done   chan struct{}
}

// Output is everything the command wrote to the terminal so far.
func (p *PTY) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.out)
}

// Type writes keys to the terminal (for example "\x03" for Ctrl-C).
func (p *PTY) Type(keys string) error {
	_, err := p.Master.Write([]byte(keys))
	return err
}

// StartOnPTY starts `ftl ARGS...` as a session leader with a new
// pseudo-terminal as its controlling terminal and stdio, as a shell in a
// terminal window would. The master is closed when the test ends.
func StartOnPTY(ctx context.Context, args ...string) (*exec.Cmd, *PTY, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open pty slave: %w", err)
	}
	defer s.Close()
	cmd := Command(ctx, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		m.Close()
		return nil, nil, err
	}
	p := &PTY{Master: m, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			p.mu.Lock()
			p.out = append(p.out, buf[:n]...)
			p.mu.Unlock()
			if err != nil { // EIO once every slave fd is closed
				return
			}
		}
	}()
	return cmd, p, nil
}
