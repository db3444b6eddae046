package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/ftlinux/ftl/tests/testenv"
)

// Abuse of ftl checkpoint / restore: bad images (corrupted, truncated,
// wrong version, files missing), taken pids and ports, unknown runs and
// pids, processes that exit while they are checkpointed, a full disk. Each
// must end with a non-zero exit status, one clear error line naming the bad
// part, and no process created (no ftl ps entry, no process of a new pid
// namespace, nothing left stopped).

// pfFails checks a refused command: exit status code (any non-zero if code
// is 0), nothing on stdout, exactly one line "ftl: ..." on stderr holding
// every want.
func pfFails(t *testing.T, what string, r testenv.Result, code int, want ...string) {
	t.Helper()
	t.Logf("%s: exit %d: %s", what, r.Code, strings.TrimSpace(r.Stderr))
	if r.Code == 0 || (code != 0 && r.Code != code) {
		t.Errorf("%s: exit %d, want %s: %s", what, r.Code, map[bool]string{true: "non-zero", false: strconv.Itoa(code)}[code == 0], r)
	}
	if r.Stdout != "" {
		t.Errorf("%s: stdout %q, want nothing", what, r.Stdout)
	}
	if strings.Count(r.Stderr, "\n") != 1 || !strings.HasSuffix(r.Stderr, "\n") || !strings.HasPrefix(r.Stderr, "ftl: ") {
		t.Errorf("%s: want one line \"ftl: ...\" on stderr, got %q", what, r.Stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("%s: the error %q does not name %q", what, strings.TrimSpace(r.Stderr), w)
		}
	}
}

// pfPidNamespaces is the set of pid namespaces live processes are in.
func pfPidNamespaces() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil {
			out[ns] = true
		}
	}
	return out
}

