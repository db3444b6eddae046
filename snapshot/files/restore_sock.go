package files

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func applyOpts(fd int, s *SockState, pre bool) error {
	for _, o := range s.Opts {
		// SO_REUSE* and bind-time options go before bind; the rest after.
		early := o.Level == unix.SOL_SOCKET && (o.Name == unix.SO_REUSEADDR || o.Name == unix.SO_REUSEPORT) ||
			o.Level == unix.IPPROTO_IPV6 && o.Name == unix.IPV6_V6ONLY ||
			o.Level == unix.SOL_IP
		if early != pre {
			continue
		}
		cur, err := unix.GetsockoptInt(fd, o.Level, o.Name)
		if err == nil && cur == o.Value {
			continue
		}
		if err := unix.SetsockoptInt(fd, o.Level, o.Name, o.Value); err != nil {
			return fmt.Errorf("setsockopt(%d, %d, %d): %w", o.Level, o.Name, o.Value, err)
		}
	}
	return nil
}

func (r *Restorer) unixSock(d *Desc) (*os.File, error) {
	s := d.Sock
	if s.Pair {
		return r.unixPair(d)
	}
	if s.State == tcpEstablished && s.PeerIno == 0 && s.Type != unix.SOCK_DGRAM {
		return r.unixWidowed(d)
	}
	fd, err := unix.Socket(unix.AF_UNIX, s.Type|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f, _ := newFile(fd, d)
	fail := func(err error) (*os.File, error) {
		f.Close()
		return nil, err
	}
	if err := applyOpts(fd, s, true); err != nil {
		return fail(err)
	}
	if s.Local != "" {
		if s.Local[0] != '@' {
			if fi, err := os.Lstat(s.Local); err == nil && fi.Mode()&os.ModeSocket != 0 {
				os.Remove(s.Local)
			}
		}
		if err := unix.Bind(fd, unixSockaddr(s.Local)); err != nil {
			return fail(fmt.Errorf("bind %s: %w", s.Local, err))
		}
	}
	if len(s.Queue) > 0 && s.Local != "" && s.Type == unix.SOCK_DGRAM {
		// Datagrams queued on a bound socket: re-sent from a throw-away
		// socket (their sender addresses are lost), before the socket is
		// connected (a connected socket accepts only its peer's).
		tmp, err := unix.Socket(unix.AF_UNIX, s.Type|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("socket: %w", err))
		}
		defer unix.Close(tmp)
		for _, m := range s.Queue {
			if err := unix.Sendto(tmp, m, unix.MSG_DONTWAIT, unixSockaddr(s.Local)); err != nil {
				return fail(fmt.Errorf("re-queue datagram: %w", err))
			}
		}
	}
	switch {
	case s.State == tcpListen:
		if err := unix.Listen(fd, s.Backlog); err != nil {
			return fail(fmt.Errorf("listen: %w", err))
		}
	case s.PeerID != 0:
		peer := r.descs[s.PeerID]
		if peer == nil || peer.Sock == nil || peer.Sock.Local == "" {
			return fail(fmt.Errorf("unix socket connected to unnamed or missing peer %d", s.PeerID))
		}
		if _, err := r.File(peer.ID); err != nil {
			return fail(fmt.Errorf("peer: %w", err))
		}
		if err := unix.Connect(fd, unixSockaddr(peer.Sock.Local)); err != nil {
			return fail(fmt.Errorf("connect %s: %w", peer.Sock.Local, err))
		}
	case s.PeerIno != 0 && s.Type == unix.SOCK_DGRAM && s.Peer != "":
		if err := unix.Connect(fd, unixSockaddr(s.Peer)); err != nil {
			return fail(fmt.Errorf("reconnect to %s: %w", s.Peer, err))
		}
	case s.PeerIno != 0:
		return fail(fmt.Errorf("%w: unix socket connected outside the tree", ErrExternal))
	}
	if err := applyOpts(fd, s, false); err != nil {
		return fail(err)
	}
	if err := setFlags(fd, d.Flags); err != nil {
		return fail(err)
	}
	return f, nil
}

