package files

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TCP states (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpClose       = 7
	tcpCloseWait   = 8
	tcpListen      = 10
)

var tcpStateNames = map[int]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
}

// savedOpts are the integer socket options recorded and re-applied.
var savedOpts = []struct{ level, name int }{
	{unix.SOL_SOCKET, unix.SO_REUSEADDR},
	{unix.SOL_SOCKET, unix.SO_REUSEPORT},
	{unix.SOL_SOCKET, unix.SO_KEEPALIVE},
	{unix.SOL_SOCKET, unix.SO_BROADCAST},
	{unix.SOL_SOCKET, unix.SO_PASSCRED},
	{unix.SOL_SOCKET, unix.SO_PEEK_OFF}, // unix only; -1 = off
	{unix.SOL_SOCKET, unix.SO_OOBINLINE},
	{unix.SOL_SOCKET, unix.SO_PRIORITY},
	{unix.SOL_SOCKET, unix.SO_MARK},
	{unix.SOL_TCP, unix.TCP_NODELAY},
	{unix.SOL_TCP, unix.TCP_KEEPIDLE},
	{unix.SOL_TCP, unix.TCP_KEEPINTVL},
	{unix.SOL_TCP, unix.TCP_KEEPCNT},
	{unix.SOL_TCP, unix.TCP_DEFER_ACCEPT},
	{unix.SOL_TCP, unix.TCP_QUICKACK},
	{unix.IPPROTO_IPV6, unix.IPV6_V6ONLY},
	{unix.SOL_IP, unix.IP_FREEBIND},
	{unix.SOL_IP, unix.IP_TRANSPARENT},
}

func sockOpts(fd, family, typ int) []SockOpt {
	var out []SockOpt
	for _, o := range savedOpts {
		if o.level == unix.SOL_TCP && !(typ == unix.SOCK_STREAM && family != unix.AF_UNIX) {
			continue
		}
		if o.level == unix.IPPROTO_IPV6 && family != unix.AF_INET6 {
			continue
		}
		if o.level == unix.SOL_IP && family == unix.AF_UNIX {
			continue
		}
		if family == unix.AF_UNIX && o.name != unix.SO_PASSCRED && o.name != unix.SO_PEEK_OFF ||
			family != unix.AF_UNIX && o.name == unix.SO_PEEK_OFF {
			continue
		}
		v, err := unix.GetsockoptInt(fd, o.level, o.name)
		if err != nil {
			continue
		}
		out = append(out, SockOpt{Level: o.level, Name: o.name, Value: v})
	}
	return out
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrUnix:
		return a.Name
	}
	return ""
}

func inetSockaddr(family int, s string) (unix.Sockaddr, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", s, err)
	}
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}, nil
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, nil
}

func sockCommon(h *held) (*SockState, error) {
	fd := h.local
	s := &SockState{Ino: h.ino}
	var err error
	if s.Family, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
		return nil, fmt.Errorf("SO_DOMAIN: %w", err)
	}
	s.Type, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	s.Protocol, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if sa, err := unix.Getsockname(fd); err == nil {
		s.Local = sockaddrString(sa)
	}
	if sa, err := unix.Getpeername(fd); err == nil {
		s.Peer = sockaddrString(sa)
	}
	s.Opts = sockOpts(fd, s.Family, s.Type)
	h.desc.Sock = s
	return s, nil
}

// dumpUnix records a unix socket: name, peer inode (sock_diag), state and
// its receive queue (peeked with SO_PEEK_OFF so nothing is consumed).
func dumpUnix(h *held) error {
	s, err := sockCommon(h)
	if err != nil {
		return err
	}
	dg, err := diagUnix(h.ino)
	if err != nil {
		return err
	}
	s.State = dg.State
	s.PeerIno = dg.PeerIno
	s.Shutdown = dg.Shutdown
	if dg.Name != "" {
		s.Local = dg.Name
	}
	if s.Local == "@" {
		s.Local = "" // autobind of an unbound socket shows an empty abstract name
	}
	// A name bound relative to the program's directory is made absolute
	// with its current directory (right unless it changed since the bind).
	s.Local = absUnixName(h.uses[0].pid, s.Local)
	s.Peer = absUnixName(h.uses[0].pid, s.Peer)
	if s.State == tcpListen {
		s.Backlog = int(dg.WQueue)
		return nil
	}
	if s.Type == unix.SOCK_STREAM && s.State != tcpEstablished && s.Local == "" {
		return nil // fresh unconnected socket
	}
	q, err := peekQueue(h.local, s.Type != unix.SOCK_STREAM)
	if err != nil {
		return err
	}
	s.Queue = q
	return nil
}

