package snapshot

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/snapshot/image"
	"github.com/ftlinux/ftl/snapshot/internal/sys"
)

// A twin is a copy-on-write child forked inside a frozen process by an
// injected clone: its address space is the process's memory at the freeze,
// kept by the kernel while the process runs on. A --leave-running dump
// forks one per process, lets the tree go, and only then copies the
// private pages from the twins, so the freeze no longer grows with the
// size of memory (a 1 GiB fork copies page tables, ~24 ms here, instead of
// 1 GiB of pages). Shared mappings are shared with the twin too, so they
// are still copied while frozen.
//
// Invariants:
//   - A twin never runs. It is born ptrace-stopped (PTRACE_O_TRACECLONE on
//     the forking thread), killed should the tracer die
//     (PTRACE_O_EXITKILL), and its registers point at exit_group should it
//     ever be resumed anyway.
//   - It is created with no exit signal and shares the fd table and fs
//     (CLONE_FILES|CLONE_FS): the process gets no SIGCHLD, a plain wait
//     (without __WALL) never sees it, and no file gains a reference.
//   - It is killed and reaped before Dump returns: by us as its tracer,
//     then by its parent through an injected wait4(pid, __WALL|WNOHANG).
//   - Mappings the twin lacks (MADV_DONTFORK) or holds empty
//     (MADV_WIPEONFORK) are copied from the process while frozen.
type twin struct {
	pid   int // host pid
	nspid int // pid in the process's own namespace (clone's return value)
	mem   *os.File
}

// read copies the twin's memory at addr into b through /proc/PID/mem.
// Never process_vm_readv: it pins pages, and pinning a page shared
// copy-on-write unshares it — each read would copy the page inside the
// twin (12 us a page here, and the memory twice).
func (tw *twin) read(addr uint64, b []byte) error {
	if err := readMem(tw.mem, addr, b); err != nil {
		return fmt.Errorf("twin %d: %w", tw.pid, err)
	}
	return nil
}

// errTwin marks a failure to fork a twin; the dump then copies memory
// while frozen instead.
var errTwin = errors.New("copy-on-write twin")

// forkTwins forks a twin in every frozen process that has private pages
// and copies what the twins cannot give while still frozen. On error,
// twins already made are gone again and the tree is still frozen.
func (d *dumper) forkTwins() error {
	for _, p := range d.procs {
		if !hasPrivatePages(p) {
			continue
		}
		if err := d.forkTwin(p); err != nil {
			d.dropTwins(true)
			return fmt.Errorf("process %d: %w: %w", p.pid, errTwin, err)
		}
		if err := d.copyEarly(p); err != nil {
			d.dropTwins(true)
			return fmt.Errorf("process %d: %w", p.pid, err)
		}
	}
	return nil
}

func hasPrivatePages(p *dproc) bool {
	for _, mp := range p.img.Mappings {
		if len(mp.Extents) > 0 {
			return true
		}
	}
	return false
}

// withSignalsBlocked runs f with every signal blocked in the stopped
// thread tid (an injected clone fails with ERESTARTNOINTR while a signal
// is pending; no handler may run between injections), then restores its
// mask.
func withSignalsBlocked(tid int, f func() error) error {
	mask, err := sys.GetSigmask(tid)
	if err != nil {
		return fmt.Errorf("thread %d: sigmask: %w", tid, err)
	}
	if err := sys.SetSigmask(tid, ^uint64(0)); err != nil {
		return fmt.Errorf("thread %d: block signals: %w", tid, err)
	}
	defer sys.SetSigmask(tid, mask)
	return f()
}

