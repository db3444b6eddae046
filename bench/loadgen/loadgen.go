// Package loadgen is ftl's key-value load generator: it drives a memcached
// server over the text protocol, or a redis server over RESP, with random
// gets and sets and records every request's latency, in nanoseconds, in an
// HDR histogram.
//
// Two disciplines are offered. Closed loop (Config.Rate == 0): each of
// Config.Connections connections sends one request, waits for its reply and
// sends the next, so the offered load adapts to the server. Open loop
// (Config.Rate > 0): requests are scheduled at a fixed aggregate rate,
// round-robin over the connections and pipelined on them, and each request's
// latency is measured from its intended send time rather than from when it
// was actually written. A server (or generator) stall therefore shows up as
// latency for every request that should have been sent during it: this is
// the correction for coordinated omission.
//
// Invariants: every Run is bounded by Config.Duration plus Config.Drain; a
// request that never got a reply by then is counted in Result.Unanswered and
// recorded with the latency it had accumulated when the run gave up, never
// dropped silently.
package loadgen

import (
	"errors"
	"fmt"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Errors returned by this package.
var (
	ErrConfig   = errors.New("loadgen: invalid configuration")
	ErrProtocol = errors.New("loadgen: unexpected reply from server")
)

// Histogram bounds: 1 ns to 100 s at 3 significant digits.
const (
	histLowest  = 1
	histHighest = int64(100 * time.Second)
	histSigFigs = 3
)

// NewHistogram returns an empty latency histogram in nanoseconds with the
// bounds every histogram of the bench shares, so that they can be merged.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histSigFigs)
}

// Protocols the generator speaks.
const (
	Memcached = "memcached" // text protocol: get / set
	Redis     = "redis"     // RESP: GET / SET
)

// Config describes one load run.
type Config struct {
	Protocol    string        // Memcached (default when empty) or Redis
	Addr        string        // host:port of the server
	Connections int           // number of TCP connections (>= 1)
	Duration    time.Duration // how long requests are issued
	Drain       time.Duration // how long to wait for outstanding replies afterwards (open loop)
	Rate        float64       // requests per second over all connections; 0 = closed loop
	Keys        int           // key space size (keys bench:0 .. bench:Keys-1)
	ValueSize   int           // bytes per value
	SetPercent  int           // percentage of requests that are sets (the rest are gets)
	Seed        int64         // seeds the per-connection key/operation choice
}

func (c Config) validate() error {
	switch {
	case c.Protocol != "" && c.Protocol != Memcached && c.Protocol != Redis:
		return fmt.Errorf("%w: unknown protocol %q", ErrConfig, c.Protocol)
	case c.Addr == "":
		return fmt.Errorf("%w: no address", ErrConfig)
	case c.Connections < 1:
		return fmt.Errorf("%w: connections %d < 1", ErrConfig, c.Connections)
	case c.Duration <= 0:
		return fmt.Errorf("%w: duration %v <= 0", ErrConfig, c.Duration)
	case c.Rate < 0:
		return fmt.Errorf("%w: rate %v < 0", ErrConfig, c.Rate)
	case c.Keys < 1:
		return fmt.Errorf("%w: keys %d < 1", ErrConfig, c.Keys)
	case c.ValueSize < 1:
		return fmt.Errorf("%w: value size %d < 1", ErrConfig, c.ValueSize)
	case c.SetPercent < 0 || c.SetPercent > 100:
		return fmt.Errorf("%w: set percent %d out of 0..100", ErrConfig, c.SetPercent)
	}
	return nil
}

// Result is what one run measured.
type Result struct {
	Latency    *hdrhistogram.Histogram // per-request latency, ns
	Requests   int64                   // requests that got a reply
	Errors     int64                   // replies that were ERROR/SERVER_ERROR/CLIENT_ERROR
	Unanswered int64                   // open loop: requests still without a reply when the run gave up
	Elapsed    time.Duration           // from the first intended send to the end of issuing
	PerConn    []int64                 // replies received on each connection (fairness)
	// Open loop only.
	IntendedRate float64                 // Config.Rate
	Scheduled    int64                   // requests the schedule called for
	SendLag      *hdrhistogram.Histogram // actual minus intended send time, ns
}

// Throughput is completed requests per second of Elapsed.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}
