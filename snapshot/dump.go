package snapshot

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/ftlinux/ftl/libos/procfs"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/snapshot/files"
	"github.com/ftlinux/ftl/snapshot/image"
	"github.com/ftlinux/ftl/snapshot/internal/sys"
	"github.com/ftlinux/ftl/snapshot/netlock"
)

// DumpOptions says what to checkpoint and how.
type DumpOptions struct {
	Roots        []int  // host pids of the tree's top-level processes
	Name         string // recorded in the manifest
	PidNS        bool   // the tree runs in its own pid namespace under ftl's init
	Region       string // host path of the shim's region file, "" if none
	LeaveRunning bool   // detach instead of killing after the image is on disk
	Progress     func(done, total int64)
	// FrozenCopy makes a LeaveRunning dump copy memory while the tree is
	// frozen instead of from copy-on-write twins (twin.go).
	FrozenCopy bool
}

// DumpStats reports what a dump did.
type DumpStats struct {
	Processes, Threads int
	Pages              int64
	Frozen             time.Duration // first seize to detach or kill
	Total              time.Duration
	// Phases: seizing every task, reading process state, fds, memory, commit.
	Seize, Collect, Files, Memory, Commit time.Duration
	Dir                                   string
	// Twins is the number of copy-on-write twins the private pages were
	// copied from after the tree was let go (0: copied while frozen);
	// Fork is the frozen time spent forking them.
	Twins int
	Fork  time.Duration
	// Warnings name state the restore will drop by design (connections not
	// yet accepted, queued datagrams, inotify events), per process and fd.
	Warnings []string
}

type dtask struct {
	tid      int // host tid
	nstid    int
	sigmask  uint64
	stolen   int // signal taken by the freeze's signal-delivery-stop
	stolenSI sys.Siginfo
}

type dproc struct {
	proc
	nspid   int
	threads []*dtask
	img     *image.Process
	fds     []files.FD
	twin    *twin          // copy-on-write twin holding the frozen memory
	early   map[int][]byte // pages of mappings the twin lacks, by mapping index
	vm      vmState        // madvise/mlock/mseal flags (vmflags.go)
}

type dumper struct {
	o         DumpOptions
	procs     []*dproc
	byPid     map[int]*dproc
	seized    map[int]*dtask
	w         *image.Writer
	m         image.Manifest
	shared    map[string]int // "dev:inode" -> index in m.Shared
	sharedSrc []sharedSrc
	xsize     int
	files     *files.Dumper
	filesTime time.Duration
	warnings  []string
	released  bool
	argv      []string // the root's command line, read while frozen
	// page progress of the memory phases
	pagesTotal, pagesDone int64
}

type sharedSrc struct {
	pid    int
	lo, hi uint64
}

