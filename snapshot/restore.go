package snapshot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/snapshot/files"
	"github.com/ftlinux/ftl/snapshot/image"
	"github.com/ftlinux/ftl/snapshot/internal/sys"
	"github.com/ftlinux/ftl/snapshot/netlock"
)

// RestoreOptions says how to restore an image.
type RestoreOptions struct {
	// Region is the new run's shim region file; the image's region
	// contents are copied into it and it is mapped where the old one was.
	Region string
	// InitNS says the caller is the init of a fresh pid namespace.
	InitNS bool
	// Stdio is the restorer's stdio, given to the tree's external stdio
	// (default: this process's os.Stdin, os.Stdout, os.Stderr).
	Stdio    FileEnv
	Progress func(done, total int64)
	// Warn receives non-fatal differences (a hard rlimit that could not be raised...).
	Warn func(msg string)
}

// Restored describes a restored tree.
type Restored struct {
	Root     int // pid of the root process
	Pids     []int
	Stats    RestoreStats
	Manifest *image.Manifest
}

// RestoreStats reports timings.
type RestoreStats struct {
	Total time.Duration
	Pages int64
}

type rthread struct {
	tid int
	img *image.Thread
}

type rproc struct {
	proc
	img      *image.Process
	threads  []*rthread
	pidfd    uint64 // restorer's pidfd inside the target
	children []*rproc
	fds      []files.FD
}

type restorer struct {
	dir         string
	o           RestoreOptions
	m           *image.Manifest
	helper      *proc
	procs       []*rproc
	byPid       map[int]*rproc
	objs        []*os.File // one memfd (or the region file) per shared object
	stubVdso    [3]uint64  // vvar, vvar_vclock, vdso start in the stubs
	stubVdsoEnd uint64
	pr          *image.PageReader
	done, total int64
	warn        func(string)
	files       *files.Restorer
	readTime    time.Duration // waiting for decompressed pages
	writeTime   time.Duration // writing pages into targets
}

