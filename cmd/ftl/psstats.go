package main

import (
	"strings"

	"github.com/ftlinux/ftl/libos"
)

// runStats is what `ftl ps` reads from a run's shared-memory region.
type runStats struct {
	// BytesIn and BytesOut are the socket payload bytes every process of the
	// run (live or exited) read and wrote, over all its sockets.
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
	// Established and Listening count the open TCP/UDP sockets by state.
	Established int        `json:"established"`
	Listening   int        `json:"listening"`
	Conns       []connStat `json:"connections"` // every socket open now, network or not
	Processes   int        `json:"shim_processes"`
	Dropped     uint64     `json:"conns_dropped,omitempty"` // sockets the region had no room for
}

// connStat is one open socket of a run.
type connStat struct {
	Pid      int    `json:"pid"`
	FD       int    `json:"fd"`
	Kind     string `json:"kind"`
	State    string `json:"state"`
	Local    string `json:"local"`
	Peer     string `json:"peer"`
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`
}

func isNetwork(kind string) bool {
	return strings.HasPrefix(kind, "tcp") || strings.HasPrefix(kind, "udp")
}

// regionStats reads a run's region.
func regionStats(path string) (*runStats, error) {
	r, err := libos.OpenRegion(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rs := r.Stats()
	// Bytes of exited processes whose slots were reused live in the header.
	st := &runStats{Conns: []connStat{}, Dropped: rs.ConnsDropped,
		BytesIn: rs.ReusedBytesIn, BytesOut: rs.ReusedBytesOut}
	for _, p := range r.Procs() {
		st.BytesIn += p.BytesIn
		st.BytesOut += p.BytesOut
		if !p.Exited {
			st.Processes++
		}
	}
	for _, c := range r.Conns() {
		st.Conns = append(st.Conns, connStat{Pid: c.Pid, FD: c.FD, Kind: c.Kind, State: c.State,
			Local: c.Local, Peer: c.Peer, BytesIn: c.BytesIn, BytesOut: c.BytesOut})
		if isNetwork(c.Kind) {
			switch c.State {
			case "established":
				st.Established++
			case "listen":
				st.Listening++
			}
		}
	}
	return st, nil
}