// Dump freezes the tree, writes its image to dir and then kills it (or lets
// it run with LeaveRunning).
func Dump(dir string, o DumpOptions) (*DumpStats, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	if len(o.Roots) == 0 {
		return nil, ErrEmptyTree
	}
	for _, r := range o.Roots {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", r)); err != nil {
			return nil, fmt.Errorf("process %d: %w", r, ErrNoProcess)
		}
	}
	if err := checkFiles(o.Roots); err != nil {
		return nil, err
	}
	d := &dumper{o: o, byPid: map[int]*dproc{}, seized: map[int]*dtask{}, shared: map[string]int{}, files: files.NewDumper()}
	defer d.files.Close()
	d.files.KeepRepair(!o.LeaveRunning)
	w, err := image.Create(dir)
	if err != nil {
		return nil, err
	}
	d.w = w
	st := &DumpStats{Dir: dir}
	cow := o.LeaveRunning && !o.FrozenCopy
	// Before the freeze: fresh memory is slow to fault in, and a twin lives
	// (making the tree pay for copy-on-write) only as long as the copy.
	w.Prealloc(treeRSS(o.Roots))
	frozenAt := time.Now()
	err = d.freeze()
	st.Seize = time.Since(frozenAt)
	t0 := time.Now()
	if err == nil {
		err = d.collect()
	}
	if err == nil {
		err = d.encodeFiles()
	}
	st.Collect = time.Since(t0) - d.filesTime
	st.Files = d.filesTime
	t0 = time.Now()
	if o.LeaveRunning {
		w.Pause() // compress after the tree runs again
	}
	if err == nil {
		d.countPages()
		err = d.writeShared()
	}
	if err == nil && cow {
		tf := time.Now()
		err = d.forkTwins()
		st.Fork = time.Since(tf)
		if errors.Is(err, errTwin) {
			d.warnings = append(d.warnings, fmt.Sprintf("%v; memory copied while frozen", err))
			err = nil
		}
	}
	if err == nil {
		err = d.frozenVmFlags()
	}
	if err == nil && !d.haveTwins() {
		err = d.writePrivate()
	}
	st.Memory = time.Since(t0)
	if err == nil && d.haveTwins() {
		d.release(true)
		st.Frozen = time.Since(frozenAt)
		t0 = time.Now()
		st.Twins = d.twinCount()
		err = d.writePrivate()
		if err == nil {
			err = d.twinVmFlags()
		}
		st.Memory = time.Since(t0)
		d.dropTwins(false)
	}
	if err != nil {
		d.dropTwins(true)
		d.files.KeepRepair(false)
		d.release(true)
		w.Abort()
		return nil, err
	}
	if o.LeaveRunning {
		d.release(true)
		if st.Frozen == 0 {
			st.Frozen = time.Since(frozenAt)
		}
		w.Resume()
	}
	d.m.Created = time.Now().UnixNano()
	d.m.Name = o.Name
	d.m.PidNS = o.PidNS
	d.m.Engine = "ftl"
	d.m.XstateSize = d.xsize
	var uts unix.Utsname
	unix.Uname(&uts)
	d.m.Kernel = unix.ByteSliceToString(uts.Release[:])
	for _, p := range d.procs {
		d.m.Processes = append(d.m.Processes, *p.img)
		st.Threads += len(p.threads)
	}
	d.m.Root = d.procs[0].nspid
	d.m.Argv = d.argv
	conns := tcpConns(d.files.Descs())
	if !o.LeaveRunning && len(conns) > 0 {
		d.m.NetLock = newLockTag()
	}
	t0 = time.Now()
	err = w.Commit(&d.m)
	st.Commit = time.Since(t0)
	if err != nil {
		if !o.LeaveRunning {
			d.files.KeepRepair(false)
			d.release(true)
		}
		return nil, err
	}
	if !o.LeaveRunning {
		if d.m.NetLock != "" {
			// Peers' packets must not meet a closed port between the kill
			// and the restore: they would reset the connections.
			if err := netlock.Lock(d.m.NetLock, conns); err != nil {
				st.Warnings = append(st.Warnings, fmt.Sprintf("network lock: %v; a peer that sends before the restore gets a reset", err))
			}
		}
		d.killAll()
		st.Frozen = time.Since(frozenAt)
	}
	st.Processes = len(d.procs)
	st.Warnings = append(st.Warnings, d.files.Warnings()...)
	st.Warnings = append(st.Warnings, d.warnings...)
	st.Pages = d.m.PageBytes / pageSize
	st.Total = time.Since(start)
	return st, nil
}

const pageSize = 4096

// freeze seizes and interrupts every thread of every process of the tree,
// repeating the walk until no new task appears.
func (d *dumper) freeze() error {
	for pass := 0; pass < 100; pass++ {
		found := false
		var walk func(pid int) error
		seen := map[int]bool{}
		walk = func(pid int) error {
			if seen[pid] {
				return nil
			}
			seen[pid] = true
			p := d.byPid[pid]
			if p == nil {
				p = &dproc{proc: proc{pid: pid}}
				d.byPid[pid] = p
				d.procs = append(d.procs, p)
				found = true
			}
			ts, err := tasks(pid)
			if err != nil {
				return err
			}
			for _, t := range ts {
				if d.seized[t] != nil {
					continue
				}
				found = true
				dt, err := seizeStop(t)
				if err == unix.ESRCH {
					continue
				}
				if err != nil && gone(t) { // an exiting task refuses to be traced (EPERM)
					return fmt.Errorf("task %d exited during the checkpoint: %w", t, ErrExited)
				}
				if err == unix.EPERM {
					if st, serr := readTaskStatus(fmt.Sprintf("/proc/%d/status", t)); serr == nil && st.tracerPid != 0 {
						return tracedError(fmt.Sprintf("task %d of process %d", t, pid), st.tracerPid)
					}
				}
				if err != nil {
					return fmt.Errorf("seize %d: %w", t, err)
				}
				d.seized[t] = dt
				if t == pid {
					p.threads = append([]*dtask{dt}, p.threads...)
				} else {
					p.threads = append(p.threads, dt)
				}
			}
			for _, c := range children(pid) {
				if err := walk(c); err != nil {
					return err
				}
			}
			return nil
		}
		for _, r := range d.o.Roots {
			if err := walk(r); err != nil {
				return err
			}
		}
		if !found {
			return nil
		}
	}
	return fmt.Errorf("tree keeps changing while freezing: %w", ErrUnsupported)
}

