package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// writeImage writes an image whose page stream is data.
func writeImage(t *testing.T, dir string, data []byte) *Manifest {
	t.Helper()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.Pause()
	for off := 0; off < len(data); off += 100000 {
		if err := w.WritePages(data[off:min(off+100000, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	w.Resume()
	m := &Manifest{Name: "t", Processes: []Process{{Pid: 2, Comm: "x"}}}
	if err := w.Commit(m); err != nil {
		t.Fatal(err)
	}
	return m
}

func testData() []byte {
	r := rand.New(rand.NewSource(1))
	data := make([]byte, 3*ChunkSize+12345)
	for i := 0; i < len(data); i += 2 {
		data[i] = byte(r.Intn(256))
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	data := testData()
	writeImage(t, dir, data)
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.PageBytes != int64(len(data)) || len(m.Chunks) != 4 || m.Processes[0].Comm != "x" {
		t.Fatalf("manifest: %d bytes, %d chunks", m.PageBytes, len(m.Chunks))
	}
	r, err := OpenPages(dir, m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []byte
	for len(got) < len(data) {
		b, err := r.Next(min(777777, len(data)-len(got)))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("page stream differs")
	}
	if _, err := r.Next(1); !errors.Is(err, ErrTruncated) {
		t.Fatalf("reading past the end: %v", err)
	}
	if _, err := Create(dir); !errors.Is(err, ErrExists) {
		t.Fatalf("create over an image: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	base := filepath.Join(t.TempDir(), "img")
	writeImage(t, base, testData())
	cases := []struct {
		name string
		bad  func(dir string)
		want error
	}{
		{"flipped page byte", func(d string) { flip(t, filepath.Join(d, PagesFile), 1000) }, ErrCorrupt},
		{"truncated pages", func(d string) { truncate(t, filepath.Join(d, PagesFile), -10) }, ErrTruncated},
		{"extra pages", func(d string) { appendTo(t, filepath.Join(d, PagesFile)) }, ErrCorrupt},
		{"flipped manifest byte", func(d string) { flip(t, filepath.Join(d, ManifestFile), 30) }, ErrCorrupt},
		{"truncated manifest", func(d string) { truncate(t, filepath.Join(d, ManifestFile), -5) }, ErrTruncated},
		{"no manifest", func(d string) { os.Remove(filepath.Join(d, ManifestFile)) }, ErrNotImage},
		{"bad magic", func(d string) { flip(t, filepath.Join(d, ManifestFile), 0) }, ErrNotImage},
		{"version 2", func(d string) {
			p := filepath.Join(d, ManifestFile)
			b, _ := os.ReadFile(p)
			binary.LittleEndian.PutUint32(b[8:], 2)
			os.WriteFile(p, b, 0o644)
		}, ErrVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "img")
			os.Mkdir(dir, 0o755)
			for _, f := range []string{ManifestFile, PagesFile} {
				b, _ := os.ReadFile(filepath.Join(base, f))
				os.WriteFile(filepath.Join(dir, f), b, 0o644)
			}
			c.bad(dir)
			if _, err := Open(dir); !errors.Is(err, c.want) {
				t.Fatalf("Open: %v, want %v", err, c.want)
			}
		})
	}
}

func flip(t *testing.T, p string, off int) {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	os.WriteFile(p, b, 0o644)
}

func truncate(t *testing.T, p string, by int64) {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	os.Truncate(p, st.Size()+by)
}

func appendTo(t *testing.T, p string) {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("junk"))
	f.Close()
}

func TestAbortLeavesNothing(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "img")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.WritePages(make([]byte, ChunkSize+5))
	w.Abort()
	ents, _ := os.ReadDir(parent)
	if len(ents) != 0 {
		t.Fatalf("abort left %v", ents)
	}
}

// TestPosixTimersField: timer_create timers round-trip through a manifest,
// and the field is optional both ways: a process without timers encodes no
// PosixTimers key (what readers older than the field saw), and a manifest
// written before the field existed decodes with none.
func TestPosixTimersField(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	timers := []PosixTimer{
		{ID: 0, Clock: 1, Notify: 0, Signo: 36, Value: 0x5eed, IntervalNsec: 20000000, ValueNsec: 1234567},
		{ID: 2, Clock: 0, Notify: 4, Signo: 37, Value: 0x7a11, Tid: 3, ValueSec: 3599, ValueNsec: 999},
		{ID: 7, Clock: -6, Notify: 1},
	}
	if err := w.Commit(&Manifest{Processes: []Process{{Pid: 2, PosixTimers: timers}, {Pid: 3}}}); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Processes[0].PosixTimers; !reflect.DeepEqual(got, timers) {
		t.Errorf("timers after the round trip: %+v, want %+v", got, timers)
	}
	if got := m.Processes[1].PosixTimers; got != nil {
		t.Errorf("process without timers decoded with %+v", got)
	}

	b, err := msgpack.Marshal(&Process{Pid: 2})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("PosixTimers")) {
		t.Errorf("a process without timers encodes a PosixTimers key")
	}
	type oldProcess struct { // Process as written before the field
		Pid, PPid int
		Comm      string
		Itimers   []Itimer `msgpack:",omitempty"`
	}
	b, err = msgpack.Marshal(&oldProcess{Pid: 5, Comm: "old", Itimers: []Itimer{{Which: 0, ValueSec: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	var p Process
	if err := msgpack.Unmarshal(b, &p); err != nil {
		t.Fatalf("decode an old process: %v", err)
	}
	if p.Pid != 5 || p.Comm != "old" || len(p.Itimers) != 1 || p.PosixTimers != nil {
		t.Errorf("old process decoded as %+v", p)
	}
	var old oldProcess
	if err := msgpack.Unmarshal(mustMarshal(t, &Process{Pid: 6, PosixTimers: timers}), &old); err != nil || old.Pid != 6 {
		t.Errorf("an old reader cannot skip the field: %+v %v", old, err)
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMadviseField: a mapping's madvise flags round-trip through a
// manifest, a mapping without flags encodes no Madvise key, and a mapping
// written before the field existed decodes with none.
func TestMadviseField(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"dontfork", "wipeonfork", "locked"}
	maps := []Mapping{
		{Start: 0x1000, End: 0x3000, Kind: KindAnon, Object: -1, Madvise: flags},
		{Start: 0x3000, End: 0x4000, Kind: KindAnon, Object: -1},
	}
	if err := w.Commit(&Manifest{Processes: []Process{{Pid: 2, Mappings: maps}}}); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Processes[0].Mappings
	if len(got) != 2 || !reflect.DeepEqual(got[0].Madvise, flags) {
		t.Errorf("flags after the round trip: %+v, want %v on the first", got, flags)
	}
	if len(got) == 2 && got[1].Madvise != nil {
		t.Errorf("mapping without flags decoded with %v", got[1].Madvise)
	}
	if b := mustMarshal(t, &Mapping{Start: 0x1000, End: 0x2000}); bytes.Contains(b, []byte("Madvise")) {
		t.Errorf("a mapping without flags encodes a Madvise key")
	}
	type oldMapping struct { // Mapping as written before the field
		Start, End uint64
		Prot       uint32
		Kind       string
		Object     int
		Extents    []Extent
	}
	var mp Mapping
	if err := msgpack.Unmarshal(mustMarshal(t, &oldMapping{Start: 0x5000, End: 0x6000, Kind: KindAnon, Object: -1, Extents: []Extent{{Addr: 0x5000, Pages: 1}}}), &mp); err != nil {
		t.Fatalf("decode an old mapping: %v", err)
	}
	if mp.Start != 0x5000 || mp.End != 0x6000 || len(mp.Extents) != 1 || mp.Madvise != nil {
		t.Errorf("old mapping decoded as %+v", mp)
	}
	var old oldMapping
	if err := msgpack.Unmarshal(mustMarshal(t, &Mapping{Start: 0x7000, End: 0x8000, Madvise: flags}), &old); err != nil || old.Start != 0x7000 {
		t.Errorf("an old reader cannot skip the field: %+v %v", old, err)
	}
}

// TestNextSharedRecycles reads a stream with NextShared, holding some
// slices across chunk boundaries and releasing them late: every byte is
// right while held, decoded chunks come back to the free list once
// released, and a slice from Next (never released) is never overwritten.
func TestNextSharedRecycles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	data := make([]byte, 12*ChunkSize)
	for i := range data {
		data[i] = byte(i / ChunkSize * 7)
	}
	writeImage(t, dir, data)
	m, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenPages(dir, m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pinned, err := r.Next(1 << 20) // chunk 0, never released
	if err != nil {
		t.Fatal(err)
	}
	want0 := append([]byte(nil), pinned...)
	type held struct {
		off     int
		b       []byte
		release func()
	}
	var queue []held
	off := 1 << 20
	for off < len(data) {
		b, release, err := r.NextShared(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		queue = append(queue, held{off, b, release})
		off += len(b)
		if len(queue) > 6 { // release late, in order
			h := queue[0]
			queue = queue[1:]
			if !bytes.Equal(h.b, data[h.off:h.off+len(h.b)]) {
				t.Fatalf("slice at %d changed while held", h.off)
			}
			h.release()
		}
	}
	for _, h := range queue {
		if !bytes.Equal(h.b, data[h.off:h.off+len(h.b)]) {
			t.Fatalf("slice at %d changed while held", h.off)
		}
		h.release()
	}
	if !bytes.Equal(pinned, want0) {
		t.Fatal("a slice from Next was overwritten by a later chunk")
	}
	r.mu.Lock()
	n := len(r.free)
	r.mu.Unlock()
	if n == 0 {
		t.Fatal("no decoded chunk came back to the free list")
	}
}
