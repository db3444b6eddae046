package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// RestoreEnv is the restorer's own stdio, used for "external" descriptions.
type RestoreEnv struct {
	Stdin, Stdout, Stderr *os.File
}

// Restorer recreates descriptions in the calling process.
type Restorer struct {
	descs   map[uint32]*Desc
	env     RestoreEnv
	files   map[uint32]*os.File
	holders []*os.File          // FIFO holders, deleted-file inodes: closed by Close
	fifos   map[string]*os.File // FIFO path -> O_RDWR holder
	inodes  map[[2]uint64]*os.File
	epoll   map[uint32]map[int]bool // epoll desc -> item fds already added
	// warnings: state a restore could not bring back but did not fail on.
	warnings []string
	closed   bool
}

// NewRestorer prepares a restore of descs.
func NewRestorer(descs []Desc, env RestoreEnv) *Restorer {
	r := &Restorer{
		descs:  map[uint32]*Desc{},
		env:    env,
		files:  map[uint32]*os.File{},
		fifos:  map[string]*os.File{},
		inodes: map[[2]uint64]*os.File{},
		epoll:  map[uint32]map[int]bool{},
	}
	for i := range descs {
		d := descs[i]
		r.descs[d.ID] = &d
	}
	return r
}

// File recreates description id in the calling process (once; later calls
// return the same file). The file is close-on-exec in this process.
func (r *Restorer) File(id uint32) (*os.File, error) {
	if r.closed {
		return nil, ErrClosed
	}
	if f, ok := r.files[id]; ok {
		return f, nil
	}
	d, ok := r.descs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownDesc, id)
	}
	f, err := r.create(d)
	if err != nil {
		return nil, fmt.Errorf("restore %s description %d %s: %w", d.Kind, d.ID, d.Path, err)
	}
	r.files[id] = f
	return f, nil
}

func (r *Restorer) create(d *Desc) (*os.File, error) {
	if d.External != nil {
		return r.external(d)
	}
	switch d.Kind {
	case KindFile, KindDir, KindChr:
		return r.openPath(d)
	case KindMemfd:
		return r.memfd(d)
	case KindPipe:
		return r.pipe(d)
	case KindFIFO:
		return r.fifo(d)
	case KindUnix:
		return r.unixSock(d)
	case KindTCP, KindUDP:
		if d.TCP != nil {
			return r.tcpConn(d)
		}
		return r.inetSock(d)
	case KindEventfd:
		return r.eventfd(d)
	case KindEpoll:
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		return newFile(fd, d)
	case KindTimerfd:
		return r.timerfd(d)
	case KindSignalfd:
		if d.Signalfd == nil {
			return nil, errors.New("signalfd without state")
		}
		var set unix.Sigset_t
		set.Val[0] = d.Signalfd.Mask
		fd, err := unix.Signalfd(-1, &set, unix.SFD_CLOEXEC|(d.Flags&unix.O_NONBLOCK))
		if err != nil {
			return nil, fmt.Errorf("signalfd: %w", err)
		}
		return newFile(fd, d)
	case KindInotify:
		return r.inotify(d)
	}
	return nil, fmt.Errorf("%w: no restorer for kind %s", ErrUnsupported, d.Kind)
}

// newFile wraps fd (close-on-exec already) as the file of d.
func newFile(fd int, d *Desc) (*os.File, error) {
	return os.NewFile(uintptr(fd), fmt.Sprintf("%s:%d", d.Kind, d.ID)), nil
}

// setFlags applies the status flags (O_NONBLOCK, O_APPEND, ...) F_SETFL can set.
func setFlags(fd, flags int) error {
	const settable = unix.O_APPEND | unix.O_NONBLOCK | unix.O_ASYNC | unix.O_DIRECT | unix.O_NOATIME
	cur, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("F_GETFL: %w", err)
	}
	want := cur&^settable | flags&settable
	if want == cur {
		return nil
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, want); err != nil {
		return fmt.Errorf("F_SETFL: %w", err)
	}
	return nil
}

func (r *Restorer) external(d *Desc) (*os.File, error) {
	var f *os.File
	switch d.External.Stdio {
	case 0:
		f = r.env.Stdin
	case 1:
		f = r.env.Stdout
	case 2:
		f = r.env.Stderr
	}
	if f == nil {
		return nil, fmt.Errorf("%w: no restorer stdio %d for external %s", ErrExternal, d.External.Stdio, d.External.What)
	}
	return f, nil
}

const openDropFlags = unix.O_CREAT | unix.O_TRUNC | unix.O_EXCL | unix.O_NOCTTY

