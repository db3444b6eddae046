package libos

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ftlinux/ftl/libos/procfs"

	"golang.org/x/sys/unix"
)

// Layout constants, mirrored from shim/ftl_region.h (region_test.go checks them).
const (
	regionMagic   = 0x314e4745524c5446 // "FTLREGN1"
	RegionVersion = 1                  // FTL_REGION_VERSION
	headerSize    = 4096
	maxProcs      = 256
	maxConns      = 4096
	maxCalls      = 128
	addrMax       = 112
	commLen       = 16
	eventsSize    = 4 << 20
	commitSize    = 4096
)

// ftl_proc.state
const (
	procFree     = 0
	procClaiming = 1
	procLive     = 2
	procExited   = 3
)

// ftl_conn.slot_state
const (
	slotFree     = 0
	slotClaiming = 1
	slotUsed     = 2
)

// ftl_conn.state
const (
	connOpen        = 0
	connListen      = 1
	connConnecting  = 2
	connEstablished = 3
	connClosed      = 4
)

// ftl_conn.flags
const connfPair = 1 // made by socketpair; bytes not in the proc totals

// rawHeader mirrors struct ftl_header.
type rawHeader struct {
	Magic          uint64
	Version        uint32
	HeaderSize     uint32
	RegionSize     uint64
	MaxProcs       uint32
	ProcSize       uint32
	MaxConns       uint32
	ConnSize       uint32
	MaxCalls       uint32
	NCalls         uint32
	ProcsOff       uint64
	ConnsOff       uint64
	EventsOff      uint64
	EventsSize     uint64
	CommitOff      uint64
	CommitSize     uint64
	CreatedNs      uint64
	ProcsDropped   uint64
	ConnsDropped   uint64
	ReusedBytesIn  uint64
	ReusedBytesOut uint64
	Reserved       [headerSize - 136]byte
}

// rawProc mirrors struct ftl_proc.
type rawProc struct {
	State      uint32
	Gen        uint32
	Pid        int32
	PPid       int32
	StartTicks uint64
	StartNs    uint64
	ExitNs     uint64
	PidNS      uint64
	Comm       [commLen]byte
	BytesIn    uint64
	BytesOut   uint64
	Reserved   [6]uint64
	Calls      [maxCalls]uint64
}

// rawConn mirrors struct ftl_conn.
type rawConn struct {
	Seq       uint32
	SlotState uint32
	Owner     uint32
	OwnerGen  uint32
	Pid       int32
	FD        int32
	Refs      uint32
	State     uint32
	Family    uint16
	Type      uint16
	Protocol  int32
	Flags     uint32
	Reserved  uint32
	LocalLen  uint32
	PeerLen   uint32
	OpenedNs  uint64
	BytesIn   uint64
	BytesOut  uint64
	Local     [addrMax]byte
	Peer      [addrMax]byte
}

const (
	procsOff  = headerSize
	connsOff  = procsOff + maxProcs*unsafe.Sizeof(rawProc{})
	eventsOff = connsOff + maxConns*unsafe.Sizeof(rawConn{})
	commitOff = eventsOff + eventsSize
	// RegionSize is the size of a region file in bytes.
	RegionSize = commitOff + commitSize
)

// Errors of this package.
var (
	ErrNotRegion = errors.New("not an ftl region (bad magic)")
	ErrVersion   = errors.New("ftl region version not supported")
	ErrLayout    = errors.New("ftl region layout differs from this build")
	ErrTruncated = errors.New("ftl region file too small")
)

// Proc is one process image seen by the shim (an exec starts a new one).
type Proc struct {
	Pid, PPid int // Pid as getpid() returned it: inside the program's pid namespace
	Comm      string
	Started   time.Time
	Exited    bool
	Calls     map[string]uint64 // per interposed call (see Calls), zero counts left out
	BytesIn   uint64            // socket payload bytes the process read
	BytesOut  uint64            // socket payload bytes the process wrote
}