// pfNothingCreated fails if a refused restore of run name created anything:
// an ftl ps entry, a run directory, a process carrying the run's region or
// directory, or a process of this test's $FTL_HOME in a pid namespace that
// did not exist before (nsBefore).
func pfNothingCreated(t *testing.T, name, home string, nsBefore map[string]bool) {
	t.Helper()
	if r := testenv.Ftl(t, 10*time.Second, "ps", name); r.Code == 0 {
		t.Errorf("refused restore: run %s is listed: %s", name, r.Stdout)
	}
	dir := testenv.RunDir(name)
	if left := testenv.TreePids(filepath.Join(dir, "region"), dir); len(left) > 0 {
		t.Errorf("refused restore: processes %v of run %s exist", left, name)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("refused restore: %s exists", dir)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !testenv.Alive(pid) {
			continue
		}
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
		if err != nil || nsBefore[ns] {
			continue
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(env, []byte(home)) || bytes.Contains(cmdline, []byte(home)) {
			t.Errorf("refused restore: process %d (%q) of this test lives in a new pid namespace %s", pid, cmdline, ns)
		}
	}
}

// pfCopyImage copies the image dir src to a new temp dir.
func pfCopyImage(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "img")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil || len(ents) == 0 {
		t.Fatalf("read image %s: %v (%d files)", src, err, len(ents))
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func pfEdit(t *testing.T, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pfRewriteVersion re-encodes the manifest with version v in both the
// header and the body, with a valid checksum: a well-formed image of
// another format version. The header is magic[8], version u32, body length
// u32, CRC-32C u32 (little-endian), then the msgpack body (snapshot/image).
func pfRewriteVersion(t *testing.T, path string, v int) {
	t.Helper()
	pfEdit(t, path, func(b []byte) []byte {
		if len(b) < 20 {
			t.Fatalf("manifest of %d bytes", len(b))
		}
		var body map[string]interface{}
		if err := msgpack.Unmarshal(b[20:], &body); err != nil {
			t.Fatalf("decode manifest body: %v", err)
		}
		if _, ok := body["Version"]; !ok {
			t.Fatalf("manifest body has no Version field: %v", body)
		}
		body["Version"] = v
		nb, err := msgpack.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		hdr := make([]byte, 20)
		copy(hdr, b[:8])
		binary.LittleEndian.PutUint32(hdr[8:], uint32(v))
		binary.LittleEndian.PutUint32(hdr[12:], uint32(len(nb)))
		binary.LittleEndian.PutUint32(hdr[16:], crc32.Checksum(nb, crc32.MakeTable(crc32.Castagnoli)))
		return append(hdr, nb...)
	})
}

// pfSmallMemcached runs a small memcached under ftl as run name, with key
// "abuse" set; it returns the port.
func pfSmallMemcached(t *testing.T, name string, mem string) int {
	t.Helper()
	testenv.NeedProgram(t, "memcached")
	port := testenv.FreePort(t)
	testenv.Detach(t, name, "memcached", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(port),
		"-t", "2", "-u", "root", "-m", mem)
	testenv.WaitPort(t, port, 10*time.Second)
	c := pfDial(t, port)
	pfMemcached.mustSet(t, c, "setup", "abuse", "value-"+name)
	c.Close()
	pfWaitNoConns(t, name)
	return port
}

func pfExpectKey(t *testing.T, port int, key, want string) {
	t.Helper()
	c := pfDial(t, port)
	defer c.Close()
	if v, ok := pfMemcached.mustGet(t, c, "check", key); !ok || v != want {
		t.Fatalf("get %s = %q %v, want %q", key, v, ok, want)
	}
}

// TestProofBadImages: every kind of damage to an image is refused by
// restore and by image inspect, naming the bad file, creating nothing; the
// undamaged image restores (the control).
func TestProofBadImages(t *testing.T) {
	home := pfSetup(t)
	const name = "pf-bad"
	port := pfSmallMemcached(t, name, "16")
	good := filepath.Join(t.TempDir(), "good")
	pfCheckpoint(t, good, name) // the tree is gone: a restore could only be refused for the damage
	for _, f := range []string{"manifest.ftl", "pages.zst"} {
		if _, err := os.Stat(filepath.Join(good, f)); err != nil {
			t.Fatalf("image layout changed (this test damages manifest.ftl and pages.zst): %v", err)
		}
	}
	flip := func(at func(n int) int) func([]byte) []byte {
		return func(b []byte) []byte { b[at(len(b))] ^= 0xff; return b }
	}
	cases := []struct {
		name string
		want string // the file the error must name
		bad  func(t *testing.T, dir string)
	}{
		{"pages byte flipped in the middle", "pages.zst", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "pages.zst"), flip(func(n int) int { return n / 2 }))
		}},
		{"pages first byte flipped", "pages.zst", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "pages.zst"), flip(func(int) int { return 0 }))
		}},
		{"pages last byte flipped", "pages.zst", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "pages.zst"), flip(func(n int) int { return n - 1 }))
		}},
		{"pages truncated to half", "pages.zst", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "pages.zst"), func(b []byte) []byte { return b[:len(b)/2] })
		}},
		{"pages truncated to nothing", "pages.zst", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "pages.zst"), func(b []byte) []byte { return nil })
		}},
		{"pages with trailing garbage", "pages.zst", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "pages.zst"), func(b []byte) []byte { return append(b, "garbage"...) })
		}},
		{"pages deleted", "pages.zst", func(t *testing.T, d string) {
			if err := os.Remove(filepath.Join(d, "pages.zst")); err != nil {
				t.Fatal(err)
			}
		}},
		{"manifest body byte flipped", "manifest.ftl", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "manifest.ftl"), flip(func(n int) int { return 20 + (n-20)/2 }))
		}},
		{"manifest magic flipped", "manifest.ftl", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "manifest.ftl"), flip(func(int) int { return 0 }))
		}},
		{"manifest length field flipped", "manifest.ftl", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "manifest.ftl"), flip(func(int) int { return 13 }))
		}},
		{"manifest truncated", "manifest.ftl", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "manifest.ftl"), func(b []byte) []byte { return b[:len(b)-len(b)/3] })
		}},
		{"manifest truncated inside the header", "manifest.ftl", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "manifest.ftl"), func(b []byte) []byte { return b[:10] })
		}},
		{"manifest deleted", "manifest.ftl", func(t *testing.T, d string) {
			if err := os.Remove(filepath.Join(d, "manifest.ftl")); err != nil {
				t.Fatal(err)
			}
		}},
		{"wrong version in the header", "version", func(t *testing.T, d string) {
			pfEdit(t, filepath.Join(d, "manifest.ftl"), func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 2); return b })
		}},
		{"well-formed image of version 2", "version 2", func(t *testing.T, d string) {
			pfRewriteVersion(t, filepath.Join(d, "manifest.ftl"), 2)
		}},
		{"well-formed image of version 0", "version 0", func(t *testing.T, d string) {
			pfRewriteVersion(t, filepath.Join(d, "manifest.ftl"), 0)
		}},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			dir := pfCopyImage(t, good)
			c.bad(t, dir)
			nsBefore := pfPidNamespaces()
			r := testenv.Ftl(t, 60*time.Second, "restore", "--detach", "--name", name, dir)
			if r.Code == 0 {
				t.Cleanup(func() { testenv.KillRun(t, name) })
			}
			pfFails(t, "restore", r, 1, c.want)
			pfNothingCreated(t, name, home, nsBefore)
			r = testenv.Ftl(t, 60*time.Second, "image", "inspect", dir)
			pfFails(t, "image inspect", r, 1, c.want)
		})
	}

	// The control: an undamaged copy restores and serves.
	t.Run("control", func(t *testing.T) {
		pfRestore(t, name, pfCopyImage(t, good))
		pfExpectKey(t, port, "abuse", "value-"+name)
		pfKill(t, name)
	})
}

