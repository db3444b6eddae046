package files

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startEdge starts fdedge MODE and reads its "NAME N" lines up to READY.
func startEdge(t *testing.T, mode string, extra ...*os.File) (*exec.Cmd, map[string]int, *bufio.Scanner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, helper(t, "fdedge"), mode)
	cmd.ExtraFiles = extra
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	vals := map[string]int{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "READY" {
		k, v, _ := strings.Cut(sc.Text(), " ")
		vals[k], _ = strconv.Atoi(v)
	}
	return cmd, vals, sc
}

func TestRefusedKinds(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	cmd, v, _ := startEdge(t, "refuse", pw)
	pid := cmd.Process.Pid
	waitStopped(t, pid)
	err = Check(pid)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Check = %v, want ErrUnsupported", err)
	}
	wants := []string{
		fmt.Sprintf("process %d fd %d (netlink)", pid, v["netlink"]),
		fmt.Sprintf("process %d fd %d (pidfd)", pid, v["pidfd"]),
	}
	if fd, ok := v["device"]; ok {
		wants = append(wants, fmt.Sprintf("process %d fd %d (device)", pid, fd))
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error %q does not name %q", err, want)
		}
	}
	err = CheckTree([]int{pid})
	if !errors.Is(err, ErrUnsupported) || !errors.Is(err, ErrExternal) || !strings.Contains(err.Error(), fmt.Sprintf("process %d fd 3 (pipe)", pid)) {
		t.Errorf("CheckTree = %v, want the refused kinds and the pipe to outside on fd 3", err)
	}
	d := NewDumper()
	defer d.Close()
	if _, err := d.Add(pid, v["netlink"]); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Add(netlink) = %v, want ErrUnsupported", err)
	}
	// fd 3 is a pipe whose other end is in the test: outside the tree.
	if _, err := d.Add(pid, 3); err != nil {
		t.Fatal(err)
	}
	if err := d.Pair(); !errors.Is(err, ErrExternal) || !strings.Contains(err.Error(), fmt.Sprintf("process %d fd 3 (pipe)", pid)) {
		t.Errorf("Pair = %v, want ErrExternal naming fd 3", err)
	}
}

func TestSharedAcrossProcesses(t *testing.T) {
	cmd, v, _ := startEdge(t, "share")
	parent, child := cmd.Process.Pid, v["child"]
	defer syscall.Kill(child, syscall.SIGKILL)
	waitStopped(t, parent)
	waitStopped(t, child)
	if err := CheckTree([]int{parent, child}); err != nil {
		t.Fatalf("CheckTree: %v", err)
	}
	d := NewDumper()
	defer d.Close()
	pf := addAll(t, d, parent)
	cf := addAll(t, d, child)
	if err := d.Pair(); err != nil {
		t.Fatalf("Pair: %v", err)
	}
	if len(pf) != len(cf) {
		t.Fatalf("parent fds %v, child fds %v", pf, cf)
	}
	for i := range pf {
		if pf[i] != cf[i] {
			t.Errorf("fd %d: parent %+v, child %+v: want one shared description", pf[i].Num, pf[i], cf[i])
		}
	}
	if n := len(d.Descs()); n != len(pf) {
		t.Errorf("%d descriptions for %d shared fds", n, len(pf))
	}
	// The pipe (fds 3, 4) comes back as one pipe; the listener is not
	// restored here: the stopped original still holds its port.
	r := NewRestorer(d.Descs(), RestoreEnv{})
	defer r.Close()
	rd, err1 := r.File(pf[3].DescID)
	wr, err2 := r.File(pf[4].DescID)
	if err1 != nil || err2 != nil {
		t.Fatalf("File: %v %v", err1, err2)
	}
	if _, err := wr.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := rd.Read(b); err != nil || b[0] != 'x' {
		t.Errorf("restored pipe read %q %v", b, err)
	}
}