// Conn is one socket of one live process; fds dup'ed from one socket share
// one Conn (FD is the first of them).
type Conn struct {
	Pid, FD int
	Kind    string // tcp, tcp6, udp, udp6, unix, unix-dgram, unix-seqpacket, raw, raw6, netlink, packet, afN
	State   string // open, listen, connecting, established, closed
	Local   string // "127.0.0.1:11211", "[::1]:80", "/run/x.sock", "@abstract", "" when unknown/unnamed
	Peer    string
	// Internal: one end of a socketpair, so both ends are inside the
	// program (nginx's master/worker channels). Not a connection to a
	// client; its bytes are in BytesIn/BytesOut here but not in Proc's.
	Internal bool
	BytesIn  uint64
	BytesOut uint64
	Opened   time.Time
}

// Stats are the region-wide counters.
type Stats struct {
	ProcsDropped uint64 // processes that found no free proc slot (not counted at all)
	ConnsDropped uint64 // sockets that found no free entry (their bytes still count per process)
	// Bytes of exited processes whose slots new processes took over: add
	// them to the sum over Procs() for a run's total.
	ReusedBytesIn, ReusedBytesOut uint64
}

// Region is a read-only view of a region file.
type Region struct {
	data []byte
	hdr  *rawHeader
}

func expectedHeader() rawHeader {
	return rawHeader{
		Magic:      regionMagic,
		Version:    RegionVersion,
		HeaderSize: headerSize,
		RegionSize: uint64(RegionSize),
		MaxProcs:   maxProcs,
		ProcSize:   uint32(unsafe.Sizeof(rawProc{})),
		MaxConns:   maxConns,
		ConnSize:   uint32(unsafe.Sizeof(rawConn{})),
		MaxCalls:   maxCalls,
		NCalls:     uint32(len(Calls)),
		ProcsOff:   procsOff,
		ConnsOff:   uint64(connsOff),
		EventsOff:  uint64(eventsOff),
		EventsSize: eventsSize,
		CommitOff:  uint64(commitOff),
		CommitSize: commitSize,
	}
}

// CreateRegion creates the region file at path (mode 0644), sizes it and
// writes the header. It fails with an error wrapping os.ErrExist if the
// file exists.
func CreateRegion(path string) (err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create region: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("create region: %w", cerr)
		}
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	if err := f.Chmod(0o644); err != nil { // umask may have taken bits away
		return fmt.Errorf("create region: %w", err)
	}
	if err := f.Truncate(int64(RegionSize)); err != nil {
		return fmt.Errorf("create region: %w", err)
	}
	h := expectedHeader()
	h.CreatedNs = uint64(time.Now().UnixNano())
	b := unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h))
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("create region: %w", err)
	}
	return nil
}

// OpenRegion maps the region file at path read-only and validates it.
func OpenRegion(path string) (*Region, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open region: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open region: %w", err)
	}
	if st.Size() < headerSize {
		return nil, fmt.Errorf("open region %s: %d bytes: %w", path, st.Size(), ErrTruncated)
	}
	var h rawHeader
	if _, err := f.ReadAt(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h)), 0); err != nil {
		return nil, fmt.Errorf("open region: %w", err)
	}
	if err := checkHeader(&h, st.Size()); err != nil {
		return nil, fmt.Errorf("open region %s: %w", path, err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(RegionSize), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("open region: mmap: %w", err)
	}
	return &Region{data: data, hdr: (*rawHeader)(unsafe.Pointer(&data[0]))}, nil
}

func checkHeader(h *rawHeader, size int64) error {
	want := expectedHeader()
	switch {
	case h.Magic != want.Magic:
		return ErrNotRegion
	case h.Version != want.Version:
		return fmt.Errorf("version %d, want %d: %w", h.Version, want.Version, ErrVersion)
	case h.HeaderSize != want.HeaderSize || h.RegionSize != want.RegionSize ||
		h.MaxProcs != want.MaxProcs || h.ProcSize != want.ProcSize ||
		h.MaxConns != want.MaxConns || h.ConnSize != want.ConnSize ||
		h.MaxCalls != want.MaxCalls || h.ProcsOff != want.ProcsOff || h.ConnsOff != want.ConnsOff ||
		h.EventsOff != want.EventsOff || h.EventsSize != want.EventsSize ||
		h.CommitOff != want.CommitOff || h.CommitSize != want.CommitSize:
		return ErrLayout
	case size < int64(RegionSize):
		return fmt.Errorf("%d bytes, want %d: %w", size, RegionSize, ErrTruncated)
	}
	return nil
}

