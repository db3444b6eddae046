package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Conn is a client connection that counts the bytes it sent and received,
// so a test can compare them with what ftl ps reports.
type Conn struct {
	c    net.Conn
	r    *bufio.Reader
	Sent int64
	Got  int64
}

// Dial connects to 127.0.0.1:port; every read and write gets timeout.
func Dial(port int, timeout time.Duration) (*Conn, error) {
	c, err := net.DialTimeout("tcp", Addr(port), timeout)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		c.Close()
		return nil, err
	}
	cn := &Conn{c: c}
	cn.r = bufio.NewReader(countReader{cn})
	return cn, nil
}

type countReader struct{ c *Conn }

func (cr countReader) Read(p []byte) (int, error) {
	n, err := cr.c.c.Read(p)
	cr.c.Got += int64(n)
	return n, err
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Send writes raw request bytes.
func (c *Conn) Send(b []byte) error {
	n, err := c.c.Write(b)
	c.Sent += int64(n)
	return err
}

// Reader is the buffered reader of the connection's replies.
func (c *Conn) Reader() *bufio.Reader { return c.r }

// Do sends req and reads one reply with read (MemcacheReply, RedisReply,
// HTTPReply...).
func (c *Conn) Do(req []byte, read func(*bufio.Reader) ([]byte, error)) ([]byte, error) {
	if err := c.Send(req); err != nil {
		return nil, err
	}
	return read(c.r)
}

func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return line, fmt.Errorf("read line (got %q): %w", line, err)
	}
	return line, nil
}

// MemcacheReply reads one reply of the memcached text protocol: VALUE
// blocks up to END, or a single status line (STORED, NOT_FOUND, a number
// for incr/decr, ERROR, ...). It returns the reply's raw bytes.
func MemcacheReply(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		line, err := readLine(r)
		out = append(out, line...)
		if err != nil {
			return out, err
		}
		if !bytes.HasPrefix(line, []byte("VALUE ")) {
			return out, nil
		}
		f := strings.Fields(string(line))
		if len(f) < 4 {
			return out, fmt.Errorf("bad VALUE line %q", line)
		}
		n, err := strconv.Atoi(f[3])
		if err != nil || n < 0 {
			return out, fmt.Errorf("bad VALUE length in %q", line)
		}
		data := make([]byte, n+2)
		if _, err := io.ReadFull(r, data); err != nil {
			return out, fmt.Errorf("read value: %w", err)
		}
		out = append(out, data...)
	}
}

// RedisCommand encodes a command as a RESP array of bulk strings.
func RedisCommand(args ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.Bytes()
}

// RedisReply reads one RESP reply and returns its raw bytes.
func RedisReply(r *bufio.Reader) ([]byte, error) {
	line, err := readLine(r)
	if err != nil {
		return line, err
	}
	if len(line) < 3 {
		return line, fmt.Errorf("short RESP line %q", line)
	}
	body := string(line[1 : len(line)-2])
	switch line[0] {
	case '+', '-', ':', '_', ',', '#':
		return line, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return line, fmt.Errorf("bad bulk length %q", line)
		}
		if n < 0 {
			return line, nil
		}
		data := make([]byte, n+2)
		if _, err := io.ReadFull(r, data); err != nil {
			return line, fmt.Errorf("read bulk: %w", err)
		}
		return append(line, data...), nil
	case '*', '%', '~':
		n, err := strconv.Atoi(body)
		if err != nil {
			return line, fmt.Errorf("bad aggregate length %q", line)
		}
		if line[0] == '%' {
			n *= 2
		}
		out := line
		for i := 0; i < n; i++ {
			el, err := RedisReply(r)
			out = append(out, el...)
			if err != nil {
				return out, err
			}
		}
		return out, nil
	}
	return line, fmt.Errorf("unknown RESP type in %q", line)
}

// HTTPReply reads one HTTP/1.1 response (status line, headers, and a body
// of Content-Length bytes) and returns its raw bytes. Responses to HEAD carry
// no body: use HTTPHeadReply for them.
func HTTPReply(r *bufio.Reader) ([]byte, error) { return httpReply(r, true) }

// HTTPHeadReply reads the status line and headers of a response to HEAD.
func HTTPHeadReply(r *bufio.Reader) ([]byte, error) { return httpReply(r, false) }