// unixPair recreates a connected pair as socketpair(2) and refills each
// end's receive queue by sending from the other end.
func (r *Restorer) unixPair(d *Desc) (*os.File, error) {
	peer := r.descs[d.Sock.PeerID]
	if peer == nil || peer.Sock == nil {
		return nil, fmt.Errorf("unix socket %d: peer %d not in the image", d.ID, d.Sock.PeerID)
	}
	var sv [2]int
	sv, err := unix.Socketpair(unix.AF_UNIX, d.Sock.Type|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	a, _ := newFile(sv[0], d)
	b, _ := newFile(sv[1], peer)
	fail := func(err error) (*os.File, error) {
		a.Close()
		b.Close()
		return nil, err
	}
	for _, q := range []struct {
		from int
		msgs [][]byte
	}{{sv[1], d.Sock.Queue}, {sv[0], peer.Sock.Queue}} {
		for _, m := range q.msgs {
			var err error
			if d.Sock.Type == unix.SOCK_STREAM {
				err = sendAllFlags(q.from, m, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			} else {
				_, err = unix.SendmsgN(q.from, m, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			}
			if err != nil {
				return fail(fmt.Errorf("refill queue: %w", err))
			}
		}
	}
	for _, e := range []struct {
		fd   int
		desc *Desc
	}{{sv[0], d}, {sv[1], peer}} {
		if e.desc.Sock.Shutdown&2 != 0 { // SEND_SHUTDOWN
			unix.Shutdown(e.fd, unix.SHUT_WR)
		}
		if err := applyOpts(e.fd, e.desc.Sock, true); err != nil {
			return fail(err)
		}
		if err := applyOpts(e.fd, e.desc.Sock, false); err != nil {
			return fail(err)
		}
		if err := setFlags(e.fd, e.desc.Flags); err != nil {
			return fail(err)
		}
	}
	r.files[peer.ID] = b
	return a, nil
}

// unixWidowed recreates a connected stream or seqpacket socket whose peer
// has closed: a socketpair whose other end sends the queued data and is
// closed, so reads return the data, then end of file.
func (r *Restorer) unixWidowed(d *Desc) (*os.File, error) {
	sv, err := unix.Socketpair(unix.AF_UNIX, d.Sock.Type|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	defer unix.Close(sv[1])
	f, _ := newFile(sv[0], d)
	for _, m := range d.Sock.Queue {
		if err := sendAllFlags(sv[1], m, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL); err != nil {
			f.Close()
			return nil, fmt.Errorf("refill queue: %w", err)
		}
	}
	if err := applyOpts(sv[0], d.Sock, false); err != nil {
		f.Close()
		return nil, err
	}
	if err := setFlags(sv[0], d.Flags); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (r *Restorer) inetSock(d *Desc) (*os.File, error) {
	s := d.Sock
	fd, err := unix.Socket(s.Family, s.Type|unix.SOCK_CLOEXEC, s.Protocol)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f, _ := newFile(fd, d)
	fail := func(err error) (*os.File, error) {
		f.Close()
		return nil, err
	}
	if d.TCP != nil {
		if err := repairTCP(fd, d); err != nil {
			return fail(err)
		}
	} else {
		if err := applyOpts(fd, s, true); err != nil {
			return fail(err)
		}
		if s.Local != "" {
			la, err := inetSockaddr(s.Family, s.Local)
			if err != nil {
				return fail(err)
			}
			if port(la) != 0 {
				if err := unix.Bind(fd, la); err != nil {
					return fail(fmt.Errorf("bind %s: %w", s.Local, err))
				}
			}
		}
		if s.State == tcpListen {
			if err := unix.Listen(fd, s.Backlog); err != nil {
				return fail(fmt.Errorf("listen: %w", err))
			}
		}
		if d.Kind == KindUDP && s.Peer != "" {
			pa, err := inetSockaddr(s.Family, s.Peer)
			if err != nil {
				return fail(err)
			}
			if err := unix.Connect(fd, pa); err != nil {
				return fail(fmt.Errorf("connect %s: %w", s.Peer, err))
			}
		}
	}
	if err := applyOpts(fd, s, false); err != nil {
		return fail(err)
	}
	if err := setFlags(fd, d.Flags); err != nil {
		return fail(err)
	}
	return f, nil
}

func samePort(a, b string) bool {
	pa, err1 := netip.ParseAddrPort(a)
	pb, err2 := netip.ParseAddrPort(b)
	return err1 == nil && err2 == nil && pa.Port() == pb.Port()
}

func port(sa unix.Sockaddr) int {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return 0
}

// tcpConn restores an established connection. When its peer is in the
// image too (both ends of a loopback connection in the tree), both are
// rebuilt in repair mode before either leaves it, and neither sends a window
// probe: a probe to a peer not yet rebuilt would be answered with a reset.
func (r *Restorer) tcpConn(d *Desc) (*os.File, error) {
	// A listener on the same port goes first: its bind may not allow
	// reuse, while the connection's repair-mode bind always does.
	for _, l := range r.descs {
		if l.Kind == KindTCP && l.Sock != nil && l.Sock.State == tcpListen && samePort(l.Sock.Local, d.Sock.Local) {
			r.File(l.ID) // its error, if any, is returned when the engine asks for it
		}
	}
	f, err := r.inetSock(d)
	if errors.Is(err, errTupleTaken) {
		return r.deadTCP(d, err)
	}
	if err != nil {
		return nil, err
	}
	peer := r.localPeer(d)
	if peer == nil {
		if err := leaveRepair(int(f.Fd()), d, true); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	pf, err := r.inetSock(peer)
	if errors.Is(err, errTupleTaken) {
		pf, err = r.deadTCP(peer, err)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("peer connection (description %d): %w", peer.ID, err)
	}
	if err := errors.Join(leaveRepair(int(f.Fd()), d, false), leaveRepair(int(pf.Fd()), peer, false)); err != nil {
		f.Close()
		pf.Close()
		return nil, err
	}
	r.files[peer.ID] = pf
	return f, nil
}

// errTupleTaken: the connection's address pair is held by another socket
// (a lingering TIME_WAIT or FIN_WAIT of a later incarnation, or the live
// original): the image's connection cannot come back.
var errTupleTaken = errors.New("address pair in use")

// deadTCP stands in for a connection that cannot be rebuilt because its
// address pair is taken (an old image restored after its connections were
// closed): an unconnected TCP socket, so the program sees the connection
// fail (reads ENOTCONN, writes EPIPE, poll HUP) and closes it, instead of
// the whole restore failing. The loss is reported by Warnings.
func (r *Restorer) deadTCP(d *Desc, cause error) (*os.File, error) {
	fd, err := unix.Socket(d.Sock.Family, d.Sock.Type|unix.SOCK_CLOEXEC, d.Sock.Protocol)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f, _ := newFile(fd, d)
	if err := setFlags(fd, d.Flags); err != nil {
		f.Close()
		return nil, err
	}
	r.warnings = append(r.warnings, fmt.Sprintf("tcp connection %s -> %s (description %d) restored as closed: %v", d.Sock.Local, d.Sock.Peer, d.ID, cause))
	return f, nil
}

// ensureBuf raises a socket buffer (with the FORCE option: root may pass
// the sysctl maximum) so that n queued bytes fit.
func ensureBuf(fd, opt, force, n int) error {
	if n == 0 {
		return nil
	}
	want := 2*n + 64<<10 // skb overhead
	cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
	if err == nil && cur >= want {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, want); err != nil {
		return fmt.Errorf("raise socket buffer to %d: %w", want, err)
	}
	return nil
}

// sendAllWait sends b, waiting (bounded) for room when the socket is
// non-blocking.
func sendAllWait(fd int, b []byte, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for len(b) > 0 {
		n, err := unix.SendmsgN(fd, b, nil, nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			left := time.Until(deadline)
			if left <= 0 {
				return fmt.Errorf("%d bytes not sent within %v: %w", len(b), limit, err)
			}
			unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, int(left/time.Millisecond)+1)
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// localPeer returns the not yet restored description of the other end of
// an established connection, if it is in the image.
func (r *Restorer) localPeer(d *Desc) *Desc {
	for _, p := range r.descs {
		if p.TCP != nil && p.ID != d.ID && p.Sock.Local == d.Sock.Peer && p.Sock.Peer == d.Sock.Local {
			if _, done := r.files[p.ID]; !done {
				return p
			}
		}
	}
	return nil
}

// leaveRepair ends the restore of a connection rebuilt by repairTCP:
// repair mode off (with or without a window probe), the never-sent tail of
// the send queue sent normally, and CLOSE_WAIT's read side shut.
func leaveRepair(fd int, d *Desc, probe bool) error {
	t, s := d.TCP, d.Sock
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue); err != nil {
		return fmt.Errorf("TCP_REPAIR_QUEUE none: %w", err)
	}
	mode := unix.TCP_REPAIR_OFF
	if !probe {
		mode = unix.TCP_REPAIR_OFF_NO_WP
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, mode); err != nil {
		return fmt.Errorf("TCP_REPAIR off: %w", err)
	}
	// Leaving repair mode sets sk_reuse to "no": put back the socket's own
	// SO_REUSEADDR (an accepted socket inherits its listener's), or once it
	// is closed its lingering FIN_WAIT/TIME_WAIT state blocks re-binding
	// the listener's port.
	for _, o := range s.Opts {
		if o.Level == unix.SOL_SOCKET && o.Name == unix.SO_REUSEADDR {
			if err := unix.SetsockoptInt(fd, o.Level, o.Name, o.Value); err != nil {
				return fmt.Errorf("SO_REUSEADDR after repair: %w", err)
			}
		}
	}
	if t.Unsent > 0 {
		if err := sendAllWait(fd, t.SendQ[len(t.SendQ)-int(t.Unsent):], 5*time.Second); err != nil {
			return fmt.Errorf("send unsent tail: %w", err)
		}
	}
	if s.State == tcpCloseWait {
		// The peer's FIN is already acknowledged (RcvSeq counts it): the
		// connection is rebuilt as established and its read side shut, so
		// reads return the queued bytes, then end of file.
		if err := unix.Shutdown(fd, unix.SHUT_RD); err != nil {
			return fmt.Errorf("shutdown(SHUT_RD) for CLOSE_WAIT: %w", err)
		}
	}
	return nil
}

// repairTCP rebuilds an established connection in repair mode (the
// sequence of the tcpmig probe); leaveRepair finishes it.
func repairTCP(fd int, d *Desc) error {
	s, t := d.Sock, d.TCP
	setq := func(q int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
			return fmt.Errorf("TCP_REPAIR_QUEUE %d: %w", q, err)
		}
		return nil
	}
	// Options first: SO_REUSEADDR would overwrite the forced address reuse
	// that repair mode gives the bind below.
	if err := applyOpts(fd, s, true); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return fmt.Errorf("TCP_REPAIR on (needs CAP_NET_ADMIN): %w", err)
	}
	// The original's buffers may have grown by autotuning beyond what a
	// fresh socket has: make room for the queues to refill.
	if err := ensureBuf(fd, unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, len(t.SendQ)); err != nil {
		return err
	}
	if err := ensureBuf(fd, unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, len(t.RecvQ)); err != nil {
		return err
	}
	if err := setq(tcpRecvQueue); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, int(t.RcvSeq-uint32(len(t.RecvQ)))); err != nil {
		return fmt.Errorf("TCP_QUEUE_SEQ recv: %w", err)
	}
	if err := setq(tcpSendQueue); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_QUEUE_SEQ, int(t.SndSeq-uint32(len(t.SendQ)))); err != nil {
		return fmt.Errorf("TCP_QUEUE_SEQ send: %w", err)
	}
	la, err := inetSockaddr(s.Family, s.Local)
	if err != nil {
		return err
	}
	pa, err := inetSockaddr(s.Family, s.Peer)
	if err != nil {
		return err
	}
	if err := unix.Bind(fd, la); err != nil {
		return fmt.Errorf("bind %s: %w", s.Local, err)
	}
	if err := unix.Connect(fd, pa); err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			err = fmt.Errorf("%w: %w", errTupleTaken, err)
		}
		return fmt.Errorf("connect %s in repair mode: %w", s.Peer, err)
	}
	opts := []tcpRepairOpt{{unix.TCPOPT_MAXSEG, t.MSS}}
	if t.Options&tcpiOptWscale != 0 {
		opts = append(opts, tcpRepairOpt{unix.TCPOPT_WINDOW, uint32(t.SndWscale) | uint32(t.RcvWscale)<<16})
	}
	if t.Options&tcpiOptSack != 0 {
		opts = append(opts, tcpRepairOpt{unix.TCPOPT_SACK_PERMITTED, 0})
	}
	if t.Options&tcpiOptTimestamps != 0 {
		opts = append(opts, tcpRepairOpt{unix.TCPOPT_TIMESTAMP, 0})
	}
	if err := setsockoptBytes(fd, unix.SOL_TCP, unix.TCP_REPAIR_OPTIONS, unsafe.Pointer(&opts[0]), uintptr(len(opts))*unsafe.Sizeof(opts[0])); err != nil {
		return fmt.Errorf("TCP_REPAIR_OPTIONS: %w", err)
	}
	if t.HasTimestamp {
		if err := unix.SetsockoptInt(fd, unix.SOL_TCP, unix.TCP_TIMESTAMP, int(t.Timestamp)); err != nil {
			return fmt.Errorf("TCP_TIMESTAMP: %w", err)
		}
	}
	if len(t.RecvQ) > 0 {
		if err := setq(tcpRecvQueue); err != nil {
			return err
		}
		if err := sendAll(fd, t.RecvQ); err != nil {
			return fmt.Errorf("refill receive queue: %w", err)
		}
	}
	sent := len(t.SendQ) - int(t.Unsent)
	if sent > 0 {
		if err := setq(tcpSendQueue); err != nil {
			return err
		}
		if err := sendAll(fd, t.SendQ[:sent]); err != nil {
			return fmt.Errorf("refill send queue: %w", err)
		}
	}
	if t.Window != nil {
		if err := setsockoptBytes(fd, unix.SOL_TCP, unix.TCP_REPAIR_WINDOW, unsafe.Pointer(t.Window), unsafe.Sizeof(*t.Window)); err != nil {
			return fmt.Errorf("TCP_REPAIR_WINDOW: %w", err)
		}
	}
	return nil
}

func sendAll(fd int, b []byte) error { return sendAllFlags(fd, b, unix.MSG_NOSIGNAL) }

func sendAllFlags(fd int, b []byte, flags int) error {
	for len(b) > 0 {
		n, err := unix.SendmsgN(fd, b, nil, nil, flags)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		b = b[n:]
	}
	return nil
}