// Close unmaps the region; Procs, Conns and Stats return nothing afterwards.
func (r *Region) Close() error {
	if r.data == nil {
		return nil
	}
	err := unix.Munmap(r.data)
	r.data, r.hdr = nil, nil
	if err != nil {
		return fmt.Errorf("close region: %w", err)
	}
	return nil
}

// Stats returns the region-wide counters.
func (r *Region) Stats() Stats {
	if r.hdr == nil {
		return Stats{}
	}
	return Stats{
		ProcsDropped:   atomic.LoadUint64(&r.hdr.ProcsDropped),
		ConnsDropped:   atomic.LoadUint64(&r.hdr.ConnsDropped),
		ReusedBytesIn:  atomic.LoadUint64(&r.hdr.ReusedBytesIn),
		ReusedBytesOut: atomic.LoadUint64(&r.hdr.ReusedBytesOut),
	}
}

func (r *Region) proc(i int) *rawProc {
	return (*rawProc)(unsafe.Pointer(&r.data[procsOff+uintptr(i)*unsafe.Sizeof(rawProc{})]))
}

func (r *Region) conn(i int) *rawConn {
	return (*rawConn)(unsafe.Pointer(&r.data[connsOff+uintptr(i)*unsafe.Sizeof(rawConn{})]))
}

// procSnap is a consistent copy of a proc slot.
type procSnap struct {
	idx   int
	gen   uint32
	state uint32
	raw   rawProc
	alive bool
}

// readProcs copies every claimed proc slot and decides whether it is alive.
func (r *Region) readProcs() []procSnap {
	var out []procSnap
	if r.data == nil { // closed
		return nil
	}
	lv := newLiveness()
	for i := 0; i < maxProcs; i++ {
		p := r.proc(i)
		for try := 0; try < 4; try++ {
			st := atomic.LoadUint32(&p.State)
			if st != procLive && st != procExited {
				break
			}
			gen := atomic.LoadUint32(&p.Gen)
			s := procSnap{idx: i, gen: gen, state: st}
			s.raw.Pid, s.raw.PPid = p.Pid, p.PPid
			s.raw.StartTicks, s.raw.StartNs, s.raw.ExitNs, s.raw.PidNS = p.StartTicks, p.StartNs, p.ExitNs, p.PidNS
			s.raw.Comm = p.Comm
			s.raw.BytesIn = atomic.LoadUint64(&p.BytesIn)
			s.raw.BytesOut = atomic.LoadUint64(&p.BytesOut)
			for c := range s.raw.Calls {
				s.raw.Calls[c] = atomic.LoadUint64(&p.Calls[c])
			}
			if atomic.LoadUint32(&p.Gen) != gen || atomic.LoadUint32(&p.State) != st {
				continue // reclaimed or exited while we read: again
			}
			s.alive = st == procLive && lv.alive(int(s.raw.Pid), s.raw.StartTicks, s.raw.PidNS)
			out = append(out, s)
			break
		}
	}
	return out
}

// Procs returns every process slot in use, live and exited.
func (r *Region) Procs() []Proc {
	if r.data == nil {
		return nil
	}
	snaps := r.readProcs()
	out := make([]Proc, 0, len(snaps))
	for _, s := range snaps {
		p := Proc{
			Pid:      int(s.raw.Pid),
			PPid:     int(s.raw.PPid),
			Comm:     cString(s.raw.Comm[:]),
			Started:  time.Unix(0, int64(s.raw.StartNs)),
			Exited:   !s.alive,
			Calls:    map[string]uint64{},
			BytesIn:  s.raw.BytesIn,
			BytesOut: s.raw.BytesOut,
		}
		for i, c := range Calls {
			if v := s.raw.Calls[i]; v != 0 {
				p.Calls[c.Name] = v
			}
		}
		out = append(out, p)
	}
	return out
}

