package files

import (
	"errors"
	"fmt"
)

// Sentinel errors of the package.
var (
	// ErrUnsupported: the fd kind (or this state of it) cannot be restored.
	ErrUnsupported = errors.New("fd kind not supported")
	// ErrExternal: the other end of a pipe, socket or terminal is outside
	// the tree and the fd is not one of 0, 1, 2.
	ErrExternal = errors.New("peer outside the process tree")
	// ErrTooLarge: saved content (deleted file, queue) exceeds its bound.
	ErrTooLarge = errors.New("content too large to save")
	// ErrUnknownDesc: a restore asked for a description id not in the image.
	ErrUnknownDesc = errors.New("unknown description id")
	// ErrClosed: the Dumper or Restorer was used after Close.
	ErrClosed = errors.New("already closed")
)

// Bounds on saved content.
const (
	MaxFileContent  = 64 << 20 // deleted-but-open files and memfds
	MaxQueueContent = 64 << 20 // per socket or pipe
)

// Kind names a kind of open file description.
type Kind string

// The kinds. Every kind is listed in the support table (support.go).
const (
	KindFile     Kind = "file"
	KindDir      Kind = "dir"
	KindChr      Kind = "chr"
	KindMemfd    Kind = "memfd"
	KindPipe     Kind = "pipe"
	KindFIFO     Kind = "fifo"
	KindUnix     Kind = "unix"
	KindTCP      Kind = "tcp"
	KindUDP      Kind = "udp"
	KindEventfd  Kind = "eventfd"
	KindEpoll    Kind = "epoll"
	KindTimerfd  Kind = "timerfd"
	KindSignalfd Kind = "signalfd"
	KindInotify  Kind = "inotify"
	KindExternal Kind = "external"
	// Refused kinds (named so that errors and the table can say what they are).
	KindTTY       Kind = "tty"
	KindBlock     Kind = "block"
	KindDevice    Kind = "device"
	KindPidfd     Kind = "pidfd"
	KindFanotify  Kind = "fanotify"
	KindUserfault Kind = "userfaultfd"
	KindIOUring   Kind = "io_uring"
	KindBPF       Kind = "bpf"
	KindPerf      Kind = "perf_event"
	KindNetlink   Kind = "netlink"
	KindPacket    Kind = "packet"
	KindRawSock   Kind = "raw"
	KindOtherSock Kind = "socket"
	KindAnon      Kind = "anon_inode"
)

// Desc is one open file description as dumped. Exactly the sub-struct of
// its Kind is set (External may accompany a pipe, unix or tty description).
// Flags are the open flags (access mode, O_APPEND, O_NONBLOCK, ...) without
// O_CLOEXEC, which belongs to the fd.
type Desc struct {
	ID    uint32
	Kind  Kind
	Flags int
	Pos   int64
	Path  string
	Ino   uint64 // inode number at dump (anonymous inodes share one)

	External *External      `msgpack:",omitempty"`
	File     *FileState     `msgpack:",omitempty"`
	Pipe     *PipeState     `msgpack:",omitempty"`
	Sock     *SockState     `msgpack:",omitempty"`
	TCP      *TCPState      `msgpack:",omitempty"`
	Eventfd  *EventfdState  `msgpack:",omitempty"`
	Epoll    *EpollState    `msgpack:",omitempty"`
	Timerfd  *TimerfdState  `msgpack:",omitempty"`
	Signalfd *SignalfdState `msgpack:",omitempty"`
	Inotify  *InotifyState  `msgpack:",omitempty"`
}

// FD is one fd of one process.
type FD struct {
	Num     int
	DescID  uint32
	CloExec bool
}

// External says the description is restored as the restorer's stdio
// number Stdio (0, 1 or 2): its other end is outside the tree.
type External struct {
	Stdio int
	What  string // what it was (for messages): "tty /dev/pts/3", "pipe", ...
}

