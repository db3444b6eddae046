// Package netlock keeps the established TCP connections of a checkpointed
// tree quiet between the kill and the restore.
//
// Once the dumped tree is killed its connections have no socket on this
// host: a peer's data or even a delayed ACK arriving in that gap draws a
// reset, and the connection the restore is about to bring back is lost.
// Lock drops every inbound packet of the given connections with one
// iptables rule each (in INPUT, tagged with a comment naming the lock), the
// way CRIU's network lock does; Unlock removes the rules of a tag once the
// restored sockets exist. The peer simply retransmits. A lock whose image is
// never restored stays until removed: `iptables -S INPUT | grep ftl-lock`.
package netlock

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
)

// ErrIptables wraps a failing iptables command.
var ErrIptables = errors.New("iptables")

// Conn is one TCP connection as seen from the tree: Local is the tree's
// end, Peer the other.
type Conn struct {
	Local, Peer netip.AddrPort
}

const commentPrefix = "ftl-lock:"

// Lock installs the rules for conns under tag. On error, rules already
// added are removed again.
func Lock(tag string, conns []Conn) error {
	for _, c := range conns {
		args := append([]string{"-w", "5", "-I", "INPUT"}, ruleSpec(tag, c)...)
		if err := run(cmdFor(c.Local.Addr()), args...); err != nil {
			Unlock(tag)
			return err
		}
	}
	return nil
}

// Unlock removes every rule of tag (IPv4 and IPv6); a tag with no rules is
// not an error.
func Unlock(tag string) error {
	var errs []error
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(cmd); err != nil {
			continue
		}
		out, err := exec.Command(cmd, "-w", "5", "-S", "INPUT").Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s -S INPUT: %w", ErrIptables, cmd, err))
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, commentPrefix+tag+" ") && !strings.HasSuffix(line, commentPrefix+tag) &&
				!strings.Contains(line, `"`+commentPrefix+tag+`"`) {
				continue
			}
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "-A" {
				continue
			}
			f[0] = "-D"
			for i := range f {
				f[i] = strings.Trim(f[i], `"`)
			}
			if err := run(cmd, append([]string{"-w", "5"}, f...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func ruleSpec(tag string, c Conn) []string {
	return []string{"-p", "tcp",
		"-s", c.Peer.Addr().String(), "--sport", strconv.Itoa(int(c.Peer.Port())),
		"-d", c.Local.Addr().String(), "--dport", strconv.Itoa(int(c.Local.Port())),
		"-m", "comment", "--comment", commentPrefix + tag, "-j", "DROP"}
}

func cmdFor(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "iptables"
	}
	return "ip6tables"
}

func run(cmd string, args ...string) error {
	out, err := exec.Command(cmd, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s %s: %w: %s", ErrIptables, cmd, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
