package libos

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run real programs under the real shim and read the region
// with this package. The shim comes from $FTL_SHIM, else <repo>/bin/libftl.so
// (built with make if missing).

var buildShimOnce sync.Once

func shimPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("FTL_SHIM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("FTL_SHIM=%s: %v", p, err)
		}
		return p
	}
	root := repoRoot(t)
	p := filepath.Join(root, "bin", "libftl.so")
	buildShimOnce.Do(func() {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if b, err := exec.Command("make", "-C", root, "bin/libftl.so").CombinedOutput(); err != nil {
			t.Logf("make bin/libftl.so: %v\n%s", err, b)
		}
	})
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no shim at %s (set FTL_SHIM or run make): %v", p, err)
	}
	return p
}

func newRegion(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "region")
	if err := CreateRegion(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func openRegion(t *testing.T, path string) *Region {
	t.Helper()
	r, err := OpenRegion(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// shimEnv is the environment the launcher gives a program.
func shimEnv(t testing.TB, region string) []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "LD_PRELOAD=") && !strings.HasPrefix(e, "FTL_") {
			env = append(env, e)
		}
	}
	return append(env, "LD_PRELOAD="+shimPath(t), "FTL_REGION="+region, "FTL_NAME=test", "FTL_HOME="+t.TempDir())
}

// prog is a running testdata/shimprog.
type prog struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pids  []int
	done  chan error
}

// startProg runs shimprog with args under the shim and waits for its
// "ready <pid>..." line.
func startProg(t *testing.T, bin string, env []string, args ...string) *prog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &prog{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		for _, pid := range p.pids[1:] { // children that outlived the test
			if pid > 0 && pid != cmd.Process.Pid {
				killIfOurs(pid)
			}
		}
		cancel()
	})
	select {
	case l, ok := <-lines:
		if !ok || !strings.HasPrefix(l, "ready ") {
			t.Fatalf("%v: no ready line (got %q); stderr: %s", args, l, stderr.String())
		}
		for _, f := range strings.Fields(l)[1:] {
			pid, _ := strconv.Atoi(f)
			p.pids = append(p.pids, pid)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%v: timed out waiting for ready; stderr: %s", args, stderr.String())
	}
	return p
}

// killIfOurs kills a leftover test child (daemonized shimprog) by pid.
func killIfOurs(pid int) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == "shimprog" {
		if p, err := os.FindProcess(pid); err == nil {
			_ = p.Kill()
		}
	}
}

