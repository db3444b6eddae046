package image

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// ChunkSize is the raw size of one page-stream chunk.
const ChunkSize = 4 << 20

// Writer writes one image directory. Pages are appended with WritePages in
// stream order; full chunks are queued without blocking (up to MaxQueued
// bytes) and compressed by a pool of workers while the caller goes on, so
// a dump can copy memory at memory speed and let the tree run before the
// compression is done. Commit writes the manifest and makes the directory
// visible under its final name.
type Writer struct {
	dir, tmp string
	pages    *os.File
	buf      []byte
	raw      int64
	seq      int

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []job
	queued  int64
	closed  bool
	paused  bool
	free    [][]byte // preallocated chunk buffers
	workers sync.WaitGroup
	results chan result
	written chan struct{} // closed when the ordering writer is done

	// owned by the ordering writer until written is closed
	chunks  []Chunk
	off     int64
	pending map[int]result
	next    int
	err     error
}

// MaxQueued bounds the raw bytes waiting for compression.
const MaxQueued = 8 << 30

type job struct {
	seq int
	raw []byte
}

type result struct {
	seq  int
	comp []byte
	raw  int
	err  error
}

// Create starts an image at dir, which must not exist or be empty. Data go
// to a temporary sibling directory until Commit.
func Create(dir string) (*Writer, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s: %w", dir, ErrExists)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("create image parent: %w", err)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", dir, os.Getpid())
	os.RemoveAll(tmp)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("create image: %w", err)
	}
	f, err := os.Create(filepath.Join(tmp, PagesFile))
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("create page store: %w", err)
	}
	w := &Writer{dir: dir, tmp: tmp, pages: f, pending: map[int]result{}, results: make(chan result, 64), written: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	for i := 0; i < runtime.NumCPU(); i++ {
		w.workers.Add(1)
		go w.compressor()
	}
	go w.orderedWriter()
	return w, nil
}

func (w *Writer) compressor() {
	defer w.workers.Done()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true),
		zstd.WithEncoderCRC(false)) // each chunk has its own CRC-32C in the manifest
	for {
		w.mu.Lock()
		for (len(w.queue) == 0 || w.paused) && !w.closed {
			w.cond.Wait()
		}
		if len(w.queue) == 0 {
			w.mu.Unlock()
			return
		}
		j := w.queue[0]
		w.queue = w.queue[1:]
		w.mu.Unlock()
		r := result{seq: j.seq, raw: len(j.raw), err: err}
		if err == nil {
			r.comp = enc.EncodeAll(j.raw, make([]byte, 0, len(j.raw)/2+1024))
		}
		freeChunkBuf(j.raw)
		w.mu.Lock()
		w.queued -= int64(len(j.raw))
		w.cond.Broadcast()
		w.mu.Unlock()
		w.results <- r
	}
}

// orderedWriter writes compressed chunks to the page store in order.
func (w *Writer) orderedWriter() {
	defer close(w.written)
	for r := range w.results {
		w.pending[r.seq] = r
		for {
			r, ok := w.pending[w.next]
			if !ok {
				break
			}
			delete(w.pending, w.next)
			w.next++
			if r.err != nil && w.err == nil {
				w.err = fmt.Errorf("compress: %w", r.err)
			}
			if w.err == nil {
				if _, err := w.pages.Write(r.comp); err != nil {
					w.err = fmt.Errorf("write page store: %w", err)
				}
			}
			w.chunks = append(w.chunks, Chunk{Off: w.off, Comp: uint32(len(r.comp)), Raw: uint32(r.raw), CRC: Checksum(r.comp)})
			w.off += int64(len(r.comp))
		}
	}
}

// Dir is the final directory of the image.
func (w *Writer) Dir() string { return w.dir }

// WritePages appends raw page bytes to the stream. It only blocks when
// MaxQueued bytes already wait for compression.
func (w *Writer) WritePages(b []byte) error {
	for len(b) > 0 {
		dst := w.Reserve(len(b))
		n := copy(dst, b)
		b = b[n:]
		w.Commit1(n)
	}
	return nil
}

// Reserve returns space for up to n more bytes of the stream (at least one
// page unless n is smaller), to be filled by the caller and then counted
// with Commit1. It saves a copy when reading another process's memory.
func (w *Writer) Reserve(n int) []byte {
	if w.buf == nil {
		w.mu.Lock()
		if k := len(w.free); k > 0 {
			w.buf = w.free[k-1][:0]
			w.free = w.free[:k-1]
		}
		w.mu.Unlock()
		if w.buf == nil {
			w.buf = newChunkBuf()
		}
	}
	free := ChunkSize - len(w.buf)
	return w.buf[len(w.buf) : len(w.buf)+min(n, free)]
}

