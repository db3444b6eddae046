package tests

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftlinux/ftl/tests/testenv"
)

// End-to-end tests of ftl checkpoint / restore / image inspect with real
// servers, --pid trees, and abuse (bad images, taken pids, vanished
// processes, a full disk).

func snapshotSetup(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedBinaries(t)
	return testenv.Home(t)
}

// checkpointRestore checkpoints run (killing it) and restores it detached;
// it returns the image directory.
func checkpointRestore(t *testing.T, run string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "img")
	r := testenv.Ftl(t, 120*time.Second, "checkpoint", run, "--dir", img)
	if r.Code != 0 {
		t.Fatalf("ftl checkpoint %s: %s", run, r)
	}
	t.Logf("checkpoint: %s", strings.TrimSpace(r.Stderr))
	if got := lastLine(r.Stdout); got != img {
		t.Fatalf("checkpoint printed %q last, want %s", got, img)
	}
	r = testenv.Ftl(t, 120*time.Second, "restore", "--detach", "--name", run, img)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != run {
		t.Fatalf("ftl restore %s: %s", run, r)
	}
	return img
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

type psInfo struct {
	Processes []struct {
		HostPid int    `json:"host_pid"`
		Pid     int    `json:"pid"`
		PPid    int    `json:"ppid"`
		Comm    string `json:"comm"`
	} `json:"processes"`
}

func psJSON(t *testing.T, run string) psInfo {
	t.Helper()
	r := testenv.Ftl(t, 20*time.Second, "ps", "--json", run)
	if r.Code != 0 {
		t.Fatalf("ftl ps --json %s: %s", run, r)
	}
	var info psInfo
	if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
		t.Fatalf("ps json: %v", err)
	}
	return info
}

func pidSet(info psInfo) string {
	var s []string
	for _, p := range info.Processes {
		s = append(s, fmt.Sprintf("%d<%d %s", p.Pid, p.PPid, p.Comm))
	}
	return strings.Join(s, ",")
}

const serverKeys = 100000

