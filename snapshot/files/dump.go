package files

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// use is one fd that refers to a description.
type use struct{ pid, fd int }

// held is a description being dumped: its record, the fds using it, and
// our own copy of it (from pidfd_getfd).
type held struct {
	desc  *Desc
	ino   uint64
	uses  []use
	local int // our copy; -1 once closed
	// warn says what the restore will lose (state dropped by design).
	warn string
	// repair is set while this TCP socket is in repair mode.
	repair bool
}

// Dumper records the open files of a frozen tree. Call Add for every fd of
// every process, then Pair, then Descs; Close at the end.
type Dumper struct {
	descs      []*held
	byInode    map[[2]uint64][]*held // (dev, ino) -> descriptions, for the kcmp dedupe
	pidfds     map[int]int
	keepRepair bool
	paired     bool
	closed     bool
}

// NewDumper returns an empty Dumper.
func NewDumper() *Dumper {
	return &Dumper{pidfds: map[int]int{}, byInode: map[[2]uint64][]*held{}}
}

// KeepRepair says whether established TCP sockets stay in repair mode
// after they are dumped. Set it to true before Add when the tree is killed
// after the dump: the killed sockets then close without sending FIN or RST.
// Setting it to false (the default, for --leave-running, or to undo after
// a failed dump before the tree resumes) takes every socket already dumped
// out of repair mode (without a window probe).
func (d *Dumper) KeepRepair(keep bool) {
	d.keepRepair = keep
	if keep {
		return
	}
	for _, h := range d.descs {
		if h.repair && h.local >= 0 {
			leaveDumpRepair(h)
		}
	}
}

func (d *Dumper) pidfd(pid int) (int, error) {
	if fd, ok := d.pidfds[pid]; ok {
		return fd, nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	d.pidfds[pid] = fd
	return fd, nil
}

// Add records fd of process pid (host pid; the tree is frozen) and returns
// its entry. Fds that are one open file description share one Desc.
func (d *Dumper) Add(pid, fd int) (FD, error) {
	if d.closed {
		return FD{}, ErrClosed
	}
	pfd, err := d.pidfd(pid)
	if err != nil {
		return FD{}, err
	}
	local, err := unix.PidfdGetfd(pfd, fd, 0)
	if err != nil {
		return FD{}, fmt.Errorf("process %d fd %d: pidfd_getfd: %w", pid, fd, err)
	}
	fi, err := readFdinfo(pid, fd)
	if err != nil {
		unix.Close(local)
		return FD{}, fmt.Errorf("process %d fd %d: %w", pid, fd, err)
	}
	ent := FD{Num: fd, CloExec: fi.Flags&unix.O_CLOEXEC != 0}
	var st unix.Stat_t
	if err := unix.Fstat(local, &st); err != nil {
		unix.Close(local)
		return FD{}, fmt.Errorf("process %d fd %d: fstat: %w", pid, fd, err)
	}
	// Same description as one already seen?
	key := [2]uint64{st.Dev, st.Ino}
	for _, h := range d.byInode[key] {
		if x := h.desc.External; x != nil && fd <= 2 && x.Stdio != fd {
			continue // a terminal on 0, 1, 2: one external desc per stdio number
		}
		same, err := kcmpFiles(h.uses[0].pid, h.uses[0].fd, pid, fd)
		if err != nil {
			unix.Close(local)
			return FD{}, fmt.Errorf("process %d fd %d: %w", pid, fd, err)
		}
		if same {
			unix.Close(local)
			h.uses = append(h.uses, use{pid, fd})
			ent.DescID = h.desc.ID
			return ent, nil
		}
	}
	h := &held{ino: st.Ino, local: local, uses: []use{{pid, fd}}}
	desc := &Desc{ID: uint32(len(d.descs) + 1), Flags: fi.Flags &^ unix.O_CLOEXEC, Pos: fi.Pos, Ino: st.Ino}
	h.desc = desc
	if err := d.describe(h, pid, fd, fi, &st); err != nil {
		if h.repair {
			leaveDumpRepair(h)
		}
		unix.Close(local)
		return FD{}, err
	}
	d.descs = append(d.descs, h)
	d.byInode[key] = append(d.byInode[key], h)
	d.paired = false
	ent.DescID = desc.ID
	return ent, nil
}

// describe fills h.desc from the fd.
func (d *Dumper) describe(h *held, pid, fd int, fi *fdinfo, st *unix.Stat_t) error {
	desc := h.desc
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
	if err != nil {
		return fmt.Errorf("process %d fd %d: readlink: %w", pid, fd, err)
	}
	kind, err := classify(h.local, link, st)
	desc.Kind = kind
	if err != nil {
		return fdError(pid, fd, kind, err, "%s", link)
	}
	if why := refused(kind); why != "" {
		if kind == KindTTY && fd <= 2 {
			desc.Kind = KindExternal
			desc.External = &External{Stdio: fd, What: "tty " + link}
			return nil
		}
		if kind == KindTTY {
			return fdError(pid, fd, kind, ErrExternal, "%s: a terminal is restored only as fd 0, 1 or 2", link)
		}
		return fdError(pid, fd, kind, ErrUnsupported, "%s: %s", link, why)
	}
	fail := func(err error) error {
		if errors.Is(err, ErrUnsupported) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrExternal) {
			return fdError(pid, fd, kind, err, "%s", link)
		}
		return fmt.Errorf("process %d fd %d (%s) %s: %w", pid, fd, kind, link, err)
	}
	switch kind {
	case KindFile, KindDir, KindMemfd:
		err = dumpFile(h, link, st)
	case KindChr:
		desc.Path = link
	case KindPipe, KindFIFO:
		err = dumpPipe(h, link, st)
	case KindUnix:
		err = dumpUnix(h)
	case KindTCP:
		err = dumpTCP(h, d.keepRepair)
	case KindUDP:
		err = dumpUDP(h)
	case KindEventfd:
		err = dumpEventfd(desc, fi)
	case KindEpoll:
		err = dumpEpoll(desc, fi, pid)
	case KindTimerfd:
		desc.Timerfd, err = parseTimerfd(fi)
	case KindSignalfd:
		err = dumpSignalfd(desc, fi)
	case KindInotify:
		err = dumpInotify(desc, fi)
	default:
		err = fmt.Errorf("%w: no dumper for kind", ErrUnsupported)
	}
	if err != nil {
		return fail(err)
	}
	h.warn = losses(h)
	return nil
}

