package files

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// helper compiles testdata/NAME.c once per test binary.
func helper(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "ftl-files-test-")
		if buildErr != nil {
			return
		}
		for _, n := range []string{"fdkinds", "fdedge"} {
			out, err := exec.Command("gcc", "-O1", "-Wall", "-o", filepath.Join(buildDir, n), filepath.Join("testdata", n+".c")).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("gcc %s: %v\n%s", n, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		if _, err := exec.LookPath("gcc"); err != nil {
			t.Skip("gcc not installed")
		}
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, name)
}

func TestMain(m *testing.M) {
	// go test may hand the test binary fds without FD_CLOEXEC (fd 251...):
	// children must not inherit them, or they look like pipes to outside.
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil && n > 2 {
				unix.FcntlInt(uintptr(n), unix.F_SETFD, unix.FD_CLOEXEC)
			}
		}
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// child is a started helper and the "NAME FD" lines it printed.
type child struct {
	cmd *exec.Cmd
	fds map[string]int
}

func (c *child) kill() {
	if c.cmd.Process != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

// waitStopped waits until pid is in stopped state (T).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil {
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 && s[i+2] == 'T' {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d did not stop", pid)
}

// addAll dumps every fd of pid, in fd order.
func addAll(t *testing.T, d *Dumper, pid int) []FD {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []FD
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		fd, err := d.Add(pid, n)
		if err != nil {
			t.Fatalf("Add(%d, %d): %v", pid, n, err)
		}
		fds = append(fds, fd)
	}
	return fds
}

type fakeInjector struct {
	mem   []byte
	calls [][]uint64
}

func (f *fakeInjector) Syscall(nr uintptr, args ...uint64) (uint64, error) {
	c := append([]uint64{uint64(nr)}, args...)
	if nr == unix.SYS_EPOLL_CTL {
		c = append(c, uint64(binary.LittleEndian.Uint32(f.mem[0:])), binary.LittleEndian.Uint64(f.mem[4:]))
	}
	f.calls = append(f.calls, c)
	return 0, nil
}
func (f *fakeInjector) Scratch() (uint64, int) { return 0, len(f.mem) }
func (f *fakeInjector) WriteMem(addr uint64, b []byte) error {
	copy(f.mem[addr:], b)
	return nil
}
func (f *fakeInjector) ReadMem(addr uint64, b []byte) error {
	copy(b, f.mem[addr:])
	return nil
}

