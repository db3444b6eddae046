package files

import (
	"fmt"
	"strings"
)

// Level says how well a kind is restored.
type Level int

// Support levels.
const (
	Supported Level = iota
	Partly
	Refused
)

func (l Level) String() string {
	return [...]string{"supported", "partly", "refused"}[l]
}

// Support is one row of the table: a kind, its level, and how (partly) or
// why (refused).
type Support struct {
	Kind  Kind
	Level Level
	Note  string
}

// Table lists every fd kind the dumper can meet. It is the only place that
// decides refusal (refused() reads it) and docs/snapshot-files.md renders it
// (Markdown()).
var Table = []Support{
	{KindFile, Supported, "reopened by path with the saved flags (minus O_CREAT/O_TRUNC/O_EXCL), offset restored, O_APPEND kept; a deleted-but-open file's content (<= 64 MiB, else refused) is recreated at its old path and unlinked again (O_TMPFILE in its directory, else /tmp); fds sharing a deleted inode share the new one"},
	{KindDir, Supported, "reopened by path, offset restored"},
	{KindChr, Supported, "/dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom reopened by path"},
	{KindMemfd, Partly, "content (<= 64 MiB) copied into a new memfd of the same name, seals re-added; the engine core restores shared mappings of it separately"},
	{KindPipe, Supported, "both ends in the tree: one pipe(2), capacity (F_SETPIPE_SZ) and buffered bytes (read with tee, not consumed) restored; one end outside the tree: external stdio on fd 0-2, refused elsewhere"},
	{KindFIFO, Supported, "reopened by path (an O_RDWR holder keeps it open while its ends are opened), buffered bytes refilled; a FIFO whose path was removed is refused"},
	{KindUnix, Partly, "pairs inside the tree (stream, dgram, seqpacket) become socketpair(2) with each end's receive queue re-sent (names of connected sockets are lost); bound and listening sockets re-bound at their path (stale path unlinked first; a relative name is resolved against the program's current directory at dump) with their backlog; SO_PASSCRED and SO_PEEK_OFF kept; datagrams queued on a bound dgram socket are re-sent to it (their sender addresses are lost); dgram sockets connected one-way to a bound socket in the tree are re-connected; a connected socket whose peer has closed comes back with its queued data, then end of file; not-yet-accepted connections are dropped; queued SCM_RIGHTS refused; dgram sockets connected to a named socket outside the tree (/dev/log) are re-connected by path; other peers outside the tree: external stdio on fd 0-2, refused elsewhere"},
	{KindTCP, Partly, "LISTEN: bind+listen with backlog and options (SO_REUSEADDR/PORT, keepalive, TCP_NODELAY...), not-yet-accepted connections are lost; ESTABLISHED: TCP_REPAIR (sequence numbers, MSS, window scale, SACK, timestamps + TCP_TIMESTAMP, TCP_REPAIR_WINDOW, send and receive queues); CLOSE_WAIT (peer closed, data maybe still queued): rebuilt the same way with its read side shut, so reads drain the queue then return end of file; a connection whose address pair is held at restore by another socket (an old image restored after its connections closed: TIME_WAIT) comes back closed, reported by Restorer.Warnings; socket buffers are raised (SO_*BUFFORCE) when the queues need it; SO_REUSEADDR is put back after repair mode (leaving it clears sk_reuse); never-connected or closed (reset): recreated unconnected (bound if it was); SYN_SENT/SYN_RECV/FIN_WAIT*/LAST_ACK/CLOSING refused (TIME_WAIT has no fd); SO_RCVBUF/SO_SNDBUF not kept"},
	{KindUDP, Partly, "bound to the same address, re-connected to its peer, options kept; queued datagrams are dropped"},
	{KindEventfd, Supported, "counter and EFD_SEMAPHORE/EFD_NONBLOCK restored"},
	{KindEpoll, Supported, "each interest entry (fd, events incl. EPOLLET/ONESHOT/EXCLUSIVE, data) re-added in Finish inside the target with its own fd numbers; an entry whose fd number no longer names the watched file is refused"},
	{KindTimerfd, Partly, "clock, remaining time and interval restored as a relative timer (TFD_TIMER_ABSTIME and TFD_TIMER_CANCEL_ON_SET are lost); unread expirations restored with TFD_IOC_SET_TICKS; an expired periodic timer (which the kernel re-arms only when read) is re-armed one interval ahead"},
	{KindSignalfd, Supported, "mask and flags restored"},
	{KindInotify, Partly, "watches re-added by path (resolved from the fdinfo file handle) with their masks and watch numbers; queued events are lost; a watch on a deleted file is refused"},
	{KindExternal, Partly, "a pipe, unix socket or terminal whose other end is outside the tree, used only as fd 0-2: restored as the restorer's stdin/stdout/stderr (the lowest fd number using it picks which)"},
	{KindTTY, Refused, "a terminal other than fd 0-2 (which become external stdio): the tree does not own the terminal"},
	{KindDevice, Refused, "other character devices (/dev/net/tun, /dev/fuse, /dev/kvm...): their state lives in the driver"},
	{KindBlock, Refused, "block devices: not needed by servers, device state cannot be checked"},
	{KindPidfd, Refused, "pidfds name host processes that do not exist after restore"},
	{KindFanotify, Refused, "fanotify marks are not exposed in a restorable form"},
	{KindUserfault, Refused, "userfaultfd registrations are tied to the old address space"},
	{KindIOUring, Refused, "io_uring rings hold in-flight kernel state"},
	{KindBPF, Refused, "BPF objects are not checkpointable"},
	{KindPerf, Refused, "perf events are tied to host counters"},
	{KindNetlink, Refused, "netlink sockets carry kernel subscriptions and sequence state"},
	{KindPacket, Refused, "packet sockets are bound to interfaces and rings"},
	{KindRawSock, Refused, "raw and other inet sockets (SCTP, ICMP) are not handled"},
	{KindOtherSock, Refused, "socket family not handled"},
	{KindAnon, Refused, "unknown anonymous inode"},
}

// refused returns why kind is refused, or "" if it is not.
func refused(kind Kind) string {
	for _, s := range Table {
		if s.Kind == kind {
			if s.Level == Refused {
				return s.Note
			}
			return ""
		}
	}
	return "kind not in the support table"
}

// Markdown renders Table for docs/snapshot-files.md.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| Kind | Level | How / why |\n|---|---|---|\n")
	for _, s := range Table {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", s.Kind, s.Level, strings.ReplaceAll(s.Note, "|", "\\|"))
	}
	return b.String()
}
