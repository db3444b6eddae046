package libos

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// repoRoot is the module root (this package lives one level below it).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// buildC compiles testdata/<name>.c against shim/ftl_region.h into a temp dir.
func buildC(t *testing.T, name string, extra ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed: cannot build the C side of the test")
	}
	out := filepath.Join(t.TempDir(), name)
	args := append([]string{"-O1", "-Wall", "-Werror", "-I" + filepath.Join(repoRoot(t), "shim"),
		"-o", out, filepath.Join("testdata", name+".c")}, extra...)
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, b)
	}
	return out
}

// TestLayoutMatchesHeader checks every constant, struct size, field offset
// and size, and the call table against what gcc makes of ftl_region.h.
func TestLayoutMatchesHeader(t *testing.T) {
	bin := buildC(t, "layout")
	b, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("layout: %v", err)
	}
	goConsts := map[string]uint64{
		"FTL_REGION_MAGIC": regionMagic, "FTL_REGION_VERSION": RegionVersion,
		"FTL_HEADER_SIZE": headerSize, "FTL_MAX_PROCS": maxProcs, "FTL_MAX_CONNS": maxConns,
		"FTL_MAX_CALLS": maxCalls, "FTL_ADDR_MAX": addrMax, "FTL_COMM_LEN": commLen,
		"FTL_EVENTS_SIZE": eventsSize, "FTL_COMMIT_SIZE": commitSize,
		"FTL_PROC_FREE": procFree, "FTL_PROC_CLAIMING": procClaiming, "FTL_PROC_LIVE": procLive,
		"FTL_PROC_EXITED": procExited, "FTL_SLOT_FREE": slotFree, "FTL_SLOT_CLAIMING": slotClaiming,
		"FTL_SLOT_USED": slotUsed, "FTL_CONN_OPEN": connOpen, "FTL_CONN_LISTEN": connListen,
		"FTL_CONN_CONNECTING": connConnecting, "FTL_CONN_ESTABLISHED": connEstablished,
		"FTL_CONN_CLOSED": connClosed, "FTL_CONNF_PAIR": connfPair, "FTL_TRACK": uint64(Tracked), "FTL_PASS": uint64(Passed),
		"FTL_REFUSE": uint64(Refused), "FTL_NCALLS": uint64(len(Calls)),
		"FTL_PROCS_OFF": procsOff, "FTL_CONNS_OFF": uint64(connsOff), "FTL_EVENTS_OFF": uint64(eventsOff),
		"FTL_COMMIT_OFF": uint64(commitOff), "FTL_REGION_SIZE": uint64(RegionSize),
	}
	goStructs := map[string]reflect.Type{
		"ftl_header": reflect.TypeOf(rawHeader{}),
		"ftl_proc":   reflect.TypeOf(rawProc{}),
		"ftl_conn":   reflect.TypeOf(rawConn{}),
	}
	seenConst := map[string]bool{}
	seenField := map[string]bool{}
	var cCalls []Call
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		switch f[0] {
		case "const":
			want, ok := goConsts[f[1]]
			if !ok {
				t.Errorf("C constant %s has no Go mirror in the test table", f[1])
				continue
			}
			seenConst[f[1]] = true
			if got, _ := strconv.ParseUint(f[2], 10, 64); got != want {
				t.Errorf("%s: C %d, Go %d", f[1], got, want)
			}
		case "size":
			typ := goStructs[f[1]]
			if got, _ := strconv.ParseUint(f[2], 10, 64); typ == nil || uint64(typ.Size()) != got {
				t.Errorf("sizeof(struct %s): C %s, Go %v", f[1], f[2], typ)
			}
		case "field":
			typ := goStructs[f[1]]
			goName := ""
			for i := 0; i < typ.NumField(); i++ {
				if strings.EqualFold(typ.Field(i).Name, strings.ReplaceAll(f[2], "_", "")) {
					goName = typ.Field(i).Name
				}
			}
			if goName == "" {
				t.Errorf("struct %s field %s has no Go mirror", f[1], f[2])
				continue
			}
			seenField[f[1]+"."+goName] = true
			sf, _ := typ.FieldByName(goName)
			off, _ := strconv.ParseUint(f[3], 10, 64)
			size, _ := strconv.ParseUint(f[4], 10, 64)
			if uint64(sf.Offset) != off || uint64(sf.Type.Size()) != size {
				t.Errorf("%s.%s: C offset %d size %d, Go %s offset %d size %d",
					f[1], f[2], off, size, goName, sf.Offset, sf.Type.Size())
			}
		case "call":
			parts := strings.SplitN(line, " ", 5)
			idx, _ := strconv.Atoi(parts[1])
			pol, _ := strconv.Atoi(parts[3])
			if idx != len(cCalls) {
				t.Fatalf("call index %d out of order", idx)
			}
			cCalls = append(cCalls, Call{Name: parts[2], Policy: Policy(pol), Why: parts[4]})
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
	for name := range goConsts {
		if !seenConst[name] {
			t.Errorf("constant %s not printed by testdata/layout.c", name)
		}
	}
	for sname, typ := range goStructs {
		for i := 0; i < typ.NumField(); i++ {
			if !seenField[sname+"."+typ.Field(i).Name] {
				t.Errorf("Go field %s.%s not in the C header (or not printed by layout.c)", sname, typ.Field(i).Name)
			}
		}
	}
	if !reflect.DeepEqual(cCalls, Calls) {
		for i := 0; i < len(cCalls) || i < len(Calls); i++ {
			var c, g Call
			if i < len(cCalls) {
				c = cCalls[i]
			}
			if i < len(Calls) {
				g = Calls[i]
			}
			if c != g {
				t.Errorf("call %d: C %+v, Go %+v", i, c, g)
			}
		}
	}
	if len(Calls) > maxCalls {
		t.Errorf("%d calls do not fit ftl_proc.calls[%d]", len(Calls), maxCalls)
	}
}