// TestProofRestoreTaken: restoring an image while its first restore still
// runs fails cleanly (same name: the name is taken; another name: the
// listening port is taken), creates nothing, and the first copy runs on.
// For a --pid image the pids themselves are taken.
func TestProofRestoreTaken(t *testing.T) {
	home := pfSetup(t)
	const name = "pf-taken"
	port := pfSmallMemcached(t, name, "16")
	img := filepath.Join(t.TempDir(), "img")
	pfCheckpoint(t, img, name)
	first := pfRestore(t, name, img)
	pfExpectKey(t, port, "abuse", "value-"+name)

	t.Run("same name", func(t *testing.T) {
		r := testenv.Ftl(t, 60*time.Second, "restore", "--detach", img)
		pfFails(t, "second restore, same name", r, 0, name)
		if after := testenv.PS(t, name); after.PidNS != first.PidNS || after.InitPid != first.InitPid {
			t.Errorf("run %s changed: %+v, was %+v", name, after, first)
		}
	})
	t.Run("other name", func(t *testing.T) {
		other := name + "-2"
		nsBefore := pfPidNamespaces()
		r := testenv.Ftl(t, 60*time.Second, "restore", "--detach", "--name", other, img)
		if r.Code == 0 {
			t.Cleanup(func() { testenv.KillRun(t, other) })
		}
		pfFails(t, "second restore, other name, port taken", r, 1, strconv.Itoa(port))
		pfNothingCreated(t, other, home, nsBefore)
	})
	pfRunning(t, testenv.PS(t, name))
	pfExpectKey(t, port, "abuse", "value-"+name)

	t.Run("pid tree", func(t *testing.T) {
		pfNoStrayFds()
		mark := fmt.Sprintf("PF_TAKEN_MARK=%d", time.Now().UnixNano())
		t.Setenv("PF_TAKEN_MARK", strings.TrimPrefix(mark, "PF_TAKEN_MARK="))
		cmd := testenv.Native(t, "sleep", "600")
		pid := cmd.Process.Pid
		pimg := filepath.Join(t.TempDir(), "pimg")
		pfCheckpoint(t, pimg, "--pid", strconv.Itoa(pid), "--leave-running")
		r := testenv.Ftl(t, 60*time.Second, "restore", "--detach", pimg)
		if r.Code == 0 {
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		}
		pfFails(t, "restore of a --pid image while its pid runs", r, 1, strconv.Itoa(pid))
		// Exactly one process carries the mark: the original.
		var marked []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			p, err := strconv.Atoi(e.Name())
			if err != nil || !testenv.Alive(p) {
				continue
			}
			if env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p)); bytes.Contains(env, []byte(mark+"\x00")) {
				marked = append(marked, p)
			}
		}
		if len(marked) != 1 || marked[0] != pid {
			t.Errorf("processes with the test's mark: %v, want only the original %d", marked, pid)
		}
		if st := pfState(pid); st != "S" && st != "R" {
			t.Errorf("the original %d is in state %q after the refused restore", pid, st)
		}
	})
}

