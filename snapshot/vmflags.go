package snapshot

// Per-VMA flags set by madvise(2), mlock(2) and mseal(2): read from the
// "VmFlags:" lines of /proc/PID/smaps at the dump, kept by name in
// image.Mapping.Madvise, and set again inside the target once its pages
// are written.
//
// Where the dump reads them (numbers in docs/design.md, Snapshot engine):
//   - smaps walks the page tables of every VMA (~16 ms per GiB resident
//     here) and nothing cheaper reports these flags (maps has none;
//     PROCMAP_QUERY reports only read/write/exec/shared). So a
//     --leave-running dump reads the smaps of the copy-on-write twin after
//     the tree is let go: the twin has the same VMAs with the same flags,
//     except MADV_DONTFORK VMAs, which it lacks (copyEarly notes them while
//     frozen, from the twin's maps), and VM_LOCKED/VM_LOCKONFAULT, which
//     fork clears. A process with locked memory (VmLck > 0 in its status)
//     is therefore read while frozen, as is every process without a twin
//     (a dump that kills the tree, FrozenCopy, a process without
//     private pages): the walk then adds to the freeze.
//   - Flags the kernel sets by itself on special mappings ([vvar] dd,
//     [vdso] ...) are not taken: the vDSO block is moved, not rebuilt.
//
// What comes back and what does not is vmFlagTable below (and one row of
// the support table).

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/snapshot/image"
)

// vmFlag is one VmFlags code the engine keeps: its two-letter code in
// /proc/PID/smaps, its name in image.Mapping.Madvise, what the restore
// injects (how), whether a failure fails the restore (must; else it is a
// warning), and the injection (apply; nil: applyVmFlags handles it).
type vmFlag struct {
	code, name, how string
	must            bool
	apply           func(rp *rproc, lo, length uint64) error
}

func madvise(advice uint64) func(rp *rproc, lo, length uint64) error {
	return func(rp *rproc, lo, length uint64) error {
		_, err := rp.sysc(rp.pid, unix.SYS_MADVISE, lo, length, advice)
		return err
	}
}

// vmFlagTable is what the engine keeps of a VMA's flags, in the order the
// restore applies them (mseal last: a sealed VMA refuses later advice).
// Not kept: the userfaultfd flags (um, uw, ui: the fd is not restored),
// guard regions of MADV_GUARD_INSTALL (page-table markers, not VMA flags),
// and mlockall(MCL_FUTURE) (mm state no /proc file shows: mappings locked
// at the dump are locked again, later ones are not).
var vmFlagTable = []vmFlag{
	{"dc", "dontfork", "madvise(MADV_DONTFORK)", true, madvise(unix.MADV_DONTFORK)},
	{"wf", "wipeonfork", "madvise(MADV_WIPEONFORK)", true, madvise(unix.MADV_WIPEONFORK)},
	{"hg", "hugepage", "madvise(MADV_HUGEPAGE); the pages come back as 4 KiB pages until khugepaged collapses them", false, madvise(unix.MADV_HUGEPAGE)},
	{"nh", "nohugepage", "madvise(MADV_NOHUGEPAGE)", false, madvise(unix.MADV_NOHUGEPAGE)},
	{"dd", "dontdump", "madvise(MADV_DONTDUMP)", false, madvise(unix.MADV_DONTDUMP)},
	{"mg", "mergeable", "madvise(MADV_MERGEABLE); a process-wide PR_SET_MEMORY_MERGE comes back as per-VMA advice", false, madvise(unix.MADV_MERGEABLE)},
	{"sr", "sequential", "madvise(MADV_SEQUENTIAL)", false, madvise(unix.MADV_SEQUENTIAL)},
	{"rr", "random", "madvise(MADV_RANDOM)", false, madvise(unix.MADV_RANDOM)},
	{"lo", "locked", "mlock (mlock2 MLOCK_ONFAULT with lockonfault); may fail on RLIMIT_MEMLOCK", false, nil},
	{"lf", "lockonfault", "with locked", false, nil},
	{"sl", "sealed", "mseal, after everything else", true, nil},
}

// vmState is what a dump learns about a process's VMA flags.
type vmState struct {
	read     bool         // flags already taken (from the frozen process)
	dontfork map[int]bool // mapping indexes the twin lacks (copyEarly)
}

// noteMissing records that the twin lacks mapping i: MADV_DONTFORK.
func (v *vmState) noteMissing(i int) {
	if v.dontfork == nil {
		v.dontfork = map[int]bool{}
	}
	v.dontfork[i] = true
}

// smapsFlags reads /proc/PID/smaps and returns the kept flag names of
// each VMA by start address.
func smapsFlags(pid int) (map[uint64][]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseSmapsFlags(f)
}