func httpReply(r *bufio.Reader, withBody bool) ([]byte, error) {
	var out []byte
	length := -1
	for {
		line, err := readLine(r)
		out = append(out, line...)
		if err != nil {
			return out, err
		}
		if string(line) == "\r\n" {
			break
		}
		k, v, ok := strings.Cut(strings.TrimSpace(string(line)), ":")
		if ok && strings.EqualFold(k, "Content-Length") {
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return out, fmt.Errorf("bad Content-Length %q", line)
			}
		}
	}
	if !withBody || length <= 0 {
		return out, nil
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		return out, fmt.Errorf("read body: %w", err)
	}
	return append(out, body...), nil
}

// MaskHTTPDate replaces the value of the Date header, the one part of an
// nginx response that differs between two servers serving the same files.
func MaskHTTPDate(resp []byte) []byte {
	head, body, found := bytes.Cut(resp, []byte("\r\n\r\n"))
	lines := bytes.Split(head, []byte("\r\n"))
	for i, l := range lines {
		if bytes.HasPrefix(bytes.ToLower(l), []byte("date:")) {
			lines[i] = []byte("Date: <masked>")
		}
	}
	out := bytes.Join(lines, []byte("\r\n"))
	if found {
		out = append(append(out, "\r\n\r\n"...), body...)
	}
	return out
}

// ErrMismatch marks a differential comparison that failed.
var ErrMismatch = errors.New("replies differ")

// FirstDiff describes where a and b first differ, for failure messages.
func FirstDiff(a, b []byte) string {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	lo := max(0, i-40)
	return fmt.Sprintf("%v at byte %d (lengths %d, %d): %q vs %q", ErrMismatch, i, len(a), len(b),
		a[lo:min(len(a), i+40)], b[lo:min(len(b), i+40)])
}

// ErrReply marks a server reply that is not the expected success.
var ErrReply = errors.New("unexpected reply")

// MemcacheSet stores key=value (flags 0, no expiry) and expects STORED.
func (c *Conn) MemcacheSet(key, value string) error {
	rep, err := c.Do([]byte(fmt.Sprintf("set %s 0 0 %d\r\n%s\r\n", key, len(value), value)), MemcacheReply)
	if err != nil {
		return err
	}
	if string(rep) != "STORED\r\n" {
		return fmt.Errorf("set %s: %w: %q", key, ErrReply, rep)
	}
	return nil
}

// MemcacheGet fetches key; found is false when the server has no such key.
func (c *Conn) MemcacheGet(key string) (value string, found bool, err error) {
	rep, err := c.Do([]byte("get "+key+"\r\n"), MemcacheReply)
	if err != nil {
		return "", false, err
	}
	if string(rep) == "END\r\n" {
		return "", false, nil
	}
	head, rest, ok := bytes.Cut(rep, []byte("\r\n"))
	f := strings.Fields(string(head))
	if !ok || len(f) != 4 || f[0] != "VALUE" || f[1] != key || !bytes.HasSuffix(rest, []byte("\r\nEND\r\n")) {
		return "", false, fmt.Errorf("get %s: %w: %q", key, ErrReply, rep)
	}
	return string(rest[:len(rest)-len("\r\nEND\r\n")]), true, nil
}

// RedisDo sends one command and returns its raw RESP reply.
func (c *Conn) RedisDo(args ...string) ([]byte, error) {
	return c.Do(RedisCommand(args...), RedisReply)
}

// RedisSet runs SET key value and expects +OK.
func (c *Conn) RedisSet(key, value string) error {
	rep, err := c.RedisDo("SET", key, value)
	if err != nil {
		return err
	}
	if string(rep) != "+OK\r\n" {
		return fmt.Errorf("SET %s: %w: %q", key, ErrReply, rep)
	}
	return nil
}

// RedisGet runs GET key; found is false for a nil reply.
func (c *Conn) RedisGet(key string) (value string, found bool, err error) {
	rep, err := c.RedisDo("GET", key)
	if err != nil {
		return "", false, err
	}
	if string(rep) == "$-1\r\n" {
		return "", false, nil
	}
	head, rest, ok := bytes.Cut(rep, []byte("\r\n"))
	if !ok || len(head) < 2 || head[0] != '$' || !bytes.HasSuffix(rest, []byte("\r\n")) {
		return "", false, fmt.Errorf("GET %s: %w: %q", key, ErrReply, rep)
	}
	return string(rest[:len(rest)-2]), true, nil
}