// release detaches every seized task, giving back stolen signals.
func (d *dumper) release(detach bool) {
	if d.released {
		return
	}
	d.released = true
	for _, p := range d.procs {
		if p.mem != nil {
			p.mem.Close()
			p.mem = nil
		}
		for _, t := range p.threads {
			if detach {
				sys.DetachSig(t.tid, t.stolen)
			}
		}
	}
}

// killAll kills the frozen tree while it is still traced and reaps what
// the tracer must reap (non-leader threads first: a traced leader is only
// reported once its other threads are gone).
func (d *dumper) killAll() {
	for _, p := range d.procs {
		unix.Kill(p.pid, unix.SIGKILL)
	}
	var tids []int
	for _, p := range d.procs {
		for i := len(p.threads) - 1; i >= 0; i-- {
			tids = append(tids, p.threads[i].tid)
		}
	}
	reapTasks(tids, 5*time.Second)
	for _, p := range d.procs {
		if p.mem != nil {
			p.mem.Close()
			p.mem = nil
		}
	}
}

// reapTasks waits (without blocking forever) until each task is gone.
func reapTasks(tids []int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for _, t := range tids {
		for time.Now().Before(deadline) {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(t, &ws, unix.WALL|unix.WNOHANG, nil)
			if err != nil || pid == t && (ws.Exited() || ws.Signaled()) {
				break
			}
			if pid == 0 {
				if err := unix.Kill(t, 0); err == unix.ESRCH {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
}

// collect reads every process's state; memory contents come later.
func (d *dumper) collect() error {
	hostToNS := map[int]int{}
	for _, p := range d.procs {
		stf, err := statusFields(fmt.Sprintf("/proc/%d/status", p.pid))
		if err != nil {
			return fmt.Errorf("process %d: %w", p.pid, ErrExited)
		}
		p.nspid = lastInt(stf["NSpid"])
		hostToNS[p.pid] = p.nspid
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", d.procs[0].pid)); err == nil && len(b) > 0 {
		d.argv = strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	}
	for _, p := range d.procs {
		if err := d.collectProcess(p, hostToNS); err != nil {
			// A /proc entry that vanished under a frozen tree means the
			// process died (SIGKILL from outside): say so.
			if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrExited) && !procfs.Alive("/proc", p.pid) {
				return fmt.Errorf("process %d: %w (%w)", p.pid, ErrExited, err)
			}
			return fmt.Errorf("process %d: %w", p.pid, err)
		}
	}
	return nil
}

func (d *dumper) collectProcess(p *dproc, hostToNS map[int]int) error {
	pid := p.pid
	var err error
	p.mem, err = os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open mem: %w", err)
	}
	if p.gadget, err = findGadget(pid, p.mem); err != nil {
		return err
	}
	stf, err := statusFields(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err
	}
	ip := &image.Process{Pid: p.nspid, Pgid: lastInt(stf["NSpgid"]), Sid: lastInt(stf["NSsid"])}
	p.img = ip
	ppid, _ := strconv.Atoi(stf["PPid"])
	ip.PPid = hostToNS[ppid] // 0 when the parent is outside the tree
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	ip.Comm = strings.TrimSuffix(string(comm), "\n")
	ip.Exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	ip.Cwd, _ = os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	ip.Root, _ = os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	um, _ := strconv.ParseUint(stf["Umask"], 8, 32)
	ip.Umask = uint32(um)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/personality", pid)); err == nil {
		ip.Personality, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
	}
	u, g := ints(stf["Uid"]), ints(stf["Gid"])
	if len(u) == 4 && len(g) == 4 {
		ip.Creds = image.Creds{Uid: u[0], Euid: u[1], Suid: u[2], Fsuid: u[3], Gid: g[0], Egid: g[1], Sgid: g[2], Fsgid: g[3]}
	}
	ip.Creds.Groups = ints(stf["Groups"])
	ip.Creds.CapEff, _ = strconv.ParseUint(stf["CapEff"], 16, 64)
	ip.Creds.CapPrm, _ = strconv.ParseUint(stf["CapPrm"], 16, 64)
	ip.Creds.CapInh, _ = strconv.ParseUint(stf["CapInh"], 16, 64)
	tr := tracef("process %d", pid)
	if err := d.collectThreads(p); err != nil {
		return err
	}
	tr("threads")
	if err := d.collectInjected(p, stf); err != nil {
		return err
	}
	tr("injected")
	if err := d.collectMM(p); err != nil {
		return err
	}
	if err := d.collectMaps(p); err != nil {
		return err
	}
	tr("maps")
	t0 := time.Now()
	err = d.collectFiles(p)
	d.filesTime += time.Since(t0)
	if err != nil {
		return err
	}
	return nil
}

func (d *dumper) collectThreads(p *dproc) error {
	xbuf := make([]byte, 64<<10)
	for _, t := range p.threads {
		it := image.Thread{Tid: t.tid}
		if stf, err := statusFields(fmt.Sprintf("/proc/%d/task/%d/status", p.pid, t.tid)); err == nil {
			it.Tid = lastInt(stf["NSpid"])
		}
		t.nstid = it.Tid
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/comm", p.pid, t.tid))
		it.Comm = strings.TrimSuffix(string(comm), "\n")
		var regs unix.PtraceRegs
		if err := unix.PtraceGetRegs(t.tid, &regs); err != nil {
			return fmt.Errorf("thread %d: getregs: %w", t.tid, err)
		}
		it.Regs = regsToArr(&regs)
		n, err := sys.GetXstate(t.tid, xbuf)
		if err != nil {
			return fmt.Errorf("thread %d: xstate: %w", t.tid, err)
		}
		it.Xstate = append([]byte(nil), xbuf[:n]...)
		d.xsize = n
		if it.Sigmask, err = sys.GetSigmask(t.tid); err != nil {
			return fmt.Errorf("thread %d: sigmask: %w", t.tid, err)
		}
		t.sigmask = it.Sigmask
		if rc, err := sys.GetRseq(t.tid); err == nil {
			it.RseqPtr, it.RseqSize, it.RseqSig = rc.Pointer, rc.Size, rc.Signature
		}
		if h, l, err := sys.GetRobustList(t.tid); err == nil {
			it.RobustHead, it.RobustLen = h, l
		}
		if sis, err := sys.PeekSiginfo(t.tid, false); err == nil {
			for i := range sis {
				it.Pending = append(it.Pending, append([]byte(nil), sis[i][:]...))
			}
		}
		if t.stolen != 0 {
			it.Pending = append(it.Pending, append([]byte(nil), t.stolenSI[:]...))
		}
		p.img.Threads = append(p.img.Threads, it)
	}
	if sis, err := sys.PeekSiginfo(p.threads[0].tid, true); err == nil {
		for i := range sis {
			p.img.Pending = append(p.img.Pending, append([]byte(nil), sis[i][:]...))
		}
	}
	return nil
}

// collectInjected reads the state only the task itself can report, with
// all signals blocked so none is delivered during the injections.
func (d *dumper) collectInjected(p *dproc, stf map[string]string) error {
	for _, t := range p.threads {
		if err := sys.SetSigmask(t.tid, ^uint64(0)); err != nil {
			return fmt.Errorf("thread %d: block signals: %w", t.tid, err)
		}
	}
	defer func() {
		for _, t := range p.threads {
			sys.SetSigmask(t.tid, t.sigmask)
		}
	}()
	lead := p.threads[0].tid
	const scratchSize = 4096
	sc, err := p.sysc(lead, unix.SYS_MMAP, 0, scratchSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("scratch: %w", err)
	}
	p.scratch, p.scratchSize = sc, scratchSize
	defer func() {
		p.sysc(lead, unix.SYS_MUNMAP, sc, scratchSize)
		p.scratch = 0
	}()
	for i, t := range p.threads {
		if _, err := p.sysc(t.tid, unix.SYS_PRCTL, sys.PRGetTidAddress, sc); err != nil {
			return fmt.Errorf("thread %d: PR_GET_TID_ADDRESS: %w", t.tid, err)
		}
		var a [8]byte
		p.mem.ReadAt(a[:], int64(sc))
		p.img.Threads[i].ClearTid = *(*uint64)(unsafe.Pointer(&a[0]))
	}
	cgt, _ := strconv.ParseUint(stf["SigCgt"], 16, 64)
	ign, _ := strconv.ParseUint(stf["SigIgn"], 16, 64)
	for s := 1; s <= 64; s++ {
		if (cgt|ign)&(1<<(s-1)) == 0 || s == int(unix.SIGKILL) || s == int(unix.SIGSTOP) {
			continue
		}
		if _, err := p.sysc(lead, unix.SYS_RT_SIGACTION, uint64(s), 0, sc, 8); err != nil {
			return fmt.Errorf("rt_sigaction(%d): %w", s, err)
		}
		var ka sys.KSigaction
		p.mem.ReadAt(sys.Bytes(&ka), int64(sc))
		p.img.Sigactions = append(p.img.Sigactions, image.Sigaction{Signo: s, Handler: ka.Handler, Flags: ka.Flags, Restorer: ka.Restorer, Mask: ka.Mask})
	}
	// Resource limits, read by the process itself: prlimit on another
	// process needs CAP_SYS_RESOURCE once its credentials differ.
	for res := 0; res < 16; res++ {
		if _, err := p.sysc(lead, unix.SYS_PRLIMIT64, 0, uint64(res), 0, sc); err != nil {
			continue
		}
		var rl unix.Rlimit
		p.mem.ReadAt(sys.Bytes(&rl), int64(sc))
		p.img.Rlimits = append(p.img.Rlimits, image.Rlimit{Resource: res, Cur: rl.Cur, Max: rl.Max})
	}
	// Interval timers, read by the process itself (getitimer has no pid).
	for which := 0; which < 3; which++ {
		if _, err := p.sysc(lead, unix.SYS_GETITIMER, uint64(which), sc); err != nil {
			return fmt.Errorf("getitimer(%d): %w", which, err)
		}
		var v [4]int64 // it_interval {sec, usec}, it_value {sec, usec}
		p.mem.ReadAt(sys.Bytes(&v), int64(sc))
		// A periodic ITIMER_REAL whose SIGALRM is pending reads as value 0
		// (it is re-armed when the signal is dequeued): keep it too.
		if v[0] != 0 || v[1] != 0 || v[2] != 0 || v[3] != 0 {
			p.img.Itimers = append(p.img.Itimers, image.Itimer{Which: which,
				IntervalSec: v[0], IntervalUsec: v[1], ValueSec: v[2], ValueUsec: v[3]})
		}
	}
	if err := collectPosixTimers(p); err != nil {
		return err
	}
	brk, err := p.sysc(lead, unix.SYS_BRK, 0)
	if err != nil {
		return fmt.Errorf("brk: %w", err)
	}
	p.img.MM.Brk = brk
	return nil
}

// collectMM reads the mm fields from /proc/PID/stat and auxv.
func (d *dumper) collectMM(p *dproc) error {
	st, err := procfs.ReadStat("/proc", p.pid)
	if err != nil {
		return err
	}
	field := func(n int) uint64 { return st.Field(n) }
	mm := &p.img.MM
	mm.StartCode, mm.EndCode, mm.StartStack = field(26), field(27), field(28)
	mm.StartData, mm.EndData, mm.StartBrk = field(45), field(46), field(47)
	mm.ArgStart, mm.ArgEnd, mm.EnvStart, mm.EnvEnd = field(48), field(49), field(50), field(51)
	mm.Auxv, err = os.ReadFile(fmt.Sprintf("/proc/%d/auxv", p.pid))
	return err
}

type mapsLine struct {
	lo, hi, off uint64
	perms       string
	dev         string
	inode       uint64
	name        string
}

func readMaps(pid int) ([]mapsLine, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	var out []mapsLine
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		var m mapsLine
		f := strings.SplitN(l, " ", 6)
		if len(f) < 5 {
			continue
		}
		fmt.Sscanf(f[0], "%x-%x", &m.lo, &m.hi)
		m.perms = f[1]
		m.off, _ = strconv.ParseUint(f[2], 16, 64)
		m.dev = f[3]
		m.inode, _ = strconv.ParseUint(f[4], 10, 64)
		if len(f) == 6 {
			m.name = strings.TrimLeft(f[5], " ")
		}
		out = append(out, m)
	}
	return out, nil
}

