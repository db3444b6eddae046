package files

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/sys/unix"
)

const deletedSuffix = " (deleted)"

// dumpFile records a regular file, directory or memfd. Deleted files and
// memfds keep their content (bounded by MaxFileContent).
func dumpFile(h *held, link string, st *unix.Stat_t) error {
	desc := h.desc
	fs := &FileState{Mode: st.Mode & 0o7777, Dev: st.Dev, Ino: st.Ino}
	desc.File = fs
	desc.Path = link
	if strings.HasSuffix(link, deletedSuffix) && (st.Nlink == 0 || desc.Kind == KindMemfd) {
		desc.Path = strings.TrimSuffix(link, deletedSuffix)
		fs.Deleted = true
	}
	if desc.Kind == KindDir || !fs.Deleted {
		return nil
	}
	if st.Size > MaxFileContent {
		return fmt.Errorf("%w: deleted-but-open file of %d bytes (limit %d)", ErrTooLarge, st.Size, MaxFileContent)
	}
	rfd := h.local
	if desc.Flags&unix.O_ACCMODE == unix.O_WRONLY || desc.Flags&unix.O_PATH != 0 {
		fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", h.local), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("reopen for reading: %w", err)
		}
		defer unix.Close(fd)
		rfd = fd
	}
	buf := make([]byte, st.Size)
	n := 0
	for n < len(buf) {
		m, err := unix.Pread(rfd, buf[n:], int64(n))
		if err != nil {
			return fmt.Errorf("read content: %w", err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	fs.Content = buf[:n]
	if desc.Kind == KindMemfd {
		if s, err := unix.FcntlInt(uintptr(h.local), unix.F_GET_SEALS, 0); err == nil {
			fs.Seals = s
		}
	}
	return nil
}

// dumpPipe records one description of a pipe or FIFO and its buffered
// bytes, read with tee(2) so the pipe keeps them.
func dumpPipe(h *held, link string, st *unix.Stat_t) error {
	desc := h.desc
	ps := &PipeState{Ino: st.Ino, Read: desc.Flags&unix.O_ACCMODE != unix.O_WRONLY}
	desc.Pipe = ps
	if desc.Kind == KindFIFO {
		desc.Path = strings.TrimSuffix(link, deletedSuffix)
		if strings.HasSuffix(link, deletedSuffix) {
			return fmt.Errorf("%w: FIFO whose path was removed", ErrUnsupported)
		}
	}
	sz, err := unix.FcntlInt(uintptr(h.local), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return fmt.Errorf("F_GETPIPE_SZ: %w", err)
	}
	ps.Size = sz
	n, err := ioctlInt(h.local, unix.SIOCINQ)
	if err != nil {
		return fmt.Errorf("FIONREAD: %w", err)
	}
	if n == 0 {
		return nil
	}
	data, err := peekPipe(h.local, sz, n)
	if err != nil {
		return err
	}
	ps.Data = data
	return nil
}

// peekPipe copies the n buffered bytes of the pipe behind fd without
// consuming them: a fresh read end (opened through /proc, so this works for
// write ends too) is tee'd into a scratch pipe of the same capacity.
func peekPipe(fd, size, n int) ([]byte, error) {
	rfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open read end: %w", err)
	}
	defer unix.Close(rfd)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("scratch pipe: %w", err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size); err != nil {
		return nil, fmt.Errorf("scratch pipe size %d: %w", size, err)
	}
	t, err := unix.Tee(rfd, p[1], n, unix.SPLICE_F_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("tee: %w", err)
	}
	buf := make([]byte, t)
	if _, err := io.ReadFull(fdReader(p[0]), buf); err != nil {
		return nil, fmt.Errorf("read scratch pipe: %w", err)
	}
	return buf, nil
}

type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	n, err := unix.Read(int(r), b)
	if n < 0 {
		n = 0
	}
	if err == nil && n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, err
}
