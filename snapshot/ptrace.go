package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/libos/procfs"
)

// proc is one traced process: its /proc/PID/mem and the syscall gadget used
// to inject system calls into its threads.
type proc struct {
	pid    int // pid as seen by the tracer
	mem    *os.File
	gadget uint64
	// scratch is a read-write area in the target for syscall arguments.
	scratch     uint64
	scratchSize int
}

// regsToArr and arrToRegs convert between unix.PtraceRegs and the image's array.
func regsToArr(r *unix.PtraceRegs) [27]uint64 {
	var a [27]uint64
	copy(a[:], unsafeRegs(r))
	return a
}

func arrToRegs(a [27]uint64) unix.PtraceRegs {
	var r unix.PtraceRegs
	copy(unsafeRegs(&r), a[:])
	return r
}

// waitStop waits for tid to enter a ptrace stop and returns its status.
func waitStop(tid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("wait for %d: %w", tid, err)
		}
		if ws.Exited() || ws.Signaled() {
			return ws, fmt.Errorf("task %d: %w (status %#x)", tid, ErrExited, uint32(ws))
		}
		return ws, nil
	}
}

// findGadget finds a `syscall` instruction (0f 05) in the [vdso] of pid.
func findGadget(pid int, mem *os.File) (uint64, error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, fmt.Errorf("read maps: %w", err)
	}
	for _, l := range strings.Split(string(maps), "\n") {
		if !strings.HasSuffix(l, "[vdso]") {
			continue
		}
		var lo, hi uint64
		fmt.Sscanf(l, "%x-%x", &lo, &hi)
		b := make([]byte, hi-lo)
		if _, err := mem.ReadAt(b, int64(lo)); err != nil {
			return 0, fmt.Errorf("read vdso of %d: %w", pid, err)
		}
		i := bytes.Index(b, []byte{0x0f, 0x05})
		if i < 0 {
			return 0, fmt.Errorf("no syscall instruction in the vdso of %d", pid)
		}
		return lo + uint64(i), nil
	}
	return 0, fmt.Errorf("process %d has no [vdso]", pid)
}

// injectResult is what happened during one injected system call.
type injectResult struct {
	ret      uint64
	newTasks []int // tasks auto-attached by fork/clone events
}

// inject runs one system call in the stopped thread tid through gadget and
// restores its registers. A negative return becomes an error wrapping the
// syscall.Errno.
func inject(tid int, gadget uint64, nr uintptr, args ...uint64) (injectResult, error) {
	var res injectResult
	var saved, r unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &saved); err != nil {
		return res, fmt.Errorf("inject %d: getregs: %w", nr, err)
	}
	r = saved
	r.Rip, r.Rax, r.Orig_rax = gadget, uint64(nr), ^uint64(0)
	ptrs := []*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.R10, &r.R8, &r.R9}
	for i, a := range args {
		*ptrs[i] = a
	}
	if err := unix.PtraceSetRegs(tid, &r); err != nil {
		return res, fmt.Errorf("inject %d: setregs: %w", nr, err)
	}
	for {
		if err := unix.PtraceSingleStep(tid); err != nil {
			return res, fmt.Errorf("inject %d: singlestep: %w", nr, err)
		}
		ws, err := waitStop(tid)
		if err != nil {
			return res, fmt.Errorf("inject %d: %w", nr, err)
		}
		if ev := ws.TrapCause(); ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_CLONE || ev == unix.PTRACE_EVENT_VFORK {
			m, _ := unix.PtraceGetEventMsg(tid)
			res.newTasks = append(res.newTasks, int(m))
			continue
		}
		if ws.Stopped() && ws.StopSignal() == unix.SIGTRAP {
			break
		}
		// Any other stop (a signal that slipped through): suppress and go on.
	}
	if err := unix.PtraceGetRegs(tid, &r); err != nil {
		return res, fmt.Errorf("inject %d: getregs after: %w", nr, err)
	}
	if err := unix.PtraceSetRegs(tid, &saved); err != nil {
		return res, fmt.Errorf("inject %d: restore regs: %w", nr, err)
	}
	res.ret = r.Rax
	if v := int64(r.Rax); v < 0 && v > -4096 {
		return res, fmt.Errorf("injected syscall %d: %w", nr, unix.Errno(-v))
	}
	return res, nil
}

// sysc injects a syscall into the process's thread tid.
func (p *proc) sysc(tid int, nr uintptr, args ...uint64) (uint64, error) {
	r, err := inject(tid, p.gadget, nr, args...)
	return r.ret, err
}

// writeString writes a NUL-terminated string at the start of scratch.
func (p *proc) writeString(off uint64, s string) (uint64, error) {
	if len(s)+1 > p.scratchSize-int(off) {
		return 0, fmt.Errorf("string too long for scratch: %q", s)
	}
	if _, err := p.mem.WriteAt(append([]byte(s), 0), int64(p.scratch+off)); err != nil {
		return 0, fmt.Errorf("write scratch of %d: %w", p.pid, err)
	}
	return p.scratch + off, nil
}

// Injector runs system calls inside one stopped thread of a restored
// process; it is what snapshot/files uses to finish fd state.
type Injector struct {
	p   *proc
	tid int
}

// Syscall runs a system call in the target.
func (in *Injector) Syscall(nr uintptr, args ...uint64) (uint64, error) {
	return in.p.sysc(in.tid, nr, args...)
}

// Scratch is a read-write area in the target's memory.
func (in *Injector) Scratch() (uint64, int) { return in.p.scratch, in.p.scratchSize }

// WriteMem writes the target's memory.
func (in *Injector) WriteMem(addr uint64, b []byte) error {
	_, err := in.p.mem.WriteAt(b, int64(addr))
	return err
}

// ReadMem reads the target's memory.
func (in *Injector) ReadMem(addr uint64, b []byte) error {
	_, err := in.p.mem.ReadAt(b, int64(addr))
	return err
}

// statusFields parses /proc/PID/status into a map.
func statusFields(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// lastInt returns the last whitespace-separated integer of s (the innermost
// namespace's value in NSpid-style lines).
func lastInt(s string) int {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[len(f)-1])
	return n
}

func ints(s string) []uint32 {
	var out []uint32
	for _, f := range strings.Fields(s) {
		n, _ := strconv.ParseUint(f, 10, 32)
		out = append(out, uint32(n))
	}
	return out
}

// tasks lists the thread ids of pid.
func tasks(pid int) ([]int, error) {
	ts, err := procfs.Numbers(fmt.Sprintf("/proc/%d/task", pid))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("process %d: %w", pid, ErrNoProcess)
	}
	return ts, err
}

// children lists the child processes of pid (all its threads).
func children(pid int) []int {
	ts, _ := tasks(pid)
	var out []int
	for _, t := range ts {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, t))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}