func (d *dumper) collectMaps(p *dproc) error {
	maps, err := readMaps(p.pid)
	if err != nil {
		return err
	}
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", p.pid))
	if err != nil {
		return err
	}
	defer pm.Close()
	pmbuf := make([]byte, 8<<13)
	for _, ml := range maps {
		tm := time.Now()
		mp := image.Mapping{Start: ml.lo, End: ml.hi, Offset: ml.off, Name: ml.name, Object: -1, Shared: ml.perms[3] == 's'}
		if ml.perms[0] == 'r' {
			mp.Prot |= unix.PROT_READ
		}
		if ml.perms[1] == 'w' {
			mp.Prot |= unix.PROT_WRITE
		}
		if ml.perms[2] == 'x' {
			mp.Prot |= unix.PROT_EXEC
		}
		deleted := strings.HasSuffix(ml.name, " (deleted)")
		switch {
		case ml.name == "[vvar]" || ml.name == "[vvar_vclock]" || ml.name == "[vdso]":
			mp.Kind = image.KindVdso
			d.noteVdso(p, ml)
		case ml.name == "[vsyscall]":
			mp.Kind = image.KindVsyscall
		case d.o.Region != "" && ml.name == d.o.Region:
			mp.Kind = image.KindRegion
			idx, err := d.sharedObject(p, ml)
			if err != nil {
				return err
			}
			mp.Object = idx
			d.m.Region = image.RegionInfo{Path: ml.name, Shared: idx}
		case strings.HasPrefix(ml.name, "/") && (mp.Shared && (deleted || ml.inode != 0 && isShmemName(ml.name)) || deleted):
			mp.Kind = image.KindShared
			idx, err := d.sharedObject(p, ml)
			if err != nil {
				return err
			}
			mp.Object = idx
		case strings.HasPrefix(ml.name, "/"):
			mp.Kind = image.KindFile
		case mp.Shared:
			return fmt.Errorf("shared mapping %x-%x %q: %w", ml.lo, ml.hi, ml.name, ErrUnsupported)
		default:
			mp.Kind = image.KindAnon
			mp.GrowsDown = ml.name == "[stack]"
		}
		var ex []image.Extent
		if !mp.Shared && (mp.Kind == image.KindAnon || mp.Kind == image.KindFile || mp.Kind == image.KindShared) {
			ex, err = privatePages(pm, ml.lo, ml.hi, mp.Kind == image.KindAnon, pmbuf)
			if err != nil {
				return fmt.Errorf("pagemap %x-%x: %w", ml.lo, ml.hi, err)
			}
		}
		mp.Extents = ex
		p.img.Mappings = append(p.img.Mappings, mp)
		if dt := time.Since(tm); dt > time.Millisecond && os.Getenv("FTL_SNAPSHOT_TRACE") != "" {
			fmt.Fprintf(os.Stderr, "snapshot: mapping %x-%x %s %s: %v\n", ml.lo, ml.hi, ml.perms, ml.name, dt)
		}
	}
	return nil
}