func absUnixName(pid int, name string) string {
	if name == "" || name[0] == '/' || name[0] == '@' {
		return name
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return name
	}
	return filepath.Join(cwd, name)
}

// maxQueuedMessages bounds the peek loop of one socket queue.
const maxQueuedMessages = 1 << 16

// peekQueue reads a socket's receive queue without consuming it: with
// SO_PEEK_OFF set, each MSG_PEEK advances past what it returned.
func peekQueue(fd int, msgs bool) ([][]byte, error) {
	n, err := ioctlInt(fd, unix.SIOCINQ)
	if err == nil && n == 0 && !msgs {
		return nil, nil
	}
	old, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	if err != nil {
		return nil, fmt.Errorf("SO_PEEK_OFF: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, fmt.Errorf("SO_PEEK_OFF: %w", err)
	}
	// Put back the program's own peek offset (-1 = off); SockState.Opts
	// records it for the restore.
	defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, old)
	var out [][]byte
	total := 0
	buf := make([]byte, 256<<10)
	oob := make([]byte, unix.CmsgSpace(64*4))
	var stream []byte
	for i := 0; ; i++ {
		if i > maxQueuedMessages {
			return nil, fmt.Errorf("%w: more than %d queued messages (or an empty datagram the peek offset cannot pass)", ErrUnsupported, maxQueuedMessages)
		}
		m, oobn, rflags, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EAGAIN || err == unix.EWOULDBLOCK {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("peek queue: %w", err)
		}
		if oobn > 0 {
			if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for i := range cms {
					if fds, err := unix.ParseUnixRights(&cms[i]); err == nil {
						for _, f := range fds {
							unix.Close(f)
						}
						return nil, fmt.Errorf("%w: queued message carries file descriptors (SCM_RIGHTS)", ErrUnsupported)
					}
				}
			}
		}
		if rflags&unix.MSG_TRUNC != 0 {
			return nil, fmt.Errorf("%w: queued datagram larger than %d bytes", ErrUnsupported, len(buf))
		}
		if m == 0 && !msgs {
			break
		}
		total += m
		if total > MaxQueueContent {
			return nil, fmt.Errorf("%w: socket queue over %d bytes", ErrTooLarge, MaxQueueContent)
		}
		if msgs {
			out = append(out, append([]byte(nil), buf[:m]...))
		} else {
			stream = append(stream, buf[:m]...)
		}
	}
	if len(stream) > 0 {
		out = append(out, stream)
	}
	return out, nil
}

// dumpUDP records a UDP socket's addresses and options (queued datagrams
// are dropped).
func dumpUDP(h *held) error {
	_, err := sockCommon(h)
	return err
}

// tcpInfoRaw returns struct tcp_info's head: state, options, wscales,
// and tcpi_sacked (the backlog for a listener).
func tcpInfoRaw(fd int) (state, options, sndWscale, rcvWscale uint8, sacked uint32, err error) {
	var b [232]byte
	l := uint32(len(b))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, 0, 0, 0, 0, fmt.Errorf("TCP_INFO: %w", e)
	}
	sacked = *(*uint32)(unsafe.Pointer(&b[28]))
	return b[0], b[5], b[6] & 0xf, b[6] >> 4, sacked, nil
}

// tcpListenPending is a listener's count of connections not yet accepted
// (tcpi_unacked holds sk_ack_backlog for a listener).
func tcpListenPending(fd int) int {
	var b [232]byte
	l := uint32(len(b))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0
	}
	return int(*(*uint32)(unsafe.Pointer(&b[24])))
}

