package criu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"
)

// defaultLogLevel is CRIU's -v4 (debug): enough to diagnose a failure from
// the log alone. Its cost is small for ordinary trees (a few hundred lines).
const defaultLogLevel = 4

// logTailLines is how many of the log's error lines go into an error.
const logTailLines = 6

// resolve returns the criu to use: the given path (checked like Find's
// candidates) or Find's choice.
func resolve(path string) (string, string, error) {
	if path == "" {
		return Find()
	}
	v, err := probe(path)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !v.atLeast(minMajor, minMinor) {
		return "", "", fmt.Errorf("%w: criu %s at %s is older than %d.%d", ErrUnavailable, v, path, minMajor, minMinor)
	}
	return path, v.String(), nil
}

// do runs one request of type typ against a fresh criu swrk with dir as
// both images and work directory (so CRIU's log lands in dir). On failure
// it wraps failErr with criu's message and the error lines of logName.
func do(ctx context.Context, criuPath string, typ rpc.CriuReqType, opts *rpc.CriuOpts,
	dir, logName string, inherit []*os.File, failErr error) (*rpc.CriuResp, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("criu image directory: %w", err)
	}
	defer d.Close()
	// criu opens this fd through /proc/<our pid>/fd, so it must stay open
	// (d is kept alive below) for the whole call.
	opts.ImagesDirFd = proto.Int32(int32(d.Fd()))
	opts.LogFile = proto.String(logName)
	s, err := startSwrk(criuPath, inherit)
	if err != nil {
		return nil, err
	}
	resp, err := s.call(ctx, &rpc.CriuReq{Type: typ.Enum(), Opts: opts})
	runtime.KeepAlive(d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w%s", failErr, err, logTail(dir, logName))
	}
	// A finished request: criu swrk exits once its socket closes. Its exit
	// status after a reply carries no information the reply lacks.
	_ = s.close()
	if !resp.GetSuccess() {
		// cr_errmsg is CRIU's first error; without CAP_SYS_RESOURCE that is
		// always the harmless RLIMIT_NOFILE one, so the log tail says more.
		msg := resp.GetCrErrmsg()
		if msg == "" || strings.Contains(msg, "RLIMIT_NOFILE") {
			msg = "criu reported failure"
		}
		if e := resp.GetCrErrno(); e != 0 {
			msg += fmt.Sprintf(" (errno %d)", e)
		}
		return resp, fmt.Errorf("%w: %s%s", failErr, strings.TrimSpace(msg), logTail(dir, logName))
	}
	if resp.GetType() != typ {
		return resp, fmt.Errorf("%w: %w: reply of type %v to a %v request", failErr, ErrProtocol, resp.GetType(), typ)
	}
	return resp, nil
}

// logTail returns "; <log path>: <last error lines>" for an error message,
// or only the path when the log has no error line.
func logTail(dir, name string) string {
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ""
		}
		return fmt.Sprintf("; %s: %v", p, err)
	}
	var errs []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		// The missing CAP_SYS_RESOURCE makes every run log this; it is
		// harmless and would hide the real cause.
		if strings.Contains(l, "Error") && !strings.Contains(l, "RLIMIT_NOFILE") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if len(errs) == 0 {
		return "; see " + p
	}
	if len(errs) > logTailLines {
		errs = errs[len(errs)-logTailLines:]
	}
	return fmt.Sprintf("; %s: %s", p, strings.Join(errs, " | "))
}
