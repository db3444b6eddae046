package files

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/libos/procfs"
)

// Check walks the fds of process pid and refuses, up front, every fd whose
// kind (or state) cannot be restored. The error wraps ErrUnsupported (or
// ErrExternal) and names the process, fd and kind of each such fd.
// Whether a pipe's or socket's peer is inside the tree is only known once
// every process is seen: Dumper.Pair checks that.
func Check(pid int) error {
	nums, err := procfs.Numbers(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return fmt.Errorf("process %d: list fds: %w", pid, err)
	}
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("process %d: pidfd_open: %w", pid, err)
	}
	defer unix.Close(pfd)
	var errs []error
	for _, n := range nums {
		if err := checkFD(pid, pfd, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkFD(pid, pfd, fd int) error {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
	if err != nil {
		return nil // closed meanwhile
	}
	local, err := unix.PidfdGetfd(pfd, fd, 0)
	if err != nil {
		return nil // closed meanwhile
	}
	defer unix.Close(local)
	var st unix.Stat_t
	if err := unix.Fstat(local, &st); err != nil {
		return fmt.Errorf("process %d fd %d: fstat: %w", pid, fd, err)
	}
	kind, err := classify(local, link, &st)
	if err != nil {
		return fdError(pid, fd, kind, ErrUnsupported, "%s: %v", link, err)
	}
	if why := refused(kind); why != "" {
		if kind == KindTTY {
			if fd <= 2 {
				return nil
			}
			return fdError(pid, fd, kind, ErrExternal, "%s: a terminal is restored only as fd 0, 1 or 2", link)
		}
		return fdError(pid, fd, kind, ErrUnsupported, "%s: %s", link, why)
	}
	switch kind {
	case KindTCP:
		state, _, _, _, _, err := tcpInfoRaw(local)
		if err != nil {
			return fmt.Errorf("process %d fd %d: %w", pid, fd, err)
		}
		switch int(state) {
		case tcpListen, tcpEstablished, tcpCloseWait, tcpClose:
		default:
			return fdError(pid, fd, kind, ErrUnsupported, "TCP state %s", tcpStateNames[int(state)])
		}
	case KindFile, KindMemfd:
		if st.Nlink == 0 && st.Size > MaxFileContent {
			return fdError(pid, fd, kind, ErrTooLarge, "%s: deleted-but-open file of %d bytes (limit %d)", link, st.Size, MaxFileContent)
		}
	}
	return nil
}

// CheckTree is Check for every process of a (running) tree, plus the peer
// rules Pair applies after the freeze: a pipe needs both a read and a write
// end in the tree, a unix socket its peer (a datagram socket may instead be
// connected to a named socket outside), unless every fd using it is 0, 1 or
// 2 (external stdio). It reads only /proc and sock_diag: nothing is frozen
// and no state is touched, so a tree that is refused is refused up front.
func CheckTree(pids []int) error {
	type end struct {
		pid, fd int
		read    bool
	}
	pipes := map[uint64][]end{}
	socks := map[uint64][]end{}
	var errs []error
	for _, pid := range pids {
		if err := Check(pid); err != nil {
			errs = append(errs, err)
		}
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue // exited: the dump will say so
		}
		for _, e := range ents {
			fd, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
			if err != nil {
				continue
			}
			var ino uint64
			switch {
			case strings.HasPrefix(link, "pipe:["):
				fmt.Sscanf(link, "pipe:[%d]", &ino)
				fi, err := readFdinfo(pid, fd)
				if err != nil {
					continue
				}
				pipes[ino] = append(pipes[ino], end{pid, fd, fi.Flags&unix.O_ACCMODE != unix.O_WRONLY})
			case strings.HasPrefix(link, "socket:["):
				fmt.Sscanf(link, "socket:[%d]", &ino)
				socks[ino] = append(socks[ino], end{pid, fd, false})
			}
		}
	}
	outside := func(ends []end, kind Kind, what string) {
		for _, u := range ends {
			if u.fd > 2 {
				errs = append(errs, fdError(u.pid, u.fd, kind, ErrExternal, "%s whose other end is outside the tree (allowed only as fd 0, 1, 2)", what))
				return
			}
		}
	}
	for _, ends := range pipes {
		r, w := false, false
		for _, u := range ends {
			r, w = r || u.read, w || !u.read
		}
		if !r || !w {
			outside(ends, KindPipe, "pipe")
		}
	}
	for ino, ends := range socks {
		dg, err := diagUnix(ino)
		if err != nil || dg.PeerIno == 0 || dg.State == tcpListen {
			continue // not a unix socket, or not connected
		}
		if _, ok := socks[dg.PeerIno]; ok {
			continue
		}
		if dg.Type == unix.SOCK_DGRAM {
			if pd, err := diagUnix(dg.PeerIno); err == nil && pd.Name != "" {
				continue // reconnected by path at restore
			}
		}
		outside(ends, KindUnix, "unix socket")
	}
	return errors.Join(errs...)
}
