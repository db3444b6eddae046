package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// conn is one connection with its own request choice; it is used by one
// writer and one reader goroutine at most.
type conn struct {
	redis bool
	c     net.Conn
	r     *bufio.Reader
	rng   *rand.Rand
	cfg   *Config
	value []byte
	req   []byte
}

func dial(cfg *Config, seed uint64) (*conn, error) {
	c, err := net.Dial("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("loadgen: dial %s: %w", cfg.Addr, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &conn{
		redis: cfg.Protocol == Redis,
		c:     c,
		r:     bufio.NewReaderSize(c, 64<<10),
		rng:   rand.New(rand.NewPCG(seed, uint64(cfg.Seed))),
		cfg:   cfg,
		value: bytes.Repeat([]byte{'x'}, cfg.ValueSize),
	}, nil
}

// nextRequest builds the next request (a get or a set of a random key) into
// c.req and returns it.
func (c *conn) nextRequest() []byte {
	key := c.rng.IntN(c.cfg.Keys)
	if c.rng.IntN(100) < c.cfg.SetPercent {
		return c.setRequest(key)
	}
	if c.redis {
		return c.redisRequest(key, false)
	}
	b := append(c.req[:0], "get bench:"...)
	b = strconv.AppendInt(b, int64(key), 10)
	b = append(b, "\r\n"...)
	c.req = b
	return b
}

func (c *conn) setRequest(key int) []byte {
	if c.redis {
		return c.redisRequest(key, true)
	}
	b := append(c.req[:0], "set bench:"...)
	b = strconv.AppendInt(b, int64(key), 10)
	b = append(b, " 0 0 "...)
	b = strconv.AppendInt(b, int64(len(c.value)), 10)
	b = append(b, "\r\n"...)
	b = append(b, c.value...)
	b = append(b, "\r\n"...)
	c.req = b
	return b
}

// redisRequest builds a RESP GET or SET of key bench:KEY.
func (c *conn) redisRequest(key int, set bool) []byte {
	var k [24]byte
	kb := strconv.AppendInt(append(k[:0], "bench:"...), int64(key), 10)
	b := c.req[:0]
	if set {
		b = append(b, "*3\r\n$3\r\nSET\r\n$"...)
	} else {
		b = append(b, "*2\r\n$3\r\nGET\r\n$"...)
	}
	b = strconv.AppendInt(b, int64(len(kb)), 10)
	b = append(b, "\r\n"...)
	b = append(b, kb...)
	b = append(b, "\r\n"...)
	if set {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(c.value)), 10)
		b = append(b, "\r\n"...)
		b = append(b, c.value...)
		b = append(b, "\r\n"...)
	}
	c.req = b
	return b
}

// readRedisReply reads one RESP reply to GET or SET: +OK, $-1 (miss),
// $N + data, or -ERR (a counted server error).
func (c *conn) readRedisReply() (serverErr bool, err error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return false, fmt.Errorf("loadgen: read reply: %w", err)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return false, fmt.Errorf("%w: %q", ErrProtocol, line)
	}
	switch line[0] {
	case '+':
		return false, nil
	case '-':
		return true, nil
	case '$':
		n, perr := strconv.Atoi(string(line[1 : len(line)-2]))
		if perr != nil || n < -1 {
			return false, fmt.Errorf("%w: bad bulk length in %q", ErrProtocol, line)
		}
		if n >= 0 {
			if _, err := c.r.Discard(n + 2); err != nil {
				return false, fmt.Errorf("loadgen: read value: %w", err)
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("%w: %q", ErrProtocol, line)
}

// readReply reads one reply to a single-key get or a set. serverErr reports
// an ERROR/CLIENT_ERROR/SERVER_ERROR reply (a complete, counted reply); err
// is an I/O or protocol failure after which the connection is unusable.
func (c *conn) readReply() (serverErr bool, err error) {
	if c.redis {
		return c.readRedisReply()
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return false, fmt.Errorf("loadgen: read reply: %w", err)
	}
	switch {
	case bytes.HasPrefix(line, []byte("VALUE ")):
		fields := bytes.Fields(line)
		if len(fields) < 4 {
			return false, fmt.Errorf("%w: %q", ErrProtocol, line)
		}
		n, perr := strconv.Atoi(string(fields[3]))
		if perr != nil || n < 0 {
			return false, fmt.Errorf("%w: bad length in %q", ErrProtocol, line)
		}
		if _, err := c.r.Discard(n + 2); err != nil {
			return false, fmt.Errorf("loadgen: read value: %w", err)
		}
		end, err := c.r.ReadSlice('\n')
		if err != nil {
			return false, fmt.Errorf("loadgen: read END: %w", err)
		}
		if !bytes.Equal(end, []byte("END\r\n")) {
			return false, fmt.Errorf("%w: %q after value", ErrProtocol, end)
		}
		return false, nil
	case bytes.Equal(line, []byte("END\r\n")),
		bytes.Equal(line, []byte("STORED\r\n")),
		bytes.Equal(line, []byte("NOT_STORED\r\n")),
		bytes.Equal(line, []byte("EXISTS\r\n")),
		bytes.Equal(line, []byte("NOT_FOUND\r\n")):
		return false, nil
	case bytes.HasPrefix(line, []byte("ERROR")),
		bytes.HasPrefix(line, []byte("CLIENT_ERROR")),
		bytes.HasPrefix(line, []byte("SERVER_ERROR")):
		return true, nil
	}
	return false, fmt.Errorf("%w: %q", ErrProtocol, line)
}

func (c *conn) close() { _ = c.c.Close() }
