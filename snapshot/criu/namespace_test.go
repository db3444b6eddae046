package criu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPidMountNamespace dumps and restores a process that is the init of
// its own pid and mount namespace, the layout `ftl run` gives a program
// (there under ftl's init). Its stdio is reopened inside the namespace:
// a file opened before CLONE_NEWNS sits on a mount of the outer
// namespace, which CRIU cannot find in the dumped one.
func TestPidMountNamespace(t *testing.T) {
	needCRIU(t)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("skipping: unshare (util-linux) not found")
	}
	bin := buildC(t, "counter")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "count")
	img := filepath.Join(tmp, "img")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := startSession(t, unshare, "--pid", "--mount", "--fork", "--mount-proc", "--propagation", "private",
		"sh", "-c", `exec setsid "$0" "$1" </dev/null >/dev/null 2>&1`, bin, out)
	var pid int
	waitFor(t, "the namespace's init to start", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		if err != nil {
			return false
		}
		f := strings.Fields(string(b))
		if len(f) != 1 {
			return false
		}
		pid, _ = strconv.Atoi(f[0])
		return processName(pid) == "counter"
	})
	// Killing unshare would orphan the namespace; its init must go too.
	t.Cleanup(func() {
		if processName(pid) == "counter" {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	})
	before := waitCounterAbove(t, out, 20)
	if ns := nsPid(t, pid); ns != 1 {
		t.Fatalf("counter is pid %d in its namespace; want 1", ns)
	}

	if err := Dump(ctx, DumpOptions{Pid: pid, Dir: img}); err != nil {
		t.Fatalf("Dump: %v", err)
	}
	m, err := ReadMarker(img)
	if err != nil || !m.PidNS || !m.MountNS {
		t.Fatalf("marker %+v, %v; want pidns and mntns recorded", m, err)
	}
	reapKilled(t, cmd) // unshare exits once its namespace's init is gone

	pid2, err := Restore(ctx, RestoreOptions{Dir: img})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Cleanup(func() { killRestored(t, pid2) })
	if n := processName(pid2); n != "counter" {
		t.Fatalf("restored pid %d is %q; want counter", pid2, n)
	}
	if ns := nsPid(t, pid2); ns != 1 {
		t.Fatalf("restored counter is pid %d in its namespace; want 1", ns)
	}
	theirs, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid2))
	ours, _ := os.Readlink("/proc/self/ns/mnt")
	if theirs == ours {
		t.Errorf("restored counter shares our mount namespace %s", ours)
	}
	v1 := waitCounterAbove(t, out, 0)
	if v2 := waitCounterAbove(t, out, v1+10); v2 <= before {
		t.Errorf("restored counter at %d; the dumped one was already at %d", v2, before)
	}
}

// nsPid returns pid's pid in its innermost pid namespace.
func nsPid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "NSpid:"); ok {
			f := strings.Fields(rest)
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	t.Fatalf("no NSpid in /proc/%d/status", pid)
	return 0
}
