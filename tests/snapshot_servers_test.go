package tests

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftlinux/ftl/tests/testenv"
)

// The snapshot engine's proof with real servers under `ftl run`:
// memcached -t 4 and redis holding 100,000 keys each, nginx master + 2
// workers, and a C program looping over sqlite transactions
// (tests/progs/sqliteloop.c). For the servers: a --leave-running checkpoint
// (A) while the original keeps serving, a checkpoint that kills the tree (B)
// while a client keeps sending requests and others have a request or a
// reply in flight, a restore of B with the same pids in a fresh pid
// namespace where the connections opened before the checkpoints go on, then
// a second restore of B (an image restores twice) and a restore of A (the
// state as of A, not of B). For the sqlite loop: it goes on from where it
// was, no transaction lost or doubled, and the database checks out.

const pfKeys = 100_000

// pfSetup: root, the binaries, a private $FTL_HOME (returned).
func pfSetup(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedBinaries(t)
	return testenv.Home(t)
}

// pfCheckpoint runs `ftl checkpoint ARGS... --dir dir`, expects exit 0 and
// dir as the last line of stdout.
func pfCheckpoint(t *testing.T, dir string, args ...string) {
	t.Helper()
	all := append(append([]string{"checkpoint"}, args...), "--dir", dir)
	r := testenv.Ftl(t, 120*time.Second, all...)
	if r.Code != 0 {
		t.Fatalf("ftl %s: %s", strings.Join(all, " "), r)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if lines[len(lines)-1] != dir {
		t.Fatalf("ftl %s printed %q, want the image dir %s as the last line", strings.Join(all, " "), r.Stdout, dir)
	}
	t.Logf("ftl %s: %s", strings.Join(all, " "), strings.TrimSpace(r.Stderr))
}

// pfInspect checks `ftl image inspect --json dir` against the run as ftl
// ps saw it when it was checkpointed: format version 1, the run's name, a
// pid-namespace tree rooted at pid 2, the same processes.
func pfInspect(t *testing.T, dir string, info testenv.PSInfo) {
	t.Helper()
	r := testenv.Ftl(t, 60*time.Second, "image", "inspect", "--json", dir)
	if r.Code != 0 {
		t.Fatalf("ftl image inspect --json %s: %s", dir, r)
	}
	var img struct {
		Version   int    `json:"version"`
		Name      string `json:"name"`
		PidNS     bool   `json:"pid_namespace"`
		Root      int    `json:"root"`
		Processes []struct {
			Pid     int    `json:"pid"`
			PPid    int    `json:"ppid"`
			Comm    string `json:"comm"`
			Threads []int  `json:"threads"` // tids, the leader first
		} `json:"processes"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &img); err != nil {
		t.Fatalf("ftl image inspect --json: %v in %q", err, r.Stdout)
	}
	var procs []string
	for _, p := range img.Processes {
		ppid := p.PPid
		if p.Pid == img.Root && ppid == 0 {
			ppid = 1 // the image leaves out the root's parent, ftl's init
		}
		procs = append(procs, fmt.Sprintf("%d<%d:%s", p.Pid, ppid, p.Comm))
		if len(p.Threads) < 1 || p.Threads[0] != p.Pid {
			t.Errorf("image %s: process %d has threads %v, want its leader first", dir, p.Pid, p.Threads)
		}
	}
	sort.Strings(procs)
	if img.Version != 1 || img.Name != info.Name || !img.PidNS || img.Root != 2 || strings.Join(procs, " ") != pfNsPids(info) {
		t.Errorf("image %s: version %d name %q pid namespace %v root %d processes %v; want version 1, %q, true, 2, %s",
			dir, img.Version, img.Name, img.PidNS, img.Root, procs, info.Name, pfNsPids(info))
	}
}

// pfRestore runs `ftl restore --detach --name name dir`, expects the name
// back, and kills the run at cleanup.
func pfRestore(t *testing.T, name, dir string) testenv.PSInfo {
	t.Helper()
	r := testenv.Ftl(t, 120*time.Second, "restore", "--detach", "--name", name, dir)
	t.Cleanup(func() { testenv.KillRun(t, name) })
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != name {
		t.Fatalf("ftl restore --detach --name %s %s: %s", name, dir, r)
	}
	return testenv.PS(t, name)
}

// pfWaitProcs polls ftl ps until the run has n processes.
func pfWaitProcs(t *testing.T, name string, n int) testenv.PSInfo {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		info := testenv.PS(t, name)
		if len(info.Processes) == n {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s has processes %+v, want %d", name, info.Processes, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pfNsPids is the run's tree as "pid<ppid comm" in namespace pids, sorted.
func pfNsPids(info testenv.PSInfo) string {
	var s []string
	for _, p := range info.Processes {
		s = append(s, fmt.Sprintf("%d<%d:%s", p.Pid, p.PPid, p.Comm))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// pfSameTree fails unless after has the same namespace pids as before, in
// a pid namespace of its own.
func pfSameTree(t *testing.T, before, after testenv.PSInfo) {
	t.Helper()
	if pfNsPids(before) != pfNsPids(after) {
		t.Fatalf("restored tree %s, checkpointed tree %s", pfNsPids(after), pfNsPids(before))
	}
	// Namespace inode numbers are recycled once a namespace is gone, so the
	// original's cannot be compared: the restored tree must not be in ours.
	own, _ := os.Readlink("/proc/self/ns/pid")
	if after.PidNS == "" || after.PidNS == own {
		t.Fatalf("restored into pid namespace %q (ours is %q): want a fresh one", after.PidNS, own)
	}
}

// pfTids lists every thread of the run by namespace pid and namespace tid
// ("2:2,3,4 3:3"), from /proc's NSpid lines.
func pfTids(t *testing.T, info testenv.PSInfo) string {
	t.Helper()
	var out []string
	for _, p := range info.Processes {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.HostPid))
		if err != nil {
			t.Fatalf("threads of %d: %v", p.HostPid, err)
		}
		var tids []int
		for _, e := range ents {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", p.HostPid, e.Name()))
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" {
					n, _ := strconv.Atoi(f[len(f)-1])
					tids = append(tids, n)
				}
			}
		}
		sort.Ints(tids)
		out = append(out, fmt.Sprintf("%d:%s", p.Pid, strings.Trim(fmt.Sprint(tids), "[]")))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// pfGone fails unless the run (as info saw it) is gone entirely: its
// processes, its namespace, its run directory, its ftl ps entry.
func pfGone(t *testing.T, name string, info testenv.PSInfo) {
	t.Helper()
	testenv.NoLeftovers(t, name, append(info.HostPids(), info.InitPid)...)
	testenv.NamespaceGone(t, info.PidNS)
	if r := testenv.Ftl(t, 10*time.Second, "ps", name); r.Code == 0 {
		t.Fatalf("run %s still listed: %s", name, r)
	}
}

// pfKill kills run name with ftl kill and waits until it is gone.
func pfKill(t *testing.T, name string) {
	t.Helper()
	info := testenv.PS(t, name)
	if r := testenv.Ftl(t, 20*time.Second, "kill", name); r.Code != 0 {
		t.Fatalf("ftl kill %s: %s", name, r)
	}
	pfGone(t, name, info)
}

// pfRunning fails unless every process of the run is alive and not stopped
// (a checkpoint must never leave a tree frozen).
func pfRunning(t *testing.T, info testenv.PSInfo) {
	t.Helper()
	for _, pid := range info.HostPids() {
		if st := pfState(pid); st == "" || st == "Z" || st == "X" || st == "T" || st == "t" {
			t.Fatalf("host pid %d of the run is in state %q, want running", pid, st)
		}
	}
}

// pfState is the one-letter state of host pid from /proc, "" if gone.
func pfState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

func pfDial(t *testing.T, port int) *testenv.Conn {
	t.Helper()
	// Kept connections live across several checkpoints and restores.
	c, err := testenv.Dial(port, 3*time.Minute)
	if err != nil {
		t.Fatalf("dial %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pfTraffic keeps a client busy on its own connection until stop is
// called: op(c, i) does request i and checks its reply. stop returns how
// many requests succeeded and the first error. Bounded: at most 1,000,000
// requests, and the connection's 3-minute deadline.
func pfTraffic(t *testing.T, port int, op func(c *testenv.Conn, i int) error) (stop func() (int, error)) {
	t.Helper()
	c := pfDial(t, port)
	quit := make(chan struct{})
	done := make(chan struct{})
	var n int
	var err error
	go func() {
		defer close(done)
		for n = 0; n < 1_000_000; n++ {
			select {
			case <-quit:
				return
			default:
			}
			if err = op(c, n); err != nil {
				return
			}
		}
	}()
	return func() (int, error) {
		close(quit)
		select {
		case <-done:
		case <-time.After(time.Minute):
			c.Close()
			<-done
			return n, fmt.Errorf("traffic stuck after %d requests", n)
		}
		return n, err
	}
}

// pfCheckpointUnderTraffic checkpoints run name (killing it) and restores
// it while a client keeps sending requests (op), then checks that the
// restored tree has the same processes and threads and that the image
// describes them. It returns the image and what ftl ps shows of the
// restored run.
func pfCheckpointUnderTraffic(t *testing.T, name string, port int, op func(c *testenv.Conn, i int) error, orig testenv.PSInfo, origTids string) (string, testenv.PSInfo) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "B")
	var restored testenv.PSInfo
	pfTrafficAcross(t, port, op, func() {
		pfCheckpoint(t, img, name)
		pfGone(t, name, orig)
		restored = pfRestore(t, name, img)
	})
	pfSameTree(t, orig, restored)
	pfInspect(t, img, orig)
	if got := pfTids(t, restored); got != origTids {
		t.Errorf("restored threads %s, checkpointed %s", got, origTids)
	}
	return img, restored
}

// pfTrafficAcross runs traffic across the checkpoint and restore done by
// between, and checks that it went on after the restore without an error.
func pfTrafficAcross(t *testing.T, port int, op func(c *testenv.Conn, i int) error, between func()) {
	t.Helper()
	stop := pfTraffic(t, port, op)
	time.Sleep(100 * time.Millisecond) // some requests before
	between()
	time.Sleep(200 * time.Millisecond) // and after
	n, err := stop()
	if err != nil {
		t.Fatalf("client traffic across the checkpoint and restore: %v after %d requests", err, n)
	}
	t.Logf("client traffic: %d requests across the checkpoint and restore", n)
}

func pfMcOp(c *testenv.Conn, i int) error {
	k, v := fmt.Sprintf("traffic%d", i), fmt.Sprintf("value-%d", i)
	if err := c.MemcacheSet(k, v); err != nil {
		return err
	}
	got, ok, err := c.MemcacheGet(k)
	if err != nil || !ok || got != v {
		return fmt.Errorf("get %s = %q %v %v", k, got, ok, err)
	}
	return nil
}

func pfRdOp(c *testenv.Conn, i int) error {
	rep, err := c.RedisDo("INCR", "traffic")
	if err != nil || string(rep) != fmt.Sprintf(":%d\r\n", i+1) {
		return fmt.Errorf("INCR traffic #%d = %q %v", i+1, rep, err)
	}
	return nil
}

// ---- memcached ----

func pfMcValue(i int) string { return fmt.Sprintf("v%06d-%s", i, srvPattern(24+i%16)) }

// pfMcLoad pipelines pfKeys `set ... noreply` over one connection.
func pfMcLoad(t *testing.T, c *testenv.Conn) {
	t.Helper()
	var buf bytes.Buffer
	for i := 0; i < pfKeys; i++ {
		v := pfMcValue(i)
		fmt.Fprintf(&buf, "set k%06d 0 0 %d noreply\r\n%s\r\n", i, len(v), v)
	}
	buf.WriteString("version\r\n")
	if err := c.Send(buf.Bytes()); err != nil {
		t.Fatalf("load: %v", err)
	}
	rep, err := testenv.MemcacheReply(c.Reader())
	if err != nil || !strings.HasPrefix(string(rep), "VERSION ") {
		t.Fatalf("load: reply %q, %v (a noreply set failed?)", rep, err)
	}
}

// pfMcCheck fetches every key with multi-gets over c and fails on the first
// missing or wrong value.
func pfMcCheck(t *testing.T, c *testenv.Conn) {
	t.Helper()
	const batch = 200
	bad := 0
	for start := 0; start < pfKeys; start += batch {
		var req strings.Builder
		req.WriteString("get")
		for i := start; i < start+batch && i < pfKeys; i++ {
			fmt.Fprintf(&req, " k%06d", i)
		}
		req.WriteString("\r\n")
		rep, err := c.Do([]byte(req.String()), testenv.MemcacheReply)
		if err != nil {
			t.Fatalf("get batch at %d: %v", start, err)
		}
		got := map[string]string{}
		r := bufio.NewReader(bytes.NewReader(rep))
		for {
			line, err := r.ReadString('\n')
			if err != nil || line == "END\r\n" {
				break
			}
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Fatalf("get batch at %d: bad line %q", start, line)
			}
			n, _ := strconv.Atoi(f[3])
			v := make([]byte, n+2)
			if len(f) != 4 || n < 0 {
				t.Fatalf("get batch at %d: bad line %q", start, line)
			}
			if _, err := io.ReadFull(r, v); err != nil {
				t.Fatalf("get batch at %d: %v", start, err)
			}
			got[f[1]] = string(v[:n])
		}
		for i := start; i < start+batch && i < pfKeys; i++ {
			k := fmt.Sprintf("k%06d", i)
			if got[k] != pfMcValue(i) {
				if bad < 3 {
					t.Errorf("key %s = %q, want %q", k, got[k], pfMcValue(i))
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d keys missing or wrong", bad, pfKeys)
	}
}

// pfStore is what the memcached and redis proofs differ in: how to start
// and talk to the server. pfKVProof runs one scenario on both.
type pfStore struct {
	program string
	argv    func(port int, dir string) []string
	load    func(t *testing.T, c *testenv.Conn)
	// check fetches every loaded key; extra names keys beyond them that
	// may exist (redis counts DBSIZE against them).
	check    func(t *testing.T, c *testenv.Conn, extra ...string)
	value    func(i int) string
	op       func(c *testenv.Conn, i int) error // traffic across checkpoint B
	traffic  string                             // a key the traffic sets
	get      func(c *testenv.Conn, key string) (string, bool, error)
	set      func(c *testenv.Conn, key, value string) error
	getReq   func(key string) []byte
	reply    func(r *bufio.Reader) ([]byte, error)
	getReply func(key, value string) string
	halfSet  [2]string // setting half to "helloworld", cut after hello
	stored   string    // the reply to a set
	// afterRestore runs on the restored B (redis: a BGSAVE fork).
	afterRestore func(t *testing.T, name string, port int, dir string)
}

var pfMemcached = pfStore{
	program: "memcached",
	argv: func(port int, _ string) []string {
		return []string{"memcached", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "4", "-u", "root", "-m", "256"}
	},
	load:     pfMcLoad,
	check:    func(t *testing.T, c *testenv.Conn, _ ...string) { t.Helper(); pfMcCheck(t, c) },
	value:    pfMcValue,
	op:       pfMcOp,
	traffic:  "traffic0",
	get:      (*testenv.Conn).MemcacheGet,
	set:      (*testenv.Conn).MemcacheSet,
	getReq:   func(key string) []byte { return []byte("get " + key + "\r\n") },
	reply:    testenv.MemcacheReply,
	getReply: func(key, v string) string { return fmt.Sprintf("VALUE %s 0 %d\r\n%s\r\nEND\r\n", key, len(v), v) },
	halfSet:  [2]string{"set half 0 0 10\r\nhello", "world\r\n"},
	stored:   "STORED\r\n",
}

var pfRedis = pfStore{
	program: "redis-server",
	argv: func(port int, dir string) []string {
		return []string{"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--protected-mode", "no"}
	},
	load:     pfRdLoad,
	check:    pfRdCheck,
	value:    pfRdValue,
	op:       pfRdOp,
	traffic:  "traffic",
	get:      (*testenv.Conn).RedisGet,
	set:      (*testenv.Conn).RedisSet,
	getReq:   func(key string) []byte { return testenv.RedisCommand("GET", key) },
	reply:    testenv.RedisReply,
	getReply: func(_, v string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(v), v) },
	halfSet:  [2]string{"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$10\r\nhello", "world\r\n"},
	stored:   "+OK\r\n",
	afterRestore: func(t *testing.T, name string, port int, dir string) {
		t.Run("fork after restore (BGSAVE)", func(t *testing.T) {
			pfRedisBgsave(t, pfDial(t, port), filepath.Join(dir, "dump.rdb"))
			pfWaitProcs(t, name, 1)
		})
	},
}

func (st pfStore) mustGet(t *testing.T, c *testenv.Conn, what, key string) (string, bool) {
	t.Helper()
	v, ok, err := st.get(c, key)
	if err != nil {
		t.Fatalf("%s: get %s: %v", what, key, err)
	}
	return v, ok
}

func (st pfStore) mustSet(t *testing.T, c *testenv.Conn, what, key, value string) {
	t.Helper()
	if err := st.set(c, key, value); err != nil {
		t.Fatalf("%s: set %s: %v", what, key, err)
	}
}

// TestProofMemcached: memcached -t 4 with 100,000 keys.
func TestProofMemcached(t *testing.T) { pfKVProof(t, "pf-mc", pfMemcached) }

// TestProofRedis: redis with 100,000 keys.
func TestProofRedis(t *testing.T) { pfKVProof(t, "pf-redis", pfRedis) }

// pfKVProof: a key-value server holding pfKeys keys and a connection kept
// open throughout. Image A by a --leave-running checkpoint (the original
// serves on); image B by a killing checkpoint under traffic with a request
// and half a set in flight, restored (the kept connection, the in-flight
// request and the split set all work, every key is there, ftl ps counts
// the connections); B restored a second time, then A: each holds exactly
// the state of its instant.
func pfKVProof(t *testing.T, name string, st pfStore) {
	pfSetup(t)
	testenv.NeedProgram(t, st.program)
	port := testenv.FreePort(t)
	dir := t.TempDir()
	testenv.Detach(t, name, st.argv(port, dir)...)
	testenv.WaitPort(t, port, 10*time.Second)
	st.load(t, pfDial(t, port))

	kept := pfDial(t, port) // opened before both checkpoints
	st.mustSet(t, kept, "before A", "kept", "before")
	orig := testenv.PS(t, name)
	origTids := pfTids(t, orig)
	t.Logf("threads: %s", origTids)

	imgA := filepath.Join(t.TempDir(), "A")
	pfCheckpoint(t, imgA, name, "--leave-running")
	pfInspect(t, imgA, orig)
	// The original serves on: on the kept connection and on a new one.
	pfRunning(t, orig)
	st.mustSet(t, kept, "after A (leave-running)", "afterA", "yes")
	if v, ok := st.mustGet(t, pfDial(t, port), "after A, new connection", "k000042"); !ok || v != st.value(42) {
		t.Fatalf("after --leave-running: k000042 = %q %v", v, ok)
	}

	// In flight at B: half a request on a second kept connection (it sits in
	// the server's receive queue), and a reply nobody has read yet on the
	// first (in the client's receive queue, possibly the server's send queue).
	half := pfDial(t, port)
	if err := half.Send([]byte(st.halfSet[0])); err != nil {
		t.Fatal(err)
	}
	if err := kept.Send(st.getReq("k000007")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let both reach the server

	imgB, _ := pfCheckpointUnderTraffic(t, name, port, st.op, orig, origTids)
	t.Run("request in flight at the checkpoint", func(t *testing.T) {
		rep, err := st.reply(kept.Reader())
		if want := st.getReply("k000007", st.value(7)); err != nil || string(rep) != want {
			t.Errorf("reply to the get sent before the checkpoint: %q %v, want %q", rep, err, want)
		}
		rep, err = half.Do([]byte(st.halfSet[1]), st.reply)
		if err != nil || string(rep) != st.stored {
			t.Fatalf("second half of a set sent across the checkpoint: %q %v", rep, err)
		}
		if v, ok := st.mustGet(t, half, "after the split set", "half"); !ok || v != "helloworld" {
			t.Errorf("half = %q %v, want helloworld", v, ok)
		}
		half.Close()
	})
	t.Run("kept connection after restore", func(t *testing.T) {
		if v, ok := st.mustGet(t, kept, "kept connection after restore", "afterA"); !ok || v != "yes" {
			t.Fatalf("afterA = %q %v on the kept connection", v, ok)
		}
		st.mustSet(t, kept, "kept connection after restore", "afterB", "yes")
	})
	st.check(t, pfDial(t, port), "kept", "afterA", "afterB", "half", st.traffic)
	t.Run("ftl ps counts connections after restore", func(t *testing.T) {
		// The shim's region came back with the tree: ftl ps still lists the
		// listener and the connections opened before the checkpoint that
		// are still open (kept, traffic, the loader...).
		info := testenv.PS(t, name)
		if info.Stats == nil || info.Stats.Listening < 1 || info.Stats.Established < 2 {
			t.Errorf("ftl ps after restore: stats %+v (%s), want the listener and the connections kept across the restore", info.Stats, info.StatsError)
		}
	})
	if st.afterRestore != nil {
		st.afterRestore(t, name, port, dir)
	}

	// Image B again: it restores a second time, with B's state.
	pfKill(t, name)
	pfRestore(t, name, imgB)
	c := pfDial(t, port)
	for _, k := range []string{"afterA", st.traffic} {
		if _, ok := st.mustGet(t, c, "B restored twice", k); !ok {
			t.Errorf("image B (second restore) lacks %s, set before B", k)
		}
	}
	for _, k := range []string{"afterB", "half"} {
		if _, ok := st.mustGet(t, c, "B restored twice", k); ok {
			t.Errorf("image B (second restore) holds %s, set after B was taken", k)
		}
	}
	st.check(t, c, "kept", "afterA", st.traffic)
	// Image A holds the state as of A: every key, "kept", but not "afterA".
	pfKill(t, name)
	restored := pfRestore(t, name, imgA)
	pfSameTree(t, orig, restored)
	c = pfDial(t, port)
	for _, k := range []string{"afterA", st.traffic} {
		if _, ok := st.mustGet(t, c, "restored A", k); ok {
			t.Errorf("image A (--leave-running) holds %s, set after it was taken", k)
		}
	}
	if v, ok := st.mustGet(t, c, "restored A", "kept"); !ok || v != "before" {
		t.Errorf("image A: kept = %q %v, want before", v, ok)
	}
	st.check(t, c, "kept")
}

// pfWaitNoConns waits until the run has no established TCP connection
// (the clients closed theirs and the server saw it).
func pfWaitNoConns(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := testenv.PS(t, name)
		if info.Stats != nil && info.Stats.Established == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still has established connections: %+v %s", name, info.Stats, info.StatsError)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProofMemcachedNoConnections: the same as TestProofMemcached without a
// client connection open at either checkpoint, so that the images hold only
// the listening socket: --leave-running image A restores with the state as
// of A, image B restores twice.
func TestProofMemcachedNoConnections(t *testing.T) {
	pfSetup(t)
	testenv.NeedProgram(t, "memcached")
	port := testenv.FreePort(t)
	name := "pf-mc0"
	testenv.Detach(t, name, "memcached", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(port),
		"-t", "4", "-u", "root", "-m", "256")
	testenv.WaitPort(t, port, 10*time.Second)
	c := pfDial(t, port)
	pfMcLoad(t, c)
	c.Close()
	pfWaitNoConns(t, name)
	orig := testenv.PS(t, name)

	imgA := filepath.Join(t.TempDir(), "A")
	pfCheckpoint(t, imgA, name, "--leave-running")
	pfInspect(t, imgA, orig)
	pfRunning(t, orig)
	c = pfDial(t, port)
	pfMemcached.mustSet(t, c, "after A", "afterA", "yes")
	c.Close()
	pfWaitNoConns(t, name)

	imgB := filepath.Join(t.TempDir(), "B")
	pfCheckpoint(t, imgB, name)
	pfGone(t, name, orig)

	for i, img := range []string{imgB, imgB, imgA} {
		if i > 0 {
			pfKill(t, name)
		}
		pfSameTree(t, orig, pfRestore(t, name, img))
		c := pfDial(t, port)
		v, ok := pfMemcached.mustGet(t, c, "restored", "afterA")
		if img == imgA && ok {
			t.Errorf("image A (--leave-running) holds afterA, set after it was taken")
		}
		if img == imgB && (!ok || v != "yes") {
			t.Errorf("image B (restore %d): afterA = %q %v", i+1, v, ok)
		}
		pfMcCheck(t, c)
		c.Close()
	}
}

// pfNoStrayFds marks every inherited descriptor above 2 close-on-exec, so
// that a program the test starts outside ftl (for --pid) holds only what it
// opens itself: the shell running go test may leak descriptors (a pipe on
// fd 251, say) that the engine rightly refuses as outside the tree.
func pfNoStrayFds() {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// ---- redis ----

func pfRdValue(i int) string { return fmt.Sprintf("r%06d-%s", i, srvPattern(20+i%20)) }

// pfRdLoad pipelines pfKeys SETs over one connection, reading the replies
// while it writes.
func pfRdLoad(t *testing.T, c *testenv.Conn) {
	t.Helper()
	var buf bytes.Buffer
	for i := 0; i < pfKeys; i++ {
		buf.Write(testenv.RedisCommand("SET", fmt.Sprintf("k%06d", i), pfRdValue(i)))
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Send(buf.Bytes()) }()
	for i := 0; i < pfKeys; i++ {
		rep, err := testenv.RedisReply(c.Reader())
		if err != nil || string(rep) != "+OK\r\n" {
			t.Fatalf("load: reply %d = %q, %v", i, rep, err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("load: %v", err)
	}
}

// pfRdCheck checks every key with MGETs, and that DBSIZE counts the keys
// plus those of extra that exist.
func pfRdCheck(t *testing.T, c *testenv.Conn, extra ...string) {
	t.Helper()
	n := 0
	if len(extra) > 0 {
		rep, err := c.RedisDo(append([]string{"EXISTS"}, extra...)...)
		if err != nil || len(rep) < 3 || rep[0] != ':' {
			t.Fatalf("EXISTS: %q %v", rep, err)
		}
		n, _ = strconv.Atoi(strings.TrimSpace(string(rep[1:])))
	}
	rep, err := c.RedisDo("DBSIZE")
	if err != nil || string(rep) != fmt.Sprintf(":%d\r\n", pfKeys+n) {
		t.Fatalf("DBSIZE = %q, %v; want %d", rep, err, pfKeys+n)
	}
	const batch = 1000
	bad := 0
	for start := 0; start < pfKeys; start += batch {
		args := []string{"MGET"}
		for i := start; i < start+batch && i < pfKeys; i++ {
			args = append(args, fmt.Sprintf("k%06d", i))
		}
		rep, err := c.RedisDo(args...)
		if err != nil {
			t.Fatalf("MGET at %d: %v", start, err)
		}
		r := bufio.NewReader(bytes.NewReader(rep))
		head, _ := r.ReadString('\n')
		if head != fmt.Sprintf("*%d\r\n", len(args)-1) {
			t.Fatalf("MGET at %d: reply starts %q", start, head)
		}
		for i := start; i < start+batch && i < pfKeys; i++ {
			el, err := testenv.RedisReply(r)
			want := pfRdValue(i)
			if err != nil || string(el) != fmt.Sprintf("$%d\r\n%s\r\n", len(want), want) {
				if bad < 3 {
					t.Errorf("k%06d = %q (%v), want %q", i, el, err, want)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d keys missing or wrong", bad, pfKeys)
	}
}

// pfRedisBgsave runs BGSAVE (redis forks a child that writes the whole
// dataset) and waits until it finished with status ok and rdb exists.
func pfRedisBgsave(t *testing.T, c *testenv.Conn, rdb string) {
	t.Helper()
	rep, err := c.RedisDo("BGSAVE")
	if err != nil || !strings.HasPrefix(string(rep), "+Background saving started") {
		t.Fatalf("BGSAVE: %q %v", rep, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, err := c.RedisDo("INFO", "persistence")
		if err != nil {
			t.Fatalf("INFO persistence: %v", err)
		}
		info := string(rep)
		if strings.Contains(info, "rdb_bgsave_in_progress:0") {
			if !strings.Contains(info, "rdb_last_bgsave_status:ok") {
				t.Fatalf("BGSAVE failed: %s", info)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BGSAVE still running after 30s: %s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st, err := os.Stat(rdb); err != nil || st.Size() < pfKeys*10 {
		t.Fatalf("BGSAVE wrote %v (%v), want the dataset", st, err)
	}
}

// ---- nginx ----

// pfHTTPGet GETs path over c (keep-alive) and checks status 200 and body.
func pfHTTPGet(t *testing.T, c *testenv.Conn, what, path string, body []byte) {
	t.Helper()
	rep, err := c.Do([]byte("GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"), testenv.HTTPReply)
	if err != nil {
		t.Fatalf("%s: GET %s: %v (got %q)", what, path, err, srvClip(rep))
	}
	if !bytes.HasPrefix(rep, []byte("HTTP/1.1 200 ")) || !bytes.HasSuffix(rep, body) {
		t.Fatalf("%s: GET %s: reply %q (%d bytes), want 200 and the %d-byte file", what, path, srvClip(rep), len(rep), len(body))
	}
}

// TestProofNginx: nginx master + 2 workers, a keep-alive connection kept.
func TestProofNginx(t *testing.T) {
	pfSetup(t)
	testenv.NeedProgram(t, "nginx")
	www := t.TempDir()
	small, big := []byte("hello from a restored nginx\n"), srvPattern(400_000)
	for n, b := range map[string][]byte{"small.txt": small, "big.bin": big} {
		if err := os.WriteFile(filepath.Join(www, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := testenv.FreePort(t)
	name := "pf-nginx"
	testenv.Detach(t, name, testenv.NginxArgs(t, port, www, "  keepalive_timeout 300s;\n  keepalive_requests 10000;")...)
	testenv.WaitPort(t, port, 10*time.Second)
	orig := pfWaitProcs(t, name, 3)
	origTids := pfTids(t, orig)
	t.Logf("threads: %s", origTids)

	kept := pfDial(t, port)
	pfHTTPGet(t, kept, "before A", "/small.txt", small)

	imgA := filepath.Join(t.TempDir(), "A")
	pfCheckpoint(t, imgA, name, "--leave-running")
	pfInspect(t, imgA, orig)
	pfRunning(t, orig)
	pfHTTPGet(t, kept, "after A (leave-running), kept connection", "/big.bin", big)
	pfHTTPGet(t, pfDial(t, port), "after A (leave-running), new connection", "/small.txt", small)

	// In flight at B: a 400 kB reply nobody has read (in the socket queues
	// on both sides), and half a request on another connection.
	unread := pfDial(t, port)
	if err := unread.Send([]byte("GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	half := pfDial(t, port)
	if err := half.Send([]byte("GET /small.txt HTTP/1.1\r\nHo")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)

	imgB := filepath.Join(t.TempDir(), "B")
	pfCheckpoint(t, imgB, name)
	pfGone(t, name, orig)

	pfRestore(t, name, imgB)
	restored := pfWaitProcs(t, name, 3)
	pfSameTree(t, orig, restored)
	pfInspect(t, imgB, orig)
	if got := pfTids(t, restored); got != origTids {
		t.Errorf("restored threads %s, checkpointed %s", got, origTids)
	}
	t.Run("request in flight at the checkpoint", func(t *testing.T) {
		rep, err := testenv.HTTPReply(unread.Reader())
		if err != nil || !bytes.HasPrefix(rep, []byte("HTTP/1.1 200 ")) || !bytes.HasSuffix(rep, big) {
			t.Errorf("the reply unread at the checkpoint: %d bytes %q..., %v; want 200 and the %d-byte file", len(rep), srvClip(rep), err, len(big))
		}
		rep, err = half.Do([]byte("st: test\r\n\r\n"), testenv.HTTPReply)
		if err != nil || !bytes.HasPrefix(rep, []byte("HTTP/1.1 200 ")) || !bytes.HasSuffix(rep, small) {
			t.Errorf("a request split across the checkpoint: %q, %v", srvClip(rep), err)
		}
		unread.Close()
		half.Close()
	})
	t.Run("kept connection after restore", func(t *testing.T) {
		pfHTTPGet(t, kept, "kept connection after restore", "/small.txt", small)
		pfHTTPGet(t, kept, "kept connection after restore", "/big.bin", big)
	})
	pfNginxServes(t, port, small, big)
	t.Run("reload after restore", func(t *testing.T) {
		pfNginxReload(t, name)
		pfNginxServes(t, port, small, big)
	})

	for _, img := range []string{imgB, imgA} { // B a second time, then A
		pfKill(t, name)
		pfRestore(t, name, img)
		pfSameTree(t, orig, pfWaitProcs(t, name, 3))
		pfNginxServes(t, port, small, big)
	}
}

// pfNginxReload sends SIGHUP to the nginx master (namespace pid 2): it
// must start 2 new workers over its channels and retire the old ones.
func pfNginxReload(t *testing.T, name string) {
	t.Helper()
	info := pfWaitProcs(t, name, 3)
	master := 0
	old := map[int]bool{}
	for _, p := range info.Processes {
		if p.Pid == 2 {
			master = p.HostPid
		} else {
			old[p.HostPid] = true
		}
	}
	if master == 0 {
		t.Fatalf("no nginx master at pid 2: %+v", info.Processes)
	}
	if err := syscall.Kill(master, syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP to the master %d: %v", master, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info := testenv.PS(t, name)
		fresh := 0
		for _, p := range info.Processes {
			if p.Pid != 2 && !old[p.HostPid] {
				fresh++
			}
		}
		if len(info.Processes) == 3 && fresh == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the run has %+v, want the master and 2 new workers", info.Processes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pfNginxServes opens 8 connections at once (spread over the workers) and
// GETs both files on each.
func pfNginxServes(t *testing.T, port int, small, big []byte) {
	t.Helper()
	var conns []*testenv.Conn
	for i := 0; i < 8; i++ {
		conns = append(conns, pfDial(t, port))
	}
	for i, c := range conns {
		pfHTTPGet(t, c, fmt.Sprintf("new connection %d", i), "/small.txt", small)
		pfHTTPGet(t, c, fmt.Sprintf("new connection %d", i), "/big.bin", big)
		c.Close()
	}
}

// ---- sqlite ----

// pfBuild compiles tests/progs/NAME.c into a temp dir.
func pfBuild(t *testing.T, name string, libs ...string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc is not installed (make deps installs it)")
	}
	bin := filepath.Join(t.TempDir(), name)
	args := append([]string{"-O1", "-Wall", "-o", bin, filepath.Join(testenv.RepoRoot(), "tests", "progs", name+".c")}, libs...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	return bin
}

var pfProgress = regexp.MustCompile(`(?m)^progress (\d+)$`)

// pfProgressLines returns every progress count in the log, in order.
func pfProgressLines(log string) []int {
	var out []int
	for _, m := range pfProgress.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		out = append(out, n)
	}
	return out
}

// pfWaitProgress waits until the log shows progress >= n.
func pfWaitProgress(t *testing.T, path string, n int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := waitLog(ctx, path, func(s string) bool {
		p := pfProgressLines(s)
		return strings.Contains(s, "BAD") || (len(p) > 0 && p[len(p)-1] >= n)
	})
	if err != nil || strings.Contains(out, "BAD") {
		t.Fatalf("waiting for progress %d in %s: %v; log:\n%s", n, path, err, out)
	}
	return out
}

// TestProofSqliteLoop: a C program looping over sqlite transactions,
// checkpointed (killed) mid-loop and restored: it goes on from where it was
// (no restart, no progress line lost or repeated), and the database passes
// integrity_check and its checksum row matches its rows.
func TestProofSqliteLoop(t *testing.T) {
	home := pfSetup(t)
	bin := pfBuild(t, "sqliteloop", "-lsqlite3")
	db := filepath.Join(t.TempDir(), "loop.db")
	name := "pf-sqlite"
	const every = 100
	testenv.Detach(t, name, bin, db, strconv.Itoa(every))
	logPath := filepath.Join(home, "log", name+".log")
	pfWaitProgress(t, logPath, 3*every)
	orig := testenv.PS(t, name)

	img := filepath.Join(t.TempDir(), "B")
	pfCheckpoint(t, img, name)
	pfGone(t, name, orig)
	pfInspect(t, img, orig)
	b, _ := os.ReadFile(logPath)
	p := pfProgressLines(string(b))
	at := p[len(p)-1]

	restored := pfRestore(t, name, img)
	pfSameTree(t, orig, restored)
	log := pfWaitProgress(t, logPath, at+3*every)
	if n := strings.Count(log, "START"); n != 1 {
		t.Errorf("the program started %d times, want once (a restore goes on, it does not restart):\n%s", n, log)
	}
	for i, n := range pfProgressLines(log) {
		if n != (i+1)*every {
			t.Fatalf("progress line %d says %d, want %d (checkpointed at %d): lines lost or repeated:\n%s", i, n, (i+1)*every, at, log)
		}
	}
	pfKill(t, name) // SIGKILL mid-transaction: sqlite's journal must cope

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--check", db).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK rows=") {
		t.Fatalf("sqliteloop --check after restore: %v: %s", err, out)
	}
	var rows int
	fmt.Sscanf(string(out), "OK rows=%d", &rows)
	if rows < at+3*every {
		t.Fatalf("database holds %d rows, the restored program reported %d transactions", rows, at+3*every)
	}
	t.Logf("checkpointed at %d transactions; database after restore and kill: %s", at, strings.TrimSpace(string(out)))
}

// ---- a tree ftl did not launch ----

// TestProofPidTreeMemcached: a memcached started outside ftl, with 100,000
// keys, checkpointed with --pid and restored in this pid namespace with the
// same pid; a connection opened before the checkpoint keeps working.
func TestProofPidTreeMemcached(t *testing.T) {
	pfSetup(t)
	testenv.NeedProgram(t, "memcached")
	pfNoStrayFds()
	port := testenv.FreePort(t)
	cmd := testenv.Native(t, "memcached", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(port),
		"-t", "4", "-u", "root", "-m", "256")
	pid := cmd.Process.Pid
	testenv.WaitPort(t, port, 10*time.Second)
	pfMcLoad(t, pfDial(t, port))
	kept := pfDial(t, port)
	pfMemcached.mustSet(t, kept, "before", "kept", "before")

	img := filepath.Join(t.TempDir(), "img")
	pfCheckpoint(t, img, "--pid", strconv.Itoa(pid))
	testenv.WaitGone(t, 10*time.Second, pid)
	// Native's cleanup reaps it; wait until the pid is free.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not reaped", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := testenv.Ftl(t, 120*time.Second, "restore", "--detach", img)
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		testenv.WaitGone(t, 10*time.Second, pid)
	})
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(pid) {
		t.Fatalf("ftl restore --detach of a --pid image: want the pid %d back, got %s", pid, r)
	}
	if !testenv.Alive(pid) {
		t.Fatalf("restored pid %d is not alive", pid)
	}
	t.Run("kept connection after restore", func(t *testing.T) {
		if v, ok := pfMemcached.mustGet(t, kept, "kept connection after restore", "kept"); !ok || v != "before" {
			t.Fatalf("kept = %q %v", v, ok)
		}
	})
	pfMcCheck(t, pfDial(t, port))
}

// TestProofSqliteForeground: the sqlite loop under a foreground ftl run,
// checkpointed mid-loop, then restored in the foreground: the restored
// program writes to the restorer's stdout, runs to its end and exits 0,
// which ftl restore passes on; and the database holds exactly as many
// transactions as the program made, none lost or doubled by the
// checkpoint.
func TestProofSqliteForeground(t *testing.T) {
	pfSetup(t)
	bin := pfBuild(t, "sqliteloop", "-lsqlite3")
	db := filepath.Join(t.TempDir(), "loop.db")
	name := "pf-sqlfg"
	const every, total = 100, 2000
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	t.Cleanup(func() { testenv.KillRun(t, name) })

	// The program's stdout is a pipe to this test (a regular file would be
	// reopened by path on restore, not handed over).
	run := testenv.Command(ctx, "run", "--name", name, "--", bin, db, strconv.Itoa(every), strconv.Itoa(total))
	out1 := &pfLockedBuffer{}
	run.Stdout, run.Stderr = out1, out1
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- run.Wait() }()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if p := pfProgressLines(out1.String()); len(p) > 0 && p[len(p)-1] >= 3*every {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress from the foreground run: %q", out1.String())
		}
	}
	orig := testenv.PS(t, name)

	img := filepath.Join(t.TempDir(), "img")
	pfCheckpoint(t, img, name)
	pfGone(t, name, orig)
	select {
	case err := <-runDone:
		t.Logf("the foreground ftl run ended with %v when its tree was checkpointed", err)
	case <-time.After(20 * time.Second):
		t.Fatalf("the foreground ftl run did not end after its tree was checkpointed and killed")
	}
	b1 := out1.String()

	restore := testenv.Command(ctx, "restore", "--name", name, img)
	var out2, err2 bytes.Buffer
	restore.Stdout, restore.Stderr = &out2, &err2
	err := restore.Run()
	if ctx.Err() != nil {
		t.Fatalf("foreground restore did not end: stdout %q stderr %q", out2.String(), err2.String())
	}
	if err != nil {
		t.Fatalf("foreground ftl restore: %v; stdout %q stderr %q", err, out2.String(), err2.String())
	}
	if !strings.Contains(out2.String(), fmt.Sprintf("DONE %d\n", total)) || strings.Contains(out2.String(), "START") {
		t.Errorf("foreground restore's stdout %q: want the program's output from where it was to DONE %d, no START", out2.String(), total)
	}
	all := b1 + out2.String()
	for i, n := range pfProgressLines(all) {
		if n != (i+1)*every {
			t.Fatalf("progress line %d says %d, want %d: lines lost or repeated:\n%s", i, n, (i+1)*every, all)
		}
	}
	out, err := exec.CommandContext(ctx, bin, "--check", db).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), fmt.Sprintf("OK rows=%d ", total)) {
		t.Fatalf("sqliteloop --check: %v: %s (want exactly %d rows)", err, out, total)
	}
}

// TestProofDefaultImageDir: without --dir, images go to
// $FTL_HOME/images/NAME/1, 2, ... and each restores.
func TestProofDefaultImageDir(t *testing.T) {
	home := pfSetup(t)
	testenv.NeedProgram(t, "memcached")
	port := testenv.FreePort(t)
	name := "pf-gen"
	testenv.Detach(t, name, "memcached", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "2", "-u", "root", "-m", "16")
	testenv.WaitPort(t, port, 10*time.Second)
	for gen := 1; gen <= 3; gen++ {
		c := pfDial(t, port)
		pfMemcached.mustSet(t, c, "before checkpoint", "gen", strconv.Itoa(gen))
		c.Close()
		pfWaitNoConns(t, name)
		args := []string{"checkpoint", name}
		if gen < 3 {
			args = append(args, "--leave-running")
		}
		r := testenv.Ftl(t, 60*time.Second, args...)
		want := filepath.Join(home, "images", name, strconv.Itoa(gen))
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		if r.Code != 0 || lines[len(lines)-1] != want {
			t.Fatalf("checkpoint %d: %s; want %s as the last line", gen, r, want)
		}
	}
	for _, gen := range []int{1, 3} {
		if gen != 1 {
			pfKill(t, name)
		}
		pfRestore(t, name, filepath.Join(home, "images", name, strconv.Itoa(gen)))
		c := pfDial(t, port)
		if v, ok := pfMemcached.mustGet(t, c, "restored", "gen"); !ok || v != strconv.Itoa(gen) {
			t.Errorf("image %d holds gen = %q %v", gen, v, ok)
		}
		c.Close()
		pfWaitNoConns(t, name)
	}
}

// pfLockedBuffer is a bytes.Buffer safe for a writer and a poller.
type pfLockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *pfLockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *pfLockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
