package loadgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// maxQueue bounds the requests one open-loop connection may have in flight.
const maxQueue = 1 << 16

// Preload stores every key of the key space once, so gets hit.
func Preload(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	c, err := dial(&cfg, 0)
	if err != nil {
		return err
	}
	defer c.close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(dl)
	}
	// Pipeline in batches of 100 to keep it quick.
	const batch = 100
	for k := 0; k < cfg.Keys; k += batch {
		n := min(batch, cfg.Keys-k)
		var buf []byte
		for i := 0; i < n; i++ {
			buf = append(buf, c.setRequest(k+i)...)
		}
		if _, err := c.c.Write(buf); err != nil {
			return fmt.Errorf("loadgen: preload: %w", err)
		}
		for i := 0; i < n; i++ {
			bad, err := c.readReply()
			if err != nil {
				return fmt.Errorf("loadgen: preload: %w", err)
			}
			if bad {
				return fmt.Errorf("%w: preload set refused", ErrProtocol)
			}
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("loadgen: preload: %w", err)
		}
	}
	return nil
}

// Run drives the server as cfg says and returns what it measured. The run
// stops early, with an error, when ctx ends or a connection fails.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Drain <= 0 {
		cfg.Drain = time.Second
	}
	conns := make([]*conn, 0, cfg.Connections)
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	for i := 0; i < cfg.Connections; i++ {
		c, err := dial(&cfg, uint64(i)+1)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
	}
	// Closing the connections when ctx ends unblocks every reader and writer.
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			_ = c.c.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stop()
	var res *Result
	var err error
	if cfg.Rate > 0 {
		res, err = runOpen(&cfg, conns)
	} else {
		res, err = runClosed(&cfg, conns)
	}
	if cerr := ctx.Err(); cerr != nil {
		return nil, fmt.Errorf("loadgen: %w", cerr)
	}
	return res, err
}

// connResult is one connection's share of a run.
type connResult struct {
	hist       *hdrhistogram.Histogram
	requests   int64
	errors     int64
	unanswered int64
	err        error
}

func merge(parts []connResult) (*Result, error) {
	res := &Result{Latency: NewHistogram(), PerConn: make([]int64, len(parts))}
	var errs []error
	for i, p := range parts {
		res.PerConn[i] = p.requests
		res.Latency.Merge(p.hist)
		res.Requests += p.requests
		res.Errors += p.errors
		res.Unanswered += p.unanswered
		if p.err != nil {
			errs = append(errs, p.err)
		}
	}
	return res, errors.Join(errs...)
}

func runClosed(cfg *Config, conns []*conn) (*Result, error) {
	start := time.Now()
	end := start.Add(cfg.Duration)
	parts := make([]connResult, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := connResult{hist: NewHistogram()}
			_ = c.c.SetDeadline(end.Add(cfg.Drain))
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				if _, err := c.c.Write(c.nextRequest()); err != nil {
					p.err = fmt.Errorf("loadgen: write: %w", err)
					break
				}
				bad, err := c.readReply()
				if err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						// Stuck past the drain time: counted, not fatal.
						p.unanswered++
						_ = p.hist.RecordValue(int64(time.Since(t0)))
					} else {
						p.err = err
					}
					break
				}
				_ = p.hist.RecordValue(int64(time.Since(t0)))
				p.requests++
				if bad {
					p.errors++
				}
			}
			parts[i] = p
		}()
	}
	wg.Wait()
	res, err := merge(parts)
	res.Elapsed = min(time.Since(start), cfg.Duration)
	return res, err
}

func runOpen(cfg *Config, conns []*conn) (*Result, error) {
	base := time.Now()
	end := int64(cfg.Duration)
	giveUp := base.Add(cfg.Duration + cfg.Drain)
	interval := float64(time.Second) / cfg.Rate
	queues := make([]chan int64, len(conns))
	for i := range queues {
		want := int(cfg.Rate*cfg.Duration.Seconds()/float64(len(conns))) + 16
		queues[i] = make(chan int64, min(want, maxQueue))
	}
	parts := make([]connResult, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		_ = c.c.SetDeadline(giveUp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := connResult{hist: NewHistogram()}
			dead := false
			for intended := range queues[i] {
				if !dead {
					bad, err := c.readReply()
					if err == nil {
						_ = p.hist.RecordValue(int64(time.Since(base)) - intended)
						p.requests++
						if bad {
							p.errors++
						}
						continue
					}
					dead = true
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						p.err = err
					}
				}
				// No reply is coming: count it, with the latency it had
				// when the run gave up, so a stall is not hidden.
				p.unanswered++
				_ = p.hist.RecordValue(max(int64(time.Since(base))-intended, 1))
			}
			parts[i] = p
		}()
	}

	lag := NewHistogram()
	var scheduled int64
	var sendErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A thread of its own with no timer slack: Go's timers round
		// sub-millisecond sleeps up to about a millisecond.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		for i := int64(0); ; i++ {
			intended := int64(float64(i) * interval)
			if intended >= end {
				break
			}
			if d := intended - int64(time.Since(base)); d > 0 {
				ts := unix.NsecToTimespec(d)
				for unix.Nanosleep(&ts, &ts) == unix.EINTR {
				}
			}
			c := conns[i%int64(len(conns))]
			q := queues[i%int64(len(conns))]
			q <- intended
			scheduled++
			sent := int64(time.Since(base))
			if _, err := c.c.Write(c.nextRequest()); err != nil {
				sendErr = fmt.Errorf("loadgen: write: %w", err)
				break
			}
			_ = lag.RecordValue(max(sent-intended, 1))
		}
		for _, q := range queues {
			close(q)
		}
	}()
	<-done
	wg.Wait()
	res, err := merge(parts)
	res.Elapsed = cfg.Duration
	res.IntendedRate = cfg.Rate
	res.Scheduled = scheduled
	res.SendLag = lag
	if sendErr != nil && !errors.Is(sendErr, os.ErrDeadlineExceeded) {
		err = errors.Join(err, sendErr)
	}
	return res, err
}
