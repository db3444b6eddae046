package snapshot

import (
	"fmt"
	"sync"
)

// pageWriter writes restored pages into a target from several goroutines
// at once: the cost of a restore's page phase is the page faults of fresh
// memory (allocate, zero, copy: ~2 GB/s on one core here), and faults of
// different pages run in parallel. process_vm_writev and /proc/PID/mem
// need no ptrace stop, so any thread may write.
//
// A buffer handed to write must stay untouched until its release is
// called (after the write).
type pageWriter struct {
	jobs chan pageJob
	wg   sync.WaitGroup // outstanding jobs
	mu   sync.Mutex
	err  error
}

type pageJob struct {
	rp      *rproc
	prot    uint32
	addr    uint64
	b       []byte
	release func()
}

func newPageWriter(workers int) *pageWriter {
	w := &pageWriter{jobs: make(chan pageJob, 2*workers)}
	for i := 0; i < workers; i++ {
		go w.run()
	}
	return w
}

func (w *pageWriter) run() {
	for j := range w.jobs {
		err := writeRemote(j.rp, j.prot, j.addr, j.b)
		j.release()
		if err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = fmt.Errorf("write pages at %x: %w", j.addr, err)
			}
			w.mu.Unlock()
		}
		w.wg.Done()
	}
}

// write queues b for addr in rp (blocking while the workers are busy);
// release is called once b is written.
func (w *pageWriter) write(rp *rproc, prot uint32, addr uint64, b []byte, release func()) {
	w.wg.Add(1)
	w.jobs <- pageJob{rp, prot, addr, b, release}
}

// wait returns once every queued write is done, with the first error.
func (w *pageWriter) wait() error {
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// close stops the workers; nothing may be queued afterwards.
func (w *pageWriter) close() { close(w.jobs) }
