package launcher

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ftlinux/ftl/libos/procfs"
)

// Process is one process of a run, as seen from the host.
type Process struct {
	HostPid int    `json:"host_pid"` // pid in the host's pid namespace
	NSPid   int    `json:"pid"`      // pid inside the run's namespace (the program is 2)
	PPid    int    `json:"ppid"`     // parent's pid inside the run's namespace (1 is the init)
	Comm    string `json:"comm"`     // command name (/proc/PID/comm)
}

// startTime returns field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	st, err := procfs.ReadStat("/proc", pid)
	return st.StartTime(), err
}

// pidAlive reports whether host pid runs (not a zombie) and, when start is
// not zero, started at that time (so a reused pid does not count).
func pidAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := procfs.ReadStat("/proc", pid)
	if err != nil || st.Dead() {
		return false
	}
	return start == 0 || st.StartTime() == start
}

// nsPids parses the NSpid line of root/PID/status: the pid in each pid
// namespace from the proc mount's own down to the process's.
func nsPids(root string, pid int) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "status"))
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "NSpid:")
		if !ok {
			continue
		}
		var out []int
		for _, f := range strings.Fields(rest) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("parse NSpid of %d: %w", pid, err)
			}
			out = append(out, n)
		}
		return out, nil
	}
	return nil, fmt.Errorf("no NSpid in %s/%d/status", root, pid)
}

// nsMembers returns every process under proc mount root whose pid namespace
// is pidNS, except the namespace's init; pids are those of root's namespace.
// Processes that vanish while being read are skipped; zombies are kept.
func nsMembers(root, pidNS string, initPid int) ([]Process, error) {
	pids, err := procfs.Numbers(root)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []Process
	hostToNS := map[int]int{initPid: 1}
	type member struct {
		p        Process
		hostPPid int
	}
	var ms []member
	for _, pid := range pids {
		if pid == initPid {
			continue
		}
		ns, err := os.Readlink(filepath.Join(root, strconv.Itoa(pid), "ns", "pid"))
		if err != nil || ns != pidNS {
			continue
		}
		ids, err := nsPids(root, pid)
		if err != nil || len(ids) == 0 {
			continue
		}
		st, err := procfs.ReadStat(root, pid)
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "comm"))
		p := Process{HostPid: pid, NSPid: ids[len(ids)-1], Comm: strings.TrimSpace(string(comm))}
		hostToNS[pid] = p.NSPid
		ms = append(ms, member{p, st.PPid()})
	}
	for _, m := range ms {
		m.p.PPid = hostToNS[m.hostPPid]
		out = append(out, m.p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NSPid < out[j].NSPid })
	return out, nil
}

// Processes lists the run's processes (every process in the init's pid
// namespace except the init itself), sorted by namespace pid.
func (s *Spec) Processes() ([]Process, error) {
	if s.InitPid == 0 || s.PidNS == "" {
		return nil, nil
	}
	return nsMembers("/proc", s.PidNS, s.InitPid)
}