// TestLeaveRunning dumps an established connection of a server that keeps
// running (KeepRepair(false) after a KeepRepair(true) dump, as after a
// failed dump): the connection must still work once the server resumes.
func TestLeaveRunning(t *testing.T) {
	cmd, v, _ := startEdge(t, "echo")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", v["port"]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	echo := func(s string) {
		t.Helper()
		if _, err := c.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, len(s))
		if _, err := io.ReadFull(c, b); err != nil || string(b) != s {
			t.Fatalf("echo %q: got %q %v", s, b, err)
		}
	}
	echo("one")
	pid := cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP)
	waitStopped(t, pid)
	d := NewDumper()
	d.KeepRepair(true)
	fds := addAll(t, d, pid)
	var tcp *Desc
	for _, desc := range d.Descs() {
		if desc.TCP != nil {
			tcp = &desc
		}
	}
	if tcp == nil || len(fds) == 0 {
		t.Fatalf("no established TCP socket dumped: %+v", d.Descs())
	}
	d.KeepRepair(false)
	descs := d.Descs()
	d.Close()
	syscall.Kill(pid, syscall.SIGCONT)
	echo("two")

	// Restoring that connection while the original holds its address
	// pair gives a closed socket and a warning, not a failed restore.
	r := NewRestorer(descs, RestoreEnv{})
	defer r.Close()
	f, err := r.File(tcp.ID)
	if err != nil {
		t.Fatalf("File(tcp): %v", err)
	}
	if w := r.Warnings(); len(w) != 1 || !strings.Contains(w[0], "restored as closed") {
		t.Errorf("Warnings = %q", w)
	}
	if _, err := unix.Read(int(f.Fd()), make([]byte, 4)); !errors.Is(err, unix.ENOTCONN) {
		t.Errorf("read on the stand-in = %v, want ENOTCONN", err)
	}
	echo("three")
}

// TestTerminalStdio: a terminal on fds 0, 1, 2 becomes one external
// description per stdio number, restored as the restorer's own stdio.
func TestTerminalStdio(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, helper(t, "fdedge"), "plain")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	waitStopped(t, pid)
	if err := Check(pid); err != nil {
		t.Fatalf("Check: %v", err)
	}
	d := NewDumper()
	defer d.Close()
	fds := addAll(t, d, pid)
	if err := d.Pair(); err != nil {
		t.Fatal(err)
	}
	descs := d.Descs()
	if len(fds) != 3 || len(descs) != 3 {
		t.Fatalf("fds %+v descs %+v", fds, descs)
	}
	var env RestoreEnv
	for _, f := range []**os.File{&env.Stdin, &env.Stdout, &env.Stderr} {
		if *f, err = os.Open(os.DevNull); err != nil {
			t.Fatal(err)
		}
		defer (*f).Close()
	}
	r := NewRestorer(descs, env)
	defer r.Close()
	for i, want := range []*os.File{env.Stdin, env.Stdout, env.Stderr} {
		d := descs[fds[i].DescID-1]
		if d.Kind != KindExternal || d.External.Stdio != i {
			t.Errorf("fd %d: %+v", i, d)
		}
		if f, err := r.File(fds[i].DescID); err != nil || f != want {
			t.Errorf("fd %d restored as %v %v", i, f, err)
		}
	}
}

// TestQueuedRightsRefused: a unix queue holding SCM_RIGHTS is refused
// (and the fds the peek received are not leaked into the dumper).
func TestQueuedRightsRefused(t *testing.T) {
	cmd, v, _ := startEdge(t, "rights")
	pid := cmd.Process.Pid
	waitStopped(t, pid)
	before, _ := os.ReadDir("/proc/self/fd")
	d := NewDumper()
	_, err := d.Add(pid, v["receiver"])
	d.Close()
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "SCM_RIGHTS") {
		t.Errorf("Add = %v, want ErrUnsupported about SCM_RIGHTS", err)
	}
	if after, _ := os.ReadDir("/proc/self/fd"); len(after) != len(before) {
		t.Errorf("fds before %d, after %d", len(before), len(after))
	}
}
