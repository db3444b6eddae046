package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftlinux/ftl/snapshot/image"
	"github.com/ftlinux/ftl/snapshot/netlock"
	"github.com/ftlinux/ftl/tests/testenv"
)

// `ftl image unlock DIR`: a checkpoint that kills a tree with established
// TCP connections leaves an iptables network lock until the restore; an
// image that will never be restored is unlocked by hand, and the peers then
// get resets instead of hanging.

// ulRules counts the INPUT rules carrying the lock's comment.
func ulRules(t *testing.T, tag string) int {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "5", "-S", "INPUT").Output()
	if err != nil {
		t.Fatalf("iptables -S INPUT: %v", err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, netlock.Comment(tag)+" ") || strings.Contains(line, `"`+netlock.Comment(tag)+`"`) {
			n++
		}
	}
	return n
}

// ulInspect returns the image's net lock as `ftl image inspect` shows it:
// the text line and the --json object.
func ulInspect(t *testing.T, dir string) (string, struct {
	Tag    string `json:"tag"`
	Locked bool   `json:"locked"`
	Rules  int    `json:"rules"`
}) {
	t.Helper()
	r := testenv.Ftl(t, 30*time.Second, "image", "inspect", dir)
	if r.Code != 0 {
		t.Fatalf("ftl image inspect %s: %s", dir, r)
	}
	line := ""
	for _, l := range strings.Split(r.Stdout, "\n") {
		if strings.HasPrefix(l, "net lock") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("ftl image inspect %s: no net lock line in %q", dir, r.Stdout)
	}
	r = testenv.Ftl(t, 30*time.Second, "image", "inspect", "--json", dir)
	if r.Code != 0 {
		t.Fatalf("ftl image inspect --json %s: %s", dir, r)
	}
	var img struct {
		NetLock *struct {
			Tag    string `json:"tag"`
			Locked bool   `json:"locked"`
			Rules  int    `json:"rules"`
		} `json:"net_lock"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &img); err != nil || img.NetLock == nil {
		t.Fatalf("ftl image inspect --json %s: no net_lock (%v) in %q", dir, err, r.Stdout)
	}
	return line, *img.NetLock
}

// TestImageUnlock: a wrapped redis with a client connection kept open is
// checkpointed (killed); its lock is in iptables and inspect says locked;
// unlock removes the rules, says how many, and the kept client gets a reset;
// a second unlock says the lock is already gone. An image without a lock,
// a directory that is no image and wrong argument counts are refused or
// reported as such.
func TestImageUnlock(t *testing.T) {
	pfSetup(t)
	testenv.NeedProgram(t, "redis-server")
	testenv.NeedProgram(t, "iptables")
	port := testenv.FreePort(t)
	const name = "ul-redis"
	testenv.Detach(t, name, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(), "--daemonize", "no", "--protected-mode", "no")
	testenv.WaitPort(t, port, 10*time.Second)
	kept, err := testenv.Dial(port, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	if err := kept.RedisSet("kept", "before"); err != nil {
		t.Fatal(err)
	}

	// A --leave-running image has no lock.
	imgA := filepath.Join(t.TempDir(), "A")
	pfCheckpoint(t, imgA, name, "--leave-running")
	if line, li := ulInspect(t, imgA); !strings.Contains(line, "none") || li.Tag != "" || li.Locked {
		t.Errorf("inspect of a --leave-running image: %q %+v, want no lock", line, li)
	}
	r := testenv.Ftl(t, 30*time.Second, "image", "unlock", imgA)
	if r.Code != 0 || !strings.Contains(r.Stdout, "has no network lock") || r.Stderr != "" {
		t.Errorf("unlock of an image without a lock: %s", r)
	}

	// Killing the tree locks its connection.
	img := filepath.Join(t.TempDir(), "B")
	pfCheckpoint(t, img, name)
	m, err := image.ReadManifest(img)
	if err != nil {
		t.Fatal(err)
	}
	if m.NetLock == "" {
		t.Fatalf("image %s of a tree with a client connection has no network lock", img)
	}
	t.Cleanup(func() { netlock.Unlock(m.NetLock) }) // should the test stop early
	n := ulRules(t, m.NetLock)
	if n < 1 {
		t.Fatalf("no iptables rule %s after the checkpoint", netlock.Comment(m.NetLock))
	}
	line, li := ulInspect(t, img)
	if !strings.Contains(line, "locked") || !strings.Contains(line, netlock.Comment(m.NetLock)) || !li.Locked || li.Rules != n || li.Tag != m.NetLock {
		t.Errorf("inspect of a locked image: %q %+v, want locked with %d rule(s) of %s", line, li, n, m.NetLock)
	}

	r = testenv.Ftl(t, 30*time.Second, "image", "unlock", img)
	t.Logf("unlock: %s", strings.TrimSpace(r.Stdout))
	if r.Code != 0 || r.Stderr != "" || !strings.Contains(r.Stdout, fmt.Sprintf("removed %d iptables rule(s)", n)) || !strings.Contains(r.Stdout, "resets") {
		t.Errorf("unlock: %s; want %d rule(s) removed", r, n)
	}
	if left := ulRules(t, m.NetLock); left != 0 {
		t.Errorf("%d rule(s) of %s left after unlock", left, m.NetLock)
	}
	// The peer of the dead server now gets a reset instead of silence.
	if _, err := kept.RedisDo("PING"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the kept client after unlock: %v, want a reset (ECONNRESET)", err)
	}
	if line, li := ulInspect(t, img); !strings.Contains(line, "released") || li.Locked || li.Rules != 0 {
		t.Errorf("inspect after unlock: %q %+v, want released", line, li)
	}

	r = testenv.Ftl(t, 30*time.Second, "image", "unlock", img)
	if r.Code != 0 || r.Stderr != "" || !strings.Contains(r.Stdout, "already gone") {
		t.Errorf("second unlock: %s; want exit 0 saying the lock is already gone", r)
	}

	notImage := t.TempDir()
	r = testenv.Ftl(t, 30*time.Second, "image", "unlock", notImage)
	pfFails(t, "unlock of a directory that is no image", r, 1, notImage, "not an ftl image")

	r = testenv.Ftl(t, 30*time.Second, "image", "unlock")
	pfFails(t, "unlock without a directory", r, 2)
	r = testenv.Ftl(t, 30*time.Second, "image", "unlock", img, imgA)
	pfFails(t, "unlock of two directories", r, 2)
}