// TestProofCheckpointErrors: unknown runs and pids, a missing image dir,
// an image dir that is not empty.
func TestProofCheckpointErrors(t *testing.T) {
	home := pfSetup(t)
	r := testenv.Ftl(t, 20*time.Second, "checkpoint", "pf-no-such-run")
	pfFails(t, "checkpoint of an unknown run", r, 2, "pf-no-such-run")

	free := 0
	for p := 4_000_000; p > 300; p-- {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); os.IsNotExist(err) {
			free = p
			break
		}
	}
	r = testenv.Ftl(t, 20*time.Second, "checkpoint", "--pid", strconv.Itoa(free))
	pfFails(t, "checkpoint of a pid that does not exist", r, 1, strconv.Itoa(free))
	if ents, _ := os.ReadDir(filepath.Join(home, "images")); len(ents) > 0 {
		t.Errorf("a refused checkpoint left %d entries in %s/images", len(ents), home)
	}

	missing := filepath.Join(t.TempDir(), "no-such-image")
	nsBefore := pfPidNamespaces()
	r = testenv.Ftl(t, 20*time.Second, "restore", "--detach", missing)
	t.Logf("restore of a missing dir: %s", r)
	pfFails(t, "restore of a missing image dir", r, 0, missing)
	pfNothingCreated(t, "no-such-image", home, nsBefore)

	// A checkpoint into a non-empty directory is refused before anything is
	// frozen, and the tree is not killed.
	const name = "pf-err"
	port := pfSmallMemcached(t, name, "16")
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "precious"), []byte("do not overwrite"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = testenv.Ftl(t, 60*time.Second, "checkpoint", name, "--dir", full)
	pfFails(t, "checkpoint into a non-empty dir", r, 0, full)
	if b, _ := os.ReadFile(filepath.Join(full, "precious")); string(b) != "do not overwrite" {
		t.Errorf("the non-empty dir's file was changed: %q", b)
	}
	pfRunning(t, testenv.PS(t, name))
	pfExpectKey(t, port, "abuse", "value-"+name)
}

