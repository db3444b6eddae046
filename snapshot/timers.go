package snapshot

// POSIX timers (timer_create). The dump reads /proc/PID/timers (id,
// signal and sigev_value, notify mode and thread, clock) and, for what /proc
// does not show, injects timer_gettime into the frozen process (remaining
// time and interval). The restore recreates every timer inside the target
// with its exact id (prctl PR_TIMER_CREATE_RESTORE_IDS, Linux >= 6.15: the
// next timer_create takes its id from *timerid), clock and sigevent, then
// re-arms it relative to the restore. A pending timer signal is a queued
// siginfo and comes back with the thread's or process's pending signals;
// the overrun count is lost.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/snapshot/image"
	"github.com/ftlinux/ftl/snapshot/internal/sys"
)

// sigev_notify values (include/uapi/asm-generic/siginfo.h).
const (
	sigevSignal   = 0
	sigevNone     = 1
	sigevThread   = 2
	sigevThreadID = 4
)

// CPU-time clock ids (include/linux/posix-timers.h): a negative clock id
// encodes ^pid<<3 | per-thread bit | clock kind; pid 0 means the caller
// (the calling thread for a per-thread clock).
const cpuClockPerThread = 4

func cpuClockPid(clock int) int { return int(^(int32(clock) >> 3)) }

// sigeventSize is sizeof(struct sigevent) on x86-64; the notified tid is
// the first int of its union at offset 16.
const sigeventSize = 64

// procTimer is one entry of /proc/PID/timers, pids and tids as /proc shows
// them (the dumper's pid namespace).
type procTimer struct {
	id, signo, notify, clock int
	value                    uint64
	tid                      int // notified thread, for SIGEV_THREAD_ID
}

// readProcTimers parses /proc/PID/timers:
//
//	ID: 3
//	signal: 10/000000000000004d
//	notify: signal/tid.27528
//	ClockID: 0
func readProcTimers(pid int) ([]procTimer, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timers", pid))
	if err != nil {
		return nil, err
	}
	var out []procTimer
	for _, line := range bytes.Split(b, []byte("\n")) {
		k, v, ok := strings.Cut(string(line), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if k == "ID" {
			id, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("/proc/%d/timers: timer id: %w", pid, err)
			}
			out = append(out, procTimer{id: id})
			continue
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("/proc/%d/timers: %q before the first ID", pid, line)
		}
		t := &out[len(out)-1]
		switch k {
		case "signal":
			sig, val, _ := strings.Cut(v, "/")
			t.signo, err = strconv.Atoi(sig)
			if err == nil {
				t.value, err = strconv.ParseUint(val, 16, 64)
			}
		case "notify":
			mode, who, _ := strings.Cut(v, "/")
			switch mode {
			case "signal":
				t.notify = sigevSignal
			case "none":
				t.notify = sigevNone
			case "thread":
				t.notify = sigevThread
			default:
				err = fmt.Errorf("notify mode %q", mode)
			}
			if tid, ok := strings.CutPrefix(who, "tid."); ok {
				t.notify |= sigevThreadID
				t.tid, err = strconv.Atoi(tid)
			}
		case "ClockID":
			t.clock, err = strconv.Atoi(v)
		}
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/timers: timer %d: %q: %w", pid, t.id, line, err)
		}
	}
	return out, nil
}