// FileState is the state of a regular file, directory or memfd.
type FileState struct {
	Mode    uint32 // permission bits
	Dev     uint64
	Ino     uint64
	Deleted bool
	Content []byte `msgpack:",omitempty"` // deleted files and memfds only
	Seals   int    `msgpack:",omitempty"` // memfd seals
}

// PipeState is one end of a pipe, or one open of a FIFO.
type PipeState struct {
	Ino    uint64
	Read   bool   // this description reads (pipe(2) ends are one-way)
	Size   int    // F_GETPIPE_SZ
	Data   []byte `msgpack:",omitempty"` // buffered bytes (on one description per pipe)
	PeerID uint32 // the other end's Desc (pipes), 0 if none
}

// SockState is the family-independent part of a socket.
type SockState struct {
	Family   int
	Type     int
	Protocol int
	Ino      uint64
	Local    string // "ip:port", unix path ("@name" = abstract), "" if unbound
	Peer     string
	State    int // TCP_* state numbers (unix: 1 connected, 7 unconnected, 10 listening)
	Backlog  int
	Shutdown int      // unix: SHUT_* bits as RCV_SHUTDOWN=1, SEND_SHUTDOWN=2
	PeerIno  uint64   // unix peer inode, 0 if none
	PeerID   uint32   // unix peer Desc (in the tree), 0 if none
	Pair     bool     // unix: restored as a socketpair with PeerID
	Queue    [][]byte `msgpack:",omitempty"` // unix: this socket's receive queue (messages; one chunk for stream)
	Opts     []SockOpt
}

// SockOpt is one integer socket option to re-apply.
type SockOpt struct {
	Level, Name, Value int
}

// TCPState is what TCP_REPAIR needs to rebuild an established connection.
type TCPState struct {
	SndSeq, RcvSeq   uint32 // TCP_QUEUE_SEQ of the send and receive queues
	MSS              uint32
	SndWscale        uint8
	RcvWscale        uint8
	Options          uint8 // tcpi_options
	Timestamp        uint32
	HasTimestamp     bool
	Window           *TCPRepairWindow `msgpack:",omitempty"`
	SendQ            []byte           // sent-unacked then unsent bytes
	Unsent           uint32           // length of the unsent tail of SendQ
	RecvQ            []byte
	NoDelay, Cork    bool
	KeepIdle, KeepCn int
}

// TCPRepairWindow mirrors struct tcp_repair_window.
type TCPRepairWindow struct {
	SndWl1, SndWnd, MaxWindow, RcvWnd, RcvWup uint32
}

// EventfdState is an eventfd's counter.
type EventfdState struct {
	Count     uint64
	Semaphore bool
}

// EpollItem is one entry of an epoll interest list: FD is the fd number in
// the process that owns the epoll fd, Ino the watched file's inode.
type EpollItem struct {
	FD     int
	Events uint32
	Data   uint64
	Ino    uint64
}

// EpollState is an epoll interest list; it is re-added in Finish.
type EpollState struct {
	Items []EpollItem
}

// TimerfdState is a timerfd's clock and remaining time (relative:
// TFD_TIMER_ABSTIME is not kept).
type TimerfdState struct {
	Clock    int
	ValueNs  int64 // remaining until the next expiry, 0 = disarmed
	IntervNs int64
	Ticks    uint64 // expirations not yet read
}

// SignalfdState is a signalfd's mask.
type SignalfdState struct {
	Mask uint64
}

// InotifyWatch is one inotify watch.
type InotifyWatch struct {
	WD   int
	Path string
	Mask uint32
}

// InotifyState is an inotify instance's watches (queued events are lost).
type InotifyState struct {
	Watches []InotifyWatch
}

// fdError names the process, fd and kind of a refused fd.
func fdError(pid, fd int, kind Kind, err error, format string, a ...any) error {
	return fmt.Errorf("process %d fd %d (%s): %s: %w", pid, fd, kind, fmt.Sprintf(format, a...), err)
}