// Conns returns the connection entries of live processes.
func (r *Region) Conns() []Conn {
	type key struct {
		idx int
		gen uint32
	}
	live := map[key]bool{}
	for _, s := range r.readProcs() {
		if s.alive {
			live[key{s.idx, s.gen}] = true
		}
	}
	var out []Conn
	if r.data == nil { // closed
		return nil
	}
	for i := 0; i < maxConns; i++ {
		c := r.conn(i)
		if atomic.LoadUint32(&c.SlotState) != slotUsed {
			continue
		}
		var snap rawConn
		ok := false
		for try := 0; try < 4 && !ok; try++ {
			s1 := atomic.LoadUint32(&c.Seq)
			if s1&1 != 0 {
				continue
			}
			snap = *c
			ok = atomic.LoadUint32(&c.Seq) == s1 && atomic.LoadUint32(&c.SlotState) == slotUsed
		}
		if !ok || !live[key{int(snap.Owner), snap.OwnerGen}] {
			continue
		}
		out = append(out, Conn{
			Pid:      int(snap.Pid),
			FD:       int(snap.FD),
			Kind:     connKind(snap.Family, snap.Type),
			State:    connState(snap.State),
			Local:    sockaddrString(snap.Local[:], snap.LocalLen),
			Peer:     sockaddrString(snap.Peer[:], snap.PeerLen),
			Internal: snap.Flags&connfPair != 0,
			BytesIn:  atomic.LoadUint64(&c.BytesIn),
			BytesOut: atomic.LoadUint64(&c.BytesOut),
			Opened:   time.Unix(0, int64(snap.OpenedNs)),
		})
	}
	return out
}

func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func connKind(family, typ uint16) string {
	var base string
	switch family {
	case unix.AF_INET:
		base = ""
	case unix.AF_INET6:
		base = "6"
	case unix.AF_UNIX:
		switch typ {
		case unix.SOCK_STREAM:
			return "unix"
		case unix.SOCK_DGRAM:
			return "unix-dgram"
		case unix.SOCK_SEQPACKET:
			return "unix-seqpacket"
		}
		return "unix-" + strconv.Itoa(int(typ))
	case unix.AF_NETLINK:
		return "netlink"
	case unix.AF_PACKET:
		return "packet"
	default:
		return "af" + strconv.Itoa(int(family))
	}
	switch typ {
	case unix.SOCK_STREAM:
		return "tcp" + base
	case unix.SOCK_DGRAM:
		return "udp" + base
	case unix.SOCK_RAW:
		return "raw" + base
	}
	return "ip" + base + "-" + strconv.Itoa(int(typ))
}

func connState(s uint32) string {
	switch s {
	case connOpen:
		return "open"
	case connListen:
		return "listen"
	case connConnecting:
		return "connecting"
	case connEstablished:
		return "established"
	case connClosed:
		return "closed"
	}
	return "state-" + strconv.Itoa(int(s))
}

// sockaddrString formats a raw struct sockaddr of n valid bytes.
func sockaddrString(b []byte, n uint32) string {
	if n > uint32(len(b)) {
		n = uint32(len(b))
	}
	b = b[:n]
	if len(b) < 2 {
		return ""
	}
	family := uint16(b[0]) | uint16(b[1])<<8 // native little-endian
	switch family {
	case unix.AF_INET:
		if len(b) < 8 {
			return ""
		}
		port := uint16(b[2])<<8 | uint16(b[3])
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port).String()
	case unix.AF_INET6:
		if len(b) < 24 {
			return ""
		}
		port := uint16(b[2])<<8 | uint16(b[3])
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), port).String()
	case unix.AF_UNIX:
		path := b[2:]
		if len(path) == 0 {
			return "" // unnamed (socketpair, unbound client)
		}
		if path[0] == 0 {
			return "@" + string(path[1:])
		}
		return cString(path)
	}
	return "af" + strconv.Itoa(int(family))
}