func TestCreateOpenRegion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "region")
	if err := CreateRegion(path); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != int64(RegionSize) || st.Mode().Perm() != 0o644 {
		t.Errorf("region file: size %d mode %v, want %d 0644", st.Size(), st.Mode().Perm(), RegionSize)
	}
	if err := CreateRegion(path); !errors.Is(err, os.ErrExist) {
		t.Errorf("second CreateRegion: %v, want os.ErrExist", err)
	}
	r, err := OpenRegion(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, c := r.Procs(), r.Conns(); len(p) != 0 || len(c) != 0 {
		t.Errorf("fresh region: %d procs %d conns", len(p), len(c))
	}
	if s := r.Stats(); s != (Stats{}) {
		t.Errorf("fresh region stats %+v", s)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if r.Procs() != nil || r.Conns() != nil || r.Stats() != (Stats{}) {
		t.Errorf("closed region still returns data")
	}
}

func TestOpenRegionRejects(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := CreateRegion(good); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(name string, f func([]byte) []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, f(append([]byte(nil), orig...)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	put32 := func(b []byte, off uintptr, v uint32) {
		*(*uint32)(unsafe.Pointer(&b[off])) = v
	}
	var h rawHeader
	cases := []struct {
		path string
		want error
	}{
		{mutate("short", func(b []byte) []byte { return b[:100] }), ErrTruncated},
		{mutate("cut", func(b []byte) []byte { return b[:RegionSize-1] }), ErrTruncated},
		{mutate("magic", func(b []byte) []byte { b[0] ^= 0xff; return b }), ErrNotRegion},
		{mutate("version", func(b []byte) []byte { put32(b, unsafe.Offsetof(h.Version), 99); return b }), ErrVersion},
		{mutate("layout", func(b []byte) []byte { put32(b, unsafe.Offsetof(h.ConnSize), 1); return b }), ErrLayout},
		{filepath.Join(dir, "missing"), os.ErrNotExist},
	}
	for _, c := range cases {
		r, err := OpenRegion(c.path)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", filepath.Base(c.path), err, c.want)
		}
		if r != nil {
			r.Close()
		}
	}
}

func TestSockaddrString(t *testing.T) {
	in4 := []byte{2, 0, 0x2b, 0xcb, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	in6 := make([]byte, 28)
	in6[0], in6[2], in6[3], in6[23] = 10, 0, 80, 1
	un := append([]byte{1, 0}, []byte("/run/x.sock\x00")...)
	abs := append([]byte{1, 0, 0}, []byte("abc")...)
	cases := []struct {
		b    []byte
		n    uint32
		want string
	}{
		{in4, 16, "127.0.0.1:11211"},
		{in6, 28, "[::1]:80"},
		{un, uint32(len(un)), "/run/x.sock"},
		{abs, uint32(len(abs)), "@abc"},
		{[]byte{1, 0}, 2, ""},
		{in4, 5, ""},                   // torn: too short for AF_INET
		{in4, 1000, "127.0.0.1:11211"}, // torn length: clipped, no panic
	}
	for _, c := range cases {
		if got := sockaddrString(c.b, c.n); got != c.want {
			t.Errorf("sockaddrString(%v, %d) = %q, want %q", c.b, c.n, got, c.want)
		}
	}
}

// TestDocListsEveryCall keeps the interposition table in docs/shim.md in
// step with the code.
func TestDocListsEveryCall(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "shim.md"))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range Calls {
		row := fmt.Sprintf("| %d | `%s` | %s | %s |", i, c.Name, c.Policy, c.Why)
		if !strings.Contains(string(b), row) {
			t.Errorf("docs/shim.md lacks the row %q", row)
		}
	}
}

// TestRegionGarbage: whatever a writer leaves in the slots (garbage, torn
// writes while we read), the reader must not panic and must keep its
// outputs bounded.
func TestRegionGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "region")
	if err := CreateRegion(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := unix.Mmap(int(f.Fd()), 0, int(RegionSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(w)
	r, err := OpenRegion(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	body := w[headerSize:eventsOff]
	stop := make(chan struct{})
	done := make(chan struct{})
	started := make(chan struct{})
	go func() { // a torn writer: random bytes, with some slots made "in use"
		defer close(done)
		for i := 0; ; i++ {
			if i == 1 {
				close(started)
			}
			select {
			case <-stop:
				return
			default:
			}
			for j := 0; j < 4096; j++ {
				body[rng.IntN(len(body))] = byte(rng.Uint32())
			}
			for j := 0; j < 64; j++ {
				p := (*rawProc)(unsafe.Pointer(&w[procsOff+uintptr(rng.IntN(maxProcs))*unsafe.Sizeof(rawProc{})]))
				p.State = procLive
				c := (*rawConn)(unsafe.Pointer(&w[connsOff+uintptr(rng.IntN(maxConns))*unsafe.Sizeof(rawConn{})]))
				c.SlotState, c.Seq = slotUsed, 0
			}
		}
	}()
	defer func() { // before the deferred Munmap: stop the writer first
		close(stop)
		<-done
	}()
	<-started
	seen := 0
	for i := 0; i < 20; i++ { // each call scans /proc: garbage pid namespaces
		procs := r.Procs()
		seen += len(procs)
		for _, p := range procs {
			if len(p.Comm) > commLen {
				t.Fatalf("comm %q longer than the field", p.Comm)
			}
		}
		for _, c := range r.Conns() {
			if len(c.Local) > 200 || len(c.Peer) > 200 {
				t.Fatalf("address longer than a sockaddr can give: %+v", c)
			}
		}
	}
	if seen == 0 {
		t.Errorf("the reader never saw a garbage slot: the test tested nothing")
	}
}
