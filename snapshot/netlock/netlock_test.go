package netlock

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func rules(t *testing.T) string {
	out, err := exec.Command("iptables", "-w", "5", "-S", "INPUT").Output()
	if err != nil {
		t.Fatalf("iptables -S: %v", err)
	}
	return string(out)
}

// TestLockDropsAndUnlockRestores locks a real loopback connection: while
// locked, data from the peer does not arrive (and no reset comes back);
// after Unlock the retransmission gets through and no rule of the tag is left.
func needIptables(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for iptables")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables not installed")
	}
}

// testTag is a fresh lock tag no real image uses.
func testTag() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "test-" + hex.EncodeToString(b)
}

func TestLockDropsAndUnlockRestores(t *testing.T) {
	needIptables(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	tag := testTag()
	c := Conn{Local: netip.MustParseAddrPort(server.LocalAddr().String()), Peer: netip.MustParseAddrPort(server.RemoteAddr().String())}
	if err := Lock(tag, []Conn{c}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unlock(tag) })
	if !strings.Contains(rules(t), commentPrefix+tag) {
		t.Fatalf("no rule tagged %s after Lock:\n%s", tag, rules(t))
	}
	client.Write([]byte("ping"))
	server.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := server.Read(make([]byte, 4)); err == nil {
		t.Fatalf("read %d bytes through the lock", n)
	}
	if n, err := Installed(tag); err != nil || n != 1 {
		t.Fatalf("Installed(%s) = %d, %v; want 1 rule", tag, n, err)
	}
	if n, err := Unlock(tag); err != nil || n != 1 {
		t.Fatalf("Unlock(%s) = %d, %v; want 1 rule removed", tag, n, err)
	}
	if strings.Contains(rules(t), commentPrefix+tag) {
		t.Fatalf("rule tagged %s left after Unlock", tag)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 4)
	if _, err := server.Read(got); err != nil || string(got) != "ping" {
		t.Fatalf("after Unlock: %q %v (the retransmission should arrive)", got, err)
	}
	if n, err := Unlock(tag); err != nil || n != 0 {
		t.Errorf("second Unlock = %d, %v; want 0 removed, no error", n, err)
	}
	if n, err := Installed(tag); err != nil || n != 0 {
		t.Errorf("Installed after Unlock = %d, %v; want 0", n, err)
	}
}

// TestUnlockCountsOnlyItsTag: a tag that is a prefix of another removes
// only its own rules, and both counts are exact.
func TestUnlockCountsOnlyItsTag(t *testing.T) {
	needIptables(t)
	short := testTag()
	long := short + "0"
	// Ports 9 (discard) on a TEST-NET address: the rules match nothing real.
	conn := func(port uint16) Conn {
		return Conn{Local: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), port), Peer: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.2"), 9)}
	}
	if err := Lock(short, []Conn{conn(1001), conn(1002)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unlock(short) })
	if err := Lock(long, []Conn{conn(1003)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unlock(long) })
	if n, err := Installed(short); err != nil || n != 2 {
		t.Fatalf("Installed(%s) = %d, %v; want 2", short, n, err)
	}
	if n, err := Unlock(short); err != nil || n != 2 {
		t.Fatalf("Unlock(%s) = %d, %v; want 2 removed", short, n, err)
	}
	if n, err := Installed(long); err != nil || n != 1 {
		t.Fatalf("after unlocking %s, Installed(%s) = %d, %v; want its 1 rule left", short, long, n, err)
	}
	if n, err := Unlock(long); err != nil || n != 1 {
		t.Fatalf("Unlock(%s) = %d, %v; want 1 removed", long, n, err)
	}
}

// TestManyConnsConcurrentUnlock: 500 IPv4 rules and 20 IPv6 rules go in
// with one transaction per family; two concurrent Unlocks of the tag
// remove each rule exactly once between them (the loser of the race falls
// back to what is left), and nothing is left.
func TestManyConnsConcurrentUnlock(t *testing.T) {
	needIptables(t)
	tag := testTag()
	var conns []Conn
	for i := 0; i < 500; i++ {
		conns = append(conns, Conn{Local: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(10000+i)), Peer: netip.MustParseAddrPort("192.0.2.2:9")})
	}
	want := 500
	if _, err := exec.LookPath("ip6tables"); err == nil {
		for i := 0; i < 20; i++ {
			conns = append(conns, Conn{Local: netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), uint16(10000+i)), Peer: netip.MustParseAddrPort("[2001:db8::2]:9")})
		}
		want += 20
	}
	start := time.Now()
	if err := Lock(tag, conns); err != nil {
		t.Fatal(err)
	}
	t.Logf("Lock of %d rules: %v", want, time.Since(start))
	t.Cleanup(func() { Unlock(tag) })
	if n, err := Installed(tag); err != nil || n != want {
		t.Fatalf("Installed = %d, %v; want %d", n, err, want)
	}
	type res struct {
		n   int
		err error
	}
	out := make(chan res, 2)
	start = time.Now()
	for i := 0; i < 2; i++ {
		go func() {
			n, err := Unlock(tag)
			out <- res{n, err}
		}()
	}
	total := 0
	for i := 0; i < 2; i++ {
		r := <-out
		if r.err != nil {
			t.Errorf("concurrent Unlock: %v", r.err)
		}
		total += r.n
	}
	t.Logf("two concurrent Unlocks: %v", time.Since(start))
	if total != want {
		t.Errorf("concurrent Unlocks removed %d rules between them, want %d", total, want)
	}
	if n, err := Installed(tag); err != nil || n != 0 {
		t.Errorf("Installed after Unlock = %d, %v; want 0", n, err)
	}
}