// liveness decides whether a slot's process still exists, from any pid
// namespace: the start time (clock ticks since boot) is the same in all of
// them, the pid is the one inside the program's namespace.
type liveness struct {
	ownNS   uint64
	scanned bool
	byNS    map[nsPid]uint64 // (pidns, innermost pid) -> start ticks, from a /proc scan
}

type nsPid struct {
	ns  uint64
	pid int
}

func newLiveness() *liveness {
	ns, _ := pidNSOf("self")
	return &liveness{ownNS: ns}
}

func (l *liveness) alive(pid int, ticks, ns uint64) bool {
	if pid <= 0 {
		return false
	}
	if ns == 0 || ns == l.ownNS {
		t, ok := startTicks(pid)
		return ok && (ticks == 0 || t == ticks)
	}
	if !l.scanned {
		l.scan()
	}
	t, ok := l.byNS[nsPid{ns, pid}]
	return ok && (ticks == 0 || t == ticks)
}

// scan maps every visible process to (its pid namespace, its pid there).
func (l *liveness) scan() {
	l.scanned = true
	l.byNS = map[nsPid]uint64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		ns, ok := pidNSOf(name)
		if !ok {
			continue
		}
		inner, ok := innermostPid(name)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if t, ok := startTicks(pid); ok {
			l.byNS[nsPid{ns, inner}] = t
		}
	}
}

func pidNSOf(proc string) (uint64, bool) {
	s, err := os.Readlink("/proc/" + proc + "/ns/pid")
	if err != nil {
		return 0, false
	}
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return 0, false
	}
	v, err := strconv.ParseUint(s[i+1:j], 10, 64)
	return v, err == nil
}

// innermostPid is the last pid of the NSpid line of /proc/PID/status.
func innermostPid(proc string) (int, bool) {
	b, err := os.ReadFile("/proc/" + proc + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
			fs := strings.Fields(f)
			if len(fs) == 0 {
				return 0, false
			}
			v, err := strconv.Atoi(fs[len(fs)-1])
			return v, err == nil
		}
	}
	return 0, false
}

// startTicks reads field 22 of /proc/PID/stat; zombies count as gone.
func startTicks(pid int) (uint64, bool) {
	st, err := procfs.ReadStat("/proc", pid)
	if err != nil || st.Dead() {
		return 0, false
	}
	return st.StartTime(), true
}

// Policy says what the shim does with an interposed call.
type Policy int

// Policies, as FTL_TRACK/FTL_PASS/FTL_REFUSE in shim/ftl_region.h.
const (
	Tracked Policy = 1 // passed to libc; updates the connection table and/or byte counts
	Passed  Policy = 2 // passed to libc unchanged; only counted
	Refused Policy = 3 // not passed; fails with an errno
)

func (p Policy) String() string {
	switch p {
	case Tracked:
		return "tracked"
	case Passed:
		return "passed"
	case Refused:
		return "refused"
	}
	return "policy-" + strconv.Itoa(int(p))
}

// Call is one interposed libc call.
type Call struct {
	Name   string
	Policy Policy
	Why    string
}