// dumpTCP records a TCP socket: listening (address, backlog, options) or
// established (TCP_REPAIR state and queues, as in the tcpmig probe).
func dumpTCP(h *held, keepRepair bool) error {
	s, err := sockCommon(h)
	if err != nil {
		return err
	}
	fd := h.local
	state, options, sw, rw, sacked, err := tcpInfoRaw(fd)
	if err != nil {
		return err
	}
	s.State = int(state)
	switch s.State {
	case tcpListen:
		s.Backlog = int(sacked)
		return nil
	case tcpClose:
		return nil // never connected, or reset: recreated unconnected (bound if it was)
	case tcpEstablished, tcpCloseWait:
	default:
		return fmt.Errorf("%w: TCP state %s", ErrUnsupported, tcpStateNames[s.State])
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return fmt.Errorf("TCP_REPAIR on (needs CAP_NET_ADMIN): %w", err)
	}
	h.repair = true
	t := &TCPState{Options: options, SndWscale: sw, RcvWscale: rw}
	outq, err1 := ioctlInt(fd, unix.SIOCOUTQ)
	unsent, err2 := ioctlInt(fd, unix.SIOCOUTQNSD)
	inq, err3 := ioctlInt(fd, unix.SIOCINQ)
	if err1 != nil || err2 != nil || err3 != nil {
		return fmt.Errorf("queue sizes: %v %v %v", err1, err2, err3)
	}
	if outq+inq > MaxQueueContent {
		return fmt.Errorf("%w: TCP queues of %d bytes", ErrTooLarge, outq+inq)
	}
	t.Unsent = uint32(unsent)
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue); err != nil {
		return fmt.Errorf("TCP_REPAIR_QUEUE send: %w", err)
	}
	if t.SndSeq, err = getsockoptU32(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ); err != nil {
		return fmt.Errorf("TCP_QUEUE_SEQ send: %w", err)
	}
	if outq > 0 {
		if t.SendQ, err = peekTCP(fd, outq); err != nil {
			return fmt.Errorf("send queue: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpRecvQueue); err != nil {
		return fmt.Errorf("TCP_REPAIR_QUEUE recv: %w", err)
	}
	if t.RcvSeq, err = getsockoptU32(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ); err != nil {
		return fmt.Errorf("TCP_QUEUE_SEQ recv: %w", err)
	}
	if inq > 0 {
		if t.RecvQ, err = peekTCP(fd, inq); err != nil {
			return fmt.Errorf("recv queue: %w", err)
		}
	}
	unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue)
	mss, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_MAXSEG)
	if err != nil {
		return fmt.Errorf("TCP_MAXSEG: %w", err)
	}
	t.MSS = uint32(mss)
	if ts, err := getsockoptU32(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP); err == nil {
		t.Timestamp, t.HasTimestamp = ts, true
	}
	if w, err := getTCPRepairWindow(fd); err == nil {
		t.Window = w
	}
	h.desc.TCP = t
	if !keepRepair {
		leaveDumpRepair(h)
	}
	return nil
}

// leaveDumpRepair takes a dumped socket that goes on running out of repair
// mode, without a window probe. Leaving repair mode also clears sk_reuse:
// the socket's SO_REUSEADDR (recorded before repair mode) is put back, or
// the program could not re-bind its listener's port while this connection
// lingers after close.
func leaveDumpRepair(h *held) {
	unix.SetsockoptInt(h.local, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP)
	h.repair = false
	if h.desc.Sock == nil {
		return
	}
	for _, o := range h.desc.Sock.Opts {
		if o.Level == unix.SOL_SOCKET && o.Name == unix.SO_REUSEADDR {
			unix.SetsockoptInt(h.local, o.Level, o.Name, o.Value)
		}
	}
}

// peekTCP reads n bytes of the repair-selected queue without consuming it.
func peekTCP(fd, n int) ([]byte, error) {
	buf := make([]byte, n)
	m, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return nil, err
	}
	if m != n {
		return nil, fmt.Errorf("peeked %d of %d bytes", m, n)
	}
	return buf, nil
}