// CheckImage verifies that the image in dir is whole and was made on a
// kernel with this vDSO. Nothing is created.
func CheckImage(dir string) (*image.Manifest, error) {
	m, err := image.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := checkVdso(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Check is CheckImage plus: every pid and tid of the image is free in the
// caller's pid namespace.
func Check(dir string) (*image.Manifest, error) {
	m, err := CheckImage(dir)
	if err != nil {
		return nil, err
	}
	for _, p := range m.Processes {
		for _, t := range p.Threads {
			if err := unix.Kill(t.Tid, 0); err != unix.ESRCH {
				return nil, fmt.Errorf("pid %d (%s): %w", t.Tid, p.Comm, ErrPidTaken)
			}
		}
	}
	return m, nil
}

// vdsoBlock returns the [vvar] [vvar_vclock] [vdso] starts and the end of the block of pid.
func vdsoBlock(pid string) (starts [3]uint64, end uint64, code []byte, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/maps")
	if err != nil {
		return starts, 0, nil, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		var lo, hi uint64
		fmt.Sscanf(l, "%x-%x", &lo, &hi)
		switch {
		case strings.HasSuffix(l, "[vvar]"):
			starts[0] = lo
		case strings.HasSuffix(l, "[vvar_vclock]"):
			starts[1] = lo
		case strings.HasSuffix(l, "[vdso]"):
			starts[2] = lo
			end = hi
			if pid == "self" {
				code = append([]byte(nil), unsafeBytes(lo, hi-lo)...)
			}
		}
	}
	if starts[2] == 0 {
		return starts, 0, nil, fmt.Errorf("no [vdso] in process %s", pid)
	}
	return starts, end, code, nil
}

func checkVdso(m *image.Manifest) error {
	s, end, code, err := vdsoBlock("self")
	if err != nil {
		return err
	}
	v := m.Vdso
	var vclock uint64
	if s[1] != 0 {
		vclock = s[2] - s[1]
	}
	vvar := s[2] - s[0] - vclock
	if s[1] != 0 {
		vvar = s[1] - s[0]
	}
	if v.VvarSize != vvar || v.VclockSize != vclock || v.VdsoSize != end-s[2] || !bytes.Equal(v.Code, code) {
		return fmt.Errorf("image made on kernel %s (vvar %d, vvar_vclock %d, vdso %d bytes), this kernel has vvar %d, vvar_vclock %d, vdso %d bytes, code identical: %v: %w",
			m.Kernel, v.VvarSize, v.VclockSize, v.VdsoSize, vvar, vclock, end-s[2], bytes.Equal(v.Code, code), ErrVdsoMismatch)
	}
	return nil
}

// Restore recreates the tree of the image in dir and lets it run. The
// caller becomes the parent of the tree's top-level processes.
func Restore(dir string, o RestoreOptions) (*Restored, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	tr := tracef("restore")
	m, err := Check(dir)
	if err != nil {
		return nil, err
	}
	tr("check")
	for _, f := range []struct {
		p **os.File
		d *os.File
	}{{&o.Stdio.Stdin, os.Stdin}, {&o.Stdio.Stdout, os.Stdout}, {&o.Stdio.Stderr, os.Stderr}} {
		if *f.p == nil {
			*f.p = f.d
		}
	}
	r := &restorer{dir: dir, o: o, m: m, byPid: map[int]*rproc{}, warn: o.Warn}
	if r.warn == nil {
		r.warn = func(string) {}
	}
	res, err := r.run()
	r.cleanup(err != nil)
	if err != nil {
		return nil, err
	}
	res.Stats.Total = time.Since(start)
	return res, nil
}

func (r *restorer) run() (*Restored, error) {
	m := r.m
	for i := range m.Processes {
		ip := &m.Processes[i]
		rp := &rproc{img: ip}
		for j := range ip.Threads {
			rp.threads = append(rp.threads, &rthread{img: &ip.Threads[j]})
		}
		r.procs = append(r.procs, rp)
		r.byPid[ip.Pid] = rp
	}
	for _, rp := range r.procs {
		if par := r.byPid[rp.img.PPid]; par != nil && rp.img.PPid != rp.img.Pid {
			par.children = append(par.children, rp)
		}
	}
	descs, err := files.DecodeDescs(m.Files)
	if len(m.Files) == 0 {
		descs, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, image.ErrCorrupt)
	}
	r.files = files.NewRestorer(descs, files.RestoreEnv{Stdin: r.o.Stdio.Stdin, Stdout: r.o.Stdio.Stdout, Stderr: r.o.Stdio.Stderr})
	for _, rp := range r.procs {
		if len(rp.img.FDs) == 0 {
			continue
		}
		fds, err := files.DecodeFDs(rp.img.FDs)
		if err != nil {
			return nil, fmt.Errorf("process %d: %v: %w", rp.img.Pid, err, image.ErrCorrupt)
		}
		rp.fds = fds
	}
	for _, s := range m.Shared {
		r.total += image.Pages(s.Extents)
	}
	for _, p := range m.Processes {
		for _, mp := range p.Mappings {
			r.total += image.Pages(mp.Extents)
		}
	}
	pr, err := image.OpenPages(r.dir, m)
	if err != nil {
		return nil, err
	}
	r.pr = pr
	tr := tracef("restore")
	if err := r.startHelper(); err != nil {
		return nil, err
	}
	tr("helper")
	if err := r.createTree(); err != nil {
		return nil, err
	}
	tr("tree")
	if err := r.restoreShared(); err != nil {
		return nil, err
	}
	tr("shared")
	for _, rp := range r.procs {
		if err := r.restoreProcess(rp); err != nil {
			return nil, fmt.Errorf("restore process %d (%s): %w", rp.img.Pid, rp.img.Comm, err)
		}
	}
	tr(fmt.Sprintf("processes (waiting for pages %v, writing pages %v)", r.readTime, r.writeTime))
	for _, rp := range r.procs {
		if err := r.finishProcess(rp); err != nil {
			return nil, fmt.Errorf("restore process %d (%s): %w", rp.img.Pid, rp.img.Comm, err)
		}
	}
	tr("threads and registers")
	if m.NetLock != "" {
		// Every socket of the image exists again: let the peers through.
		if _, err := netlock.Unlock(m.NetLock); err != nil {
			r.warn(fmt.Sprintf("network lock %s: %v", m.NetLock, err))
		}
	}
	if err := r.files.Pending(); err != nil {
		r.warn(err.Error())
	}
	for _, w := range r.files.Warnings() {
		r.warn(w)
	}
	r.killHelper()
	// Everything is in place: let the whole tree go.
	for _, rp := range r.procs {
		for _, t := range rp.threads {
			if err := unix.PtraceDetach(t.tid); err != nil {
				return nil, fmt.Errorf("detach %d: %w", t.tid, err)
			}
		}
	}
	res := &Restored{Root: m.Root, Manifest: m}
	for _, rp := range r.procs {
		res.Pids = append(res.Pids, rp.img.Pid)
	}
	res.Stats.Pages = m.PageBytes / pageSize
	for _, rp := range r.procs {
		rp.mem.Close()
	}
	r.procs = nil // detached: nothing to clean
	return res, nil
}

// cleanup closes what the restore holds; after a failure it kills every
// process it created.
func (r *restorer) cleanup(failed bool) {
	if failed {
		var tids []int
		for _, rp := range r.procs {
			if rp.pid > 0 {
				unix.Kill(rp.pid, unix.SIGKILL)
				for i := len(rp.threads) - 1; i >= 0; i-- {
					if rp.threads[i].tid > 0 {
						tids = append(tids, rp.threads[i].tid)
					}
				}
			}
		}
		reapTasks(tids, 5*time.Second)
	}
	r.killHelper()
	for _, rp := range r.procs {
		if rp.mem != nil {
			rp.mem.Close()
		}
	}
	for _, f := range r.objs {
		if f != nil {
			f.Close()
		}
	}
	if r.pr != nil {
		r.pr.Close()
	}
	if r.files != nil {
		r.files.Close()
	}
}

func (r *restorer) killHelper() {
	if r.helper == nil {
		return
	}
	unix.Kill(r.helper.pid, unix.SIGKILL)
	reapTasks([]int{r.helper.pid}, 5*time.Second)
	if r.helper.mem != nil {
		r.helper.mem.Close()
	}
	r.helper = nil
}

// StubArg is argv[0] of the stub process; cmd/ftl never runs it (the stub
// is stopped at its exec and never executes a single instruction).
const StubArg = "ftl-restore-stub"

// startHelper starts the helper stub: an exec of this binary stopped by
// ptrace before its first instruction, placed at a pid outside the image.
func (r *restorer) startHelper() error {
	taken := map[int]bool{}
	maxPid := 0
	for _, p := range r.m.Processes {
		for _, t := range p.Threads {
			taken[t.Tid] = true
			maxPid = max(maxPid, t.Tid)
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		if r.o.InitNS {
			os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(maxPid+100+attempt*10)), 0)
		}
		cmd := exec.Command("/proc/self/exe")
		cmd.Args = []string{StubArg}
		cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start stub: %w", err)
		}
		pid := cmd.Process.Pid
		ws, err := waitStop(pid)
		if err != nil {
			return fmt.Errorf("stub: %w", err)
		}
		if ws.StopSignal() != unix.SIGTRAP {
			unix.Kill(pid, unix.SIGKILL)
			return fmt.Errorf("stub stopped with %v", ws.StopSignal())
		}
		h := &proc{pid: pid}
		r.helper = h
		if taken[pid] {
			r.killHelper()
			continue
		}
		if err := unix.PtraceSetOptions(pid, unix.PTRACE_O_TRACEFORK|unix.PTRACE_O_TRACECLONE|unix.PTRACE_O_EXITKILL); err != nil {
			return fmt.Errorf("stub options: %w", err)
		}
		if h.mem, err = os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0); err != nil {
			return err
		}
		if h.gadget, err = findGadget(pid, h.mem); err != nil {
			return err
		}
		r.stubVdso, r.stubVdsoEnd, _, err = vdsoBlock(strconv.Itoa(pid))
		if err != nil {
			return err
		}
		const size = 64 << 10
		sc, err := h.sysc(pid, unix.SYS_MMAP, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return fmt.Errorf("stub scratch: %w", err)
		}
		h.scratch, h.scratchSize = sc, size
		return nil
	}
	return fmt.Errorf("could not place the stub outside the image's pids")
}