func (r *Restorer) openPath(d *Desc) (*os.File, error) {
	flags := d.Flags&^openDropFlags | unix.O_CLOEXEC
	var fd int
	var err error
	if d.File != nil && d.File.Deleted {
		ino, err := r.deletedInode(d)
		if err != nil {
			return nil, err
		}
		fd, err = unix.Open(fmt.Sprintf("/proc/self/fd/%d", ino.Fd()), flags, 0)
		if err != nil {
			return nil, fmt.Errorf("reopen deleted file: %w", err)
		}
	} else {
		fd, err = unix.Open(d.Path, flags, 0)
		if err != nil {
			return nil, fmt.Errorf("open: %w", err)
		}
	}
	if d.Pos != 0 && d.Kind != KindChr {
		if _, err := unix.Seek(fd, d.Pos, 0); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("lseek %d: %w", d.Pos, err)
		}
	}
	return newFile(fd, d)
}

// deletedInode recreates the content of a deleted-but-open file as an
// unlinked file (once per dumped inode): created at its old path and
// unlinked again if that path is free, else an O_TMPFILE in its directory
// or in /tmp.
func (r *Restorer) deletedInode(d *Desc) (*os.File, error) {
	key := [2]uint64{d.File.Dev, d.File.Ino}
	if f, ok := r.inodes[key]; ok {
		return f, nil
	}
	mode := d.File.Mode & 0o7777
	fd, err := unix.Open(d.Path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, mode)
	if err == nil {
		if err := unix.Unlink(d.Path); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("unlink recreated file: %w", err)
		}
	} else {
		fd, err = unix.Open(filepath.Dir(d.Path), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, mode)
		if err != nil {
			fd, err = unix.Open(os.TempDir(), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, mode)
		}
		if err != nil {
			return nil, fmt.Errorf("create unlinked file: %w", err)
		}
	}
	f := os.NewFile(uintptr(fd), d.Path+deletedSuffix)
	if _, err := f.WriteAt(d.File.Content, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write content: %w", err)
	}
	r.inodes[key] = f
	r.holders = append(r.holders, f)
	return f, nil
}

func (r *Restorer) memfd(d *Desc) (*os.File, error) {
	name := strings.TrimPrefix(d.Path, "/memfd:")
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f, _ := newFile(fd, d)
	if _, err := f.WriteAt(d.File.Content, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("write content: %w", err)
	}
	if d.File.Seals != 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, d.File.Seals); err != nil {
			f.Close()
			return nil, fmt.Errorf("F_ADD_SEALS: %w", err)
		}
	}
	if _, err := unix.Seek(fd, d.Pos, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lseek: %w", err)
	}
	return f, nil
}

// pipe recreates both ends of a pipe at once.
func (r *Restorer) pipe(d *Desc) (*os.File, error) {
	peer := r.descs[d.Pipe.PeerID]
	if peer == nil || peer.Pipe == nil {
		return nil, fmt.Errorf("pipe end %d has no peer in the image", d.ID)
	}
	rd, wr := d, peer
	if !d.Pipe.Read {
		rd, wr = peer, d
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	rf, _ := newFile(p[0], rd)
	wf, _ := newFile(p[1], wr)
	fail := func(err error) (*os.File, error) {
		rf.Close()
		wf.Close()
		return nil, err
	}
	if d.Pipe.Size > 0 {
		if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, d.Pipe.Size); err != nil {
			return fail(fmt.Errorf("F_SETPIPE_SZ %d: %w", d.Pipe.Size, err))
		}
	}
	data := append(append([]byte(nil), rd.Pipe.Data...), wr.Pipe.Data...)
	if len(data) > 0 {
		if n, err := unix.Write(p[1], data); err != nil || n != len(data) {
			return fail(fmt.Errorf("refill %d bytes: wrote %d: %v", len(data), n, err))
		}
	}
	if err := setFlags(p[0], rd.Flags); err != nil {
		return fail(err)
	}
	if err := setFlags(p[1], wr.Flags); err != nil {
		return fail(err)
	}
	r.files[rd.ID], r.files[wr.ID] = rf, wf
	return r.files[d.ID], nil
}