// parseSmapsFlags parses smaps text: a VMA header line ("lo-hi perms ...")
// followed by its fields, of which "VmFlags:" is the one used.
func parseSmapsFlags(f io.Reader) (map[uint64][]string, error) {
	out := map[uint64][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cur uint64
	var have bool
	for sc.Scan() {
		l := sc.Bytes()
		if rest, ok := bytes.CutPrefix(l, []byte("VmFlags:")); ok {
			if !have {
				continue
			}
			if names := keptFlags(strings.Fields(string(rest))); len(names) > 0 {
				out[cur] = names
			}
			continue
		}
		dash := bytes.IndexByte(l, '-')
		sp := bytes.IndexByte(l, ' ')
		if dash <= 0 || sp < dash {
			continue // a field line
		}
		lo, err := strconv.ParseUint(string(l[:dash]), 16, 64)
		if err != nil {
			continue
		}
		cur, have = lo, true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// keptFlags maps smaps codes to the names the engine keeps, in table order.
func keptFlags(codes []string) []string {
	var names []string
	for _, fl := range vmFlagTable {
		for _, c := range codes {
			if c == fl.code {
				names = append(names, fl.name)
				break
			}
		}
	}
	return names
}

// flaggable says whether a mapping kind gets its flags back (the vDSO
// block is moved and [vsyscall] is the kernel's).
func flaggable(kind string) bool {
	return kind != image.KindVdso && kind != image.KindVsyscall
}

// setFlags fills p's mappings' flags from flags by start address; the
// dontfork set (mappings the twin lacks) adds "dontfork".
func setFlags(p *dproc, flags map[uint64][]string, dontfork map[int]bool) {
	for i := range p.img.Mappings {
		mp := &p.img.Mappings[i]
		if !flaggable(mp.Kind) {
			continue
		}
		names := flags[mp.Start]
		if dontfork[i] {
			names = keptFlags(append(codesOf(names), "dc"))
		}
		mp.Madvise = names
	}
}

func codesOf(names []string) []string {
	var codes []string
	for _, n := range names {
		for _, fl := range vmFlagTable {
			if fl.name == n {
				codes = append(codes, fl.code)
			}
		}
	}
	return codes
}

// frozenVmFlags reads, while the tree is frozen, the flags of every
// process that has no twin or has locked memory (fork clears VM_LOCKED in
// the twin). Sequential on purpose: read beside the frozen copy of memory
// (in a goroutine) the walk slowed the copy down by more than it took
// (docs/design.md).
func (d *dumper) frozenVmFlags() error {
	for _, p := range d.procs {
		if p.twin != nil && !hasLocked(p.pid) {
			continue
		}
		tr := tracef("process %d", p.pid)
		flags, err := smapsFlags(p.pid)
		if err != nil {
			return fmt.Errorf("process %d: smaps: %w", p.pid, err)
		}
		tr("smaps (frozen)")
		setFlags(p, flags, nil)
		p.vm.read = true
	}
	return nil
}

// twinVmFlags reads the flags of the processes left from their twins,
// after the tree is let go.
func (d *dumper) twinVmFlags() error {
	for _, p := range d.procs {
		if p.vm.read || p.twin == nil {
			continue
		}
		tr := tracef("process %d", p.pid)
		flags, err := smapsFlags(p.twin.pid)
		if err != nil {
			return fmt.Errorf("process %d: twin %d: smaps: %w", p.pid, p.twin.pid, err)
		}
		tr("smaps (twin)")
		setFlags(p, flags, p.vm.dontfork)
		p.vm.read = true
	}
	return nil
}

// hasLocked reports whether pid has locked memory (VmLck in its status).
func hasLocked(pid int) bool {
	st, err := statusFields(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return true // read the process itself, which then says why
	}
	f := strings.Fields(st["VmLck"])
	return len(f) > 0 && f[0] != "0"
}

// applyVmFlags sets every mapping's flags inside rp, once its pages are
// written: madvise per flag, mlock for locked ranges, mseal last. Failures
// of dontfork, wipeonfork and sealed (security properties) fail the
// restore; the others become warnings.
func (r *restorer) applyVmFlags(rp *rproc) error {
	var seal []*image.Mapping
	for i := range rp.img.Mappings {
		mp := &rp.img.Mappings[i]
		if len(mp.Madvise) == 0 || !flaggable(mp.Kind) {
			continue
		}
		lo, length := mp.Start, mp.End-mp.Start
		has := map[string]bool{}
		for _, n := range mp.Madvise {
			has[n] = true
		}
		for _, fl := range vmFlagTable {
			if !has[fl.name] {
				continue
			}
			delete(has, fl.name)
			var err error
			switch fl.name {
			case "sealed":
				seal = append(seal, mp)
				continue
			case "lockonfault":
				continue // with locked
			case "locked":
				if has["lockonfault"] {
					_, err = rp.sysc(rp.pid, unix.SYS_MLOCK2, lo, length, unix.MLOCK_ONFAULT)
				} else {
					_, err = rp.sysc(rp.pid, unix.SYS_MLOCK, lo, length)
				}
			default:
				err = fl.apply(rp, lo, length)
			}
			if err != nil {
				if fl.must {
					return fmt.Errorf("mapping %x-%x %s: %s: %w", mp.Start, mp.End, mp.Name, fl.how, err)
				}
				r.warn(fmt.Sprintf("process %d: mapping %x-%x %s: %s: %v; the flag is lost", rp.img.Pid, mp.Start, mp.End, mp.Name, fl.name, err))
			}
		}
		for n := range has {
			r.warn(fmt.Sprintf("process %d: mapping %x-%x %s: unknown flag %q (image from a newer ftl?) not restored", rp.img.Pid, mp.Start, mp.End, mp.Name, n))
		}
	}
	for _, mp := range seal {
		if _, err := rp.sysc(rp.pid, unix.SYS_MSEAL, mp.Start, mp.End-mp.Start, 0); err != nil {
			return fmt.Errorf("mapping %x-%x %s: mseal: %w", mp.Start, mp.End, mp.Name, err)
		}
	}
	return nil
}
