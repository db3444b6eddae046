package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/libos/procfs"
)

// Up-front refusals of per-task kernel state the engine can neither save
// nor rebuild: a ptrace tracer, seccomp, an io_uring ring kept only by a
// mapping. They read /proc only, before the freeze, so a refused tree is
// never stopped and no image is started. Without them a traced task fails
// the seize with EPERM, a seccomp filter is silently left out of the image,
// a thread in strict mode is killed by the first injected system call, and
// an io_uring mapping fails the dump late as an unsupported shared
// mapping. An io_uring fd is refused by the fd layer (files.KindIOUring).

// precheck refuses the first process of pids (a whole tree, listed before
// the freeze) that holds such state. The error wraps ErrUnsupported and
// names the process, its command and what it holds. A process that is gone
// fails the check with ErrExited, as the fd check would a moment later (in
// one line, where several processes of a dying tree would make several);
// a thread that goes away is skipped.
func precheck(pids []int) error {
	own, err := readTaskStatus("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read own status: %w", err)
	}
	for _, pid := range pids {
		if err := checkTasks(pid, own); err != nil {
			return err
		}
		if err := checkIOUringMaps(pid); err != nil {
			return err
		}
	}
	return nil
}

// taskStatus is what the checks need from /proc/PID/task/TID/status.
type taskStatus struct {
	tracerPid int // TracerPid: 0 when nothing traces the task
	seccomp   int // Seccomp: 0 disabled, 1 strict, 2 filter
	filters   int // Seccomp_filters: filters attached, inherited ones included
}

// Seccomp modes as /proc shows them.
const (
	seccompStrict = 1
	seccompFilter = 2
)

// checkTasks refuses a process one of whose threads is traced or runs
// under seccomp. Both are per thread: a debugger may attach to one thread,
// and a filter installed without SECCOMP_FILTER_FLAG_TSYNC binds only the
// thread that installed it (and the threads it creates later).
//
// A filter inherited from ftl's own ancestors (a container's seccomp
// profile) is not refused: the restored process inherits the same filters
// from the restorer. Filters are counted, not compared: a task with no
// more filters than ftl itself is taken to hold only the inherited ones.
func checkTasks(pid int, own taskStatus) error {
	tids, err := procfs.Numbers(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return goneError(pid, err)
	}
	for _, tid := range tids {
		st, err := readTaskStatus(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
		if err != nil {
			continue // exited meanwhile
		}
		who := procLabel(pid)
		if tid != pid {
			who += fmt.Sprintf(" thread %d", tid)
		}
		switch {
		case st.tracerPid != 0:
			return tracedError(who, st.tracerPid)
		case st.seccomp == seccompStrict:
			return fmt.Errorf("%s runs in seccomp strict mode (Seccomp: 1): it cannot be re-entered at restore: %w", who, ErrUnsupported)
		case st.seccomp == seccompFilter && (own.seccomp != seccompFilter || st.filters > own.filters):
			return fmt.Errorf("%s has a seccomp filter (Seccomp: 2 with %d filter(s); ftl runs under %d): seccomp filters cannot be re-installed at restore yet: %w",
				who, st.filters, own.filters, ErrUnsupported)
		}
	}
	return nil
}

// tracedError refuses task who, traced by tracer (a debugger, strace, or
// a concurrent checkpoint, which the freeze meets as an EPERM seize).
func tracedError(who string, tracer int) error {
	return fmt.Errorf("%s is ptraced by process %d (%s): a traced process cannot be checkpointed; detach the debugger, strace or other tracer (or wait for the other checkpoint) first: %w",
		who, tracer, procComm(tracer), ErrUnsupported)
}

// ioUringMapName is how /proc/PID/maps names a mapping of an io_uring's
// rings (SQ/CQ rings or SQEs). The mapping keeps the ring alive after its
// fd is closed, so the fd layer does not see it.
const ioUringMapName = "anon_inode:[io_uring]"

// checkIOUringMaps refuses a process that maps io_uring rings: the ring's
// submissions in flight and its kernel-side state cannot be saved, and the
// dump would otherwise fail late on an unsupported shared mapping. A ring
// set up with IORING_SETUP_NO_MMAP whose fd was closed after
// IORING_REGISTER_RING_FDS leaves no trace in /proc and is not caught.
func checkIOUringMaps(pid int) error {
	maps, err := readMaps(pid)
	if err != nil {
		return goneError(pid, err)
	}
	for _, ml := range maps {
		if ml.name == ioUringMapName {
			return fmt.Errorf("%s maps an io_uring ring (%x-%x %s): an io_uring's in-flight kernel state cannot be saved: %w",
				procLabel(pid), ml.lo, ml.hi, ioUringMapName, ErrUnsupported)
		}
	}
	return nil
}

// goneError is ErrExited for a process whose /proc entry is gone; other
// read errors are left to the dump, which reads the same files again.
func goneError(pid int, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("process %d went away before the freeze: %w", pid, ErrExited)
	}
	return nil
}

// readTaskStatus parses the fields of a status file the checks use.
func readTaskStatus(path string) (taskStatus, error) {
	f, err := statusFields(path)
	if err != nil {
		return taskStatus{}, err
	}
	var st taskStatus
	st.tracerPid, _ = strconv.Atoi(f["TracerPid"])
	st.seccomp, _ = strconv.Atoi(f["Seccomp"])
	st.filters, _ = strconv.Atoi(f["Seccomp_filters"])
	return st, nil
}

// procLabel is "process PID (COMM)" for messages.
func procLabel(pid int) string {
	return fmt.Sprintf("process %d (%s)", pid, procComm(pid))
}

// procComm is the command name of pid, "?" if it is gone.
func procComm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
