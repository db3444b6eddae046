package image

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// PageReader reads the page stream of an image sequentially. Chunks are
// read, checked and decompressed ahead by a few workers. The chunks must
// have been checked with Verify; checksums are checked again as each chunk
// is read, so a file changed in between is still caught.
type PageReader struct {
	f     *os.File
	m     *Manifest
	order chan chan chunkResult
	stop  chan struct{}
	wg    sync.WaitGroup
	i     int
	cur   []byte
	ref   *chunkRef // of cur
	pos   int

	mu   sync.Mutex
	free [][]byte // decoded-chunk buffers released by every holder
}

// chunkRef counts the holders of a decoded chunk: the reader while it is
// current, and each slice handed out by NextShared not yet released. At
// zero the buffer goes back to the free list. A chunk Next handed a slice
// of is pinned: Next's slices are never released.
type chunkRef struct {
	buf    []byte
	n      atomic.Int32
	pinned atomic.Bool
}

// maxFree bounds the free list.
const maxFree = 2 * lookahead

func (r *PageReader) getBuf(n int) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := len(r.free) - 1; k >= 0; k-- {
		if b := r.free[k]; cap(b) >= n {
			r.free = append(r.free[:k], r.free[k+1:]...)
			return b[:0]
		}
	}
	return make([]byte, 0, n)
}

func (r *PageReader) unref(c *chunkRef) {
	if c.n.Add(-1) != 0 || c.pinned.Load() {
		return
	}
	r.mu.Lock()
	if len(r.free) < maxFree {
		r.free = append(r.free, c.buf)
	}
	r.mu.Unlock()
}

type chunkResult struct {
	raw []byte
	err error
}

// lookahead is how many chunks are decoded ahead of the reader.
const lookahead = 6

// OpenPages opens the page stream of the image in dir.
func OpenPages(dir string, m *Manifest) (*PageReader, error) {
	f, err := os.Open(filepath.Join(dir, PagesFile))
	if err != nil {
		return nil, fmt.Errorf("open page store: %w", err)
	}
	r := &PageReader{f: f, m: m, order: make(chan chan chunkResult, lookahead), stop: make(chan struct{})}
	jobs := make(chan func(*zstd.Decoder, *[]byte))
	n := max(runtime.NumCPU(), 2)
	for k := 0; k < n; k++ {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30),
				zstd.IgnoreChecksum(true)) // the chunk CRC-32C was checked; older images carry an xxhash too
			if err != nil {
				for j := range jobs {
					_ = j
				}
				return
			}
			defer dec.Close()
			var comp []byte // this worker's read buffer
			for j := range jobs {
				j(dec, &comp)
			}
		}()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(jobs)
		defer close(r.order)
		for i := range m.Chunks {
			res := make(chan chunkResult, 1)
			select {
			case r.order <- res:
			case <-r.stop:
				return
			}
			i := i
			select {
			case jobs <- func(dec *zstd.Decoder, comp *[]byte) { res <- r.decode(dec, i, comp) }:
			case <-r.stop:
				return
			}
		}
	}()
	return r, nil
}

func (r *PageReader) decode(dec *zstd.Decoder, i int, comp *[]byte) chunkResult {
	c := r.m.Chunks[i]
	if cap(*comp) < int(c.Comp) {
		*comp = make([]byte, c.Comp)
	}
	b := (*comp)[:c.Comp]
	if _, err := r.f.ReadAt(b, c.Off); err != nil {
		return chunkResult{err: fmt.Errorf("%s: chunk %d: %v: %w", PagesFile, i, err, ErrTruncated)}
	}
	if Checksum(b) != c.CRC {
		return chunkResult{err: fmt.Errorf("%s: chunk %d at offset %d: checksum mismatch: %w", PagesFile, i, c.Off, ErrCorrupt)}
	}
	raw, err := dec.DecodeAll(b, r.getBuf(int(c.Raw)))
	if err != nil {
		return chunkResult{err: fmt.Errorf("%s: chunk %d: %v: %w", PagesFile, i, err, ErrCorrupt)}
	}
	if len(raw) != int(c.Raw) {
		return chunkResult{err: fmt.Errorf("%s: chunk %d: %d bytes, manifest says %d: %w", PagesFile, i, len(raw), c.Raw, ErrCorrupt)}
	}
	return chunkResult{raw: raw}
}

// Next returns the next n raw bytes of the stream. n may span chunks, then
// the bytes are copied. The reader never reuses a slice it returned, so a
// caller may hand it to other goroutines.
func (r *PageReader) Next(n int) ([]byte, error) {
	b, _, err := r.next(n, false)
	return b, err
}

// NextShared is Next for a caller that says when it is done with the
// slice: release (call it exactly once) lets the reader decode a later
// chunk into the same memory, which spares allocating and zeroing a fresh
// buffer per chunk.
func (r *PageReader) NextShared(n int) (b []byte, release func(), err error) {
	return r.next(n, true)
}

func (r *PageReader) next(n int, shared bool) ([]byte, func(), error) {
	if n == 0 {
		return nil, func() {}, nil
	}
	if r.pos == len(r.cur) {
		if err := r.load(); err != nil {
			return nil, nil, err
		}
	}
	if r.pos+n <= len(r.cur) {
		b := r.cur[r.pos : r.pos+n]
		r.pos += n
		ref := r.ref
		if !shared {
			ref.pinned.Store(true)
			return b, func() {}, nil
		}
		ref.n.Add(1)
		return b, func() { r.unref(ref) }, nil
	}
	out := make([]byte, 0, n)
	for len(out) < n {
		if r.pos == len(r.cur) {
			if err := r.load(); err != nil {
				return nil, nil, err
			}
		}
		k := min(n-len(out), len(r.cur)-r.pos)
		out = append(out, r.cur[r.pos:r.pos+k]...)
		r.pos += k
	}
	return out, func() {}, nil
}

func (r *PageReader) load() error {
	res, ok := <-r.order
	if !ok {
		return fmt.Errorf("%s: page stream ends after %d chunks: %w", PagesFile, r.i, ErrTruncated)
	}
	cr := <-res
	if cr.err != nil {
		return cr.err
	}
	if r.ref != nil {
		r.unref(r.ref)
	}
	r.ref = &chunkRef{buf: cr.raw}
	r.ref.n.Store(1)
	r.cur, r.pos = cr.raw, 0
	r.i++
	return nil
}

// Close releases the reader.
func (r *PageReader) Close() error {
	close(r.stop)
	go func() {
		for res := range r.order {
			<-res
		}
	}()
	r.wg.Wait()
	return r.f.Close()
}
