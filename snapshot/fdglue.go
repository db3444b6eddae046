package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"

	"github.com/ftlinux/ftl/libos/procfs"
	"github.com/ftlinux/ftl/snapshot/files"
	"github.com/ftlinux/ftl/snapshot/image"
	"github.com/ftlinux/ftl/snapshot/netlock"
)

// FileEnv is the restorer's own stdio, used for the tree's "external"
// stdio (a terminal or pipe outside the tree).
type FileEnv struct {
	Stdin, Stdout, Stderr *os.File
}

// checkFiles refuses, before anything is frozen, a tree holding an fd kind
// that cannot be restored or a pipe or socket whose other end is outside the
// tree (files.CheckTree reads only /proc and sock_diag), or POSIX timers.
func checkFiles(roots []int) error {
	seen := map[int]bool{}
	var pids []int
	var walk func(pid int)
	walk = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		pids = append(pids, pid)
		for _, c := range children(pid) {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	if err := precheck(pids); err != nil { // tracers, seccomp, io_uring maps: precheck.go
		return err
	}
	for _, pid := range pids {
		if err := checkPosixTimers(pid); err != nil {
			return err
		}
	}
	err := files.CheckTree(pids)
	if errors.Is(err, fs.ErrNotExist) {
		// A process of the tree went away while its fds were listed.
		return fmt.Errorf("%w (%w)", ErrExited, err)
	}
	return err
}

// collectFiles records every fd of a frozen process.
func (d *dumper) collectFiles(p *dproc) error {
	nums, err := procfs.Numbers(fmt.Sprintf("/proc/%d/fd", p.pid))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("list fds: %w", ErrExited)
	}
	if err != nil {
		return fmt.Errorf("list fds: %w", err)
	}
	for _, n := range nums {
		fd, err := d.files.Add(p.pid, n)
		if err != nil {
			return err
		}
		p.fds = append(p.fds, fd)
	}
	return nil
}

// encodeFiles links pipe and socket ends across the tree and stores the
// descriptions and every process's fd list in the manifest.
func (d *dumper) encodeFiles() error {
	if err := d.files.Pair(); err != nil {
		return err
	}
	for _, p := range d.procs {
		b, err := files.EncodeFDs(p.fds)
		if err != nil {
			return err
		}
		p.img.FDs = b
	}
	b, err := files.EncodeDescs(d.files.Descs())
	if err != nil {
		return err
	}
	d.m.Files = b
	return nil
}

// FDKinds counts the image's open file descriptions by kind.
func FDKinds(m *image.Manifest) map[string]int {
	out := map[string]int{}
	if len(m.Files) == 0 {
		return out
	}
	descs, err := files.DecodeDescs(m.Files)
	if err != nil {
		out["undecodable"]++
		return out
	}
	for _, d := range descs {
		k := string(d.Kind)
		if d.External != nil {
			k = "external"
		}
		out[k]++
	}
	return out
}

// FDCount is the number of fds of a process in the image.
func FDCount(p image.Process) int {
	if len(p.FDs) == 0 {
		return 0
	}
	fds, err := files.DecodeFDs(p.FDs)
	if err != nil {
		return -1
	}
	return len(fds)
}

// tcpConns lists the tree's TCP connections (every TCP socket with a peer),
// for the network lock.
func tcpConns(descs []files.Desc) []netlock.Conn {
	var out []netlock.Conn
	for _, d := range descs {
		if d.Kind != files.KindTCP || d.Sock == nil || d.Sock.Peer == "" || d.Sock.Local == "" {
			continue
		}
		l, err1 := netip.ParseAddrPort(d.Sock.Local)
		p, err2 := netip.ParseAddrPort(d.Sock.Peer)
		if err1 == nil && err2 == nil {
			out = append(out, netlock.Conn{Local: l, Peer: p})
		}
	}
	return out
}