// Calls mirrors FTL_CALLS in shim/ftl_region.h: every interposed call in
// counter order (index i is ftl_proc.calls[i]), with its policy and why.
var Calls = []Call{
	{"socket", Tracked, "new socket: entry with family/type, state open"},
	{"socketpair", Tracked, "two connected entries flagged PAIR (bytes not in proc totals)"},
	{"bind", Tracked, "records the local address"},
	{"listen", Tracked, "state listen"},
	{"accept", Tracked, "new established entry with local and peer address"},
	{"accept4", Tracked, "as accept"},
	{"connect", Tracked, "peer address; state connecting or established"},
	{"close", Tracked, "drops the fd's reference to its entry; entry freed at last reference"},
	{"close_range", Tracked, "as close for every fd in the range (unless CLOSE_RANGE_CLOEXEC)"},
	{"fclose", Tracked, "as close for fileno(stream): libc closes it internally"},
	{"shutdown", Tracked, "SHUT_RDWR marks the entry closed"},
	{"dup", Tracked, "new fd shares the entry"},
	{"dup2", Tracked, "new fd shares the entry; old target released"},
	{"dup3", Tracked, "as dup2"},
	{"fcntl", Tracked, "F_DUPFD/F_DUPFD_CLOEXEC as dup; everything else passed"},
	{"fcntl64", Tracked, "as fcntl (the LFS name nginx and redis import)"},
	{"read", Tracked, "bytes in when the fd is a socket; 0 marks peer EOF"},
	{"__read_chk", Tracked, "as read (_FORTIFY_SOURCE name)"},
	{"readv", Tracked, "as read"},
	{"recv", Tracked, "bytes in (not with MSG_PEEK)"},
	{"__recv_chk", Tracked, "as recv (_FORTIFY_SOURCE name)"},
	{"recvfrom", Tracked, "as recv"},
	{"__recvfrom_chk", Tracked, "as recv (_FORTIFY_SOURCE name)"},
	{"recvmsg", Tracked, "as recv"},
	{"recvmmsg", Tracked, "sum of msg_len of the received messages"},
	{"write", Tracked, "bytes out when the fd is a socket"},
	{"writev", Tracked, "as write"},
	{"send", Tracked, "bytes out"},
	{"sendto", Tracked, "bytes out"},
	{"sendmsg", Tracked, "bytes out"},
	{"sendmmsg", Tracked, "sum of msg_len of the sent messages"},
	{"sendfile", Tracked, "bytes out when out_fd is a socket (payload never in user space)"},
	{"sendfile64", Tracked, "as sendfile (the LFS name nginx imports)"},
	{"splice", Tracked, "bytes in when fd_in is a socket, out when fd_out is"},
	{"epoll_create", Passed, "counted; epoll sets are not tracked yet"},
	{"epoll_create1", Passed, "counted"},
	{"epoll_ctl", Passed, "counted"},
	{"epoll_wait", Passed, "counted; later the predictor orders events here"},
	{"epoll_pwait", Passed, "counted"},
	{"epoll_pwait2", Passed, "counted"},
	{"poll", Passed, "counted"},
	{"__poll_chk", Passed, "counted (_FORTIFY_SOURCE name, memcached imports it)"},
	{"ppoll", Passed, "counted"},
	{"select", Passed, "counted"},
	{"pselect", Passed, "counted"},
	{"pipe", Passed, "counted; pipe bytes are not socket bytes"},
	{"pipe2", Passed, "counted"},
	{"eventfd", Passed, "counted"},
	{"clock_gettime", Passed, "counted; non-deterministic input for the event log later"},
	{"gettimeofday", Passed, "counted"},
	{"time", Passed, "counted"},
	{"getrandom", Passed, "counted"},
	{"pthread_create", Passed, "counted"},
	{"fork", Tracked, "child takes its own proc slot and copies of the parent's entries"},
	{"vfork", Passed, "counted in the parent; the child may only exec or _exit"},
	{"execve", Tracked, "LD_PRELOAD and FTL_* put back into envp; slot marked exited"},
	{"execv", Tracked, "as execve with environ"},
	{"execvp", Tracked, "as execve with environ, PATH search by libc"},
	{"execvpe", Tracked, "as execve, PATH search by libc"},
	{"execl", Tracked, "as execv"},
	{"execlp", Tracked, "as execvp"},
	{"execle", Tracked, "as execve"},
	{"fexecve", Tracked, "as execve"},
	{"execveat", Tracked, "as execve"},
	{"posix_spawn", Tracked, "LD_PRELOAD and FTL_* put back into envp"},
	{"posix_spawnp", Tracked, "as posix_spawn"},
	{"sigaction", Passed, "counted; the shim installs no handlers of its own"},
	{"signal", Passed, "counted"},
	{"_exit", Tracked, "slot marked exited (destructors do not run)"},
	{"closefrom", Tracked, "as close for every fd >= lowfd"},
}
