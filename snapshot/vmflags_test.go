package snapshot

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"

	"github.com/ftlinux/ftl/snapshot/image"
)

// TestParseSmapsFlags: the kept flags of each VMA, by start, in table
// order; the others (rd, ac, the kernel's own pf io de) are dropped.
func TestParseSmapsFlags(t *testing.T) {
	const smaps = `55d0c0a91000-55d0c0a92000 r--p 00000000 fe:00 9978278                    /tmp/probe
Size:                  4 kB
VmFlags: rd mr mw me 
7f1fe4a64000-7f1fe4a66000 rw-p 00000000 00:00 0 
Size:                  8 kB
Rss:                   8 kB
VmFlags: rd wr mr mw me lo lf ac 
7f1fe4c5c000-7f1fe4c5e000 rw-p 00000000 00:00 0 
VmFlags: rd wr mr mw me dc ac wf hg sl
7f1fe4c60000-7f1fe4c64000 r--p 00000000 00:00 0                          [vvar]
VmFlags: rd mr pf io de dd 
7f1fe4c66000-7f1fe4c68000 rw-p 00000000 00:00 0 
VmFlags: rd wr mr mw me sr rr nh mg uw
`
	got, err := parseSmapsFlags(strings.NewReader(smaps))
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]string{
		0x7f1fe4a64000: {"locked", "lockonfault"},
		0x7f1fe4c5c000: {"dontfork", "wipeonfork", "hugepage", "sealed"},
		0x7f1fe4c60000: {"dontdump"}, // dropped later: the vDSO block is not flaggable
		0x7f1fe4c66000: {"nohugepage", "mergeable", "sequential", "random"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsed %v, want %v", got, want)
	}
}

// TestVmFlagsTwinAndFrozen dumps one running program twice with
// --leave-running, its flags read from the copy-on-write twin (the
// MADV_DONTFORK mapping known from the twin's missing VMA) and from the
// frozen process: both images must carry the same flags on every
// mapping, with dontfork and wipeonfork on the program's two regions.
func TestVmFlagsTwinAndFrozen(t *testing.T) {
	cmd, _ := startCow(t)
	pid := cmd.Process.Pid
	flags := map[string][]image.Mapping{}
	for _, mode := range []string{"twin", "frozen"} {
		img := filepath.Join(t.TempDir(), mode)
		st, err := Dump(img, DumpOptions{Roots: []int{pid}, LeaveRunning: true, FrozenCopy: mode == "frozen"})
		if err != nil {
			t.Fatalf("dump (%s): %v", mode, err)
		}
		if want := map[string]int{"twin": 1, "frozen": 0}[mode]; st.Twins != want {
			t.Fatalf("%s: %d twins, want %d", mode, st.Twins, want)
		}
		m, err := image.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		flags[mode] = m.Processes[0].Mappings
	}
	tw, fr := flags["twin"], flags["frozen"]
	if len(tw) != len(fr) {
		t.Fatalf("twin image has %d mappings, frozen %d", len(tw), len(fr))
	}
	var df, wf int
	for i := range tw {
		if tw[i].Start != fr[i].Start || !reflect.DeepEqual(tw[i].Madvise, fr[i].Madvise) {
			t.Errorf("mapping %x-%x %s: twin flags %v, frozen %v", tw[i].Start, tw[i].End, tw[i].Name, tw[i].Madvise, fr[i].Madvise)
		}
		for _, n := range tw[i].Madvise {
			switch n {
			case "dontfork":
				df++
			case "wipeonfork":
				wf++
			}
		}
	}
	if df != 1 || wf != 1 {
		t.Errorf("%d dontfork and %d wipeonfork mappings, want 1 each", df, wf)
	}
}

// TestVmFlagsRestore dumps a program (killing it), adds a flag name this
// version does not know to its MADV_DONTFORK mapping in the manifest, and
// restores: the unknown name is a warning, not a failure, and the
// restored process's smaps shows dc and wf on the two regions again.
func TestVmFlagsRestore(t *testing.T) {
	cmd, out := startCow(t)
	pid := cmd.Process.Pid
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	img := filepath.Join(t.TempDir(), "img")
	if _, err := Dump(img, DumpOptions{Roots: []int{pid}}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	cmd.Wait()
	m, err := image.ReadManifest(img)
	if err != nil {
		t.Fatal(err)
	}
	var df, wf uint64
	for i, mp := range m.Processes[0].Mappings {
		switch {
		case reflect.DeepEqual(mp.Madvise, []string{"dontfork"}):
			df = mp.Start
			m.Processes[0].Mappings[i].Madvise = append(mp.Madvise, "from-the-future")
		case reflect.DeepEqual(mp.Madvise, []string{"wipeonfork"}):
			wf = mp.Start
		}
	}
	if df == 0 || wf == 0 {
		t.Fatalf("image has no dontfork (%x) or no wipeonfork (%x) mapping", df, wf)
	}
	rewriteManifest(t, img, m)
	var warnings []string
	res, err := Restore(img, RestoreOptions{Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	defer func() { unix.Kill(res.Root, unix.SIGKILL); reapTasks([]int{res.Root}, 5*time.Second) }()
	n := 0
	for _, w := range warnings {
		if strings.Contains(w, `"from-the-future"`) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("warnings %q, want one about the unknown flag", warnings)
	}
	flags, err := smapsFlags(res.Root)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(flags[df], []string{"dontfork"}) || !reflect.DeepEqual(flags[wf], []string{"wipeonfork"}) {
		t.Errorf("restored flags: %x %v, %x %v; want dontfork and wipeonfork", df, flags[df], wf, flags[wf])
	}
	// Judge the state waitFor read: the program truncates and rewrites
	// the file every pass, so a second read can meet it empty.
	var s cowState
	if err := waitFor(ctx, "restored cow to report", func() bool {
		s, err = readCow(out)
		return err == nil && s.pid == pid && s.passes >= 2
	}); err != nil {
		t.Fatal(err)
	}
	if s.dontfork != 1 || s.wipeonfork != 1 {
		t.Errorf("restored program reports %+v", s)
	}
}

// rewriteManifest writes m over the manifest of img (header: magic,
// version, body length, CRC-32C of the body; then the msgpack body).
func rewriteManifest(t *testing.T, img string, m *image.Manifest) {
	t.Helper()
	path := filepath.Join(img, image.ManifestFile)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	body, err := msgpack.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	hdr := append([]byte(nil), old[:20]...)
	binary.LittleEndian.PutUint32(hdr[12:], uint32(len(body)))
	binary.LittleEndian.PutUint32(hdr[16:], image.Checksum(body))
	if err := os.WriteFile(path, append(hdr, body...), 0o644); err != nil {
		t.Fatal(err)
	}
}
