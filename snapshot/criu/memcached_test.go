package criu

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// mcClient speaks memcached's text protocol on one connection.
type mcClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialMC(tb testing.TB, addr string) *mcClient {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		tb.Fatalf("dial memcached %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return &mcClient{c: c, r: bufio.NewReader(c)}
}

func (m *mcClient) line() (string, error) {
	s, err := m.r.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

func (m *mcClient) set(key, val string) error {
	_ = m.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(m.c, "set %s 0 0 %d\r\n%s\r\n", key, len(val), val); err != nil {
		return err
	}
	l, err := m.line()
	if err != nil {
		return err
	}
	if l != "STORED" {
		return fmt.Errorf("set %s: %q", key, l)
	}
	return nil
}

// get returns the value of key, or ok=false on a miss.
func (m *mcClient) get(key string) (val string, ok bool, err error) {
	_ = m.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(m.c, "get %s\r\n", key); err != nil {
		return "", false, err
	}
	l, err := m.line()
	if err != nil {
		return "", false, err
	}
	if l == "END" {
		return "", false, nil
	}
	f := strings.Fields(l)
	if len(f) != 4 || f[0] != "VALUE" {
		return "", false, fmt.Errorf("get %s: %q", key, l)
	}
	n, err := strconv.Atoi(f[3])
	if err != nil {
		return "", false, fmt.Errorf("get %s: %q", key, l)
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(m.r, b); err != nil {
		return "", false, err
	}
	if l, err := m.line(); err != nil || l != "END" {
		return "", false, fmt.Errorf("get %s: trailer %q, %v", key, l, err)
	}
	return string(b[:n]), true, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestMemcachedTCPEstablished dumps memcached holding keys with a client
// connected, kills it, restores it, and checks the keys and that the very
// same client connection carries on.
func TestMemcachedTCPEstablished(t *testing.T) {
	needCRIU(t)
	mc, err := exec.LookPath("memcached")
	if err != nil {
		t.Skip("skipping: memcached not installed")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := startSession(t, mc, "-u", "root", "-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-t", "2", "-m", "64")
	var c *mcClient
	waitFor(t, "memcached to accept connections", func() bool {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	})
	c = dialMC(t, addr)
	const keys = 200
	for i := range keys {
		if err := c.set(fmt.Sprintf("k%d", i), fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i))); err != nil {
			t.Fatal(err)
		}
	}

	// CRIU keeps a killed tree's connections behind DROP rules until the
	// restore lifts them; a test that fails in between must not leave
	// them in the host's firewall.
	t.Cleanup(func() { dropLockRules(t, port) })
	img := filepath.Join(t.TempDir(), "img")
	t0 := time.Now()
	if err := Dump(ctx, DumpOptions{Pid: cmd.Process.Pid, Dir: img, TCPEstablished: true}); err != nil {
		t.Fatalf("Dump: %v", err)
	}
	dumpTook := time.Since(t0)
	st, err := ReadDumpStats(img)
	if err != nil {
		t.Fatalf("ReadDumpStats: %v", err)
	}
	reapKilled(t, cmd)
	// A request sent while memcached is dumped and gone: CRIU's network
	// lock drops it, and TCP retransmits it to the restored server.
	_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c.c, "get k7\r\n"); err != nil {
		t.Fatalf("write while memcached is down: %v", err)
	}

	// The marker carries tcp-established: the restore needs no option.
	t1 := time.Now()
	pid, err := Restore(ctx, RestoreOptions{Dir: img})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Logf("dump %v (frozen %v, %d pages), restore %v", dumpTook.Round(time.Millisecond),
		st.Frozen.Round(time.Millisecond), st.PagesWritten, time.Since(t1).Round(time.Millisecond))
	t.Cleanup(func() { killRestored(t, pid) })
	if pid != cmd.Process.Pid {
		t.Fatalf("restored pid %d; want %d", pid, cmd.Process.Pid)
	}
	if l, err := c.line(); err != nil || l != "VALUE k7 0 15" {
		t.Fatalf("reply to the request sent before the restore: %q, %v", l, err)
	}
	for _, want := range []string{"value-7-xxxxxxx", "END"} {
		if l, err := c.line(); err != nil || l != want {
			t.Fatalf("reply to the request sent before the restore: %q, %v; want %q", l, err, want)
		}
	}
	for i := range keys {
		k := fmt.Sprintf("k%d", i)
		v, ok, err := c.get(k)
		if err != nil {
			t.Fatalf("get %s on the connection opened before the dump: %v", k, err)
		}
		if want := fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i)); !ok || v != want {
			t.Fatalf("get %s = %q, %v; want %q", k, v, ok, want)
		}
	}
	if err := c.set("after", "restore"); err != nil {
		t.Fatalf("set on the old connection after restore: %v", err)
	}
	c2 := dialMC(t, addr)
	if v, ok, err := c2.get("after"); err != nil || !ok || v != "restore" {
		t.Fatalf("get after on a new connection = %q, %v, %v", v, ok, err)
	}
}

// dropLockRules deletes CRIU network-lock rules (iptables-nft, table ip
// filter) that mention port, and reports whether there were any.
func dropLockRules(t *testing.T, port int) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		return
	}
	p := strconv.Itoa(port)
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		out, err := exec.Command(nft, "-a", "list", "chain", "ip", "filter", chain).Output()
		if err != nil {
			continue // no such table or chain: nothing locked
		}
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.Contains(l, "port "+p+" ") || !strings.Contains(l, "drop") {
				continue
			}
			_, h, ok := strings.Cut(l, "# handle ")
			if !ok {
				continue
			}
			if b, err := exec.Command(nft, "delete", "rule", "ip", "filter", chain, "handle", strings.TrimSpace(h)).CombinedOutput(); err != nil {
				t.Errorf("deleting CRIU lock rule %q: %v %s", l, err, b)
				continue
			}
			if !t.Failed() {
				t.Errorf("CRIU lock rule left after a successful restore: %s", strings.TrimSpace(l))
			}
		}
	}
}
