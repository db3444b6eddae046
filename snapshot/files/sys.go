package files

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel constants and structs that x/sys lacks.
const (
	kcmpFile = 0 // KCMP_FILE

	tfdIocSetTicks = 0x40085400 // _IOW('T', 0, u64)

	udiagShowName = 0x01
	udiagShowPeer = 0x04
	udiagShowRQ   = 0x10

	unixDiagName     = 0
	unixDiagPeer     = 2
	unixDiagRQLen    = 4
	unixDiagShutdown = 6

	tcpRecvQueue = 1
	tcpSendQueue = 2
	tcpNoQueue   = 0

	tcpiOptTimestamps = 1
	tcpiOptSack       = 2
	tcpiOptWscale     = 4
)

// tcpRepairOpt mirrors struct tcp_repair_opt.
type tcpRepairOpt struct {
	Code uint32
	Val  uint32
}

// kcmpFiles reports whether fd1 of pid1 and fd2 of pid2 are one open file
// description.
func kcmpFiles(pid1, fd1, pid2, fd2 int) (bool, error) {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), kcmpFile, uintptr(fd1), uintptr(fd2), 0)
	if e != 0 {
		return false, fmt.Errorf("kcmp: %w", e)
	}
	return r == 0, nil
}

func ioctlInt(fd int, req uint) (int, error) {
	return unix.IoctlGetInt(fd, req)
}

func getTCPRepairWindow(fd int) (*TCPRepairWindow, error) {
	var w TCPRepairWindow
	l := uint32(unsafe.Sizeof(w))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_TCP, unix.TCP_REPAIR_WINDOW,
		uintptr(unsafe.Pointer(&w)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return nil, e
	}
	return &w, nil
}

func setsockoptBytes(fd, level, name int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(name), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockoptU32(fd, level, name int) (uint32, error) {
	var v uint32
	l := uint32(4)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(name),
		uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return v, nil
}

// unixDiag is what sock_diag says about one unix socket.
type unixDiag struct {
	Type, State int
	Name        string
	PeerIno     uint64
	RQueue      uint32 // listen: pending connections; else bytes queued
	WQueue      uint32 // listen: backlog
	Shutdown    int
}

// diagUnix asks sock_diag about the unix socket with inode ino (in the
// caller's network namespace).
func diagUnix(ino uint64) (*unixDiag, error) {
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(s)
	req := make([]byte, 16+24)
	binary.LittleEndian.PutUint32(req[0:], uint32(len(req)))
	binary.LittleEndian.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.LittleEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.LittleEndian.PutUint32(req[8:], 1)
	b := req[16:]
	b[0] = unix.AF_UNIX
	binary.LittleEndian.PutUint32(b[4:], 0xffffffff) // states
	binary.LittleEndian.PutUint32(b[8:], uint32(ino))
	binary.LittleEndian.PutUint32(b[12:], udiagShowName|udiagShowPeer|udiagShowRQ)
	binary.LittleEndian.PutUint32(b[16:], 0xffffffff) // no cookie
	binary.LittleEndian.PutUint32(b[20:], 0xffffffff)
	if err := unix.Sendto(s, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag send: %w", err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(s, buf, 0)
	if err != nil {
		return nil, fmt.Errorf("sock_diag recv: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return nil, fmt.Errorf("sock_diag parse: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR {
			if len(m.Data) >= 4 {
				if e := int32(binary.LittleEndian.Uint32(m.Data)); e != 0 {
					return nil, fmt.Errorf("sock_diag unix inode %d: %w", ino, unix.Errno(-e))
				}
			}
			continue
		}
		if m.Header.Type != unix.SOCK_DIAG_BY_FAMILY || len(m.Data) < 16 {
			continue
		}
		d := &unixDiag{Type: int(m.Data[1]), State: int(m.Data[2])}
		attrs := m.Data[16:]
		for len(attrs) >= 4 {
			l := int(binary.LittleEndian.Uint16(attrs))
			t := binary.LittleEndian.Uint16(attrs[2:])
			if l < 4 || l > len(attrs) {
				break
			}
			v := attrs[4:l]
			switch t {
			case unixDiagName:
				d.Name = unixName(v)
			case unixDiagPeer:
				if len(v) >= 4 {
					d.PeerIno = uint64(binary.LittleEndian.Uint32(v))
				}
			case unixDiagRQLen:
				if len(v) >= 8 {
					d.RQueue = binary.LittleEndian.Uint32(v)
					d.WQueue = binary.LittleEndian.Uint32(v[4:])
				}
			case unixDiagShutdown:
				if len(v) >= 1 {
					d.Shutdown = int(v[0])
				}
			}
			al := (l + 3) &^ 3
			if al > len(attrs) {
				break
			}
			attrs = attrs[al:]
		}
		return d, nil
	}
	return nil, fmt.Errorf("sock_diag: no answer for unix inode %d", ino)
}

// unixName renders a sun_path: abstract names start with "@".
func unixName(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if v[0] == 0 {
		return "@" + string(v[1:])
	}
	for i, c := range v {
		if c == 0 {
			return string(v[:i])
		}
	}
	return string(v)
}

// unixSockaddr is the inverse of unixName.
func unixSockaddr(name string) *unix.SockaddrUnix {
	return &unix.SockaddrUnix{Name: name} // x/sys maps a leading '@' to the abstract namespace
}

// setTicks sets a timerfd's count of unread expirations.
func setTicks(fd int, ticks uint64) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), tfdIocSetTicks, uintptr(unsafe.Pointer(&ticks)))
	if e != 0 {
		return e
	}
	return nil
}
