package libos

import (
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Rebind makes the live proc slots of a restored run's region describe the
// restored processes. A restore brings every process back with the same pid
// but in a new pid namespace and with a new start time, so the identity the
// shim recorded in each slot (pid namespace, start ticks) no longer matches:
// readers would take every slot, and with it every connection, for dead.
//
// Rebind must run inside the run's pid namespace, with that namespace's
// /proc mounted (the run's init does it), after the restored tree exists. A
// live slot whose pid has no process is marked exited. It returns how many
// slots it rebound.
func Rebind(path string) (int, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("rebind region: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("rebind region: %w", err)
	}
	var h rawHeader
	if _, err := f.ReadAt(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h)), 0); err != nil {
		return 0, fmt.Errorf("rebind region: %w", err)
	}
	if err := checkHeader(&h, st.Size()); err != nil {
		return 0, fmt.Errorf("rebind region %s: %w", path, err)
	}
	ns, ok := pidNSOf("self")
	if !ok {
		return 0, fmt.Errorf("rebind region: cannot read own pid namespace: %w", ErrLayout)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(RegionSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("rebind region: mmap: %w", err)
	}
	defer unix.Munmap(data)
	r := &Region{data: data, hdr: (*rawHeader)(unsafe.Pointer(&data[0]))}
	n := 0
	for i := 0; i < maxProcs; i++ {
		p := r.proc(i)
		if atomic.LoadUint32(&p.State) != procLive {
			continue
		}
		ticks, ok := startTicks(int(atomic.LoadInt32(&p.Pid)))
		if !ok {
			// The slot's process was not part of the image (it had exited
			// without the shim seeing it): it is gone for good.
			atomic.CompareAndSwapUint32(&p.State, procLive, procExited)
			continue
		}
		atomic.StoreUint64(&p.StartTicks, ticks)
		atomic.StoreUint64(&p.PidNS, ns)
		n++
	}
	return n, nil
}