// cloneIn injects clone3(set_tid=want) into parent and returns the new
// task, stopped and attached.
func cloneIn(parent *proc, tid int, flags uint64, want int) (int, error) {
	ca := sys.CloneArgs{Flags: flags, SetTid: parent.scratch + 256, SetTidSize: 1}
	if flags&(unix.CLONE_THREAD|unix.CLONE_PARENT) == 0 {
		ca.ExitSignal = uint64(unix.SIGCHLD)
	}
	if _, err := parent.mem.WriteAt(sys.Bytes(&ca), int64(parent.scratch)); err != nil {
		return 0, err
	}
	w := int32(want)
	if _, err := parent.mem.WriteAt(sys.Bytes(&w), int64(parent.scratch+256)); err != nil {
		return 0, err
	}
	res, err := inject(tid, parent.gadget, unix.SYS_CLONE3, parent.scratch, uint64(88))
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("pid %d: %w", want, ErrPidTaken)
		}
		return 0, fmt.Errorf("clone3(set_tid=%d): %w", want, err)
	}
	if int(res.ret) != want {
		return 0, fmt.Errorf("clone3 gave %d, wanted %d", res.ret, want)
	}
	if _, err := waitStop(want); err != nil {
		return 0, err
	}
	return want, nil
}

// createTree creates every process stub top-down with its exact pid.
func (r *restorer) createTree() error {
	var create func(rp *rproc, parent *proc) error
	create = func(rp *rproc, parent *proc) error {
		flags := uint64(0)
		if parent == r.helper {
			flags = unix.CLONE_PARENT
		}
		pid, err := cloneIn(parent, parent.pid, flags, rp.img.Pid)
		if err != nil {
			return fmt.Errorf("create process %d (%s): %w", rp.img.Pid, rp.img.Comm, err)
		}
		rp.pid = pid
		rp.gadget = parent.gadget
		rp.scratch, rp.scratchSize = parent.scratch, parent.scratchSize
		if rp.mem, err = os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0); err != nil {
			return err
		}
		rp.threads[0].tid = pid
		if rp.img.Sid == rp.img.Pid {
			if _, err := rp.sysc(pid, unix.SYS_SETSID); err != nil {
				return fmt.Errorf("process %d: setsid: %w", pid, err)
			}
		}
		for _, c := range rp.children {
			if err := create(c, &rp.proc); err != nil {
				return err
			}
		}
		return nil
	}
	for _, rp := range r.procs {
		if r.byPid[rp.img.PPid] == nil || rp.img.PPid == rp.img.Pid {
			if err := create(rp, r.helper); err != nil {
				return err
			}
		}
	}
	for _, rp := range r.procs {
		if rp.pid == 0 {
			return fmt.Errorf("process %d: parent cycle in image: %w", rp.img.Pid, image.ErrCorrupt)
		}
	}
	// Process groups: leaders first, then members.
	for pass := 0; pass < 2; pass++ {
		for _, rp := range r.procs {
			pg := rp.img.Pgid
			leader := pg == rp.img.Pid
			if leader != (pass == 0) || rp.img.Sid == rp.img.Pid && leader {
				continue
			}
			if r.byPid[pg] == nil {
				continue
			}
			if _, err := rp.sysc(rp.pid, unix.SYS_SETPGID, 0, uint64(pg)); err != nil {
				r.warn(fmt.Sprintf("process %d: setpgid(%d): %v", rp.pid, pg, err))
			}
		}
	}
	return nil
}

