package files

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Injector runs system calls inside a restored target process. It is
// implemented by the engine core (and by a fake in the tests).
type Injector interface {
	Syscall(nr uintptr, args ...uint64) (uint64, error) // runs inside the target
	Scratch() (addr uint64, size int)                   // scratch memory in the target (>= 4 KiB)
	WriteMem(addr uint64, b []byte) error
	ReadMem(addr uint64, b []byte) error
}

// Finish completes fd state inside target pid once all of its fds (fds)
// are installed at their numbers: it re-adds every epoll interest entry
// with the target's own fd numbers (epoll items are keyed by file and fd
// number, so they must be added from inside). An epoll description shared
// by several processes is filled once, by the first process whose fd
// table holds each watched fd.
func (r *Restorer) Finish(pid int, fds []FD, inj Injector) error {
	if r.closed {
		return ErrClosed
	}
	byNum := map[int]FD{}
	for _, fd := range fds {
		byNum[fd.Num] = fd
	}
	addr, size := inj.Scratch()
	if size < 12 {
		return fmt.Errorf("process %d: scratch of %d bytes is too small", pid, size)
	}
	for _, fd := range fds {
		d := r.descs[fd.DescID]
		if d == nil || d.Kind != KindEpoll || d.Epoll == nil {
			continue
		}
		done := r.epoll[d.ID]
		if done == nil {
			done = map[int]bool{}
			r.epoll[d.ID] = done
		}
		for _, it := range d.Epoll.Items {
			if done[it.FD] {
				continue
			}
			if t, ok := byNum[it.FD]; !ok || r.descs[t.DescID] == nil || r.descs[t.DescID].Ino != it.Ino {
				continue // not (that file) in this process; another sharer adds it
			}
			var ev [12]byte // struct epoll_event is packed on x86-64
			binary.LittleEndian.PutUint32(ev[0:], it.Events)
			binary.LittleEndian.PutUint64(ev[4:], it.Data)
			if err := inj.WriteMem(addr, ev[:]); err != nil {
				return fmt.Errorf("process %d: write epoll_event: %w", pid, err)
			}
			_, err := inj.Syscall(unix.SYS_EPOLL_CTL, uint64(fd.Num), unix.EPOLL_CTL_ADD, uint64(it.FD), addr)
			if err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("process %d: epoll fd %d: add fd %d (events %#x): %w", pid, fd.Num, it.FD, it.Events, err)
			}
			done[it.FD] = true
		}
	}
	return nil
}

// Pending lists the epoll entries no Finish could add (their fd was in no
// restored process): call after the last Finish; nil when complete.
func (r *Restorer) Pending() error {
	var errs []error
	for id, d := range r.descs {
		if d.Kind != KindEpoll || d.Epoll == nil {
			continue
		}
		for _, it := range d.Epoll.Items {
			if !r.epoll[id][it.FD] {
				errs = append(errs, fmt.Errorf("epoll description %d: entry for fd %d not restored", id, it.FD))
			}
		}
	}
	return errors.Join(errs...)
}