// TestProofCheckpointVanishing: processes that exit while they are being
// checkpointed. Each attempt ends in time with either a valid image or one
// clean error line, and never leaves the process stopped or an image half
// written.
func TestProofCheckpointVanishing(t *testing.T) {
	pfSetup(t)
	pfNoStrayFds()
	ok, refused := 0, 0
	check := func(t *testing.T, what string, r testenv.Result, img string) {
		t.Helper()
		if r.Code == 0 {
			ok++
			if ins := testenv.Ftl(t, 30*time.Second, "image", "inspect", img); ins.Code != 0 {
				t.Errorf("%s: checkpoint succeeded but its image is bad: %s", what, ins)
			}
			return
		}
		refused++
		pfFails(t, what, r, 0)
		// The one line must say what happened: the process went away.
		if msg := r.Stderr; !strings.Contains(msg, "no such process") && !strings.Contains(msg, "exited") && !strings.Contains(msg, "no such run") && !strings.Contains(msg, "no process") {
			t.Errorf("%s: the error %q does not say that the process exited", what, strings.TrimSpace(msg))
		}
		if _, err := os.Stat(img); err == nil {
			t.Errorf("%s: a failed checkpoint left %s", what, img)
		}
		ents, _ := os.ReadDir(filepath.Dir(img))
		for _, e := range ents {
			t.Errorf("%s: a failed checkpoint left %s in the image's parent", what, e.Name())
		}
	}
	t.Run("pid", func(t *testing.T) {
		for i := 0; i < 24; i++ {
			// sleep alone, or a shell whose children end at different times:
			// lifetimes of 0-70ms against a dump of a few tens of ms.
			cmd := exec.Command("sleep", fmt.Sprintf("0.%03d", i*3))
			if i%3 == 2 {
				cmd = exec.Command("sh", "-c", fmt.Sprintf("sleep 0.%03d & sleep 0.%03d & sleep 0.%03d; wait", i, 2*i, 3*i))
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			img := filepath.Join(t.TempDir(), "img")
			args := []string{"checkpoint", "--pid", strconv.Itoa(pid), "--dir", img}
			if i%2 == 1 {
				args = append(args, "--leave-running")
			}
			r := testenv.Ftl(t, 30*time.Second, args...)
			if st := pfState(pid); st == "T" || st == "t" {
				t.Errorf("attempt %d: pid %d left stopped (state %s) after %s", i, pid, st, r)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				syscall.Kill(-pid, syscall.SIGKILL)
				<-done
				t.Errorf("attempt %d: sleep %d did not end within 10s after the checkpoint (%s)", i, pid, r)
			}
			check(t, fmt.Sprintf("attempt %d (%v)", i, args), r, img)
		}
	})
	t.Run("run", func(t *testing.T) {
		for i := 0; i < 8; i++ {
			name := fmt.Sprintf("pf-vanish-%d", i)
			testenv.Detach(t, name, "sleep", fmt.Sprintf("0.%03d", i*5))
			img := filepath.Join(t.TempDir(), "img")
			r := testenv.Ftl(t, 30*time.Second, "checkpoint", name, "--dir", img)
			check(t, fmt.Sprintf("attempt %d", i), r, img)
			testenv.NoLeftovers(t, name)
		}
	})
	t.Logf("%d checkpoints of vanishing processes succeeded, %d were refused", ok, refused)
}

// TestProofDiskFull: a dump onto a full tmpfs fails cleanly (one line
// naming the lack of space), leaves the tree running and not stopped, leaves
// no partial image, and the earlier image in the same directory stays valid
// and restores.
func TestProofDiskFull(t *testing.T) {
	pfSetup(t)
	testenv.NeedProgram(t, "memcached")
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })

	const small, big = "pf-small", "pf-big"
	sport := pfSmallMemcached(t, small, "8")
	first := filepath.Join(mnt, "1")
	pfCheckpoint(t, first, small)

	// About 20 MiB of incompressible values: the image cannot fit in 8 MiB.
	bport := testenv.FreePort(t)
	testenv.Detach(t, big, "memcached", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(bport),
		"-t", "1", "-u", "root", "-m", "128")
	testenv.WaitPort(t, bport, 10*time.Second)
	c := pfDial(t, bport)
	vals := make([][]byte, 200)
	for i := range vals {
		raw := make([]byte, 50_000)
		rand.Read(raw)
		vals[i] = []byte(fmt.Sprintf("%x", raw)) // 100,000 hex chars, about 50 KB of entropy
		pfMemcached.mustSet(t, c, "fill", fmt.Sprintf("big%d", i), string(vals[i]))
	}
	c.Close()
	pfWaitNoConns(t, big)
	info := testenv.PS(t, big)

	for _, leave := range []bool{true, false} {
		second := filepath.Join(mnt, "2")
		args := []string{"checkpoint", big, "--dir", second}
		if leave {
			args = append(args, "--leave-running")
		}
		r := testenv.Ftl(t, 120*time.Second, args...)
		pfFails(t, fmt.Sprintf("dump onto a full disk (leave-running %v)", leave), r, 1, "no space left")
		ents, _ := os.ReadDir(mnt)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if len(names) != 1 || names[0] != "1" {
			t.Errorf("after the failed dump the tmpfs holds %v, want only the first image", names)
		}
		pfRunning(t, info)
		c := pfDial(t, bport)
		if v, ok := pfMemcached.mustGet(t, c, "after the failed dump", "big7"); !ok || v != string(vals[7]) {
			t.Fatalf("the tree does not serve after a failed dump (leave-running %v): found %v", leave, ok)
		}
		c.Close()
		pfWaitNoConns(t, big)
	}
	if r := testenv.Ftl(t, 30*time.Second, "image", "inspect", first); r.Code != 0 {
		t.Fatalf("the first image is no longer valid: %s", r)
	}
	pfRestore(t, small, first)
	pfExpectKey(t, sport, "abuse", "value-"+small)
	pfKill(t, small)
	pfKill(t, big)
}