// checkTimer says whether the engine can recreate timer t of a process
// whose threads are tids (the namespace tids for a frozen process): the
// clock must be a system clock, or a CPU-time clock of the process itself
// or of one of its threads. A per-thread CPU-time clock of "the calling
// thread" does not say which thread created it: it is taken to be the
// notified thread of a SIGEV_THREAD_ID timer (how Go's profiler and other
// per-thread profilers use it), and refused otherwise in a process with
// more than one thread. pid and tids are in the same namespace as the
// clock's pid (the one the process lives in).
func checkTimer(t procTimer, pid int, tids []int) error {
	if t.clock >= 0 {
		return nil
	}
	cpid, perThread := cpuClockPid(t.clock), t.clock&cpuClockPerThread != 0
	switch {
	case cpid == 0 && !perThread:
		return nil
	case cpid == 0 && (len(tids) == 1 || t.notify&sigevThreadID != 0):
		return nil
	case cpid == 0:
		return fmt.Errorf("process %d: POSIX timer %d counts the CPU time of the thread that created it, which /proc does not name: %w", pid, t.id, ErrUnsupported)
	case !perThread && cpid == pid:
		return nil
	case perThread:
		for _, tid := range tids {
			if tid == cpid {
				return nil
			}
		}
	}
	return fmt.Errorf("process %d: POSIX timer %d counts the CPU time of task %d, outside the process: %w", pid, t.id, cpid, ErrUnsupported)
}

// checkPosixTimers refuses, before the freeze, a process with a POSIX
// timer the restore could not recreate faithfully (checkTimer), or any
// POSIX timer on a kernel without PR_TIMER_CREATE_RESTORE_IDS. The running
// process's own pid namespace is not known here, so only CPU clocks that
// name the caller (pid 0) are checked; the dump checks the rest frozen.
func checkPosixTimers(pid int) error {
	ts, err := readProcTimers(pid)
	if err != nil || len(ts) == 0 {
		return nil // no such file without CONFIG_CHECKPOINT_RESTORE, or gone (caught later)
	}
	if _, err := unix.PrctlRetInt(unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0); err != nil {
		return fmt.Errorf("process %d has %d POSIX timer(s) (timer_create) and this kernel cannot recreate timer ids (PR_TIMER_CREATE_RESTORE_IDS, Linux >= 6.15): %v: %w", pid, len(ts), err, ErrUnsupported)
	}
	tids, _ := tasks(pid)
	for _, t := range ts {
		if t.clock < 0 && cpuClockPid(t.clock) != 0 {
			continue
		}
		if err := checkTimer(t, pid, tids); err != nil {
			return err
		}
	}
	return nil
}

// collectPosixTimers records the timers of a frozen process: /proc for
// their identity, timer_gettime injected into the process for their time.
// Signals are blocked and the scratch page mapped (collectInjected).
func collectPosixTimers(p *dproc) error {
	ts, err := readProcTimers(p.pid)
	if os.IsNotExist(err) {
		return nil // kernel without CONFIG_CHECKPOINT_RESTORE: no timers either way
	}
	if err != nil {
		return err
	}
	nstid := map[int]int{}
	var tids []int
	for _, t := range p.threads {
		nstid[t.tid] = t.nstid
		tids = append(tids, t.nstid)
	}
	lead := p.threads[0].tid
	// /proc lists the newest timer first: record them oldest first, the
	// order the restore creates them in, so that /proc lists them as before.
	for i := len(ts) - 1; i >= 0; i-- {
		t := ts[i]
		pt := image.PosixTimer{ID: t.id, Clock: t.clock, Notify: t.notify, Signo: t.signo, Value: t.value}
		if t.notify&sigevThreadID != 0 {
			if pt.Tid = nstid[t.tid]; pt.Tid == 0 {
				return fmt.Errorf("POSIX timer %d notifies task %d, not a thread of the process: %w", t.id, t.tid, ErrUnsupported)
			}
			t.tid = pt.Tid
		}
		if err := checkTimer(t, p.nspid, tids); err != nil {
			return err
		}
		if _, err := p.sysc(lead, unix.SYS_TIMER_GETTIME, uint64(t.id), p.scratch); err != nil {
			return fmt.Errorf("timer_gettime(%d): %w", t.id, err)
		}
		var v [4]int64 // it_interval {sec, nsec}, it_value {sec, nsec}
		if _, err := p.mem.ReadAt(sys.Bytes(&v), int64(p.scratch)); err != nil {
			return fmt.Errorf("timer_gettime(%d): read result: %w", t.id, err)
		}
		pt.IntervalSec, pt.IntervalNsec, pt.ValueSec, pt.ValueNsec = v[0], v[1], v[2], v[3]
		p.img.PosixTimers = append(p.img.PosixTimers, pt)
	}
	return nil
}

