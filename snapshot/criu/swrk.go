package criu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// maxReply bounds one RPC reply from criu. Replies are a few hundred bytes;
// a reply that does not fit is reported (MSG_TRUNC), never cut silently.
const maxReply = 64 << 10

// stderrLimit bounds how much of criu's stderr is kept for error messages.
const stderrLimit = 4 << 10

// swrk is one `criu swrk` child process and the parent's end of the
// SOCK_SEQPACKET socketpair it serves RPC requests on.
type swrk struct {
	cmd    *exec.Cmd
	fd     int // parent's end; -1 once closed
	stderr *tailBuffer
}

// startSwrk starts `criu swrk`. extra files become fds 3, 4, ... in criu
// (for inherit_fd); the server end of the socketpair follows them.
func startSwrk(path string, extra []*os.File) (*swrk, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("criu socketpair: %w", err)
	}
	srv := os.NewFile(uintptr(fds[1]), "criu-swrk-server")
	files := append(append([]*os.File(nil), extra...), srv)
	cmd := exec.Command(path, "swrk", strconv.Itoa(3+len(extra)))
	cmd.ExtraFiles = files
	tail := &tailBuffer{limit: stderrLimit}
	cmd.Stderr = tail
	// The stderr pipe is copied by a goroutine; never wait on it for long
	// should some descendant of criu keep the pipe open.
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Start()
	// The child has its copy; ours must go so that a dead criu reads as EOF.
	srv.Close()
	if err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("%w: starting %s swrk: %w", ErrUnavailable, path, err)
	}
	return &swrk{cmd: cmd, fd: fds[0], stderr: tail}, nil
}

// call sends one request and returns criu's reply. Cancelling ctx kills
// criu, which ends the call with ctx's error.
func (s *swrk) call(ctx context.Context, req *rpc.CriuReq) (*rpc.CriuResp, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: marshal request: %w", ErrProtocol, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.cmd.Process.Kill() })
	defer stop()
	// MSG_NOSIGNAL: a criu that died must show up as EPIPE, not SIGPIPE.
	if _, err := unix.SendmsgN(s.fd, b, nil, nil, unix.MSG_NOSIGNAL); err != nil {
		return nil, s.failed(ctx, fmt.Errorf("sending request to criu: %w", err))
	}
	buf := make([]byte, maxReply)
	var n, flags int
	for {
		n, _, flags, _, err = unix.Recvmsg(s.fd, buf, nil, 0)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, s.failed(ctx, fmt.Errorf("reading criu reply: %w", err))
	}
	if n == 0 {
		return nil, s.failed(ctx, errors.New("criu exited without replying"))
	}
	if flags&unix.MSG_TRUNC != 0 {
		return nil, fmt.Errorf("%w: reply longer than %d bytes", ErrProtocol, maxReply)
	}
	resp := &rpc.CriuResp{}
	if err := proto.Unmarshal(buf[:n], resp); err != nil {
		return nil, fmt.Errorf("%w: unmarshal reply: %w", ErrProtocol, err)
	}
	return resp, nil
}

// failed explains a broken exchange: the context's error when it was
// cancelled, otherwise err with criu's exit status and stderr.
func (s *swrk) failed(ctx context.Context, err error) error {
	werr := s.close()
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("criu killed: %w", cerr)
	}
	msg := fmt.Sprintf("%v", err)
	if werr != nil {
		msg += fmt.Sprintf(" (%v)", werr)
	}
	if t := bytes.TrimSpace(s.stderr.Bytes()); len(t) > 0 {
		msg += ": " + string(t)
	}
	return fmt.Errorf("%w: %s", ErrProtocol, msg)
}

// close closes the parent's socket, which makes criu swrk exit, and reaps
// it. It returns criu's exit error, if any. It is idempotent.
func (s *swrk) close() error {
	if s.fd < 0 {
		return nil
	}
	unix.Close(s.fd)
	s.fd = -1
	return s.cmd.Wait()
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.buf...)
}