func isShmemName(n string) bool {
	return strings.HasPrefix(n, "/dev/zero") || strings.HasPrefix(n, "/memfd:") || strings.HasPrefix(n, "/SYSV") || strings.HasPrefix(n, "/dev/shm/")
}

// privatePages returns the runs of pages of [lo,hi) that belong to the
// process privately: every present or swapped page of an anonymous
// mapping, and the copied-on-write pages of a file mapping.
func privatePages(pm *os.File, lo, hi uint64, anon bool, buf []byte) ([]image.Extent, error) {
	var out []image.Extent
	batch := uint64(len(buf) / 8)
	for a := lo; a < hi; {
		n := min((hi-a)/pageSize, batch)
		b := buf[:n*8]
		if _, err := pm.ReadAt(b, int64(a/pageSize*8)); err != nil {
			return nil, err
		}
		for i := uint64(0); i < n; i++ {
			e := *(*uint64)(unsafe.Pointer(&b[i*8]))
			present, swapped, filePg := e>>63&1 == 1, e>>62&1 == 1, e>>61&1 == 1
			keep := swapped || present && (anon || !filePg)
			if !keep {
				continue
			}
			addr := a + i*pageSize
			if k := len(out); k > 0 && out[k-1].Addr+uint64(out[k-1].Pages)*pageSize == addr && out[k-1].Pages < 1<<30 {
				out[k-1].Pages++
			} else {
				out = append(out, image.Extent{Addr: addr, Pages: 1})
			}
		}
		a += n * pageSize
	}
	return out, nil
}