// restoreShared recreates every shared object: a memfd with its contents,
// or the new run's region file.
func (r *restorer) restoreShared() error {
	for i, s := range r.m.Shared {
		var f *os.File
		if i == r.m.Region.Shared && r.m.Region.Path != "" && r.o.Region != "" {
			var err error
			f, err = os.OpenFile(r.o.Region, os.O_RDWR, 0)
			if err != nil {
				return fmt.Errorf("open region: %w", err)
			}
		} else {
			name := strings.TrimSuffix(s.Name, " (deleted)")
			name = strings.TrimPrefix(strings.TrimPrefix(name, "/memfd:"), "/")
			if len(name) > 200 {
				name = name[:200]
			}
			fd, err := unix.MemfdCreate(name, 0)
			if err != nil {
				return fmt.Errorf("memfd for %s: %w", s.Name, err)
			}
			f = os.NewFile(uintptr(fd), s.Name)
			if err := f.Truncate(int64(s.Size)); err != nil {
				f.Close()
				return fmt.Errorf("size %s: %w", s.Name, err)
			}
		}
		r.objs = append(r.objs, f)
		for _, e := range s.Extents {
			if e.Parent {
				return fmt.Errorf("incremental images: %w", ErrUnsupported)
			}
			for off := uint64(0); off < uint64(e.Pages)*pageSize; {
				n := min(1<<20, uint64(e.Pages)*pageSize-off)
				b, err := r.pr.Next(int(n))
				if err != nil {
					return err
				}
				w := b
				if lim := s.Size; e.Addr+off+n > lim {
					if e.Addr+off >= lim {
						w = nil
					} else {
						w = b[:lim-e.Addr-off]
					}
				}
				if len(w) > 0 {
					if _, err := f.WriteAt(w, int64(e.Addr+off)); err != nil {
						return fmt.Errorf("fill %s: %w", s.Name, err)
					}
				}
				off += n
				r.progress(int64(n))
			}
		}
	}
	return nil
}

func (r *restorer) progress(n int64) {
	r.done += n
	if r.o.Progress != nil {
		r.o.Progress(r.done, r.total*pageSize)
	}
}

func overlapsAny(lo, hi uint64, maps []image.Mapping) bool {
	for _, m := range maps {
		if lo < m.End && m.Start < hi {
			return true
		}
	}
	return false
}