// fifo reopens a FIFO by path; an O_RDWR holder keeps the pipe alive (and
// lets write-only opens succeed) until Close.
func (r *Restorer) fifo(d *Desc) (*os.File, error) {
	h, ok := r.fifos[d.Path]
	if !ok {
		if _, err := os.Stat(d.Path); errors.Is(err, os.ErrNotExist) {
			if err := unix.Mkfifo(d.Path, 0o600); err != nil {
				return nil, fmt.Errorf("mkfifo: %w", err)
			}
		}
		fd, err := unix.Open(d.Path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open holder: %w", err)
		}
		h = os.NewFile(uintptr(fd), d.Path)
		r.fifos[d.Path] = h
		r.holders = append(r.holders, h)
		if d.Pipe.Size > 0 {
			unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, d.Pipe.Size)
		}
	}
	if len(d.Pipe.Data) > 0 {
		if n, err := h.Write(d.Pipe.Data); err != nil || n != len(d.Pipe.Data) {
			return nil, fmt.Errorf("refill %d bytes: wrote %d: %v", len(d.Pipe.Data), n, err)
		}
	}
	fd, err := unix.Open(d.Path, d.Flags&^openDropFlags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if err := setFlags(fd, d.Flags); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return newFile(fd, d)
}

func (r *Restorer) eventfd(d *Desc) (*os.File, error) {
	if d.Eventfd == nil {
		return nil, errors.New("eventfd without state")
	}
	fl := unix.EFD_CLOEXEC | d.Flags&unix.O_NONBLOCK
	if d.Eventfd.Semaphore {
		fl |= unix.EFD_SEMAPHORE
	}
	fd, err := unix.Eventfd(0, fl)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if c := d.Eventfd.Count; c > 0 {
		var b [8]byte
		binary.NativeEndian.PutUint64(b[:], c)
		if _, err := unix.Write(fd, b[:]); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("set count %d: %w", c, err)
		}
	}
	return newFile(fd, d)
}

func (r *Restorer) timerfd(d *Desc) (*os.File, error) {
	t := d.Timerfd
	if t == nil {
		return nil, errors.New("timerfd without state")
	}
	fd, err := unix.TimerfdCreate(t.Clock, unix.TFD_CLOEXEC|d.Flags&unix.O_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create(clock %d): %w", t.Clock, err)
	}
	// An expired periodic timer shows 0 remaining (the kernel re-arms it
	// only when read): it is re-armed one interval ahead.
	value := t.ValueNs
	if value == 0 {
		value = t.IntervNs
	}
	if value > 0 {
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(value), Interval: unix.NsecToTimespec(t.IntervNs)}
		if err := unix.TimerfdSettime(fd, 0, &spec, nil); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("timerfd_settime: %w", err)
		}
	}
	// After settime, which clears the count of expirations.
	if t.Ticks > 0 {
		if err := setTicks(fd, t.Ticks); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("TFD_IOC_SET_TICKS %d: %w", t.Ticks, err)
		}
	}
	return newFile(fd, d)
}

// inotify re-adds the watches so that each gets its old watch number:
// numbers are allocated upwards, so gaps are filled with throw-away watches
// that are removed again, and the IN_IGNORED events that causes are drained.
func (r *Restorer) inotify(d *Desc) (*os.File, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	f, _ := newFile(fd, d)
	ws := append([]InotifyWatch(nil), d.Inotify.Watches...)
	sort.Slice(ws, func(i, j int) bool { return ws[i].WD < ws[j].WD })
	var scratch string
	next := 1
	for _, w := range ws {
		for next < w.WD {
			if scratch == "" {
				if scratch, err = os.MkdirTemp("", "ftl-inotify-"); err != nil {
					f.Close()
					return nil, fmt.Errorf("scratch dir: %w", err)
				}
				defer os.RemoveAll(scratch)
			}
			wd, err := unix.InotifyAddWatch(fd, scratch, unix.IN_ATTRIB)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("filler watch: %w", err)
			}
			unix.InotifyRmWatch(fd, uint32(wd))
			next = wd + 1
		}
		wd, err := unix.InotifyAddWatch(fd, w.Path, w.Mask)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("watch %s: %w", w.Path, err)
		}
		if wd != w.WD {
			f.Close()
			return nil, fmt.Errorf("watch %s got number %d, want %d", w.Path, wd, w.WD)
		}
		next = wd + 1
	}
	buf := make([]byte, 4096)
	for {
		if n, err := unix.Read(fd, buf); err != nil || n <= 0 {
			break
		}
	}
	if err := setFlags(fd, d.Flags); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Warnings lists what the restore could not bring back without failing:
// connections restored as closed because their address pair was taken.
func (r *Restorer) Warnings() []string { return r.warnings }

// Close closes every file the Restorer created (not the env's stdio).
func (r *Restorer) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for id, f := range r.files {
		if d := r.descs[id]; d != nil && d.External != nil {
			continue
		}
		errs = append(errs, f.Close())
	}
	for _, f := range r.holders {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