func TestSnapshotMemcached(t *testing.T) {
	snapshotSetup(t)
	testenv.NeedProgram(t, "memcached")
	port := testenv.FreePort(t)
	testenv.Detach(t, "mc", "memcached", "-u", "root", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-t", "4", "-m", "256")
	testenv.WaitPort(t, port, 10*time.Second)
	c, err := testenv.Dial(port, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var buf bytes.Buffer
	for i := 0; i < serverKeys; i++ {
		v := fmt.Sprintf("value-%d", i)
		fmt.Fprintf(&buf, "set key%d 0 0 %d noreply\r\n%s\r\n", i, len(v), v)
	}
	if err := c.Send(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.MemcacheGet(fmt.Sprintf("key%d", serverKeys-1)); err != nil || !ok {
		t.Fatalf("fill: %q %v %v", v, ok, err)
	}
	before := psJSON(t, "mc")
	checkpointRestore(t, "mc")
	if after := psJSON(t, "mc"); pidSet(after) != pidSet(before) {
		t.Fatalf("processes before %s, after %s", pidSet(before), pidSet(after))
	}
	// The connection opened before the checkpoint still works, and every key is there.
	checkMemcacheKeys(t, c)
	c2, err := testenv.Dial(port, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.MemcacheSet("after", "restore"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c.MemcacheGet("after"); err != nil || !ok || v != "restore" {
		t.Fatalf("new key seen on old connection: %q %v %v", v, ok, err)
	}
}

func checkMemcacheKeys(t *testing.T, c *testenv.Conn) {
	t.Helper()
	missing := 0
	for start := 0; start < serverKeys; start += 500 {
		var keys []string
		for i := start; i < start+500 && i < serverKeys; i++ {
			keys = append(keys, fmt.Sprintf("key%d", i))
		}
		if err := c.Send([]byte("get " + strings.Join(keys, " ") + "\r\n")); err != nil {
			t.Fatalf("get after restore on the old connection: %v", err)
		}
		got := map[string]string{}
		r := c.Reader()
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read after restore: %v", err)
			}
			if l == "END\r\n" {
				break
			}
			f := strings.Fields(l)
			if len(f) < 4 || f[0] != "VALUE" {
				t.Fatalf("unexpected reply %q", l)
			}
			v, err := r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			got[f[1]] = strings.TrimSuffix(v, "\r\n")
		}
		for _, k := range keys {
			if got[k] != "value-"+strings.TrimPrefix(k, "key") {
				missing++
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d keys missing or wrong after restore", missing, serverKeys)
	}
}

func TestSnapshotRedis(t *testing.T) {
	snapshotSetup(t)
	testenv.NeedProgram(t, "redis-server")
	port := testenv.FreePort(t)
	testenv.Detach(t, "rd", "redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no")
	testenv.WaitPort(t, port, 10*time.Second)
	c, err := testenv.Dial(port, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var buf bytes.Buffer
	for i := 0; i < serverKeys; i++ {
		buf.Write(testenv.RedisCommand("SET", fmt.Sprintf("key%d", i), fmt.Sprintf("value-%d", i)))
	}
	if err := c.Send(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < serverKeys; i++ {
		if _, err := testenv.RedisReply(c.Reader()); err != nil {
			t.Fatalf("fill reply %d: %v", i, err)
		}
	}
	checkpointRestore(t, "rd")
	reply, err := c.RedisDo("DBSIZE")
	if err != nil || string(reply) != fmt.Sprintf(":%d\r\n", serverKeys) {
		t.Fatalf("DBSIZE on the old connection after restore: %q %v", reply, err)
	}
	buf.Reset()
	for i := 0; i < serverKeys; i++ {
		buf.Write(testenv.RedisCommand("GET", fmt.Sprintf("key%d", i)))
	}
	if err := c.Send(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < serverKeys; i++ {
		r, err := testenv.RedisReply(c.Reader())
		want := fmt.Sprintf("value-%d", i)
		if err != nil || string(r) != fmt.Sprintf("$%d\r\n%s\r\n", len(want), want) {
			t.Fatalf("GET key%d after restore: %q %v", i, r, err)
		}
	}
}

func TestSnapshotNginx(t *testing.T) {
	snapshotSetup(t)
	testenv.NeedProgram(t, "nginx")
	port := testenv.FreePort(t)
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from ftl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Detach(t, "ngx", testenv.NginxArgs(t, port, www, "  keepalive_timeout 120s;")...)
	testenv.WaitPort(t, port, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	var before psInfo
	for {
		before = psJSON(t, "ngx")
		if len(before.Processes) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(before.Processes) != 3 {
		t.Fatalf("want nginx master + 2 workers, got %s", pidSet(before))
	}
	c, err := testenv.Dial(port, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get := []byte(fmt.Sprintf("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port))
	if r, err := c.Do(get, testenv.HTTPReply); err != nil || !bytes.Contains(r, []byte("hello from ftl")) {
		t.Fatalf("GET before: %q %v", r, err)
	}
	checkpointRestore(t, "ngx")
	if after := psJSON(t, "ngx"); pidSet(after) != pidSet(before) {
		t.Fatalf("processes before %s, after %s", pidSet(before), pidSet(after))
	}
	if r, err := c.Do(get, testenv.HTTPReply); err != nil || !bytes.Contains(r, []byte("hello from ftl")) {
		t.Fatalf("GET on the kept-alive connection after restore: %q %v", r, err)
	}
	for i := 0; i < 20; i++ {
		c2, err := testenv.Dial(port, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r, err := c2.Do(get, testenv.HTTPReply)
		c2.Close()
		if err != nil || !bytes.Contains(r, []byte("hello from ftl")) {
			t.Fatalf("GET %d on a new connection: %q %v", i, r, err)
		}
	}
}

// startCounter runs a small C program outside ftl (for --pid tests).
func startCounter(t *testing.T, out string) *exec.Cmd {
	t.Helper()
	src := filepath.Join(t.TempDir(), "counter.c")
	os.WriteFile(src, []byte(`#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
int main(int argc, char **argv) {
  char *big = malloc(64 << 20);
  unsigned long x = 88172645463325252UL;
  for (long i = 0; i < (64 << 20); i += 8) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; memcpy(big + i, &x, 8); } // incompressible
  for (long n = 0; n < 1000000; n++) {
    char tmp[512]; snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
    FILE *f = fopen(tmp, "w"); if (!f) return 1;
    fprintf(f, "%d %ld %d\n", getpid(), n, big[12345 * 64]);
    fclose(f); rename(tmp, argv[1]); usleep(10000);
  }
  return 0;
}
`), 0o644)
	bin := filepath.Join(t.TempDir(), "counter")
	if out, err := exec.Command("gcc", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v %s", err, out)
	}
	cmd := exec.Command(bin, out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(out); err == nil && len(b) > 0 {
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatal("counter did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readCount(t *testing.T, path string) (pid int, n int64) {
	t.Helper()
	b, _ := os.ReadFile(path)
	fmt.Sscanf(string(b), "%d %d", &pid, &n)
	return
}

// TestSnapshotPidTree: a tree ftl did not launch, checkpointed with --pid
// and restored in this pid namespace with the same pid.
func TestSnapshotPidTree(t *testing.T) {
	snapshotSetup(t)
	// Orphans come to us (restore --detach leaves the tree to its subreaper).
	syscall.RawSyscall6(syscall.SYS_PRCTL, 36 /* PR_SET_CHILD_SUBREAPER */, 1, 0, 0, 0, 0)
	out := filepath.Join(t.TempDir(), "count")
	cmd := startCounter(t, out)
	pid := cmd.Process.Pid
	img := filepath.Join(t.TempDir(), "img")
	// Restoring while the pid is still taken is refused and creates nothing.
	r := testenv.Ftl(t, 60*time.Second, "checkpoint", "--pid", strconv.Itoa(pid), "--leave-running", "--dir", img)
	if r.Code != 0 || lastLine(r.Stdout) != img {
		t.Fatalf("checkpoint --pid --leave-running: %s", r)
	}
	r = testenv.Ftl(t, 60*time.Second, "restore", "--detach", img)
	if r.Code != 1 || !strings.Contains(r.Stderr, "already in use") {
		t.Fatalf("restore while pid %d runs: want exit 1 naming the taken pid, got %s", pid, r)
	}
	_, n0 := readCount(t, out)
	time.Sleep(50 * time.Millisecond)
	if _, n1 := readCount(t, out); n1 <= n0 {
		t.Fatalf("tree stopped after --leave-running checkpoint (%d -> %d)", n0, n1)
	}
	// Checkpoint (kills), restore with the same pid: the counter goes on from the image.
	img2 := filepath.Join(t.TempDir(), "img2")
	r = testenv.Ftl(t, 60*time.Second, "checkpoint", "--pid", strconv.Itoa(pid), "--dir", img2)
	if r.Code != 0 {
		t.Fatalf("checkpoint --pid: %s", r)
	}
	cmd.Wait()
	_, atDump := readCount(t, out)
	r = testenv.Ftl(t, 60*time.Second, "restore", "--detach", img2)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(pid) {
		t.Fatalf("restore --pid image: %s", r)
	}
	defer func() {
		syscall.Kill(pid, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, n := readCount(t, out)
		if p == pid && n >= atDump+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restored counter does not count: pid %d n %d (dumped at %d)", p, n, atDump)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSnapshotCheckpointErrors(t *testing.T) {
	snapshotSetup(t)
	if r := testenv.Ftl(t, 20*time.Second, "checkpoint", "no-such-run"); r.Code != 2 || !strings.Contains(r.Stderr, "no-such-run") {
		t.Errorf("checkpoint of an unknown run: want exit 2, got %s", r)
	}
	if r := testenv.Ftl(t, 20*time.Second, "checkpoint", "--pid", "999999999"); r.Code != 1 || !strings.Contains(r.Stderr, "no such process") {
		t.Errorf("checkpoint of a missing pid: want exit 1 'no such process', got %s", r)
	}
	if r := testenv.Ftl(t, 20*time.Second, "checkpoint"); r.Code != 2 {
		t.Errorf("checkpoint without a name: want exit 2, got %s", r)
	}
	if r := testenv.Ftl(t, 20*time.Second, "restore", t.TempDir()); r.Code != 1 || !strings.Contains(r.Stderr, "not an ftl image") {
		t.Errorf("restore of an empty dir: want exit 1 'not an ftl image', got %s", r)
	}
}

// TestSnapshotChangingTree: a shell that forks short-lived children all the
// time; checkpoints with --leave-running either succeed or fail cleanly, and
// the shell runs on either way.
func TestSnapshotChangingTree(t *testing.T) {
	snapshotSetup(t)
	cmd := exec.Command("sh", "-c", "while :; do /bin/true; done")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }()
	ok := 0
	for i := 0; i < 10; i++ {
		img := filepath.Join(t.TempDir(), "img")
		r := testenv.Ftl(t, 30*time.Second, "checkpoint", "--pid", strconv.Itoa(cmd.Process.Pid), "--leave-running", "--dir", img)
		if r.Code == 0 {
			ok++
		} else if r.Code != 1 {
			t.Fatalf("checkpoint of a changing tree: %s", r)
		} else if _, err := os.Stat(img); err == nil {
			t.Fatalf("failed checkpoint left %s behind: %s", img, r)
		}
		if !testenv.Alive(cmd.Process.Pid) {
			t.Fatalf("shell died after checkpoint %d: %s", i, r)
		}
		ents, _ := os.ReadDir(filepath.Dir(img))
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Fatalf("temporary image left behind: %s", e.Name())
			}
		}
	}
	t.Logf("%d of 10 checkpoints of a forking shell succeeded", ok)
	if ok == 0 {
		t.Fatal("no checkpoint of a forking shell succeeded")
	}
}

// TestSnapshotBadImages: corrupted, truncated and wrong-version images are
// refused with an error naming the bad part, and no process is created.
func TestSnapshotBadImages(t *testing.T) {
	snapshotSetup(t)
	out := filepath.Join(t.TempDir(), "count")
	cmd := startCounter(t, out)
	img := filepath.Join(t.TempDir(), "img")
	r := testenv.Ftl(t, 60*time.Second, "checkpoint", "--pid", strconv.Itoa(cmd.Process.Pid), "--dir", img)
	if r.Code != 0 {
		t.Fatalf("checkpoint: %s", r)
	}
	cmd.Wait()
	pid := cmd.Process.Pid
	copyImage := func() string {
		dst := filepath.Join(t.TempDir(), "bad")
		os.Mkdir(dst, 0o755)
		for _, f := range []string{"manifest.ftl", "pages.zst"} {
			b, err := os.ReadFile(filepath.Join(img, f))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dst, f), b, 0o644)
		}
		return dst
	}
	mutate := func(dir, file string, f func([]byte) []byte) {
		p := filepath.Join(dir, file)
		b, _ := os.ReadFile(p)
		os.WriteFile(p, f(b), 0o644)
	}
	cases := []struct {
		name, want string
		bad        func(dir string)
	}{
		{"corrupted pages", "pages.zst: chunk", func(d string) {
			mutate(d, "pages.zst", func(b []byte) []byte { b[len(b)/2] ^= 0x55; return b })
		}},
		{"truncated pages", "pages.zst", func(d string) {
			mutate(d, "pages.zst", func(b []byte) []byte { return b[:len(b)-100] })
		}},
		{"missing pages", "pages.zst", func(d string) { os.Remove(filepath.Join(d, "pages.zst")) }},
		{"corrupted manifest", "manifest.ftl: checksum mismatch", func(d string) {
			mutate(d, "manifest.ftl", func(b []byte) []byte { b[len(b)-10] ^= 1; return b })
		}},
		{"truncated manifest", "manifest.ftl", func(d string) {
			mutate(d, "manifest.ftl", func(b []byte) []byte { return b[:len(b)/2] })
		}},
		{"wrong version", "format version 99", func(d string) {
			mutate(d, "manifest.ftl", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 99); return b })
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			dir := copyImage()
			c.bad(dir)
			for _, args := range [][]string{{"restore", "--detach", dir}, {"image", "inspect", dir}} {
				r := testenv.Ftl(t, 30*time.Second, args...)
				if r.Code != 1 || !strings.Contains(r.Stderr, c.want) {
					t.Errorf("ftl %s: want exit 1 and %q in the error, got %s", args[0], c.want, r)
				}
			}
			if testenv.Alive(pid) {
				t.Errorf("a process with the image's pid %d exists after a refused restore", pid)
			}
		})
	}
	// The good image still restores.
	r = testenv.Ftl(t, 60*time.Second, "image", "inspect", "--json", img)
	if r.Code != 0 || !strings.Contains(r.Stdout, `"version": 1`) {
		t.Fatalf("inspect good image: %s", r)
	}
}

// TestSnapshotDiskFull: a dump onto a small tmpfs fails with ENOSPC, leaves
// the older image there intact and no partial one, and the tree runs on.
func TestSnapshotDiskFull(t *testing.T) {
	snapshotSetup(t)
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	defer syscall.Unmount(mnt, syscall.MNT_DETACH)
	// A small image first: a shell.
	sh := exec.Command("sleep", "600")
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sh.Process.Kill(); sh.Wait() }()
	old := filepath.Join(mnt, "1")
	if r := testenv.Ftl(t, 30*time.Second, "checkpoint", "--pid", strconv.Itoa(sh.Process.Pid), "--leave-running", "--dir", old); r.Code != 0 {
		t.Fatalf("small checkpoint on tmpfs: %s", r)
	}
	out := filepath.Join(t.TempDir(), "count")
	cmd := startCounter(t, out)
	for _, leave := range []bool{true, false} {
		dir := filepath.Join(mnt, "2")
		args := []string{"checkpoint", "--pid", strconv.Itoa(cmd.Process.Pid), "--dir", dir}
		if leave {
			args = append(args, "--leave-running")
		}
		r := testenv.Ftl(t, 60*time.Second, args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "no space left") {
			t.Fatalf("dump onto a full disk (leave-running %v): want exit 1 'no space left', got %s", leave, r)
		}
		ents, _ := os.ReadDir(mnt)
		if len(ents) != 1 || ents[0].Name() != "1" {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("after the failed dump the tmpfs holds %v, want only the old image", names)
		}
		if r := testenv.Ftl(t, 30*time.Second, "image", "inspect", old); r.Code != 0 {
			t.Fatalf("old image no longer valid: %s", r)
		}
		_, n0 := readCount(t, out)
		time.Sleep(100 * time.Millisecond)
		if _, n1 := readCount(t, out); n1 <= n0 {
			t.Fatalf("the tree stopped after a failed dump (leave-running %v)", leave)
		}
	}
}
