package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"
)

// RestoreOptions selects the image Restore brings back and how.
type RestoreOptions struct {
	// Dir holds the image.
	Dir string
	// Detach leaves the restored tree to the nearest child subreaper (or
	// init) once criu exits. Without it the root of the restored tree
	// becomes a child of the calling process (CRIU's rst_sibling), which
	// must wait for it.
	Detach bool
	// TCPEstablished, ShellJob, ExtUnixSk and FileLocks are needed when
	// the dump used them; Restore also turns on each one the image's
	// marker records, so callers may leave them false.
	TCPEstablished bool
	ShellJob       bool
	ExtUnixSk      bool
	FileLocks      bool
	// Root is the directory a restored mount namespace is built on
	// (CRIU's --root). Empty selects "/" when the image's marker records
	// its own mount namespace (MountNS), and nothing otherwise.
	Root string
	// InheritFds hands open files of the caller to the restored tree in
	// place of resources outside the dumped tree, e.g. Key "pipe:[1234]"
	// for a pipe whose other end was not dumped (CRIU's --inherit-fd).
	InheritFds []InheritFd
	// LogLevel is CRIU's verbosity, 0..4; 0 selects 4 (debug).
	LogLevel int
	// CriuPath overrides Find's choice of criu.
	CriuPath string
}

// InheritFd is one file the restored tree gets instead of the resource
// Key names in the image.
type InheritFd struct {
	Key  string
	File *os.File
}

// Restore brings back the tree imaged in o.Dir, with its original pids, and
// returns the pid of its root. CRIU writes restore.log and stats-restore
// into Dir. Errors wrap ErrUnavailable (no usable criu), ErrNotImage, or
// ErrRestore.
func Restore(ctx context.Context, o RestoreOptions) (pid int, err error) {
	if _, err := os.Stat(filepath.Join(o.Dir, inventoryFile)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%w: no %s in %s", ErrNotImage, inventoryFile, o.Dir)
		}
		return 0, fmt.Errorf("criu image directory: %w", err)
	}
	m, err := ReadMarker(o.Dir)
	if err != nil && !errors.Is(err, ErrNotImage) {
		return 0, err
	}
	// Without a marker this is a plain CRIU image: the caller's options
	// stand alone.
	path, _, err := resolve(o.CriuPath)
	if err != nil {
		return 0, err
	}
	opts := &rpc.CriuOpts{
		LogLevel:       proto.Int32(logLevel(o.LogLevel)),
		RstSibling:     proto.Bool(!o.Detach),
		TcpEstablished: proto.Bool(o.TCPEstablished || m.TCPEstablished),
		ShellJob:       proto.Bool(o.ShellJob || m.ShellJob),
		ExtUnixSk:      proto.Bool(o.ExtUnixSk || m.ExtUnixSk),
		FileLocks:      proto.Bool(o.FileLocks || m.FileLocks),
	}
	root := o.Root
	if root == "" && m.MountNS {
		root = "/"
	}
	if root != "" {
		opts.Root = proto.String(root)
	}
	files := make([]*os.File, 0, len(o.InheritFds))
	for i, f := range o.InheritFds {
		if f.File == nil || f.Key == "" {
			return 0, fmt.Errorf("%w: inherit fd %d has no key or file", ErrRestore, i)
		}
		files = append(files, f.File)
		opts.InheritFd = append(opts.InheritFd, &rpc.InheritFd{
			Key: proto.String(f.Key),
			Fd:  proto.Int32(int32(3 + i)), // startSwrk's numbering
		})
	}
	resp, err := do(ctx, path, rpc.CriuReqType_RESTORE, opts, o.Dir, RestoreLog, files, ErrRestore)
	if err != nil {
		return 0, err
	}
	pid = int(resp.GetRestore().GetPid())
	if pid <= 0 {
		return 0, fmt.Errorf("%w: %w: restore reply without a pid", ErrRestore, ErrProtocol)
	}
	return pid, nil
}