// restoreProcess rebuilds the address space, mm, signal dispositions, fds
// and the other process-wide state of one stub.
func (r *restorer) restoreProcess(rp *rproc) error {
	ip := rp.img
	pid := rp.pid
	lead := pid
	// Block everything while we inject; the image's masks come back last.
	if err := sys.SetSigmask(lead, ^uint64(0)); err != nil {
		return fmt.Errorf("block signals: %w", err)
	}
	if _, err := rp.sysc(lead, unix.SYS_CLOSE_RANGE, 0, uint64(^uint32(0)), 0); err != nil {
		return fmt.Errorf("close stub fds: %w", err)
	}
	// 1. Wipe the stub's address space, keeping only the vDSO block.
	s := r.stubVdso
	if _, err := rp.sysc(lead, unix.SYS_MUNMAP, pageSize, s[0]-pageSize); err != nil {
		return fmt.Errorf("wipe low: %w", err)
	}
	const top = 0x7ffffffff000
	if _, err := rp.sysc(lead, unix.SYS_MUNMAP, r.stubVdsoEnd, top-r.stubVdsoEnd); err != nil {
		return fmt.Errorf("wipe high: %w", err)
	}
	rp.scratch = 0
	// 2. Move the vDSO block to the image's address.
	var want uint64
	for _, mp := range ip.Mappings {
		if mp.Kind == image.KindVdso {
			want = mp.Start
			break
		}
	}
	blk := r.stubVdsoEnd - s[0]
	offs := []uint64{0}
	if s[1] != 0 {
		offs = append(offs, s[1]-s[0])
	}
	offs = append(offs, s[2]-s[0])
	lens := make([]uint64, len(offs))
	for i := range offs {
		if i+1 < len(offs) {
			lens[i] = offs[i+1] - offs[i]
		} else {
			lens[i] = blk - offs[i]
		}
	}
	cur := s[0]
	move := func(to uint64) error {
		for i := range offs {
			if _, err := rp.sysc(lead, unix.SYS_MREMAP, cur+offs[i], lens[i], lens[i], unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, to+offs[i]); err != nil {
				return fmt.Errorf("move vdso: %w", err)
			}
		}
		rp.gadget = rp.gadget - cur + to
		cur = to
		return nil
	}
	if want != 0 && want != cur {
		if want < cur+blk && cur < want+blk {
			tmp := uint64(0x200000000)
			for overlapsAny(tmp, tmp+blk, ip.Mappings) || tmp < cur+blk && cur < tmp+blk {
				tmp += 0x100000000
			}
			if err := move(tmp); err != nil {
				return err
			}
		}
		if err := move(want); err != nil {
			return err
		}
	}
	// 3. A scratch area outside every mapping of the image.
	const scSize = 64 << 10
	sc := uint64(0x100000000)
	for overlapsAny(sc, sc+scSize, ip.Mappings) || sc < cur+blk && cur < sc+scSize {
		sc += 0x100000000
	}
	if _, err := rp.sysc(lead, unix.SYS_MMAP, sc, scSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|sys.MapFixedNoreplace, ^uint64(0), 0); err != nil {
		return fmt.Errorf("scratch: %w", err)
	}
	rp.scratch, rp.scratchSize = sc, scSize
	// A pidfd of the restorer, above every fd of the image.
	maxFD := 2
	for _, f := range rp.fds {
		maxFD = max(maxFD, f.Num)
	}
	pfd, err := rp.sysc(lead, unix.SYS_PIDFD_OPEN, uint64(os.Getpid()), 0)
	if err != nil {
		return fmt.Errorf("pidfd_open(restorer): %w", err)
	}
	hi, err := rp.sysc(lead, unix.SYS_FCNTL, pfd, unix.F_DUPFD_CLOEXEC, uint64(maxFD+1))
	if err != nil {
		return fmt.Errorf("move pidfd: %w", err)
	}
	rp.sysc(lead, unix.SYS_CLOSE, pfd)
	rp.pidfd = hi
	// 4. Every mapping, then its pages (written by a pool while the next
	// ones are read and mapped; all are in before step 5).
	pw := newPageWriter(2 * runtime.NumCPU())
	defer pw.close()
	for _, mp := range ip.Mappings {
		if err := r.mapOne(rp, &mp); err != nil {
			return fmt.Errorf("mapping %x-%x %s: %w", mp.Start, mp.End, mp.Name, err)
		}
		for _, e := range mp.Extents {
			if e.Parent {
				return fmt.Errorf("incremental images: %w", ErrUnsupported)
			}
			for off := uint64(0); off < uint64(e.Pages)*pageSize; {
				n := min(1<<20, uint64(e.Pages)*pageSize-off)
				t0 := time.Now()
				b, release, err := r.pr.NextShared(int(n))
				if err != nil {
					return err
				}
				t1 := time.Now()
				r.readTime += t1.Sub(t0)
				pw.write(rp, mp.Prot, e.Addr+off, b, release)
				r.writeTime += time.Since(t1) // blocked on the writers
				off += n
				r.progress(int64(n))
			}
		}
	}
	t0 := time.Now()
	if err := pw.wait(); err != nil {
		return err
	}
	r.writeTime += time.Since(t0)
	// 4b. madvise flags, mlock, mseal of every mapping (vmflags.go).
	if err := r.applyVmFlags(rp); err != nil {
		return err
	}
	// 5. mm: code/data/brk/stack/args/env/auxv and the exe link.
	if err := r.setMM(rp); err != nil {
		r.warn(fmt.Sprintf("process %d: PR_SET_MM_MAP: %v", pid, err))
	}
	// 6. Signal dispositions, umask, cwd, root, personality.
	for _, sa := range ip.Sigactions {
		ka := sys.KSigaction{Handler: sa.Handler, Flags: sa.Flags, Restorer: sa.Restorer, Mask: sa.Mask}
		rp.mem.WriteAt(sys.Bytes(&ka), int64(sc))
		if _, err := rp.sysc(lead, unix.SYS_RT_SIGACTION, uint64(sa.Signo), sc, 0, 8); err != nil {
			return fmt.Errorf("rt_sigaction(%d): %w", sa.Signo, err)
		}
	}
	rp.sysc(lead, unix.SYS_UMASK, uint64(ip.Umask))
	if ip.Root != "" && ip.Root != "/" {
		if a, err := rp.writeString(0, ip.Root); err == nil {
			if _, err := rp.sysc(lead, unix.SYS_CHROOT, a); err != nil {
				r.warn(fmt.Sprintf("process %d: chroot %s: %v", pid, ip.Root, err))
			}
		}
	}
	if ip.Cwd != "" {
		if a, err := rp.writeString(0, ip.Cwd); err == nil {
			if _, err := rp.sysc(lead, unix.SYS_CHDIR, a); err != nil {
				r.warn(fmt.Sprintf("process %d: chdir %s: %v", pid, ip.Cwd, err))
			}
		}
	}
	if ip.Personality != 0 {
		rp.sysc(lead, unix.SYS_PERSONALITY, ip.Personality)
	}
	// 7. File descriptors.
	if err := r.installFDs(rp); err != nil {
		return err
	}
	return nil
}