// noteVdso records the vDSO block of the first process.
func (d *dumper) noteVdso(p *dproc, ml mapsLine) {
	v := &d.m.Vdso
	switch ml.name {
	case "[vvar]":
		v.VvarSize = ml.hi - ml.lo
	case "[vvar_vclock]":
		v.VclockSize = ml.hi - ml.lo
	case "[vdso]":
		v.VdsoSize = ml.hi - ml.lo
		if v.Code == nil {
			b := make([]byte, ml.hi-ml.lo)
			if _, err := p.mem.ReadAt(b, int64(ml.lo)); err == nil {
				v.Code = b
			}
		}
	}
}

// sharedObject registers the object behind a mapping once per tree.
func (d *dumper) sharedObject(p *dproc, ml mapsLine) (int, error) {
	key := fmt.Sprintf("%s:%d", ml.dev, ml.inode)
	if i, ok := d.shared[key]; ok {
		return i, nil
	}
	path := fmt.Sprintf("/proc/%d/map_files/%x-%x", p.pid, ml.lo, ml.hi)
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open %s (%s): %w", path, ml.name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := uint64(st.Size())
	var ex []image.Extent
	fd := int(f.Fd())
	for off := int64(0); off < int64(size); {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if err == unix.ENXIO {
				break
			}
			// No SEEK_DATA support: take it all.
			ex = []image.Extent{{Addr: 0, Pages: uint32((size + pageSize - 1) / pageSize)}}
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			hole = int64(size)
		}
		lo := uint64(data) &^ (pageSize - 1)
		hi := min((uint64(hole)+pageSize-1)&^(pageSize-1), (size+pageSize-1)&^(pageSize-1))
		if hi > lo {
			ex = append(ex, image.Extent{Addr: lo, Pages: uint32((hi - lo) / pageSize)})
		}
		off = hole
	}
	d.m.Shared = append(d.m.Shared, image.SharedObject{Name: ml.name, Dev: ml.dev, Inode: ml.inode, Size: size, Extents: ex})
	d.sharedSrc = append(d.sharedSrc, sharedSrc{pid: p.pid, lo: ml.lo, hi: ml.hi})
	d.shared[key] = len(d.m.Shared) - 1
	return len(d.m.Shared) - 1, nil
}

