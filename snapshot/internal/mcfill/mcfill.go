// Package mcfill starts a memcached holding a given amount of known values,
// for the checkpoint benchmarks of both engines (snapshot and
// snapshot/criu), and reads a sample of them back after a restore.
//
// Invariants: the server listens on a free loopback port, runs in its own
// session (no shared job control with the benchmark), and inherits no fd
// but its stdio; values are a pure function of the key number, half
// pseudo-random and half text, so images compress about 2:1 like real data.
package mcfill

import (
	"bufio"
	"bytes"
	"encoding/binary"
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

// ValueSize is the size of every value.
const ValueSize = 4000

// Server is one filled memcached.
type Server struct {
	Cmd  *exec.Cmd
	Port int
	Keys int
}

// Value is the value stored under key number i.
func Value(i int) []byte {
	v := make([]byte, ValueSize)
	x := uint64(i)*2654435761 + 1
	for j := 0; j < ValueSize/2; j += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(v[j:], x)
	}
	for j := ValueSize / 2; j < ValueSize; j++ {
		v[j] = "the quick brown fox jumps over the lazy dog "[j%44]
	}
	return v
}

// Start starts memcached -t 4 and stores about mib MiB of values
// (pipelined, noreply). The caller kills and reaps Cmd.
func Start(tb testing.TB, mib int) *Server {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// An fd the benchmark inherited without CLOEXEC would reach memcached
	// as a pipe to outside its tree, which a dump refuses.
	unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	cmd := exec.Command("memcached", "-u", "root", "-t", "4", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mib*5/4+64))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	s := &Server{Cmd: cmd, Port: port, Keys: mib << 20 / (ValueSize + 100)}
	var c net.Conn
	for i := 0; i < 200; i++ {
		if c, err = net.Dial("tcp", s.addr()); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		unix.Kill(cmd.Process.Pid, unix.SIGKILL)
		cmd.Wait()
		tb.Fatalf("memcached does not answer: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	w := bufio.NewWriterSize(c, 1<<20)
	for i := 0; i < s.Keys; i++ {
		fmt.Fprintf(w, "set k%d 0 0 %d noreply\r\n", i, ValueSize)
		w.Write(Value(i))
		w.WriteString("\r\n")
	}
	w.WriteString("version\r\n")
	w.Flush()
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(line, "VERSION") {
		tb.Fatalf("fill memcached: %q %v", line, err)
	}
	return s
}

func (s *Server) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Check reads back every 997th key (after a restore).
func (s *Server) Check(tb testing.TB) {
	tb.Helper()
	c, err := net.Dial("tcp", s.addr())
	if err != nil {
		tb.Fatalf("restored memcached: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	for i := 0; i < s.Keys; i += 997 {
		fmt.Fprintf(c, "get k%d\r\n", i)
		head, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(head, "VALUE ") {
			tb.Fatalf("get k%d after restore: %q %v", i, head, err)
		}
		v := make([]byte, ValueSize+len("\r\nEND\r\n"))
		if _, err := io.ReadFull(r, v); err != nil || !bytes.Equal(v[:ValueSize], Value(i)) {
			tb.Fatalf("k%d differs after restore (%v)", i, err)
		}
	}
}

// Sizes parses a comma-separated list of MiB counts from the environment
// variable env, or returns def.
func Sizes(tb testing.TB, env string, def []int) []int {
	tb.Helper()
	s := strings.TrimSpace(os.Getenv(env))
	if s == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			tb.Fatalf("%s: %v", env, err)
		}
		out = append(out, n)
	}
	return out
}