// mapOne creates one mapping in the target.
func (r *restorer) mapOne(rp *rproc, mp *image.Mapping) error {
	lead := rp.pid
	length := mp.End - mp.Start
	flags := uint64(unix.MAP_FIXED)
	if mp.Shared {
		flags |= unix.MAP_SHARED
	} else {
		flags |= unix.MAP_PRIVATE
	}
	switch mp.Kind {
	case image.KindVdso, image.KindVsyscall:
		return nil
	case image.KindAnon:
		flags |= unix.MAP_ANONYMOUS
		if mp.GrowsDown {
			flags |= unix.MAP_GROWSDOWN
		}
		_, err := rp.sysc(lead, unix.SYS_MMAP, mp.Start, length, uint64(mp.Prot), flags, ^uint64(0), 0)
		return err
	case image.KindFile:
		a, err := rp.writeString(0, mp.Name)
		if err != nil {
			return err
		}
		oflags := uint64(unix.O_RDONLY)
		if mp.Shared && mp.Prot&unix.PROT_WRITE != 0 {
			oflags = unix.O_RDWR
		}
		fd, err := rp.sysc(lead, unix.SYS_OPEN, a, oflags|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		_, err = rp.sysc(lead, unix.SYS_MMAP, mp.Start, length, uint64(mp.Prot), flags, fd, mp.Offset)
		rp.sysc(lead, unix.SYS_CLOSE, fd)
		return err
	case image.KindShared, image.KindRegion:
		if mp.Object < 0 || mp.Object >= len(r.objs) {
			return fmt.Errorf("shared object %d: %w", mp.Object, image.ErrCorrupt)
		}
		fd, err := rp.sysc(lead, unix.SYS_PIDFD_GETFD, rp.pidfd, uint64(r.objs[mp.Object].Fd()), 0)
		if err != nil {
			return fmt.Errorf("pidfd_getfd: %w", err)
		}
		_, err = rp.sysc(lead, unix.SYS_MMAP, mp.Start, length, uint64(mp.Prot), flags, fd, mp.Offset)
		rp.sysc(lead, unix.SYS_CLOSE, fd)
		return err
	}
	return fmt.Errorf("mapping kind %q: %w", mp.Kind, ErrUnsupported)
}

func (r *restorer) setMM(rp *rproc) error {
	mm := rp.img.MM
	lead := rp.pid
	exefd := ^uint64(0)
	if rp.img.Exe != "" && !strings.HasSuffix(rp.img.Exe, " (deleted)") {
		if a, err := rp.writeString(2048, rp.img.Exe); err == nil {
			if fd, err := rp.sysc(lead, unix.SYS_OPEN, a, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
				exefd = fd
				defer rp.sysc(lead, unix.SYS_CLOSE, fd)
			}
		}
	}
	pm := sys.PrctlMMMap{StartCode: mm.StartCode, EndCode: mm.EndCode, StartData: mm.StartData, EndData: mm.EndData,
		StartBrk: mm.StartBrk, Brk: mm.Brk, StartStack: mm.StartStack, ArgStart: mm.ArgStart, ArgEnd: mm.ArgEnd,
		EnvStart: mm.EnvStart, EnvEnd: mm.EnvEnd, Auxv: rp.scratch + 512, AuxvSize: uint32(len(mm.Auxv)), ExeFd: uint32(exefd)}
	if len(mm.Auxv) > 1024 {
		return fmt.Errorf("auxv of %d bytes", len(mm.Auxv))
	}
	rp.mem.WriteAt(sys.Bytes(&pm), int64(rp.scratch))
	rp.mem.WriteAt(mm.Auxv, int64(rp.scratch+512))
	_, err := rp.sysc(lead, unix.SYS_PRCTL, sys.PRSetMM, sys.PRSetMMMap, rp.scratch, uint64(len(sys.Bytes(&pm))))
	return err
}

// installFDs puts every fd of the image into the target: the restorer's
// copy is pulled in with pidfd_getfd, then moved to its number.
func (r *restorer) installFDs(rp *rproc) error {
	if len(rp.fds) == 0 {
		return nil
	}
	lead := rp.pid
	fds := append([]files.FD(nil), rp.fds...)
	sort.Slice(fds, func(i, j int) bool { return fds[i].Num < fds[j].Num })
	for _, fe := range fds {
		f, err := r.files.File(fe.DescID)
		if err != nil {
			return fmt.Errorf("fd %d: %w", fe.Num, err)
		}
		tmp, err := rp.sysc(lead, unix.SYS_PIDFD_GETFD, rp.pidfd, uint64(f.Fd()), 0)
		if err != nil {
			return fmt.Errorf("fd %d: pidfd_getfd: %w", fe.Num, err)
		}
		if int(tmp) != fe.Num {
			fl := uint64(0)
			if fe.CloExec {
				fl = unix.O_CLOEXEC
			}
			if _, err := rp.sysc(lead, unix.SYS_DUP3, tmp, uint64(fe.Num), fl); err != nil {
				return fmt.Errorf("fd %d: dup3: %w", fe.Num, err)
			}
			rp.sysc(lead, unix.SYS_CLOSE, tmp)
		} else if !fe.CloExec {
			rp.sysc(lead, unix.SYS_FCNTL, tmp, unix.F_SETFD, 0)
		}
	}
	return nil
}

// finishProcess creates the threads, restores per-thread kernel state,
// credentials and finally registers and signal masks.
func (r *restorer) finishProcess(rp *rproc) error {
	ip := rp.img
	lead := rp.pid
	const threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD | unix.CLONE_SYSVSEM
	for _, t := range rp.threads[1:] {
		tid, err := cloneIn(&rp.proc, lead, threadFlags, t.img.Tid)
		if err != nil {
			return fmt.Errorf("create thread %d: %w", t.img.Tid, err)
		}
		t.tid = tid
	}
	if err := r.files.Finish(lead, rp.fds, &Injector{p: &rp.proc, tid: lead}); err != nil {
		return fmt.Errorf("finish fds: %w", err)
	}
	rp.sysc(lead, unix.SYS_CLOSE, rp.pidfd)
	sc := rp.scratch
	for _, t := range rp.threads {
		it := t.img
		sys.SetSigmask(t.tid, ^uint64(0))
		if _, err := rp.sysc(t.tid, unix.SYS_SET_ROBUST_LIST, it.RobustHead, max(it.RobustLen, 24)); err != nil && it.RobustHead != 0 {
			return fmt.Errorf("thread %d: set_robust_list: %w", t.tid, err)
		}
		if _, err := rp.sysc(t.tid, unix.SYS_SET_TID_ADDRESS, it.ClearTid); err != nil {
			return fmt.Errorf("thread %d: set_tid_address: %w", t.tid, err)
		}
		if it.RseqPtr != 0 {
			if _, err := rp.sysc(t.tid, unix.SYS_RSEQ, it.RseqPtr, uint64(it.RseqSize), 0, uint64(it.RseqSig)); err != nil {
				return fmt.Errorf("thread %d: rseq: %w", t.tid, err)
			}
		}
		if a, err := rp.writeString(0, it.Comm); err == nil {
			rp.sysc(t.tid, unix.SYS_PRCTL, unix.PR_SET_NAME, a)
		}
		for _, si := range it.Pending {
			rp.mem.WriteAt(si, int64(sc))
			signo := int(si[0]) | int(si[1])<<8
			if _, err := rp.sysc(t.tid, unix.SYS_RT_TGSIGQUEUEINFO, uint64(lead), uint64(t.tid), uint64(signo), sc); err != nil {
				r.warn(fmt.Sprintf("thread %d: pending signal %d: %v", t.tid, signo, err))
			}
		}
	}
	for _, si := range ip.Pending {
		rp.mem.WriteAt(si, int64(sc))
		signo := int(si[0]) | int(si[1])<<8
		if _, err := rp.sysc(lead, unix.SYS_RT_SIGQUEUEINFO, uint64(lead), uint64(signo), sc); err != nil {
			r.warn(fmt.Sprintf("process %d: pending signal %d: %v", lead, signo, err))
		}
	}
	for _, rl := range ip.Rlimits {
		lim := unix.Rlimit{Cur: rl.Cur, Max: rl.Max}
		rp.mem.WriteAt(sys.Bytes(&lim), int64(sc))
		if _, err := rp.sysc(lead, unix.SYS_PRLIMIT64, 0, uint64(rl.Resource), sc, 0); err != nil {
			// Raising a hard limit needs CAP_SYS_RESOURCE: set what we can.
			var old unix.Rlimit
			unix.Prlimit(lead, rl.Resource, nil, &old)
			lim = unix.Rlimit{Cur: min(rl.Cur, old.Max), Max: min(rl.Max, old.Max)}
			rp.mem.WriteAt(sys.Bytes(&lim), int64(sc))
			rp.sysc(lead, unix.SYS_PRLIMIT64, 0, uint64(rl.Resource), sc, 0)
			r.warn(fmt.Sprintf("process %d: rlimit %d: wanted %d/%d, set %d/%d (%v)", lead, rl.Resource, rl.Cur, rl.Max, lim.Cur, lim.Max, err))
		}
	}
	for _, it := range ip.Itimers {
		v := [4]int64{it.IntervalSec, it.IntervalUsec, it.ValueSec, it.ValueUsec}
		if v[2] == 0 && v[3] == 0 {
			// Fired with its signal still pending at the dump: the kernel
			// would have re-armed it when the signal was taken; the signal
			// comes back with the pending ones, the timer with one interval.
			v[2], v[3] = v[0], v[1]
		}
		rp.mem.WriteAt(sys.Bytes(&v), int64(sc))
		if _, err := rp.sysc(lead, unix.SYS_SETITIMER, uint64(it.Which), sc, 0); err != nil {
			return fmt.Errorf("setitimer(%d): %w", it.Which, err)
		}
	}
	if err := restorePosixTimers(rp); err != nil {
		return err
	}
	// Credentials last: after them the stub may lose its privileges.
	cr := ip.Creds
	if cr.Uid != 0 || cr.Euid != 0 || cr.Suid != 0 || cr.Gid != 0 || cr.Egid != 0 || cr.Sgid != 0 || len(cr.Groups) > 0 {
		for _, t := range rp.threads {
			b := make([]byte, 0, 4*len(cr.Groups))
			for _, g := range cr.Groups {
				b = append(b, byte(g), byte(g>>8), byte(g>>16), byte(g>>24))
			}
			if len(b) > 0 {
				rp.mem.WriteAt(b, int64(sc))
			}
			if _, err := rp.sysc(t.tid, unix.SYS_SETGROUPS, uint64(len(cr.Groups)), sc); err != nil {
				r.warn(fmt.Sprintf("thread %d: setgroups: %v", t.tid, err))
			}
			if _, err := rp.sysc(t.tid, unix.SYS_SETRESGID, uint64(cr.Gid), uint64(cr.Egid), uint64(cr.Sgid)); err != nil {
				return fmt.Errorf("thread %d: setresgid: %w", t.tid, err)
			}
			if _, err := rp.sysc(t.tid, unix.SYS_SETRESUID, uint64(cr.Uid), uint64(cr.Euid), uint64(cr.Suid)); err != nil {
				return fmt.Errorf("thread %d: setresuid: %w", t.tid, err)
			}
		}
	}
	if _, err := rp.sysc(lead, unix.SYS_MUNMAP, sc, uint64(rp.scratchSize)); err != nil {
		return fmt.Errorf("unmap scratch: %w", err)
	}
	for _, t := range rp.threads {
		if err := setThreadRegs(t.tid, t.img); err != nil {
			return fmt.Errorf("thread %d: %w", t.tid, err)
		}
	}
	return nil
}

// setThreadRegs sets registers (with the syscall-restart fix-up), xstate
// and the signal mask.
func setThreadRegs(tid int, it *image.Thread) error {
	regs := arrToRegs(it.Regs)
	if int64(regs.Orig_rax) >= 0 {
		switch int64(regs.Rax) {
		case -512, -513, -514: // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND
			regs.Rax = regs.Orig_rax
			regs.Rip -= 2
		case -516: // ERESTART_RESTARTBLOCK: the restart block is gone
			regs.Rax = uint64(^uint64(unix.EINTR) + 1)
		}
	}
	regs.Orig_rax = ^uint64(0)
	if err := unix.PtraceSetRegs(tid, &regs); err != nil {
		return fmt.Errorf("setregs: %w", err)
	}
	if err := sys.SetXstate(tid, it.Xstate); err != nil {
		return fmt.Errorf("xstate: %w", err)
	}
	if err := sys.SetSigmask(tid, it.Sigmask); err != nil {
		return fmt.Errorf("sigmask: %w", err)
	}
	return nil
}

// writeRemote writes target memory: process_vm_writev where the mapping
// is writable (it pins pages in batches), /proc/PID/mem otherwise (it
// writes through read-only and PROT_NONE mappings).
func writeRemote(rp *rproc, prot uint32, addr uint64, b []byte) error {
	if prot&unix.PROT_WRITE != 0 {
		n, err := unix.ProcessVMWritev(rp.pid, []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}, []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}, 0)
		if err == nil && n == len(b) {
			return nil
		}
	}
	_, err := rp.mem.WriteAt(b, int64(addr))
	return err
}
