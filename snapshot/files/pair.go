package files

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Pair links the two ends of each pipe and unix socket connection found
// in the tree, keeps one copy of a pipe's or FIFO's buffered data, and
// turns a pipe, socket or terminal whose other end is outside the tree
// into an "external" description when it is only used as fd 0, 1 or 2.
// Anything else with a peer outside the tree is refused (ErrExternal).
// Call it after the last Add.
func (d *Dumper) Pair() error {
	d.paired = true
	var errs []error
	byIno := map[uint64][]*held{}
	sockByIno := map[uint64]*held{}
	for _, h := range d.descs {
		switch h.desc.Kind {
		case KindPipe, KindFIFO:
			byIno[h.desc.Pipe.Ino] = append(byIno[h.desc.Pipe.Ino], h)
		case KindUnix:
			sockByIno[h.desc.Sock.Ino] = h
		}
	}
	for _, group := range byIno {
		// One copy of the data: on the first description of the group.
		for _, h := range group[1:] {
			h.desc.Pipe.Data = nil
		}
		if group[0].desc.Kind == KindFIFO {
			continue
		}
		var r, w *held
		for _, h := range group {
			if h.desc.Pipe.Read {
				r = h
			} else {
				w = h
			}
		}
		if r != nil && w != nil && len(group) == 2 {
			r.desc.Pipe.PeerID, w.desc.Pipe.PeerID = w.desc.ID, r.desc.ID
			continue
		}
		for _, h := range group {
			errs = append(errs, externalize(h, "pipe"))
		}
	}
	for _, h := range sockByIno {
		s := h.desc.Sock
		if s.PeerIno == 0 || s.State == tcpListen {
			continue
		}
		p := sockByIno[s.PeerIno]
		if p == nil && s.Type == unix.SOCK_DGRAM && s.Peer != "" {
			continue // connected to a named socket outside the tree (/dev/log...): reconnected by path
		}
		if p == nil {
			errs = append(errs, externalize(h, "unix socket"))
			continue
		}
		s.PeerID = p.desc.ID
		s.Pair = p.desc.Sock.PeerIno == s.Ino
		if !s.Pair && s.Type == unix.SOCK_STREAM {
			errs = append(errs, fmt.Errorf("%w: unix stream socket %d connected to a socket not connected back", ErrUnsupported, s.Ino))
		}
	}
	return errors.Join(errs...)
}

// externalize makes h the restorer's stdio if all its fds are 0, 1 or 2
// (the lowest number decides which), else refuses it.
func externalize(h *held, what string) error {
	low := 3
	for _, u := range h.uses {
		if u.fd > 2 {
			return fdError(u.pid, u.fd, h.desc.Kind, ErrExternal, "%s whose other end is outside the tree (allowed only as fd 0, 1, 2)", what)
		}
		low = min(low, u.fd)
	}
	h.desc.External = &External{Stdio: low, What: what}
	h.desc.Kind = KindExternal
	return nil
}