// Commit1 counts n bytes written into the last Reserve.
func (w *Writer) Commit1(n int) {
	w.buf = w.buf[:len(w.buf)+n]
	w.raw += int64(n)
	if len(w.buf) == ChunkSize {
		w.flush()
	}
}

// Prealloc maps and populates buffers for about n bytes of stream ahead of
// time (in parallel), so that the copy made while a tree is frozen does not
// pay for fresh memory.
func (w *Writer) Prealloc(n int64) {
	k := int((n + ChunkSize - 1) / ChunkSize)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var bufs [][]byte
	par := runtime.NumCPU()
	for g := 0; g < par; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < k; i += par {
				b := newChunkBuf()
				mu.Lock()
				bufs = append(bufs, b)
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	w.mu.Lock()
	w.free = append(w.free, bufs...)
	w.mu.Unlock()
}

// newChunkBuf maps a chunk buffer with its pages already present (one
// MAP_POPULATE instead of a fault per page while the tree is frozen).
func newChunkBuf() []byte {
	b, err := unix.Mmap(-1, 0, ChunkSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return make([]byte, 0, ChunkSize)
	}
	unix.Madvise(b, unix.MADV_DONTFORK)
	return b[:0]
}

// freeChunkBuf releases a buffer from newChunkBuf.
func freeChunkBuf(b []byte) {
	if cap(b) == ChunkSize {
		unix.Munmap(b[:ChunkSize])
	}
}

// flush queues the current buffer for compression.
func (w *Writer) flush() {
	if len(w.buf) == 0 {
		return
	}
	w.mu.Lock()
	if w.queued > MaxQueued {
		w.paused = false // never wait on paused workers
		w.cond.Broadcast()
	}
	for w.queued > MaxQueued {
		w.cond.Wait()
	}
	w.queue = append(w.queue, job{seq: w.seq, raw: w.buf})
	w.queued += int64(len(w.buf))
	w.seq++
	w.cond.Signal()
	w.mu.Unlock()
	w.buf = nil
}

// Pause holds compression back (chunks only queue up in memory) so that a
// copy made while the tree is frozen runs at memory speed; Resume lets the
// workers go. Commit resumes them too.
func (w *Writer) Pause() { w.setPaused(true) }

// Resume undoes Pause.
func (w *Writer) Resume() { w.setPaused(false) }

func (w *Writer) setPaused(p bool) {
	w.mu.Lock()
	w.paused = p
	w.cond.Broadcast()
	w.mu.Unlock()
}

// finish compresses and writes everything queued and stops the workers.
func (w *Writer) finish() error {
	if w.results == nil {
		return w.err
	}
	w.flush()
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	w.workers.Wait()
	close(w.results)
	<-w.written
	w.results = nil
	for _, b := range w.free {
		freeChunkBuf(b)
	}
	w.free = nil
	return w.err
}

// Commit finishes the page store, writes the manifest (its Chunks,
// PageBytes and Version are filled in here), syncs and renames the
// directory into place.
func (w *Writer) Commit(m *Manifest) error {
	if err := w.finish(); err != nil {
		w.Abort()
		return err
	}
	m.Version = Version
	m.Chunks = w.chunks
	m.PageBytes = w.raw
	fail := func(err error) error { w.Abort(); return err }
	if err := w.pages.Sync(); err != nil {
		return fail(fmt.Errorf("sync page store: %w", err))
	}
	if err := w.pages.Close(); err != nil {
		return fail(fmt.Errorf("close page store: %w", err))
	}
	w.pages = nil
	b, err := encodeManifest(m)
	if err != nil {
		return fail(err)
	}
	mf, err := os.Create(filepath.Join(w.tmp, ManifestFile))
	if err != nil {
		return fail(fmt.Errorf("create manifest: %w", err))
	}
	if _, err := mf.Write(b); err != nil {
		mf.Close()
		return fail(fmt.Errorf("write manifest: %w", err))
	}
	if err := mf.Sync(); err != nil {
		mf.Close()
		return fail(fmt.Errorf("sync manifest: %w", err))
	}
	mf.Close()
	if err := os.Rename(w.tmp, w.dir); err != nil {
		return fail(fmt.Errorf("rename image into place: %w", err))
	}
	if d, err := os.Open(filepath.Dir(w.dir)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort removes the temporary directory; the final name is never touched.
func (w *Writer) Abort() {
	w.finish()
	if w.pages != nil {
		w.pages.Close()
		w.pages = nil
	}
	os.RemoveAll(w.tmp)
}