// losses describes the state of h a restore drops by design, "" if none.
func losses(h *held) string {
	d := h.desc
	switch {
	case d.Kind == KindTCP && d.Sock.State == tcpListen:
		if n := tcpListenPending(h.local); n > 0 {
			return fmt.Sprintf("%d connections not yet accepted are dropped", n)
		}
	case d.Kind == KindUnix && d.Sock.State == tcpListen:
		if dg, err := diagUnix(h.ino); err == nil && dg.RQueue > 0 {
			return fmt.Sprintf("%d connections not yet accepted are dropped", dg.RQueue)
		}
	case d.Kind == KindUDP:
		if n, err := ioctlInt(h.local, unix.SIOCINQ); err == nil && n > 0 {
			return "queued datagrams are dropped"
		}
	case d.Kind == KindInotify:
		if n, err := ioctlInt(h.local, unix.SIOCINQ); err == nil && n > 0 {
			return fmt.Sprintf("%d bytes of queued events are dropped", n)
		}
	}
	return ""
}

// Warnings lists, per description, the state the restore will drop by
// design (connections not yet accepted, queued datagrams, inotify events),
// naming a process and fd: for the engine to log.
func (d *Dumper) Warnings() []string {
	var out []string
	for _, h := range d.descs {
		if h.warn != "" {
			out = append(out, fmt.Sprintf("process %d fd %d (%s): %s", h.uses[0].pid, h.uses[0].fd, h.desc.Kind, h.warn))
		}
	}
	return out
}

// classify names the kind of an fd from its /proc link and fstat.
func classify(local int, link string, st *unix.Stat_t) (Kind, error) {
	switch {
	case strings.HasPrefix(link, "pipe:"):
		return KindPipe, nil
	case strings.HasPrefix(link, "socket:"):
		return classifySocket(local)
	case strings.HasPrefix(link, "anon_inode:"):
		switch strings.Trim(strings.TrimPrefix(link, "anon_inode:"), "[]") {
		case "eventfd":
			return KindEventfd, nil
		case "eventpoll":
			return KindEpoll, nil
		case "timerfd":
			return KindTimerfd, nil
		case "signalfd":
			return KindSignalfd, nil
		case "inotify":
			return KindInotify, nil
		case "pidfd":
			return KindPidfd, nil
		case "fanotify":
			return KindFanotify, nil
		case "userfaultfd":
			return KindUserfault, nil
		case "io_uring":
			return KindIOUring, nil
		case "perf_event":
			return KindPerf, nil
		}
		if strings.Contains(link, "bpf") {
			return KindBPF, nil
		}
		return KindAnon, nil
	case strings.HasPrefix(link, "/memfd:"):
		return KindMemfd, nil
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return KindFile, nil
	case unix.S_IFDIR:
		return KindDir, nil
	case unix.S_IFIFO:
		return KindFIFO, nil
	case unix.S_IFBLK:
		return KindBlock, nil
	case unix.S_IFCHR:
		if chrAllowed(link) {
			return KindChr, nil
		}
		if _, err := unix.IoctlGetTermios(local, unix.TCGETS); err == nil {
			return KindTTY, nil
		}
		return KindDevice, nil
	}
	return KindAnon, nil
}