// restorePosixTimers recreates the image's timers inside a restored
// process whose threads all exist, with their ids, then arms them with the
// remaining time and interval, relative to now. The scratch page is mapped
// and signals are blocked (finishProcess).
func restorePosixTimers(rp *rproc) error {
	if len(rp.img.PosixTimers) == 0 {
		return nil
	}
	lead, sc := rp.pid, rp.scratch
	if _, err := rp.sysc(lead, unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_ON); err != nil {
		return fmt.Errorf("prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux >= 6.15 recreates timer ids): %w (%w)", ErrUnsupported, err)
	}
	err := createPosixTimers(rp)
	if _, err2 := rp.sysc(lead, unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_OFF); err == nil && err2 != nil {
		err = fmt.Errorf("prctl(PR_TIMER_CREATE_RESTORE_IDS_OFF): %w", err2)
	}
	if err != nil {
		return err
	}
	for _, t := range rp.img.PosixTimers {
		v := [4]int64{t.IntervalSec, t.IntervalNsec, t.ValueSec, t.ValueNsec}
		if v[2] == 0 && v[3] == 0 {
			if v[0] == 0 && v[1] == 0 {
				continue // disarmed (or a one-shot that fired; its signal, if pending, is requeued)
			}
			v[3] = 1 // a periodic timer due at the dump: 0 would disarm it
		}
		if _, err := rp.mem.WriteAt(sys.Bytes(&v), int64(sc)); err != nil {
			return fmt.Errorf("POSIX timer %d: %w", t.ID, err)
		}
		if _, err := rp.sysc(lead, unix.SYS_TIMER_SETTIME, uint64(t.ID), 0, sc, 0); err != nil {
			return fmt.Errorf("timer_settime(%d): %w", t.ID, err)
		}
	}
	return nil
}

// createPosixTimers runs timer_create for each timer with its id in
// *timerid (PR_TIMER_CREATE_RESTORE_IDS is on).
func createPosixTimers(rp *rproc) error {
	sc := rp.scratch
	for _, t := range rp.img.PosixTimers {
		var ev [sigeventSize]byte
		binary.LittleEndian.PutUint64(ev[0:], t.Value)
		binary.LittleEndian.PutUint32(ev[8:], uint32(t.Signo))
		binary.LittleEndian.PutUint32(ev[12:], uint32(t.Notify))
		binary.LittleEndian.PutUint32(ev[16:], uint32(t.Tid))
		var id [4]byte
		binary.LittleEndian.PutUint32(id[:], uint32(t.ID))
		if _, err := rp.mem.WriteAt(append(ev[:], id[:]...), int64(sc)); err != nil {
			return fmt.Errorf("POSIX timer %d: %w", t.ID, err)
		}
		// A per-thread CPU clock of "the caller" is created by the thread
		// it counts: the notified one (checkTimer), else the only one.
		creator := rp.pid
		if t.Clock < 0 && cpuClockPid(t.Clock) == 0 && t.Clock&cpuClockPerThread != 0 && t.Notify&sigevThreadID != 0 {
			for _, th := range rp.threads {
				if th.img.Tid == t.Tid {
					creator = th.tid
				}
			}
		}
		if _, err := rp.sysc(creator, unix.SYS_TIMER_CREATE, uint64(int64(t.Clock)), sc, sc+sigeventSize); err != nil {
			return fmt.Errorf("timer_create(id %d, clock %d, notify %d, signal %d): %w", t.ID, t.Clock, t.Notify, t.Signo, err)
		}
		if _, err := rp.mem.ReadAt(id[:], int64(sc+sigeventSize)); err != nil {
			return fmt.Errorf("POSIX timer %d: %w", t.ID, err)
		}
		if got := int(int32(binary.LittleEndian.Uint32(id[:]))); got != t.ID {
			return fmt.Errorf("timer_create gave id %d, wanted %d", got, t.ID)
		}
	}
	return nil
}
