package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"
)

// DumpOptions selects what Dump checkpoints and how.
type DumpOptions struct {
	// Pid is the root of the process tree to dump.
	Pid int
	// Dir receives the image; it is created when missing and must not hold
	// an image already.
	Dir string
	// LeaveRunning resumes the tree after the dump; otherwise CRIU kills
	// it (the caller still reaps its own children).
	LeaveRunning bool
	// TCPEstablished dumps established TCP connections (TCP repair mode;
	// CRIU locks the network with iptables meanwhile and, when the tree is
	// killed, keeps it locked until the restore).
	TCPEstablished bool
	// ShellJob allows a tree attached to a terminal or a session it does
	// not lead (CRIU's --shell-job).
	ShellJob bool
	// ExtUnixSk allows unix sockets connected to peers outside the tree.
	ExtUnixSk bool
	// FileLocks dumps file locks.
	FileLocks bool
	// LogLevel is CRIU's verbosity, 0..4; 0 selects 4 (debug).
	LogLevel int
	// CriuPath overrides Find's choice of criu.
	CriuPath string
}

// Dump checkpoints the tree rooted at o.Pid into o.Dir through criu swrk.
// On success Dir holds CRIU's image, stats-dump, dump.log and MarkerFile.
// On failure Dir keeps dump.log (its error lines are in the error) but no
// marker. Errors wrap ErrUnavailable (no usable criu), ErrImageExists, or
// ErrDump.
func Dump(ctx context.Context, o DumpOptions) error {
	if o.Pid <= 0 {
		return fmt.Errorf("%w: invalid pid %d", ErrDump, o.Pid)
	}
	if o.Dir == "" {
		return fmt.Errorf("%w: no image directory", ErrDump)
	}
	path, version, err := resolve(o.CriuPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("criu image directory: %w", err)
	}
	for _, f := range []string{inventoryFile, MarkerFile} {
		if _, err := os.Stat(filepath.Join(o.Dir, f)); err == nil {
			return fmt.Errorf("%w: %s has %s", ErrImageExists, o.Dir, f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("criu image directory: %w", err)
		}
	}
	opts := &rpc.CriuOpts{
		Pid:            proto.Int32(int32(o.Pid)),
		LogLevel:       proto.Int32(logLevel(o.LogLevel)),
		LeaveRunning:   proto.Bool(o.LeaveRunning),
		TcpEstablished: proto.Bool(o.TCPEstablished),
		ShellJob:       proto.Bool(o.ShellJob),
		ExtUnixSk:      proto.Bool(o.ExtUnixSk),
		FileLocks:      proto.Bool(o.FileLocks),
	}
	// Read before the dump: a killing dump takes the process with it.
	pidNS, mountNS, err := namespaces(o.Pid)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDump, err)
	}
	if _, err := do(ctx, path, rpc.CriuReqType_DUMP, opts, o.Dir, DumpLog, nil, ErrDump); err != nil {
		return err
	}
	return writeMarker(o.Dir, Marker{
		Version:        version,
		TCPEstablished: o.TCPEstablished,
		ShellJob:       o.ShellJob,
		ExtUnixSk:      o.ExtUnixSk,
		FileLocks:      o.FileLocks,
		PidNS:          pidNS,
		MountNS:        mountNS,
	})
}

// namespaces tells whether pid is the init of its own pid namespace and
// whether it lives in a mount namespace other than ours.
func namespaces(pid int) (pidNS, mountNS bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if errors.Is(err, os.ErrNotExist) {
		return false, false, fmt.Errorf("no process %d", pid)
	}
	if err != nil {
		return false, false, fmt.Errorf("reading process %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "NSpid:"); ok {
			f := strings.Fields(rest)
			pidNS = len(f) > 1 && f[len(f)-1] == "1"
		}
	}
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		return false, false, fmt.Errorf("reading process %d: %w", pid, err)
	}
	ours, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return false, false, fmt.Errorf("reading our mount namespace: %w", err)
	}
	return pidNS, theirs != ours, nil
}

func logLevel(l int) int32 {
	if l <= 0 || l > 4 {
		return defaultLogLevel
	}
	return int32(l)
}
