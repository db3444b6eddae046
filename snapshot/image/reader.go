package image

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

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
	pos   int
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
	jobs := make(chan func(*zstd.Decoder))
	n := max(runtime.NumCPU(), 2)
	for k := 0; k < n; k++ {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
			if err != nil {
				for j := range jobs {
					_ = j
				}
				return
			}
			defer dec.Close()
			for j := range jobs {
				j(dec)
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
			case jobs <- func(dec *zstd.Decoder) { res <- r.decode(dec, i) }:
			case <-r.stop:
				return
			}
		}
	}()
	return r, nil
}

func (r *PageReader) decode(dec *zstd.Decoder, i int) chunkResult {
	c := r.m.Chunks[i]
	b := make([]byte, c.Comp)
	if _, err := r.f.ReadAt(b, c.Off); err != nil {
		return chunkResult{err: fmt.Errorf("%s: chunk %d: %v: %w", PagesFile, i, err, ErrTruncated)}
	}
	if Checksum(b) != c.CRC {
		return chunkResult{err: fmt.Errorf("%s: chunk %d at offset %d: checksum mismatch: %w", PagesFile, i, c.Off, ErrCorrupt)}
	}
	raw, err := dec.DecodeAll(b, make([]byte, 0, c.Raw))
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
	if r.pos+n <= len(r.cur) {
		b := r.cur[r.pos : r.pos+n]
		r.pos += n
		return b, nil
	}
	out := make([]byte, 0, n)
	for len(out) < n {
		if r.pos == len(r.cur) {
			if err := r.load(); err != nil {
				return nil, err
			}
		}
		k := min(n-len(out), len(r.cur)-r.pos)
		out = append(out, r.cur[r.pos:r.pos+k]...)
		r.pos += k
	}
	return out, nil
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