func TestDumpRestoreAllKinds(t *testing.T) {
	bin := helper(t, "fdkinds")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	logSock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "log.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer logSock.Close()
	cmd := exec.CommandContext(ctx, bin, dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, fds: map[string]int{}}
	defer c.kill()
	var client net.Conn
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		ln := sc.Text()
		if ln == "READY" {
			break
		}
		if ln == "ACCEPT" {
			client, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.fds["tcp_listen_port"]))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			if _, err := client.Write([]byte("hello-from-client")); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if ln == "ACCEPT2" {
			c2, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.fds["tcp_listen_port"]))
			if err != nil {
				t.Fatal(err)
			}
			c2.Write([]byte("bye"))
			c2.Close()
			continue
		}
		name, v, _ := strings.Cut(ln, " ")
		c.fds[name], _ = strconv.Atoi(v)
	}
	if client == nil {
		t.Fatalf("helper did not reach ACCEPT: %v", sc.Err())
	}
	pid := cmd.Process.Pid
	waitStopped(t, pid)
	// A connection the stopped program never accepts: dropped, with a warning.
	pending, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.fds["tcp_listen_port"]))
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	// The client reads the server's bytes only after the restore.
	time.Sleep(20 * time.Millisecond)

	if err := CheckTree([]int{pid}); err != nil {
		t.Fatalf("CheckTree: %v", err)
	}
	d := NewDumper()
	d.KeepRepair(true)
	t0 := time.Now()
	fds := addAll(t, d, pid)
	if err := d.Pair(); err != nil {
		t.Fatalf("Pair: %v", err)
	}
	t.Logf("dumped %d fds (%d descriptions) in %v", len(fds), len(d.Descs()), time.Since(t0))
	if w := d.Warnings(); len(w) != 1 || w[0] != fmt.Sprintf("process %d fd %d (tcp): 1 connections not yet accepted are dropped", pid, c.fds["tcp_listen"]) {
		t.Errorf("Warnings = %q, want the pending connection of tcp_listen", w)
	}
	raw, err := EncodeDescs(d.Descs())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// The tree is killed (its TCP socket is in repair mode: no FIN/RST).
	c.kill()
	descs, err := DecodeDescs(raw)
	if err != nil {
		t.Fatal(err)
	}
	byNum := map[int]FD{}
	for _, fd := range fds {
		byNum[fd.Num] = fd
	}
	descOf := func(name string) Desc {
		t.Helper()
		id := byNum[c.fds[name]].DescID
		for _, d := range descs {
			if d.ID == id {
				return d
			}
		}
		t.Fatalf("%s: no desc", name)
		return Desc{}
	}
	if byNum[c.fds["pipe_r"]].DescID != byNum[c.fds["pipe_r_dup"]].DescID {
		t.Errorf("dup'ed pipe end is not one description")
	}
	if !byNum[c.fds["append"]].CloExec || byNum[c.fds["file"]].CloExec {
		t.Errorf("CloExec not recorded: %+v %+v", byNum[c.fds["append"]], byNum[c.fds["file"]])
	}
	for _, fd := range []int{1, 2} {
		if k := descs[byNum[fd].DescID-1].Kind; k != KindExternal {
			t.Errorf("fd %d kind %s, want external", fd, k)
		}
	}

	stdoutR, stdoutW, _ := os.Pipe()
	defer stdoutR.Close()
	defer stdoutW.Close()
	r := NewRestorer(descs, RestoreEnv{Stdin: os.Stdin, Stdout: stdoutW, Stderr: os.Stderr})
	defer r.Close()
	file := func(name string) *os.File {
		t.Helper()
		f, err := r.File(byNum[c.fds[name]].DescID)
		if err != nil {
			t.Fatalf("File(%s): %v", name, err)
		}
		return f
	}
	t0 = time.Now()
	for _, fd := range fds {
		if _, err := r.File(fd.DescID); err != nil {
			t.Errorf("File(fd %d, %s): %v", fd.Num, descs[fd.DescID-1].Kind, err)
		}
	}
	t.Logf("restored them in %v", time.Since(t0))
	if f, _ := r.File(byNum[1].DescID); f != stdoutW {
		t.Errorf("external fd 1 not restored as the restorer's stdout")
	}

	t.Run("file", func(t *testing.T) {
		f := file("file")
		buf := make([]byte, 16)
		n, _ := f.Read(buf)
		if string(buf[:n]) != " world" {
			t.Errorf("read after restored offset: %q", buf[:n])
		}
		fl, _ := unix.FcntlInt(file("append").Fd(), unix.F_GETFL, 0)
		if fl&unix.O_APPEND == 0 || fl&unix.O_ACCMODE != unix.O_WRONLY {
			t.Errorf("append flags %#o", fl)
		}
		nf, _ := unix.FcntlInt(file("devnull").Fd(), unix.F_GETFL, 0)
		if p, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", file("devnull").Fd())); p != "/dev/null" || nf&unix.O_ACCMODE != unix.O_WRONLY {
			t.Errorf("devnull: %s %#o", p, nf)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		f := file("deleted")
		var st unix.Stat_t
		unix.Fstat(int(f.Fd()), &st)
		if st.Nlink != 0 {
			t.Errorf("restored deleted file has %d links", st.Nlink)
		}
		if _, err := os.Stat(filepath.Join(dir, "del.txt")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("deleted file reappeared: %v", err)
		}
		pos, _ := f.Seek(0, 1)
		buf := make([]byte, 32)
		n, _ := f.ReadAt(buf, 0)
		if pos != 3 || string(buf[:n]) != "secret-content" {
			t.Errorf("pos %d content %q", pos, buf[:n])
		}
	})
	t.Run("pipe", func(t *testing.T) {
		if _, err := file("pipe_w").Write([]byte("+more")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _ := file("pipe_r").Read(buf)
		if string(buf[:n]) != "pipedata+more" {
			t.Errorf("pipe data %q", buf[:n])
		}
		unix.SetNonblock(int(file("fifo_r").Fd()), true)
		n, _ = unix.Read(int(file("fifo_r").Fd()), buf)
		if n < 0 || string(buf[:max(n, 0)]) != "fifodata" {
			t.Errorf("fifo data %q", buf[:max(n, 0)])
		}
	})
	t.Run("unix", func(t *testing.T) {
		if v, err := unix.GetsockoptInt(int(file("stream_b").Fd()), unix.SOL_SOCKET, unix.SO_PEEK_OFF); v != 1 {
			t.Errorf("SO_PEEK_OFF %d %v, want the program's 1", v, err)
		}
		buf := make([]byte, 64)
		for _, c := range []struct{ name, want string }{{"stream_b", "to-b"}, {"stream_a", "to-a"}, {"dgram_b", "d1"}, {"dgram_b", "dg2"}, {"seq_b", "s1"}} {
			n, err := unix.Read(int(file(c.name).Fd()), buf)
			if err != nil || string(buf[:n]) != c.want {
				t.Errorf("%s: read %q %v, want %q", c.name, buf[:max(n, 0)], err, c.want)
			}
		}
		if n, err := unix.Read(int(file("widowed").Fd()), buf); err != nil || string(buf[:n]) != "last" {
			t.Errorf("widowed socket read %q %v, want last", buf[:max(n, 0)], err)
		}
		if n, err := unix.Read(int(file("widowed").Fd()), buf); n != 0 || err != nil {
			t.Errorf("widowed socket second read %d %v, want end of file", n, err)
		}
		if _, err := file("stream_a").Write([]byte("x")); err != nil {
			t.Errorf("pair not connected: %v", err)
		}
		conn, err := net.Dial("unix", filepath.Join(dir, "sock"))
		if err != nil {
			t.Errorf("connect to restored unix listener: %v", err)
		} else {
			conn.Close()
		}
		if s := descOf("unix_listen").Sock; s.Backlog != 7 {
			t.Errorf("unix backlog %d, want 7", s.Backlog)
		}
	})
	t.Run("eventfd-timerfd-signalfd", func(t *testing.T) {
		var b [8]byte
		if _, err := file("eventfd").Read(b[:]); err != nil || binary.NativeEndian.Uint64(b[:]) != 7 {
			t.Errorf("eventfd count %d %v", binary.NativeEndian.Uint64(b[:]), err)
		}
		var its unix.ItimerSpec
		if err := unix.TimerfdGettime(int(file("timerfd").Fd()), &its); err != nil {
			t.Fatal(err)
		}
		if its.Value.Sec < 50 || its.Value.Sec > 100 || its.Interval.Sec != 10 {
			t.Errorf("timerfd %+v", its)
		}
		fi, _ := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", file("signalfd").Fd()))
		want := uint64(1<<(unix.SIGUSR1-1) | 1<<(unix.SIGWINCH-1))
		if !strings.Contains(string(fi), fmt.Sprintf("sigmask:\t%016x", want)) {
			t.Errorf("signalfd fdinfo %q, want mask %016x", fi, want)
		}
	})
	t.Run("memfd", func(t *testing.T) {
		f := file("memfd")
		if p, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); p != "/memfd:mymem (deleted)" {
			t.Errorf("memfd name %q", p)
		}
		pos, _ := f.Seek(0, 1)
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		seals, _ := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
		if pos != 2 || string(b[:n]) != "memfd-content" || seals != unix.F_SEAL_SHRINK {
			t.Errorf("memfd pos %d content %q seals %#x", pos, b[:n], seals)
		}
	})
	t.Run("timerfd-ticks", func(t *testing.T) {
		if tk := descOf("timerfd_expired").Timerfd.Ticks; tk != 1 {
			t.Errorf("dumped ticks %d, want 1", tk)
		}
		var b [8]byte
		if _, err := file("timerfd_expired").Read(b[:]); err != nil || binary.NativeEndian.Uint64(b[:]) != 1 {
			t.Errorf("restored expirations %d %v, want 1", binary.NativeEndian.Uint64(b[:]), err)
		}
	})
	t.Run("timerfd-periodic-expired", func(t *testing.T) {
		st := descOf("timerfd_periodic_expired").Timerfd
		if st.Ticks != 1 || st.IntervNs != 1e9 {
			t.Errorf("dumped %+v, want 1 tick, 1 s interval", st)
		}
		f := file("timerfd_periodic_expired")
		var its unix.ItimerSpec
		if err := unix.TimerfdGettime(int(f.Fd()), &its); err != nil || its.Interval.Sec != 1 || its.Value.Nsec == 0 && its.Value.Sec == 0 {
			t.Errorf("restored timer %+v %v, want armed with 1 s interval", its, err)
		}
		var b [8]byte
		if _, err := f.Read(b[:]); err != nil || binary.NativeEndian.Uint64(b[:]) < 1 {
			t.Errorf("restored expirations %d %v, want >= 1", binary.NativeEndian.Uint64(b[:]), err)
		}
	})
	t.Run("unix-dgram-bound-connected", func(t *testing.T) {
		b := make([]byte, 16)
		n, err := unix.Read(int(file("dgram_bound_conn").Fd()), b)
		if err != nil || string(b[:n]) != "q1" {
			t.Errorf("queued datagram %q %v, want q1", b[:max(n, 0)], err)
		}
		pa, _ := unix.Getpeername(int(file("dgram_bound_conn").Fd()))
		if sockaddrString(pa) != filepath.Join(dir, "log.sock") {
			t.Errorf("peer %v", pa)
		}
	})
	t.Run("unix-dgram-outside", func(t *testing.T) {
		if _, err := file("log").Write([]byte("log-line")); err != nil {
			t.Fatalf("write to reconnected dgram socket: %v", err)
		}
		logSock.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 64)
		n, err := logSock.Read(b)
		if err != nil || string(b[:n]) != "log-line" {
			t.Errorf("log socket got %q %v", b[:max(n, 0)], err)
		}
	})
	t.Run("inotify", func(t *testing.T) {
		fi, _ := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", file("inotify").Fd()))
		if !strings.Contains(string(fi), fmt.Sprintf("wd:%x ", c.fds["inotify_wd"])) || strings.Count(string(fi), "inotify wd:") != 1 {
			t.Errorf("inotify fdinfo %q, want one watch wd %d", fi, c.fds["inotify_wd"])
		}
		w := descOf("inotify").Inotify.Watches
		if len(w) != 1 || w[0].Path != filepath.Join(dir, "f.txt") {
			t.Errorf("watches %+v", w)
		}
	})
	t.Run("epoll", func(t *testing.T) {
		inj := &fakeInjector{mem: make([]byte, 4096)}
		if err := r.Finish(pid, fds, inj); err != nil {
			t.Fatal(err)
		}
		want := [][]uint64{
			{unix.SYS_EPOLL_CTL, uint64(c.fds["epoll"]), unix.EPOLL_CTL_ADD, uint64(c.fds["pipe_r"]), 0, unix.EPOLLIN | unix.EPOLLET | unix.EPOLLERR | unix.EPOLLHUP, 42},
			{unix.SYS_EPOLL_CTL, uint64(c.fds["epoll"]), unix.EPOLL_CTL_ADD, uint64(c.fds["eventfd"]), 0, unix.EPOLLIN | unix.EPOLLERR | unix.EPOLLHUP, 0x1234},
		}
		if fmt.Sprint(inj.calls) != fmt.Sprint(want) {
			t.Errorf("Finish calls %v, want %v", inj.calls, want)
		}
		if err := r.Pending(); err != nil {
			t.Error(err)
		}
	})
	t.Run("tcp6", func(t *testing.T) {
		if _, ok := c.fds["tcp6_listen"]; !ok {
			t.Skip("no IPv6 loopback on this host")
		}
		f := file("tcp6_listen")
		la, _ := unix.Getsockname(int(f.Fd()))
		v6, _ := unix.GetsockoptInt(int(f.Fd()), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if sockaddrString(la) != descOf("tcp6_listen").Sock.Local || v6 != 1 {
			t.Errorf("tcp6 listener %v v6only %d, want %s v6only 1", la, v6, descOf("tcp6_listen").Sock.Local)
		}
		conn, err := net.Dial("tcp6", sockaddrString(la))
		if err != nil {
			t.Errorf("connect to restored IPv6 listener: %v", err)
		} else {
			conn.Close()
		}
	})
	t.Run("udp", func(t *testing.T) {
		s := descOf("udp").Sock
		la, _ := unix.Getsockname(int(file("udp").Fd()))
		pa, _ := unix.Getpeername(int(file("udp").Fd()))
		if sockaddrString(la) != s.Local || sockaddrString(pa) != "127.0.0.1:9" {
			t.Errorf("udp %v %v, want %s -> 127.0.0.1:9", la, pa, s.Local)
		}
	})
	t.Run("tcp-close-wait", func(t *testing.T) {
		if st := descOf("tcp_closewait").Sock.State; st != tcpCloseWait {
			t.Fatalf("state %d, want CLOSE_WAIT", st)
		}
		fd := int(file("tcp_closewait").Fd())
		unix.SetNonblock(fd, false)
		buf := make([]byte, 16)
		n, err := unix.Read(fd, buf)
		if err != nil || string(buf[:n]) != "bye" {
			t.Fatalf("read %q %v, want bye", buf[:max(n, 0)], err)
		}
		if n, err := unix.Read(fd, buf); n != 0 || err != nil {
			t.Errorf("read after queue = %d %v, want end of file", n, err)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		lc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.fds["tcp_listen_port"]))
		if err != nil {
			t.Fatalf("connect to restored listener: %v", err)
		}
		lc.Close()
		if b := descOf("tcp_listen").Sock.Backlog; b != 9 {
			t.Errorf("tcp backlog %d, want 9", b)
		}
		srv := file("tcp_conn")
		nd, _ := unix.GetsockoptInt(int(srv.Fd()), unix.SOL_TCP, unix.TCP_NODELAY)
		if nd == 0 {
			t.Errorf("TCP_NODELAY lost")
		}
		buf := make([]byte, 64)
		n, err := unix.Read(int(srv.Fd()), buf)
		if err != nil || string(buf[:n]) != "hello-from-client" {
			t.Errorf("restored server read %q %v", buf[:max(n, 0)], err)
		}
		if _, err := srv.Write([]byte("+pong")); err != nil {
			t.Fatal(err)
		}
		client.SetDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, 0, 64)
		for len(got) < len("hi-from-server+pong") {
			n, err := client.Read(buf)
			if err != nil {
				t.Fatalf("client read after %q: %v", got, err)
			}
			got = append(got, buf[:n]...)
		}
		if string(got) != "hi-from-server+pong" {
			t.Errorf("client got %q", got)
		}
		if _, err := client.Write([]byte("again")); err != nil {
			t.Fatal(err)
		}
		unix.SetNonblock(int(srv.Fd()), false)
		n, err = unix.Read(int(srv.Fd()), buf)
		if err != nil || !bytes.Equal(buf[:n], []byte("again")) {
			t.Errorf("server read %q %v", buf[:max(n, 0)], err)
		}
	})
}
