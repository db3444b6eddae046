// Package image owns the on-disk format of a checkpoint: one directory per
// generation holding a versioned manifest (msgpack) and a page store (zstd,
// chunked, one CRC-32C per chunk).
//
// Invariants:
//   - A directory is only ever seen complete: it is written under a
//     temporary sibling name and renamed when every byte is synced.
//   - Nothing is trusted before it is checked: Open checks the manifest's
//     magic, version and checksum; Verify checks the page store's size and
//     every chunk's checksum. Errors name the bad part and wrap one of the
//     sentinel errors below.
//   - Pages are a single stream in manifest order: shared objects first, then
//     every process's mappings in order, each mapping's extents in order.
//     An extent marked Parent lives in the parent generation (incremental
//     images); version 1 writers never set it.
package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the format version this package writes and reads.
const Version = 1

// File names inside an image directory.
const (
	ManifestFile = "manifest.ftl"
	PagesFile    = "pages.zst"
)

var magic = [8]byte{'F', 'T', 'L', 'I', 'M', 'A', 'G', 'E'}

// Sentinel errors; every error from this package wraps one of them.
var (
	ErrNotImage  = errors.New("not an ftl image")
	ErrVersion   = errors.New("unsupported image format version")
	ErrCorrupt   = errors.New("corrupted image")
	ErrTruncated = errors.New("truncated image")
	ErrExists    = errors.New("image directory already exists and is not empty")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C used for the manifest and every chunk.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Manifest describes a whole checkpointed tree.
type Manifest struct {
	Version    int
	Created    int64 // unix nanoseconds
	Name       string
	Parent     string // parent generation directory (relative), "" for a full image
	Kernel     string
	Engine     string // writer's identity, e.g. "ftl"
	PidNS      bool   // the tree lived in its own pid namespace under ftl's init
	Root       int    // pid of the tree's root process (namespace pid)
	XstateSize int
	Vdso       VdsoInfo
	Region     RegionInfo
	Processes  []Process
	Shared     []SharedObject
	Files      msgpack.RawMessage // []files.Desc, owned by snapshot/files
	Chunks     []Chunk
	PageBytes  int64 // raw (uncompressed) bytes in the page stream
	Warnings   []string
	// NetLock tags the firewall rules that hold the tree's TCP connections
	// quiet from the kill to the restore (snapshot/netlock); "" if none.
	NetLock string `msgpack:",omitempty"`
	// Argv is the root process's command line at the dump (for ftl ps
	// and inspect; the process's own copy is in its memory).
	Argv []string `msgpack:",omitempty"`
}

// VdsoInfo describes the [vvar] [vvar_vclock] [vdso] block of the dumping kernel.
type VdsoInfo struct {
	VvarSize, VclockSize, VdsoSize uint64
	Code                           []byte // the [vdso] bytes
}

// RegionInfo is the shim's shared region (ftl-launched trees only).
type RegionInfo struct {
	Path   string
	Shared int // index in Manifest.Shared, -1 if none
}

// Process is one process of the tree.
type Process struct {
	Pid, PPid, Pgid, Sid int
	Comm, Exe            string
	Cwd, Root            string
	Umask                uint32
	Threads              []Thread
	Mappings             []Mapping
	MM                   MM
	Sigactions           []Sigaction
	Pending              [][]byte // shared (process-wide) queued siginfos
	Rlimits              []Rlimit
	Itimers              []Itimer     `msgpack:",omitempty"` // armed setitimer timers
	PosixTimers          []PosixTimer `msgpack:",omitempty"` // timer_create timers
	Creds                Creds
	FDs                  msgpack.RawMessage // []files.FD, owned by snapshot/files
	Personality          uint64
}

// Thread is one thread; the first thread of a process is its leader.
type Thread struct {
	Tid        int
	Comm       string
	Regs       [27]uint64 // struct user_regs_struct
	Xstate     []byte
	Sigmask    uint64
	Pending    [][]byte // thread-private queued siginfos
	RseqPtr    uint64
	RseqSize   uint32
	RseqSig    uint32
	RobustHead uint64
	RobustLen  uint64
	ClearTid   uint64
}

// MM are the fields restored with PR_SET_MM_MAP.
type MM struct {
	StartCode, EndCode, StartData, EndData uint64
	StartBrk, Brk, StartStack              uint64
	ArgStart, ArgEnd, EnvStart, EnvEnd     uint64
	Auxv                                   []byte
}

// Mapping kinds.
const (
	KindAnon     = "anon"     // private anonymous (heap, stack, guard pages)
	KindFile     = "file"     // file mapping reopened by path; private ones carry their changed pages
	KindShared   = "shared"   // backed by a SharedObject in the image (shmem, memfd, shared anon, deleted files)
	KindRegion   = "region"   // the shim's region file: remapped from the new run's region
	KindVdso     = "vdso"     // [vvar] [vvar_vclock] [vdso]: moved, not copied
	KindVsyscall = "vsyscall" // fixed by the kernel
)

// Mapping is one VMA.
type Mapping struct {
	Start, End uint64
	Prot       uint32
	Shared     bool // MAP_SHARED
	Kind       string
	Name       string // path or [name] as in /proc/PID/maps
	Offset     uint64 // file offset
	Object     int    // index in Manifest.Shared for KindShared, else -1
	GrowsDown  bool
	Extents    []Extent // private pages saved in the page stream
	// Madvise are the per-VMA flags of /proc/PID/smaps "VmFlags:" that
	// the restore sets again, by name: "dontfork", "wipeonfork",
	// "hugepage", "nohugepage", "dontdump", "mergeable", "sequential",
	// "random" (madvise), "locked", "lockonfault" (mlock, mlock2) and
	// "sealed" (mseal). Names, not bits, so that a reader meeting a name
	// it does not know can say which. Absent in images written before the
	// field (decoded as none).
	Madvise []string `msgpack:",omitempty"`
}

// Extent is a run of pages. For a mapping Addr is a virtual address; for a
// shared object it is a byte offset in the object.
type Extent struct {
	Addr   uint64
	Pages  uint32
	Parent bool // pages are in the parent generation, not in this stream
}

// SharedObject is memory shared between mappings (possibly of several
// processes): shmem, memfd, MAP_SHARED|MAP_ANONYMOUS, or a deleted file.
type SharedObject struct {
	Name    string
	Dev     string
	Inode   uint64
	Size    uint64
	Extents []Extent
}

// Sigaction is one non-default signal disposition (kernel layout).
type Sigaction struct {
	Signo                          int
	Handler, Flags, Restorer, Mask uint64
}

// Rlimit is one resource limit.
// Itimer is one armed interval timer (setitimer): Which is ITIMER_REAL,
// ITIMER_VIRTUAL or ITIMER_PROF; the value is what was left at the dump.
type Itimer struct {
	Which                     int
	IntervalSec, IntervalUsec int64
	ValueSec, ValueUsec       int64
}

// PosixTimer is one timer_create timer as /proc/PID/timers and
// timer_gettime showed it at the dump. A Value and Interval of zero is a
// disarmed timer; the value is what was left, restarted at the restore.
type PosixTimer struct {
	ID     int    // the kernel's timer id, recreated as is
	Clock  int    // clockid as given to timer_create (a CPU-time clock encodes a pid)
	Notify int    // sigev_notify: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD 2, |SIGEV_THREAD_ID 4
	Signo  int    // sigev_signo
	Value  uint64 // sigev_value
	Tid    int    // notified thread (namespace tid) with SIGEV_THREAD_ID, else 0

	IntervalSec, IntervalNsec int64
	ValueSec, ValueNsec       int64
}

type Rlimit struct {
	Resource int
	Cur, Max uint64
}

// Creds are the process credentials.
type Creds struct {
	Uid, Euid, Suid, Fsuid uint32
	Gid, Egid, Sgid, Fsgid uint32
	Groups                 []uint32
	CapEff, CapPrm, CapInh uint64
}

// Chunk is one independently compressed piece of the page stream.
type Chunk struct {
	Off  int64  // offset in PagesFile
	Comp uint32 // compressed length
	Raw  uint32 // uncompressed length
	CRC  uint32 // CRC-32C of the compressed bytes
}

// Pages returns the number of pages of a list of extents stored in this stream.
func Pages(ex []Extent) int64 {
	var n int64
	for _, e := range ex {
		if !e.Parent {
			n += int64(e.Pages)
		}
	}
	return n
}

// encodeManifest serializes m with its header.
func encodeManifest(m *Manifest) ([]byte, error) {
	body, err := msgpack.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	var hdr [20]byte
	copy(hdr[:8], magic[:])
	binary.LittleEndian.PutUint32(hdr[8:], uint32(m.Version))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(len(body)))
	binary.LittleEndian.PutUint32(hdr[16:], Checksum(body))
	return append(hdr[:], body...), nil
}

