package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ftlinux/ftl/tests/testenv"
)

// The foundation's end-to-end tests: real memcached, redis and nginx, each
// run natively and under `ftl run`, given the same request stream; every
// reply must be byte-for-byte the same (only nginx's Date header is masked),
// and `ftl ps --json` must count the connections and bytes the client saw.

// srvExchange is one request and how to read its reply.
type srvExchange struct {
	req  []byte
	read func(*bufio.Reader) ([]byte, error)
}

// replay sends the stream over one connection and returns the replies.
func srvReplay(t *testing.T, conn *testenv.Conn, stream []srvExchange) [][]byte {
	t.Helper()
	var out [][]byte
	for i, ex := range stream {
		rep, err := conn.Do(ex.req, ex.read)
		if err != nil {
			t.Fatalf("request %d %q: %v (reply so far %q)", i, srvClip(ex.req), err, srvClip(rep))
		}
		out = append(out, rep)
	}
	return out
}

func srvClip(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// compareReplies fails the test at the first reply that differs.
func srvCompare(t *testing.T, stream []srvExchange, native, wrapped [][]byte, mask func([]byte) []byte) {
	t.Helper()
	if len(native) != len(wrapped) {
		t.Fatalf("%d native replies, %d wrapped", len(native), len(wrapped))
	}
	for i := range native {
		a, b := native[i], wrapped[i]
		if mask != nil {
			a, b = mask(a), mask(b)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("reply to request %d %q: %s", i, srvClip(stream[i].req), testenv.FirstDiff(a, b))
		}
	}
}

// pattern returns n deterministic bytes of printable text.
func srvPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[(i*7+i/36)%36]
	}
	return b
}

