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
func TestLockDropsAndUnlockRestores(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for iptables")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables not installed")
	}
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

	b := make([]byte, 8)
	rand.Read(b)
	tag := "test-" + hex.EncodeToString(b)
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
	if err := Unlock(tag); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rules(t), commentPrefix+tag) {
		t.Fatalf("rule tagged %s left after Unlock", tag)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 4)
	if _, err := server.Read(got); err != nil || string(got) != "ping" {
		t.Fatalf("after Unlock: %q %v (the retransmission should arrive)", got, err)
	}
	if err := Unlock(tag); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
}