// ReadManifest reads and checks the manifest of the image in dir.
func ReadManifest(dir string) (*Manifest, error) {
	p := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no %s: %w", dir, ManifestFile, ErrNotImage)
		}
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if len(b) < 20 {
		return nil, fmt.Errorf("%s: %d bytes, shorter than its header: %w", p, len(b), ErrTruncated)
	}
	if !bytes.Equal(b[:8], magic[:]) {
		return nil, fmt.Errorf("%s: bad magic: %w", p, ErrNotImage)
	}
	v := binary.LittleEndian.Uint32(b[8:])
	if v != Version {
		return nil, fmt.Errorf("%s: format version %d, this ftl reads version %d: %w", p, v, Version, ErrVersion)
	}
	n := binary.LittleEndian.Uint32(b[12:])
	body := b[20:]
	if uint32(len(body)) < n {
		return nil, fmt.Errorf("%s: body is %d bytes, header says %d: %w", p, len(body), n, ErrTruncated)
	}
	if uint32(len(body)) > n {
		return nil, fmt.Errorf("%s: %d trailing bytes after the body: %w", p, uint32(len(body))-n, ErrCorrupt)
	}
	if c := Checksum(body); c != binary.LittleEndian.Uint32(b[16:]) {
		return nil, fmt.Errorf("%s: checksum mismatch: %w", p, ErrCorrupt)
	}
	m := new(Manifest)
	if err := msgpack.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("%s: decode: %v: %w", p, err, ErrCorrupt)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("%s: body version %d: %w", p, m.Version, ErrVersion)
	}
	return m, nil
}

