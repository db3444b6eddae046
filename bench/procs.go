package bench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ftlinux/ftl/libos/procfs"
)

// freePort asks the kernel for a free loopback TCP port. Another process
// could take it before the server binds it; the server's start then fails
// and the round reports it.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until something accepts connections on 127.0.0.1:port.
func waitListening(port int, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if alive != nil {
			if aerr := alive(); aerr != nil {
				return aerr
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: nothing listens on %s after %v", ErrServer, addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listenerInode finds the socket inode of the TCP listener on 127.0.0.1:port.
func listenerInode(port int) (string, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	want := fmt.Sprintf("0100007F:%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(fs) >= 10 && fs[1] == want && fs[3] == "0A" {
			return fs[9], nil
		}
	}
	return "", fmt.Errorf("%w: no listener on port %d in /proc/net/tcp", ErrServer, port)
}

// procInfo is what the tree walk needs from /proc/PID/stat.
type procInfo struct{ ppid int }

// allProcs reads the parent of every process.
func allProcs() map[int]procInfo {
	out := map[int]procInfo{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			out[pid] = procInfo{ppid: ppid}
		}
	}
	return out
}

func parentOf(pid int) (int, bool) {
	st, err := procfs.ReadStat("/proc", pid)
	if err != nil {
		return 0, false
	}
	return st.PPid(), true
}

// serverTree returns the host pids whose CPU time is the server's: the
// process that owns the listening socket, its ancestors up to (not
// including) pid 1 or any ancestor of the bench itself (under ftl these are
// the namespace's init and whatever ftl keeps around it), and every
// descendant of the topmost of them (nginx workers, helpers).
func serverTree(port int) ([]int, error) {
	inode, err := listenerInode(port)
	if err != nil {
		return nil, err
	}
	target := "socket:[" + inode + "]"
	procs := allProcs()
	holders := map[int]bool{}
	for pid := range procs {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == target {
				holders[pid] = true
				break
			}
		}
	}
	// nginx's master and workers all hold the socket: take the topmost.
	owner := 0
	for pid := range holders {
		if !holders[procs[pid].ppid] {
			owner = pid
		}
	}
	if owner == 0 {
		return nil, fmt.Errorf("%w: no process owns the listener on port %d", ErrServer, port)
	}
	mine := map[int]bool{1: true, 0: true}
	for p := os.Getpid(); p > 1; p = procs[p].ppid {
		mine[p] = true
		if _, ok := procs[p]; !ok {
			break
		}
	}
	top := owner
	for {
		pp := procs[top].ppid
		if mine[pp] {
			break
		}
		if _, ok := procs[pp]; !ok {
			break
		}
		top = pp
	}
	children := map[int][]int{}
	for pid, pi := range procs {
		children[pi.ppid] = append(children[pi.ppid], pid)
	}
	var tree []int
	stack := []int{top}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		tree = append(tree, p)
		stack = append(stack, children[p]...)
	}
	return tree, nil
}

// cpuNanos sums the CPU time, in nanoseconds, of every thread of every
// process in pids (from /proc/PID/task/TID/schedstat). Processes that are
// gone contribute nothing.
func cpuNanos(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/task", pid)
		tasks, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
			if err != nil {
				continue
			}
			fs := strings.Fields(string(b))
			if len(fs) == 0 {
				continue
			}
			if ns, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
				total += ns
			}
		}
	}
	return total
}