// checkCounts polls `ftl ps NAME --json` until the run's established TCP
// connections on port carry exactly the bytes the clients sent and got
// (the shim counts after each call returns, so the last reply can be read
// by the client a moment before it is counted). With wholeRun, the run-wide
// byte totals (every socket of every process) must match too.
func srvCheckCounts(t *testing.T, name string, port int, conns []*testenv.Conn, wholeRun bool) testenv.PSInfo {
	t.Helper()
	var sent, got int64
	for _, c := range conns {
		sent += c.Sent
		got += c.Got
	}
	local := testenv.Addr(port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		info := testenv.PS(t, name)
		var msg string
		if info.Stats == nil {
			msg = "no stats: " + info.StatsError
		} else {
			var in, out int64
			established := 0
			for _, c := range info.Stats.Conns {
				if strings.HasPrefix(c.Kind, "tcp") && c.State == "established" && c.Local == local {
					established++
					in += c.BytesIn
					out += c.BytesOut
				}
			}
			switch {
			case established != len(conns):
				msg = fmt.Sprintf("%d established connections on %s, want %d", established, local, len(conns))
			case info.Stats.Established != len(conns):
				msg = fmt.Sprintf("ps says %d established, want %d", info.Stats.Established, len(conns))
			case in != sent || out != got:
				msg = fmt.Sprintf("connections counted in %d out %d, client sent %d got %d", in, out, sent, got)
			case wholeRun && (info.Stats.BytesIn != sent || info.Stats.BytesOut != got):
				msg = fmt.Sprintf("run counted in %d out %d, client sent %d got %d", info.Stats.BytesIn, info.Stats.BytesOut, sent, got)
			}
		}
		if msg == "" {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("ftl ps %s: %s", name, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopAndCheck stops the run and checks nothing of it is left.
func srvStopAndCheck(t *testing.T, name string, info testenv.PSInfo) {
	t.Helper()
	if r := testenv.Ftl(t, 30*time.Second, "stop", name); r.Code != 0 {
		t.Fatalf("ftl stop %s: %s", name, r)
	}
	testenv.NoLeftovers(t, name, append(info.HostPids(), info.InitPid)...)
	testenv.NamespaceGone(t, info.PidNS)
}

func srvDial(t *testing.T, port int) *testenv.Conn {
	t.Helper()
	c, err := testenv.Dial(port, 20*time.Second)
	if err != nil {
		t.Fatalf("dial %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func memcacheStream() []srvExchange {
	mc := func(s string) srvExchange { return srvExchange{[]byte(s), testenv.MemcacheReply} }
	big := srvPattern(300_000)
	return []srvExchange{
		mc("set k1 0 0 5\r\nhello\r\n"),
		mc("get k1\r\n"),
		mc("add k1 0 0 1\r\nx\r\n"),
		mc("add k2 5 0 3\r\nabc\r\n"),
		mc("replace k2 7 0 3\r\nxyz\r\n"),
		mc("append k2 0 0 2\r\n12\r\n"),
		mc("prepend k2 0 0 2\r\n00\r\n"),
		mc("gets k1 k2\r\n"),
		mc("cas k2 0 0 1 999999\r\nq\r\n"),
		mc("set n 0 0 2\r\n10\r\n"),
		mc("incr n 5\r\n"),
		mc("decr n 20\r\n"),
		mc("incr missing 1\r\n"),
		mc("delete k1\r\n"),
		mc("delete k1\r\n"),
		mc("get k1 k2 n\r\n"),
		mc("touch k2 100\r\n"),
		{append(append([]byte("set big 0 0 300000\r\n"), big...), "\r\n"...), testenv.MemcacheReply},
		mc("get big\r\n"),
		mc("bogus command\r\n"),
		mc("version\r\n"),
		mc("flush_all\r\n"),
		mc("get k2 big\r\n"),
	}
}

// TestWrappedMemcached runs memcached with 1 and 4 threads natively and under ftl.
func TestWrappedMemcached(t *testing.T) {
	for _, threads := range []int{1, 4} {
		t.Run(fmt.Sprintf("t%d", threads), func(t *testing.T) {
			launcherSetup(t)
			testenv.NeedProgram(t, "memcached")
			args := func(port int) []string {
				return []string{"memcached", "-U", "0", "-l", "127.0.0.1", "-p", strconv.Itoa(port),
					"-t", strconv.Itoa(threads), "-u", "root", "-m", "64"}
			}
			nport, wport := testenv.FreePort(t), testenv.FreePort(t)
			testenv.Native(t, args(nport)...)
			name := "mc" + strconv.Itoa(threads)
			testenv.Detach(t, name, args(wport)...)
			testenv.WaitPort(t, nport, 10*time.Second)
			testenv.WaitPort(t, wport, 10*time.Second)

			stream := memcacheStream()
			native := srvReplay(t, srvDial(t, nport), stream)
			c1 := srvDial(t, wport)
			wrapped := srvReplay(t, c1, stream)
			srvCompare(t, stream, native, wrapped, nil)

			// A second connection, while the first stays open.
			c2 := srvDial(t, wport)
			srvReplay(t, c2, memcacheStream()[:5])
			if err := c2.MemcacheSet("last", "value"); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := c2.MemcacheGet("last"); err != nil || !ok || v != "value" {
				t.Fatalf("get last = %q, %v, %v", v, ok, err)
			}
			if _, ok, err := c2.MemcacheGet("never-set"); err != nil || ok {
				t.Fatalf("get never-set: found %v, %v", ok, err)
			}
			info := srvCheckCounts(t, name, wport, []*testenv.Conn{c1, c2}, true)
			if len(info.Processes) != 1 || info.Processes[0].Pid != 2 || info.Processes[0].Comm != "memcached" {
				t.Errorf("processes %+v, want memcached as pid 2", info.Processes)
			}
			c1.Close()
			c2.Close()
			srvStopAndCheck(t, name, info)
		})
	}
}

func redisStream() []srvExchange {
	rc := func(args ...string) srvExchange {
		return srvExchange{testenv.RedisCommand(args...), testenv.RedisReply}
	}
	big := string(srvPattern(200_000))
	s := []srvExchange{
		rc("PING"),
		rc("ECHO", "hello world"),
		rc("SET", "k", "v"),
		rc("GET", "k"),
		rc("GET", "missing"),
		rc("INCR", "c"), rc("INCR", "c"), rc("INCRBY", "c", "40"),
		rc("APPEND", "k", "123"),
		rc("STRLEN", "k"),
		rc("MSET", "a", "1", "b", "2"),
		rc("MGET", "a", "b", "nope"),
		rc("RPUSH", "l", "a", "b", "c"),
		rc("LPUSH", "l", "z"),
		rc("LRANGE", "l", "0", "-1"),
		rc("LPOP", "l"),
		rc("HSET", "h", "f1", "v1", "f2", "v2"),
		rc("HGETALL", "h"),
		rc("SADD", "s", "3", "1", "2"),
		rc("SMEMBERS", "s"),
		rc("ZADD", "z", "1", "one", "2.5", "two"),
		rc("ZRANGE", "z", "0", "-1", "WITHSCORES"),
		rc("EXISTS", "k", "a", "nope"),
		rc("TYPE", "l"),
		rc("DEL", "a", "b"),
		rc("SET", "big", big),
		rc("GET", "big"),
		rc("GETRANGE", "big", "1000", "1099"),
		rc("NOSUCHCOMMAND", "x"),
		rc("GET"),
		rc("DBSIZE"),
	}
	// Pipelined: three commands in one write, three replies.
	pipe := append(append(testenv.RedisCommand("SET", "p", "1"), testenv.RedisCommand("INCR", "p")...), testenv.RedisCommand("GET", "p")...)
	s = append(s, srvExchange{pipe, func(r *bufio.Reader) ([]byte, error) {
		var out []byte
		for i := 0; i < 3; i++ {
			b, err := testenv.RedisReply(r)
			out = append(out, b...)
			if err != nil {
				return out, err
			}
		}
		return out, nil
	}})
	return append(s, rc("FLUSHALL"), rc("DBSIZE"))
}

// TestWrappedRedis runs redis-server natively and under ftl.
func TestWrappedRedis(t *testing.T) {
	launcherSetup(t)
	testenv.NeedProgram(t, "redis-server")
	args := func(port int, dir string) []string {
		return []string{"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--protected-mode", "no"}
	}
	nport, wport := testenv.FreePort(t), testenv.FreePort(t)
	testenv.Native(t, args(nport, t.TempDir())...)
	testenv.Detach(t, "redis", args(wport, t.TempDir())...)
	testenv.WaitPort(t, nport, 10*time.Second)
	testenv.WaitPort(t, wport, 10*time.Second)

	stream := redisStream()
	native := srvReplay(t, srvDial(t, nport), stream)
	c1 := srvDial(t, wport)
	wrapped := srvReplay(t, c1, stream)
	srvCompare(t, stream, native, wrapped, nil)

	if err := c1.RedisSet("last", "value"); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := c1.RedisGet("last"); err != nil || !ok || v != "value" {
		t.Fatalf("GET last = %q, %v, %v", v, ok, err)
	}
	if _, ok, err := c1.RedisGet("never-set"); err != nil || ok {
		t.Fatalf("GET never-set: found %v, %v", ok, err)
	}
	info := srvCheckCounts(t, "redis", wport, []*testenv.Conn{c1}, true)
	if len(info.Processes) == 0 || info.Processes[0].Pid != 2 || info.Processes[0].Comm != "redis-server" {
		t.Errorf("processes %+v, want redis-server as pid 2", info.Processes)
	}
	c1.Close()
	srvStopAndCheck(t, "redis", info)
}

// TestWrappedNginx runs nginx (master + 2 workers) natively and under ftl, serving
// the same files.
func TestWrappedNginx(t *testing.T) {
	launcherSetup(t)
	testenv.NeedProgram(t, "nginx")
	www := t.TempDir()
	files := map[string][]byte{
		"small.txt":  []byte("hello from nginx\n"),
		"big.bin":    srvPattern(400_000),
		"index.html": []byte("<html><body>ftl</body></html>\n"),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(www, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nport, wport := testenv.FreePort(t), testenv.FreePort(t)
	testenv.Native(t, testenv.NginxArgs(t, nport, www, "")...)
	testenv.Detach(t, "nginx", testenv.NginxArgs(t, wport, www, "")...)
	testenv.WaitPort(t, nport, 10*time.Second)
	testenv.WaitPort(t, wport, 10*time.Second)

	get := func(path string, extra ...string) srvExchange {
		req := "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + strings.Join(extra, "") + "\r\n"
		return srvExchange{[]byte(req), testenv.HTTPReply}
	}
	stream := []srvExchange{
		get("/small.txt"),
		get("/big.bin"),
		{[]byte("HEAD /big.bin HTTP/1.1\r\nHost: test\r\n\r\n"), testenv.HTTPHeadReply},
		get("/missing"),
		get("/big.bin", "Range: bytes=1000-1999\r\n"),
		get("/"),
		get("/small.txt", "Accept-Encoding: gzip\r\n"),
	}
	native := srvReplay(t, srvDial(t, nport), stream)
	c1 := srvDial(t, wport)
	wrapped := srvReplay(t, c1, stream)
	srvCompare(t, stream, native, wrapped, testenv.MaskHTTPDate)
	if !bytes.Contains(wrapped[1], files["big.bin"]) {
		t.Errorf("the wrapped nginx did not serve big.bin's %d bytes", len(files["big.bin"]))
	}

	// More connections at once, spread over the workers as nginx likes.
	conns := []*testenv.Conn{c1}
	for i := 0; i < 3; i++ {
		c := srvDial(t, wport)
		nat := srvReplay(t, srvDial(t, nport), stream[:2])
		srvCompare(t, stream[:2], nat, srvReplay(t, c, stream[:2]), testenv.MaskHTTPDate)
		conns = append(conns, c)
	}

	// The master's socketpair channels to its workers are sockets too, so
	// only the clients' connections are compared, not the run-wide totals.
	info := srvCheckCounts(t, "nginx", wport, conns, false)
	comms := map[string]int{}
	for _, p := range info.Processes {
		comms[p.Comm]++
	}
	if len(info.Processes) != 3 || info.Processes[0].Pid != 2 || comms["nginx"] != 3 {
		t.Errorf("processes %+v, want the nginx master as pid 2 and 2 workers", info.Processes)
	}
	var got int64
	for _, c := range conns {
		got += c.Got
	}
	if info.Stats != nil && info.Stats.BytesOut < got {
		t.Errorf("run-wide bytes out %d < %d the clients got", info.Stats.BytesOut, got)
	}
	for _, c := range conns {
		c.Close()
	}
	srvStopAndCheck(t, "nginx", info)
}