// chrDevices are the character devices reopened by path; other character
// devices are terminals (external stdio) or refused.
var chrDevices = map[string]bool{
	"/dev/null": true, "/dev/zero": true, "/dev/full": true,
	"/dev/random": true, "/dev/urandom": true,
}

func chrAllowed(path string) bool { return chrDevices[path] }

func classifySocket(fd int) (Kind, error) {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return KindOtherSock, fmt.Errorf("SO_DOMAIN: %w", err)
	}
	typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	proto, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	switch dom {
	case unix.AF_UNIX:
		return KindUnix, nil
	case unix.AF_INET, unix.AF_INET6:
		switch {
		case typ == unix.SOCK_STREAM && proto == unix.IPPROTO_TCP:
			return KindTCP, nil
		case typ == unix.SOCK_DGRAM && proto == unix.IPPROTO_UDP:
			return KindUDP, nil
		}
		return KindRawSock, nil
	case unix.AF_NETLINK:
		return KindNetlink, nil
	case unix.AF_PACKET:
		return KindPacket, nil
	}
	return KindOtherSock, nil
}

func dumpEventfd(desc *Desc, fi *fdinfo) error {
	v, ok := fi.field("eventfd-count")
	if !ok {
		return fmt.Errorf("eventfd fdinfo lacks eventfd-count")
	}
	c, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		return fmt.Errorf("eventfd-count %q: %w", v, err)
	}
	desc.Eventfd = &EventfdState{Count: c, Semaphore: desc.Flags&unix.EFD_SEMAPHORE != 0}
	if v, ok := fi.field("eventfd-semaphore"); ok && v == "1" {
		desc.Eventfd.Semaphore = true
	}
	return nil
}

func dumpSignalfd(desc *Desc, fi *fdinfo) error {
	v, ok := fi.field("sigmask")
	if !ok {
		return fmt.Errorf("signalfd fdinfo lacks sigmask")
	}
	m, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		return fmt.Errorf("sigmask %q: %w", v, err)
	}
	desc.Signalfd = &SignalfdState{Mask: m}
	return nil
}

func dumpEpoll(desc *Desc, fi *fdinfo, pid int) error {
	st := &EpollState{}
	for _, ln := range fi.Lines {
		if !strings.HasPrefix(ln, "tfd:") {
			continue
		}
		w := words(ln)
		tfd, err1 := strconv.Atoi(w["tfd"])
		ev, err2 := strconv.ParseUint(w["events"], 16, 32)
		data, err3 := strconv.ParseUint(w["data"], 16, 64)
		ino, err4 := strconv.ParseUint(w["ino"], 16, 64)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return fmt.Errorf("epoll fdinfo line %q: %w", ln, err)
		}
		// The item is keyed by (file, fd number): the fd number must still
		// name that file in this process, or Finish cannot re-add it.
		var s unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, tfd), &s); err != nil || s.Ino != ino {
			return fmt.Errorf("%w: epoll watches fd %d, which no longer names the watched file in this process", ErrUnsupported, tfd)
		}
		st.Items = append(st.Items, EpollItem{FD: tfd, Events: uint32(ev), Data: data, Ino: ino})
	}
	sort.Slice(st.Items, func(i, j int) bool { return st.Items[i].FD < st.Items[j].FD })
	desc.Epoll = st
	return nil
}

// Descs returns every description recorded, in ID order. Call Pair first
// (Descs pairs on its own but drops Pair's error).
func (d *Dumper) Descs() []Desc {
	if !d.paired {
		d.Pair()
	}
	out := make([]Desc, len(d.descs))
	for i, h := range d.descs {
		out[i] = *h.desc
	}
	return out
}

// Close releases the Dumper's copies of the dumped fds. TCP sockets still
// in repair mode (KeepRepair(true)) are closed in repair mode: the tree's
// copies keep them open until the tree is killed.
func (d *Dumper) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for _, h := range d.descs {
		if h.local >= 0 {
			errs = append(errs, unix.Close(h.local))
			h.local = -1
		}
	}
	for _, fd := range d.pidfds {
		errs = append(errs, unix.Close(fd))
	}
	return errors.Join(errs...)
}