// eventually retries check (bounded) until it reports no problem: a counter
// moves just after the call it counts returns, so another process may see
// the effect of a call before its count. It fails the test with the last
// problems.
func eventually(t *testing.T, check func() []string) {
	t.Helper()
	var problems []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		problems = check()
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func procByPid(procs []Proc, pid int, exited bool) (Proc, bool) {
	for _, p := range procs {
		if p.Pid == pid && p.Exited == exited {
			return p, true
		}
	}
	return Proc{}, false
}

func connsOf(conns []Conn, pid int) []Conn {
	var out []Conn
	for _, c := range conns {
		if c.Pid == pid {
			out = append(out, c)
		}
	}
	return out
}

func TestShimEcho(t *testing.T) {
	bin := buildC(t, "shimprog", "-lpthread")
	region := newRegion(t)
	const n = 40000
	p := startProg(t, bin, shimEnv(t, region), "echo", strconv.Itoa(n))
	r := openRegion(t, region)
	pid := p.pids[0]
	me, ok := procByPid(r.Procs(), pid, false)
	if !ok {
		t.Fatalf("no live slot for pid %d: %+v", pid, r.Procs())
	}
	if me.Comm != "shimprog" || me.PPid != os.Getpid() || time.Since(me.Started) > time.Minute {
		t.Errorf("slot: comm %q ppid %d started %v", me.Comm, me.PPid, me.Started)
	}
	if me.BytesIn != 2*n+1 || me.BytesOut != 2*n+1 { // socketpair bytes are not in the totals
		t.Errorf("bytes in/out %d/%d, want %d/%d", me.BytesIn, me.BytesOut, 2*n+1, 2*n+1)
	}
	for _, c := range []string{"socket", "socketpair", "bind", "listen", "connect", "accept4", "send", "recv", "read", "writev", "sendmsg", "recvmsg", "dup", "close"} {
		if me.Calls[c] == 0 {
			t.Errorf("call %s not counted: %v", c, me.Calls)
		}
	}
	if me.Calls["socket"] != 2 || me.Calls["socketpair"] != 1 || me.Calls["accept4"] != 1 || me.Calls["dup"] != 1 {
		t.Errorf("call counts %v", me.Calls)
	}
	byKey := map[string]Conn{}
	var listenAddr string
	for _, c := range connsOf(r.Conns(), pid) {
		switch {
		case c.State == "listen":
			listenAddr = c.Local
			byKey["listen"] = c
		case c.Kind == "tcp" && c.BytesOut == n+1:
			byKey["client"] = c
		case c.Kind == "tcp":
			byKey["server"] = c
		case c.Kind == "unix" && c.BytesOut > 0:
			byKey["unix0"] = c
		case c.Kind == "unix":
			byKey["unix1"] = c
		}
	}
	if len(byKey) != 5 || len(connsOf(r.Conns(), pid)) != 5 {
		t.Fatalf("conns: %+v", connsOf(r.Conns(), pid))
	}
	cl, sv := byKey["client"], byKey["server"]
	if cl.State != "established" || sv.State != "established" || cl.Peer != listenAddr || sv.Local != listenAddr ||
		sv.Peer != cl.Local || !strings.HasPrefix(listenAddr, "127.0.0.1:") {
		t.Errorf("tcp addresses/state: listen %q client %+v server %+v", listenAddr, cl, sv)
	}
	if cl.BytesIn != n || sv.BytesIn != n+1 || sv.BytesOut != n {
		t.Errorf("tcp bytes: client %d/%d server %d/%d", cl.BytesIn, cl.BytesOut, sv.BytesIn, sv.BytesOut)
	}
	if u0, u1 := byKey["unix0"], byKey["unix1"]; u0.BytesOut != n || u1.BytesIn != n || u0.State != "established" ||
		!u0.Internal || !u1.Internal || cl.Internal {
		t.Errorf("unix bytes: %+v %+v", u0, u1)
	}
	// after exit: slot exited, connections gone
	p.stdin.Close()
	if err := <-p.done; err != nil {
		t.Fatalf("shimprog echo: %v", err)
	}
	p.done <- nil
	if _, ok := procByPid(r.Procs(), pid, true); !ok {
		t.Errorf("slot not exited after exit: %+v", r.Procs())
	}
	if c := connsOf(r.Conns(), pid); len(c) != 0 {
		t.Errorf("conns left after exit: %+v", c)
	}
	// the shim itself marked the slot and freed the entries (not just the
	// reader's liveness check hiding them)
	for i := 0; i < maxProcs; i++ {
		if p := r.proc(i); p.Pid == int32(pid) && p.State != procExited {
			t.Errorf("raw slot %d of pid %d in state %d after exit", i, pid, p.State)
		}
	}
	for i := 0; i < maxConns; i++ {
		if c := r.conn(i); c.Pid == int32(pid) && c.SlotState != slotFree {
			t.Errorf("raw conn entry %d of pid %d not freed: %+v", i, pid, *c)
		}
	}
}

func TestShimUDPAndIPv6(t *testing.T) {
	bin := buildC(t, "shimprog", "-lpthread")
	region := newRegion(t)
	p := startProg(t, bin, shimEnv(t, region), "udp")
	pid, have6 := p.pids[0], p.pids[1] == 1
	r := openRegion(t, region)
	me, _ := procByPid(r.Procs(), pid, false)
	want := uint64(1600)
	if have6 {
		want += 500
	}
	if me.BytesIn != want || me.BytesOut != want || me.Calls["sendmmsg"] != 1 || me.Calls["recvmmsg"] == 0 {
		t.Errorf("slot %+v, want bytes %d each way", me, want)
	}
	var udp, tcp6 []Conn
	for _, c := range connsOf(r.Conns(), pid) {
		switch c.Kind {
		case "udp":
			udp = append(udp, c)
		case "tcp6":
			tcp6 = append(tcp6, c)
		}
	}
	if len(udp) != 2 {
		t.Fatalf("udp conns %+v", udp)
	}
	sender, receiver := udp[0], udp[1]
	if sender.BytesOut == 0 {
		sender, receiver = receiver, sender
	}
	if sender.BytesOut != 1600 || receiver.BytesIn != 1600 || sender.State != "established" ||
		receiver.State != "open" || sender.Peer != receiver.Local || !strings.HasPrefix(receiver.Local, "127.0.0.1:") {
		t.Errorf("udp sender %+v receiver %+v", sender, receiver)
	}
	if !have6 {
		t.Log("no IPv6 loopback here: tcp6 part skipped")
		return
	}
	if len(tcp6) != 3 {
		t.Fatalf("tcp6 conns %+v", tcp6)
	}
	for _, c := range tcp6 {
		if !strings.HasPrefix(c.Local, "[::1]:") {
			t.Errorf("tcp6 local address %q", c.Local)
		}
	}
}

func TestShimFork(t *testing.T) {
	bin := buildC(t, "shimprog", "-lpthread")
	region := newRegion(t)
	const n = 10000
	p := startProg(t, bin, shimEnv(t, region), "fork", strconv.Itoa(n))
	parent, child := p.pids[0], p.pids[1]
	r := openRegion(t, region)
	pp, ok1 := procByPid(r.Procs(), parent, false)
	cp, ok2 := procByPid(r.Procs(), child, false)
	if !ok1 || !ok2 {
		t.Fatalf("want live slots for %d and %d: %+v", parent, child, r.Procs())
	}
	if cp.PPid != parent || pp.Calls["fork"] != 1 {
		t.Errorf("child ppid %d (want %d), parent fork count %d", cp.PPid, parent, pp.Calls["fork"])
	}
	eventually(t, func() (problems []string) { // the child's count may trail the parent's read
		pp, _ := procByPid(r.Procs(), parent, false)
		cp, _ := procByPid(r.Procs(), child, false)
		if pp.BytesIn != n || pp.BytesOut != 0 || cp.BytesIn != 0 || cp.BytesOut != n {
			problems = append(problems, fmt.Sprintf("bytes parent %d/%d child %d/%d, want %d/0 and 0/%d",
				pp.BytesIn, pp.BytesOut, cp.BytesIn, cp.BytesOut, n, n))
		}
		pc, cc := connsOf(r.Conns(), parent), connsOf(r.Conns(), child)
		if len(pc) != 3 || len(cc) != 3 {
			return append(problems, fmt.Sprintf("parent conns %+v\nchild conns %+v", pc, cc))
		}
		var childOut uint64
		for _, c := range cc {
			childOut += c.BytesOut
			if c.BytesIn != 0 {
				problems = append(problems, fmt.Sprintf("child copy has inherited bytes: %+v", c))
			}
		}
		if childOut != n {
			problems = append(problems, fmt.Sprintf("child conns bytes out %d, want %d", childOut, n))
		}
		return problems
	})
}

func TestShimExecEmptyEnv(t *testing.T) {
	bin := buildC(t, "shimprog", "-lpthread")
	region := newRegion(t)
	check := func(t *testing.T, mode string, pid int) {
		t.Helper()
		maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(maps, []byte(filepath.Base(shimPath(t)))) {
			t.Errorf("%s: shim not mapped in the exec'ed image of pid %d", mode, pid)
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"LD_PRELOAD=" + shimPath(t), "FTL_REGION=" + region, "FTL_NAME=test"} {
			if !bytes.Contains(env, []byte(want)) {
				t.Errorf("%s: new image environment lacks %s: %q", mode, want, env)
			}
		}
		r := openRegion(t, region)
		if _, ok := procByPid(r.Procs(), pid, false); !ok {
			t.Errorf("%s: no live slot for the new image (pid %d): %+v", mode, pid, r.Procs())
		}
	}
	for _, variant := range []string{"execve", "execv", "execvp", "execvpe", "execl", "execlp", "execle", "fexecve", "execveat"} {
		t.Run(variant, func(t *testing.T) {
			p := startProg(t, bin, shimEnv(t, region), "exec", variant)
			pid := p.pids[0]
			check(t, variant, pid)
			r := openRegion(t, region)
			// same pid: the old image's slot is exited and counted the call
			old, ok := procByPid(r.Procs(), pid, true)
			if !ok || old.Calls[variant] != 1 {
				t.Errorf("old image slot %+v (found %v)", old, ok)
			}
			// the sockets that survived the exec are adopted by the new image
			states := map[string]int{}
			for _, c := range connsOf(r.Conns(), pid) {
				if c.Kind == "tcp" && strings.HasPrefix(c.Local, "127.0.0.1:") {
					states[c.State]++
				}
			}
			if states["listen"] != 1 || states["established"] != 1 || len(connsOf(r.Conns(), pid)) != 2 {
				t.Errorf("inherited sockets %+v", connsOf(r.Conns(), pid))
			}
		})
	}
	for _, variant := range []string{"posix_spawn", "posix_spawnp"} {
		t.Run(variant, func(t *testing.T) {
			p := startProg(t, bin, shimEnv(t, region), "exec", variant)
			check(t, variant, p.pids[0])
			r := openRegion(t, region)
			if parent, ok := procByPid(r.Procs(), p.cmd.Process.Pid, false); !ok || parent.Calls[variant] != 1 {
				t.Errorf("spawning parent slot %+v (found %v)", parent, ok)
			}
		})
	}
	t.Run("vforkexec", func(t *testing.T) {
		p := startProg(t, bin, shimEnv(t, region), "vforkexec")
		check(t, "vforkexec", p.pids[0])
		// the parent's table survived the child's dup2/close
		r := openRegion(t, region)
		parent, _ := procByPid(r.Procs(), p.cmd.Process.Pid, false)
		if parent.Calls["vfork"] != 1 || parent.BytesIn != 2 || parent.BytesOut != 2 {
			t.Errorf("vfork parent slot %+v", parent)
		}
		if c := connsOf(r.Conns(), parent.Pid); len(c) != 3 {
			t.Errorf("vfork parent conns %+v", c)
		}
	})
}

func TestShimThreads(t *testing.T) {
	bin := buildC(t, "shimprog", "-lpthread")
	region := newRegion(t)
	const threads, n = 8, 5000
	p := startProg(t, bin, shimEnv(t, region), "threads", strconv.Itoa(threads), strconv.Itoa(n))
	r := openRegion(t, region)
	me, ok := procByPid(r.Procs(), p.pids[0], false)
	if !ok {
		t.Fatalf("no slot: %+v", r.Procs())
	}
	const want = threads * n
	if me.BytesIn != want || me.BytesOut != want || me.Calls["write"] != want || me.Calls["read"] < want ||
		me.Calls["pthread_create"] != threads || me.Calls["accept4"] != threads {
		t.Errorf("bytes %d/%d calls %v; want %d each", me.BytesIn, me.BytesOut, me.Calls, want)
	}
	if c := connsOf(r.Conns(), me.Pid); len(c) != 0 {
		t.Errorf("closed sockets still listed: %+v", c)
	}
}

func TestShimDaemonize(t *testing.T) {
	bin := buildC(t, "shimprog", "-lpthread")
	region := newRegion(t)
	p := startProg(t, bin, shimEnv(t, region), "daemon", "5000")
	child := p.pids[0]
	p.pids = append(p.pids, child) // cleanup kills it by pid
	r := openRegion(t, region)
	// The parent exits right after printing the child's pid: wait for it.
	var parent Proc
	eventually(t, func() []string {
		var ok bool
		if parent, ok = procByPid(r.Procs(), p.cmd.Process.Pid, true); !ok {
			return []string{fmt.Sprintf("parent slot not exited: %+v", r.Procs())}
		}
		return nil
	})
	c, ok := procByPid(r.Procs(), child, false)
	if !ok || c.PPid != parent.Pid || c.BytesIn != 5000 || c.BytesOut != 5000 {
		t.Errorf("daemon child slot %+v (found %v), parent %+v", c, ok, parent)
	}
}

// TestShimKilled: a SIGKILLed process never marks its slot; readers must
// still report it exited and drop its connections.
func TestShimKilled(t *testing.T) {
	bin := buildC(t, "shimprog", "-lpthread")
	region := newRegion(t)
	p := startProg(t, bin, shimEnv(t, region), "echo", "100")
	r := openRegion(t, region)
	if len(connsOf(r.Conns(), p.pids[0])) != 5 {
		t.Fatalf("conns before kill: %+v", r.Conns())
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil
	if _, ok := procByPid(r.Procs(), p.pids[0], true); !ok {
		t.Errorf("killed process not reported exited: %+v", r.Procs())
	}
	if c := r.Conns(); len(c) != 0 {
		t.Errorf("conns of a killed process listed: %+v", c)
	}
}

// TestShimPidNamespace: the slot holds the pid inside the namespace; the
// reader (outside it) still tells live from dead.
func TestShimPidNamespace(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	if err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "true").Run(); err != nil {
		t.Skipf("cannot make a pid namespace here: %v", err)
	}
	bin := buildC(t, "shimprog", "-lpthread")
	region := newRegion(t)
	p := startProg(t, "unshare", shimEnv(t, region), "--pid", "--fork", "--mount-proc", "--kill-child", bin, "echo", "100")
	if p.pids[0] != 1 {
		t.Fatalf("pid inside the namespace %d, want 1", p.pids[0])
	}
	r := openRegion(t, region)
	me, ok := procByPid(r.Procs(), 1, false)
	if !ok || me.Comm != "shimprog" || me.BytesIn != 201 {
		t.Fatalf("namespaced slot %+v (found %v): %+v", me, ok, r.Procs())
	}
	if len(connsOf(r.Conns(), 1)) != 5 {
		t.Errorf("namespaced conns %+v", r.Conns())
	}
	if err := p.cmd.Process.Kill(); err != nil { // unshare --kill-child takes pid 1 with it
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := procByPid(r.Procs(), 1, false); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespaced process still reported live after its namespace died: %+v", r.Procs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShimSlotReuse: more processes than proc slots; exited slots are
// taken over and their bytes move to the header, so run totals stay exact.
func TestShimSlotReuse(t *testing.T) {
	bin := buildC(t, "shimprog", "-lpthread")
	region := newRegion(t)
	const runs = maxProcs + 40 // sh (dash) vforks, so each run takes one slot
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do %s echo 10 </dev/null >/dev/null || exit 1; i=$((i+1)); done", runs, bin))
	cmd.Env = shimEnv(t, region)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	r := openRegion(t, region)
	st := r.Stats()
	var in, out uint64
	for _, p := range r.Procs() {
		in += p.BytesIn
		out += p.BytesOut
	}
	const want = runs * 21 // 2*10+1 each way per echo
	if st.ProcsDropped != 0 || st.ReusedBytesIn == 0 || in+st.ReusedBytesIn != want || out+st.ReusedBytesOut != want {
		t.Errorf("%d slots: procs sum %d/%d + reused %d/%d, want %d each way; dropped %d", len(r.Procs()), in, out, st.ReusedBytesIn, st.ReusedBytesOut, want, st.ProcsDropped)
	}
}

func TestShimWithoutRegion(t *testing.T) {
	bin := buildC(t, "shimprog", "-lpthread")
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, bytes.Repeat([]byte{0xAA}, int(RegionSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, region := range map[string]string{"missing": filepath.Join(t.TempDir(), "nope"), "garbage": bad, "empty": ""} {
		t.Run(name, func(t *testing.T) {
			for _, args := range [][]string{{"echo", "30000"}, {"fork", "1000"}, {"threads", "4", "1000"}, {"exec"}} {
				p := startProg(t, bin, shimEnv(t, region), args...)
				p.stdin.Close()
				if err := <-p.done; err != nil {
					t.Errorf("%v with FTL_REGION=%q: %v", args, region, err)
				}
				p.done <- nil
			}
		})
	}
	b, _ := os.ReadFile(bad)
	if !bytes.Equal(b, bytes.Repeat([]byte{0xAA}, int(RegionSize))) {
		t.Errorf("shim wrote into a region it should have refused")
	}
}

// ---- real servers ----

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer runs a server under the shim (natively when region is "")
// and waits until it accepts.
func startServer(t testing.TB, region string, port int, name string, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = os.Environ()
	if region != "" {
		cmd.Env = shimEnv(t, region)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		cancel()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return cmd
		}
		select {
		case <-done:
			t.Fatalf("%s exited: %s", name, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %d: %v\n%s", name, port, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exchange sends each request and reads exactly the expected reply;
// it returns the bytes sent and received.
func exchange(t *testing.T, c net.Conn, pairs [][2]string) (sent, recv uint64) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, p := range pairs {
		if _, err := io.WriteString(c, p[0]); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(p[1]))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reply to %q: %v", p[0], err)
		}
		if string(got) != p[1] {
			t.Fatalf("reply to %q: %q, want %q", p[0], got, p[1])
		}
		sent += uint64(len(p[0]))
		recv += uint64(len(p[1]))
	}
	return sent, recv
}

// checkServerBytes compares the region with what the client did. The shim
// adds a reply's bytes just after the send returns, so the client may see
// the reply a moment before the counter moves: poll (bounded) until the
// counters settle, then check everything once more and report.
func checkServerBytes(t *testing.T, region, comm string, client net.Conn, sent, recv uint64, calls ...string) {
	t.Helper()
	r := openRegion(t, region)
	var problems []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		problems = serverProblems(r, comm, client, sent, recv, calls)
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func serverProblems(r *Region, comm string, client net.Conn, sent, recv uint64, calls []string) []string {
	var problems []string
	var in, out uint64
	var live []Proc
	for _, p := range r.Procs() {
		if !p.Exited && p.Comm == comm {
			live = append(live, p)
			in += p.BytesIn
			out += p.BytesOut
		}
	}
	if len(live) == 0 {
		return []string{fmt.Sprintf("no live %s slot: %+v", comm, r.Procs())}
	}
	if in != sent || out != recv {
		problems = append(problems, fmt.Sprintf("%s bytes in/out %d/%d, client sent/received %d/%d", comm, in, out, sent, recv))
	}
	for _, c := range calls {
		var n uint64
		for _, p := range live {
			n += p.Calls[c]
		}
		if n == 0 {
			problems = append(problems, fmt.Sprintf("%s: no %s calls counted", comm, c))
		}
	}
	found := false
	for _, c := range r.Conns() {
		if c.Kind == "tcp" && c.State == "established" && c.Peer == client.LocalAddr().String() {
			found = true
			if c.BytesIn != sent || c.BytesOut != recv || c.Local != client.RemoteAddr().String() {
				problems = append(problems, fmt.Sprintf("conn %+v: want in/out %d/%d local %s", c, sent, recv, client.RemoteAddr()))
			}
		}
	}
	if !found {
		problems = append(problems, fmt.Sprintf("client connection %s not in the table: %+v", client.LocalAddr(), r.Conns()))
	}
	return problems
}

func TestShimMemcached(t *testing.T) {
	region := newRegion(t)
	port := freePort(t)
	startServer(t, region, port, "memcached", "-u", "root", "-l", "127.0.0.1", "-p", strconv.Itoa(port),
		"-U", "0", "-t", "2", "-m", "16")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var pairs [][2]string
	for i := 0; i < 50; i++ {
		v := strings.Repeat(strconv.Itoa(i%10), 10+i*37)
		pairs = append(pairs,
			[2]string{fmt.Sprintf("set k%d 0 0 %d\r\n%s\r\n", i, len(v), v), "STORED\r\n"},
			[2]string{fmt.Sprintf("get k%d\r\n", i), fmt.Sprintf("VALUE k%d 0 %d\r\n%s\r\nEND\r\n", i, len(v), v)})
	}
	sent, recv := exchange(t, c, pairs)
	checkServerBytes(t, region, "memcached", c, sent, recv, "read", "sendmsg", "accept4", "epoll_wait")
}

func TestShimRedis(t *testing.T) {
	region := newRegion(t)
	port := freePort(t)
	startServer(t, region, port, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--daemonize", "no", "--logfile", "")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp := func(args ...string) string {
		s := fmt.Sprintf("*%d\r\n", len(args))
		for _, a := range args {
			s += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
		}
		return s
	}
	var pairs [][2]string
	for i := 0; i < 50; i++ {
		v := strings.Repeat("v", 1+i*53)
		k := "key" + strconv.Itoa(i)
		pairs = append(pairs, [2]string{resp("SET", k, v), "+OK\r\n"},
			[2]string{resp("GET", k), fmt.Sprintf("$%d\r\n%s\r\n", len(v), v)})
	}
	sent, recv := exchange(t, c, pairs)
	checkServerBytes(t, region, "redis-server", c, sent, recv, "read", "write", "accept4", "epoll_wait", "clock_gettime")
}

// TestShimNginx: master + 2 workers (forked: each takes its own slot);
// headers go out with writev, bodies with sendfile; both count as out.
// The master/worker channels are socketpairs and stay out of the totals.
func TestShimNginx(t *testing.T) {
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not installed")
	}
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320000 bytes
	if err := os.WriteFile(filepath.Join(www, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "small.txt"), []byte("hello from nginx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	conf := fmt.Sprintf(`user root;
daemon off;
master_process on;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; use epoll; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server { listen 127.0.0.1:%[2]d; root %[3]s; }
}
`, dir, port, www)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	region := newRegion(t)
	master := startServer(t, region, port, "nginx", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	var sent, recv uint64
	for i := 0; i < 10; i++ {
		path, want := "/small.txt", []byte("hello from nginx\n")
		if i%2 == 1 {
			path, want = "/big.bin", big
		}
		req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		sent += uint64(len(req))
		length := -1
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			recv += uint64(len(line))
			if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length: "); ok {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
			if line == "\r\n" {
				break
			}
		}
		if length != len(want) {
			t.Fatalf("%s: content-length %d, want %d", path, length, len(want))
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil || !bytes.Equal(body, want) {
			t.Fatalf("%s: body %d bytes, err %v", path, len(body), err)
		}
		recv += uint64(length)
	}
	checkServerBytes(t, region, "nginx", c, sent, recv, "recv", "writev", "sendfile64", "accept4", "fork", "socketpair")
	r := openRegion(t, region)
	workers := 0
	for _, p := range r.Procs() {
		if p.Comm == "nginx" && !p.Exited && p.PPid == master.Process.Pid {
			workers++
		}
	}
	if workers < 2 {
		t.Errorf("want 2 worker slots, got %d: %+v", workers, r.Procs())
	}
}

// BenchmarkMemcachedGet measures request latency through memcached natively
// and under the shim (same run, same machine): one connection, one 100-byte
// get per op. Reports p50/p99 in microseconds besides ns/op.
func BenchmarkMemcachedGet(b *testing.B) {
	for _, mode := range []string{"native", "shim"} {
		b.Run(mode, func(b *testing.B) {
			region := ""
			if mode == "shim" {
				region = newRegion(b)
			}
			port := freePort(b)
			startServer(b, region, port, "memcached", "-u", "root", "-l", "127.0.0.1", "-p", strconv.Itoa(port),
				"-U", "0", "-t", "4", "-m", "16")
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			v := strings.Repeat("x", 100)
			if _, err := fmt.Fprintf(c, "set k 0 0 %d\r\n%s\r\n", len(v), v); err != nil {
				b.Fatal(err)
			}
			reply := fmt.Sprintf("VALUE k 0 %d\r\n%s\r\nEND\r\n", len(v), v)
			buf := make([]byte, len("STORED\r\n"))
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
			buf = make([]byte, len(reply))
			req := []byte("get k\r\n")
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-us")
		})
	}
}