// Verify checks that the page store of dir holds exactly the chunks the
// manifest lists, each with a matching checksum.
func Verify(dir string, m *Manifest) error {
	p := filepath.Join(dir, PagesFile)
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", p, err, ErrTruncated)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", p, err)
	}
	var want int64
	var raw int64
	for _, c := range m.Chunks {
		if c.Off != want {
			return fmt.Errorf("%s: chunk table not contiguous at offset %d: %w", ManifestFile, want, ErrCorrupt)
		}
		want += int64(c.Comp)
		raw += int64(c.Raw)
	}
	if raw != m.PageBytes {
		return fmt.Errorf("%s: chunks hold %d bytes, manifest says %d: %w", ManifestFile, raw, m.PageBytes, ErrCorrupt)
	}
	if st.Size() < want {
		return fmt.Errorf("%s: %d bytes, manifest needs %d: %w", p, st.Size(), want, ErrTruncated)
	}
	if st.Size() > want {
		return fmt.Errorf("%s: %d bytes, manifest lists %d: %w", p, st.Size(), want, ErrCorrupt)
	}
	// One reader per CPU over interleaved chunks; the error reported is
	// the one of the first bad chunk, whichever reader met it.
	par := runtime.NumCPU()
	errs := make([]error, par)
	first := make([]int, par)
	var wg sync.WaitGroup
	for g := 0; g < par; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var buf []byte
			for i := g; i < len(m.Chunks); i += par {
				c := m.Chunks[i]
				if cap(buf) < int(c.Comp) {
					buf = make([]byte, 0, c.Comp)
				}
				b := buf[:c.Comp]
				if _, err := f.ReadAt(b, c.Off); err != nil {
					errs[g], first[g] = fmt.Errorf("%s: chunk %d at offset %d: %v: %w", p, i, c.Off, err, ErrTruncated), i
					return
				}
				if Checksum(b) != c.CRC {
					errs[g], first[g] = fmt.Errorf("%s: chunk %d at offset %d: checksum mismatch: %w", p, i, c.Off, ErrCorrupt), i
					return
				}
			}
		}(g)
	}
	wg.Wait()
	var bad error
	at := len(m.Chunks)
	for g := range errs {
		if errs[g] != nil && first[g] < at {
			bad, at = errs[g], first[g]
		}
	}
	return bad
}

// Open reads the manifest and verifies the whole image.
func Open(dir string) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if err := Verify(dir, m); err != nil {
		return nil, err
	}
	return m, nil
}