// countPages sets the total of the memory phases' progress.
func (d *dumper) countPages() {
	for _, s := range d.m.Shared {
		d.pagesTotal += image.Pages(s.Extents)
	}
	for _, p := range d.procs {
		for _, mp := range p.img.Mappings {
			d.pagesTotal += image.Pages(mp.Extents)
		}
	}
}

func (d *dumper) progress(pages int64) {
	d.pagesDone += pages
	if d.o.Progress != nil {
		d.o.Progress(d.pagesDone*pageSize, d.pagesTotal*pageSize)
	}
}

// writeShared copies the shared objects, the head of the page stream.
func (d *dumper) writeShared() error {
	buf := make([]byte, 1<<20)
	for i, s := range d.m.Shared {
		src := d.sharedSrc[i]
		path := fmt.Sprintf("/proc/%d/map_files/%x-%x", src.pid, src.lo, src.hi)
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("shared object %s: %w", s.Name, err)
		}
		for _, e := range s.Extents {
			for off := uint64(0); off < uint64(e.Pages)*pageSize; {
				n := min(uint64(len(buf)), uint64(e.Pages)*pageSize-off)
				b := buf[:n]
				k, err := f.ReadAt(b, int64(e.Addr+off))
				if k < len(b) {
					if err != nil && k == 0 && e.Addr+off >= s.Size {
						clear(b)
					} else {
						clear(b[k:])
					}
				}
				if err := d.w.WritePages(b); err != nil {
					f.Close()
					return err
				}
				off += n
				d.progress(int64(n / pageSize))
			}
		}
		f.Close()
	}
	return nil
}