func (d *dumper) forkTwin(p *dproc) error {
	lead := p.threads[0].tid
	err := withSignalsBlocked(lead, func() error {
		if err := unix.PtraceSetOptions(lead, unix.PTRACE_O_TRACECLONE); err != nil {
			return fmt.Errorf("set options: %w", err)
		}
		res, err := inject(lead, p.gadget, unix.SYS_CLONE, unix.CLONE_FILES|unix.CLONE_FS, 0, 0, 0, 0)
		unix.PtraceSetOptions(lead, 0)
		if len(res.newTasks) > 0 {
			p.twin = &twin{pid: res.newTasks[0], nspid: int(res.ret)}
		}
		if err != nil {
			return fmt.Errorf("clone: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if p.twin == nil {
		return fmt.Errorf("clone made no task that was reported")
	}
	tw := p.twin
	if _, err := waitStop(tw.pid); err != nil {
		return err
	}
	if err := unix.PtraceSetOptions(tw.pid, unix.PTRACE_O_EXITKILL); err != nil {
		return fmt.Errorf("twin %d: set options: %w", tw.pid, err)
	}
	var r unix.PtraceRegs
	if err := unix.PtraceGetRegs(tw.pid, &r); err != nil {
		return fmt.Errorf("twin %d: getregs: %w", tw.pid, err)
	}
	r.Rip, r.Rax, r.Orig_rax, r.Rdi = p.gadget, unix.SYS_EXIT_GROUP, ^uint64(0), 0
	if err := unix.PtraceSetRegs(tw.pid, &r); err != nil {
		return fmt.Errorf("twin %d: setregs: %w", tw.pid, err)
	}
	tw.mem, err = os.Open(fmt.Sprintf("/proc/%d/mem", tw.pid))
	if err != nil {
		return fmt.Errorf("twin %d: %w", tw.pid, err)
	}
	return nil
}

// copyEarly copies, from the frozen process, every mapping with private
// pages that the twin did not inherit whole: one missing from the twin's
// maps (MADV_DONTFORK) or whose first saved page the twin does not hold
// (MADV_WIPEONFORK).
func (d *dumper) copyEarly(p *dproc) error {
	tw := p.twin
	maps, err := readMaps(tw.pid)
	if err != nil {
		return fmt.Errorf("twin %d: %w", tw.pid, err)
	}
	starts := map[uint64]bool{}
	for _, ml := range maps {
		starts[ml.lo] = true
	}
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", tw.pid))
	if err != nil {
		return fmt.Errorf("twin %d: %w", tw.pid, err)
	}
	defer pm.Close()
	for i, mp := range p.img.Mappings {
		if !starts[mp.Start] && flaggable(mp.Kind) {
			p.vm.noteMissing(i) // MADV_DONTFORK (vmflags.go)
		}
		if len(mp.Extents) == 0 {
			continue
		}
		if starts[mp.Start] {
			var e [8]byte
			if _, err := pm.ReadAt(e[:], int64(mp.Extents[0].Addr/pageSize*8)); err != nil {
				return fmt.Errorf("twin %d: pagemap: %w", tw.pid, err)
			}
			if v := *(*uint64)(unsafe.Pointer(&e[0])); v>>63&1 == 1 || v>>62&1 == 1 {
				continue // inherited: present or swapped in the twin
			}
		}
		b := make([]byte, 0, image.Pages(mp.Extents)*pageSize)
		for _, e := range mp.Extents {
			lo := len(b)
			b = b[:lo+int(e.Pages)*pageSize]
			if err := readRemote(p.pid, p.mem, e.Addr, b[lo:]); err != nil {
				return fmt.Errorf("read %x: %w", e.Addr, err)
			}
		}
		if p.early == nil {
			p.early = map[int][]byte{}
		}
		p.early[i] = b
	}
	return nil
}

// dropTwins kills and reaps every twin. frozen says the tree is still
// stopped by us (the reaping wait4 is then injected without a new seize).
// Failures to reap become warnings: the image is not affected, but the
// process keeps a zombie child with no exit signal.
func (d *dumper) dropTwins(frozen bool) {
	for _, p := range d.procs {
		tw := p.twin
		if tw == nil {
			continue
		}
		p.twin = nil
		if tw.mem != nil {
			tw.mem.Close()
		}
		unix.Kill(tw.pid, unix.SIGKILL)
		reapTasks([]int{tw.pid}, 5*time.Second)
		if err := reapInParent(p, tw, frozen); err != nil {
			d.warnings = append(d.warnings, fmt.Sprintf("process %d: zombie copy-on-write twin %d left: %v", p.pid, tw.nspid, err))
		}
	}
}

// reapInParent makes p wait for its dead twin.
func reapInParent(p *dproc, tw *twin, frozen bool) error {
	tid := p.threads[0].tid
	if !frozen {
		// Another tracer (a concurrent checkpoint) may hold the process
		// for a moment: a dead twin left unreaped would be a zombie child
		// with no exit signal that nobody ever collects, so keep trying.
		var dt *dtask
		var err error
		for deadline := time.Now().Add(10 * time.Second); dt == nil; time.Sleep(5 * time.Millisecond) {
			ts, terr := tasks(p.pid)
			if terr != nil || gone(p.pid) {
				return nil // the process is gone: the twin went to a subreaper
			}
			for _, t := range ts {
				if dt, err = seizeStop(t); err == nil {
					break
				}
			}
			if dt == nil && time.Now().After(deadline) {
				return err
			}
		}
		tid = dt.tid
		defer sys.DetachSig(dt.tid, dt.stolen)
	}
	return withSignalsBlocked(tid, func() error {
		for try := 0; try < 50; try++ {
			r, err := inject(tid, p.gadget, unix.SYS_WAIT4, uint64(tw.nspid), 0, unix.WNOHANG|unix.WALL, 0)
			if errors.Is(err, unix.ECHILD) {
				return nil // reaped already (SIGCHLD ignored: the kernel reaps)
			}
			if err != nil {
				return err
			}
			if int(r.ret) == tw.nspid {
				return nil
			}
			time.Sleep(100 * time.Microsecond)
		}
		return fmt.Errorf("still not a zombie")
	})
}

// seizeStop seizes tid and waits for it to stop, keeping a signal whose
// delivery the stop interrupted.
func seizeStop(tid int) (*dtask, error) {
	if err := sys.Seize(tid, 0); err != nil {
		return nil, err
	}
	dt := &dtask{tid: tid}
	if err := unix.PtraceInterrupt(tid); err != nil {
		sys.DetachSig(tid, 0)
		return nil, fmt.Errorf("interrupt %d: %w", tid, err)
	}
	ws, err := waitStop(tid)
	if err != nil {
		return nil, err
	}
	if ws.TrapCause() == 0 && ws.StopSignal() != unix.SIGTRAP && ws.StopSignal() != unix.SIGSTOP {
		// A signal-delivery-stop: the signal is dequeued; keep it.
		if si, err := sys.GetSiginfo(tid); err == nil {
			dt.stolen, dt.stolenSI = int(ws.StopSignal()), si
		}
	}
	return dt, nil
}