// TestProofFilesGone: an image whose files are gone from the disk (the
// database a process has open, the executable it maps) is refused with one
// line naming the file, nothing is created, and it restores once the files
// are back.
func TestProofFilesGone(t *testing.T) {
	home := pfSetup(t)
	bin := pfBuild(t, "sqliteloop", "-lsqlite3")
	db := filepath.Join(t.TempDir(), "gone.db")
	const name = "pf-gone"
	testenv.Detach(t, name, bin, db, "100")
	logPath := filepath.Join(home, "log", name+".log")
	pfWaitProgress(t, logPath, 200)
	img := filepath.Join(t.TempDir(), "img")
	pfCheckpoint(t, img, name)
	testenv.NoLeftovers(t, name)

	for _, path := range []string{db, bin} {
		if err := os.Rename(path, path+".away"); err != nil {
			t.Fatal(err)
		}
		nsBefore := pfPidNamespaces()
		r := testenv.Ftl(t, 60*time.Second, "restore", "--detach", img)
		if r.Code == 0 {
			testenv.KillRun(t, name)
		}
		pfFails(t, "restore with "+filepath.Base(path)+" gone", r, 1, path)
		pfNothingCreated(t, name, home, nsBefore)
		if err := os.Rename(path+".away", path); err != nil {
			t.Fatal(err)
		}
	}
	// With the files back it restores and goes on.
	b, _ := os.ReadFile(logPath)
	p := pfProgressLines(string(b))
	pfRestore(t, name, img)
	pfWaitProgress(t, logPath, p[len(p)-1]+200)
	pfKill(t, name)
	out, err := exec.Command(bin, "--check", db).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK rows=") {
		t.Fatalf("sqliteloop --check: %v: %s", err, out)
	}
}

// TestProofConcurrentCheckpoints: two --leave-running checkpoints of the
// same run at once. Each ends in time, with a valid image or one clean
// error line; at least one of each pair succeeds; the tree runs on and
// serves, never left stopped.
func TestProofConcurrentCheckpoints(t *testing.T) {
	pfSetup(t)
	const name = "pf-twice"
	port := pfSmallMemcached(t, name, "16")
	info := testenv.PS(t, name)
	for round := 0; round < 6; round++ {
		dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
		results := make(chan testenv.Result, 2)
		for _, d := range dirs {
			go func(d string) {
				// testenv.Ftl may call t.Fatalf: run the command here and
				// report a timeout as a result instead.
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				cmd := testenv.Command(ctx, "checkpoint", name, "--leave-running", "--dir", d)
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				cmd.Run()
				code := -1
				if cmd.ProcessState != nil {
					code = cmd.ProcessState.ExitCode()
				}
				if ctx.Err() != nil {
					errb.WriteString("(timed out)")
				}
				results <- testenv.Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
			}(d)
		}
		ok := 0
		for i := 0; i < 2; i++ {
			r := <-results
			if r.Code == 0 {
				ok++
				continue
			}
			pfFails(t, fmt.Sprintf("round %d: a concurrent checkpoint", round), r, 1)
		}
		if ok == 0 {
			t.Errorf("round %d: both concurrent checkpoints failed", round)
		}
		for _, d := range dirs {
			if _, err := os.Stat(d); err == nil {
				if r := testenv.Ftl(t, 30*time.Second, "image", "inspect", d); r.Code != 0 {
					t.Errorf("round %d: image %s is bad: %s", round, d, r)
				}
			}
		}
		pfRunning(t, info)
		pfExpectKey(t, port, "abuse", "value-"+name)
		pfWaitNoConns(t, name)
	}
}