// writePrivate copies each process's private pages, in mapping order:
// from its twin when it has one, else from the (frozen) process.
func (d *dumper) writePrivate() error {
	for _, p := range d.procs {
		read := func(addr uint64, b []byte) error { return readRemote(p.pid, p.mem, addr, b) }
		if p.twin != nil {
			read = p.twin.read
		}
		read = inHalves(read)
		for i, mp := range p.img.Mappings {
			if b, ok := p.early[i]; ok {
				if err := d.w.WritePages(b); err != nil {
					return err
				}
				d.progress(int64(len(b) / pageSize))
				continue
			}
			for _, e := range mp.Extents {
				for off := uint64(0); off < uint64(e.Pages)*pageSize; {
					b := d.w.Reserve(int(uint64(e.Pages)*pageSize - off))
					if err := read(e.Addr+off, b); err != nil {
						return fmt.Errorf("process %d: read %x: %w", p.pid, e.Addr+off, err)
					}
					d.w.Commit1(len(b))
					off += uint64(len(b))
					d.progress(int64(len(b) / pageSize))
				}
			}
		}
	}
	return nil
}

func (d *dumper) haveTwins() bool { return d.twinCount() > 0 }

func (d *dumper) twinCount() int {
	n := 0
	for _, p := range d.procs {
		if p.twin != nil {
			n++
		}
	}
	return n
}

// inHalves makes a reader that reads a large range in two halves at once,
// one per core here: a copy of one range runs at ~4 GiB/s (twins) to
// ~7 GiB/s (process_vm_readv), well below memory bandwidth.
func inHalves(read func(addr uint64, b []byte) error) func(addr uint64, b []byte) error {
	return func(addr uint64, b []byte) error {
		if len(b) < 1<<20 {
			return read(addr, b)
		}
		h := len(b) / 2 &^ (pageSize - 1)
		errc := make(chan error, 1)
		go func() { errc <- read(addr+uint64(h), b[h:]) }()
		err := read(addr, b[:h])
		return errors.Join(err, <-errc)
	}
}

// readRemote reads target memory with process_vm_readv, falling back to
// /proc/PID/mem (which also reads PROT_NONE pages).
func readRemote(pid int, mem *os.File, addr uint64, b []byte) error {
	n, err := unix.ProcessVMReadv(pid, []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}, []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}, 0)
	if err == nil && n == len(b) {
		return nil
	}
	return readMem(mem, addr, b)
}

// readMem reads through /proc/PID/mem; a range the kernel cannot read
// (EIO, EFAULT) reads as zeros.
func readMem(mem *os.File, addr uint64, b []byte) error {
	if _, err := mem.ReadAt(b, int64(addr)); err != nil {
		if errors.Is(err, unix.EIO) || errors.Is(err, unix.EFAULT) {
			clear(b)
			return nil
		}
		return err
	}
	return nil
}

// tracef returns a step timer printing to stderr when FTL_SNAPSHOT_TRACE is set.
func tracef(format string, args ...any) func(step string) {
	if os.Getenv("FTL_SNAPSHOT_TRACE") == "" {
		return func(string) {}
	}
	what := fmt.Sprintf(format, args...)
	t := time.Now()
	return func(step string) {
		fmt.Fprintf(os.Stderr, "snapshot: %s: %s %v\n", what, step, time.Since(t))
		t = time.Now()
	}
}

// treeRSS estimates the bytes a dump of the tree will copy: the
// anonymous and shared-memory resident sizes of its processes.
func treeRSS(roots []int) int64 {
	var total int64
	seen := map[int]bool{}
	var walk func(pid int)
	walk = func(pid int) {
		if seen[pid] || len(seen) > 10000 {
			return
		}
		seen[pid] = true
		if st, err := statusFields(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, k := range []string{"RssAnon", "RssShmem"} {
				f := strings.Fields(st[k])
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					total += kb << 10
				}
			}
		}
		for _, c := range children(pid) {
			walk(c)
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return total
}

// gone reports whether task tid has exited or is exiting (dead or zombie).
func gone(tid int) bool {
	st, err := procfs.ReadStat("/proc", tid)
	return err != nil || st.Dead()
}

// newLockTag names one image's network lock.
func newLockTag() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
