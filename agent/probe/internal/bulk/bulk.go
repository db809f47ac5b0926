// Package bulk is the Mux shared by the raw-socket probe kinds (ICMP echo
// and TCP SYN: the engines icmp/bulk-raw and tcp/syn-raw). It exists
// because what makes a prober scale is the same for every kind: one socket
// per address family for every task, probe identity encoded in the packet
// (a slot number plus a keyed cookie) instead of a socket or goroutine per
// probe, batched system calls, kernel receive timestamps, token-bucket
// pacing in small bursts, and an in-flight table whose size bounds memory.
//
// A kind supplies an Encode function (the probe packet for a slot) and one
// Decode function per receive socket (packet -> Match). The Mux owns the
// slots, deadlines, retries, pacing and counters. It never starts a
// goroutine per probe: one sender (or Config.Senders), one reader per
// socket and one timer loop.
package bulk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ErrClosed is returned for probes submitted to, or pending in, a closed
// Mux (the text names the engine, as results report it).
var ErrClosed = errors.New("bulk engine closed")

// Limiter paces probe packets (the agent's guard); Wait is called once per
// packet on top of the Mux's own rate.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Conn is the socket seam: rawsock.Conn in production, a fake in tests.
type Conn interface {
	ReadBatch(ms []rawsock.Message) (int, error)
	WriteBatch(ms []rawsock.Message) (int, error)
	Close() error
}

// Verdict is what a Decode function made of a packet.
type Verdict uint8

// Decode verdicts. Everything but Ours is counted as ignored.
const (
	Ours      Verdict = iota // a reply or error that names one of our slots
	Malformed                // truncated or inconsistent
	Foreign                  // well formed but not a probe of ours
)

// Match is a decoded answer.
type Match struct {
	Slot uint32
	// Dst is the address the probe was sent to: the reply's source, or the
	// destination quoted in an ICMP error. Port is the probe's destination
	// port (TCP), 0 otherwise.
	Dst  netip.Addr
	Port uint16
	// Cookie holds the probe cookie as carried by the answer; CookieMask
	// says which bits it carried (0 when an ICMP error quoted too little).
	Cookie, CookieMask uint64
	Outcome            vantagev1.Outcome
	Code               uint32 // ICMP code for UNREACHABLE
	Note               string // constant text for ProbeResult.error, mx.g. time exceeded
	From               netip.Addr
	TTL                int
}

// Receiver is one receive socket and its parser.
type Receiver struct {
	Conn   Conn
	Decode func(pkt []byte, from netip.Addr, hopLimit int, m *Match) Verdict
}

// Job is one task in the Mux.
type Job struct {
	Addr         netip.Addr
	Port         uint16
	PayloadBytes int
	Timeout      time.Duration
	Retries      int

	res      *vantagev1.ProbeResult
	done     func(*vantagev1.ProbeResult)
	lastSent time.Time
	sent     timestamppb.Timestamp // res.SentAt, allocated with the job
}

// sentAt sets the job's own Timestamp to t and returns it.
func (j *Job) sentAt(t time.Time) *timestamppb.Timestamp {
	j.sent.Seconds, j.sent.Nanos = t.Unix(), int32(t.Nanosecond())
	return &j.sent
}

// Config describes a kind to the core.
type Config struct {
	// EngineName is the name results report in ProbeResult.engine.
	EngineName string
	Kind       vantagev1.ProbeKind
	// Send4 and Send6 carry probes; nil means that family is unsupported.
	Send4, Send6 Conn
	// Senders is how many send loops run side by side, each with its own
	// sockets from OpenSend (the first uses Send4 and Send6); 0 means 1.
	// On a sweep the kernel does the routing of each packet (and, on a
	// local lab, all of its forwarding) in the sender's system call, so
	// a second sender uses a second core.
	Senders  int
	OpenSend func(v6 bool) (Conn, error)
	Recv     []Receiver
	// Encode writes j's probe for slot (with its cookie) into b.
	Encode func(b []byte, j *Job, slot uint32, cookie uint64) (int, error)
	// Slots bounds probes in flight (and so memory); at most MaxSlots.
	Slots, MaxSlots int
	// Rate is the Mux's own packets per second; 0 means unlimited.
	Rate float64
	// Limiter, when set, is waited on once per packet as well.
	Limiter Limiter
	// MinGap is the per-target budget: retries of one task are at least
	// this far apart (they are always at least the timeout apart).
	MinGap time.Duration
	Logger *slog.Logger
}

// Stats are the Mux's counters since it started.
type Stats struct {
	Sent, Answered, TimedOut          uint64
	Malformed, Foreign, Spoofed, Late uint64
}

// Ignored is the total of received packets the Mux could not use.
func (s Stats) Ignored() uint64 { return s.Malformed + s.Foreign + s.Spoofed + s.Late }

const (
	batchSize = 32  // packets per sendmmsg
	rxBatch   = 128 // packets per recvmmsg
	rxBufSize = 576 // enough for an ICMP error's quoted headers
	txBufSize = 1500
)

type slot struct {
	job    *Job
	cookie uint64
	sent   time.Time
	busy   bool
}

// Mux multiplexes every probe of one kind over shared raw sockets: each
// probe in flight holds a slot of its table, named in the packet with a
// keyed cookie, so that any answer finds its probe without a socket or a
// goroutine per probe. It is safe for concurrent use.
type Mux struct {
	cfg   Config
	key   rawsock.CookieKey
	kick  chan struct{} // work was queued, a slot was freed or a retry queued
	space chan struct{} // the queue has room again
	tmo   chan struct{} // an earlier deadline was pushed
	lim   *rate.Limiter
	burst int
	stop  context.CancelFunc
	eg    *errgroup.Group
	sends [][2]Conn // per send loop: IPv4 and IPv6 sockets
	epoch time.Time // of mono

	mu      sync.Mutex
	queue   jobRing // submitted, not yet given a slot
	waiters int     // submitters waiting for room in queue
	slots   []slot
	free    []uint32
	dl      deadlines
	retry   []*Job
	ctr     uint64
	closed  bool

	sent, answered, timedOut          atomic.Uint64
	malformed, foreign, spoofed, late atomic.Uint64
	inflight                          atomic.Int64 // busy slots
}

// New starts a Mux; Close stops it.
func New(cfg Config) (*Mux, error) {
	if cfg.Send4 == nil && cfg.Send6 == nil {
		return nil, fmt.Errorf("bulk %s: no send socket", cfg.EngineName)
	}
	if cfg.MaxSlots <= 0 {
		cfg.MaxSlots = 1 << 16
	}
	if cfg.Slots <= 0 || cfg.Slots > cfg.MaxSlots {
		cfg.Slots = cfg.MaxSlots
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mx := &Mux{
		cfg:   cfg,
		key:   rawsock.NewCookieKey(),
		epoch: time.Now(),
		kick:  make(chan struct{}, 1),
		space: make(chan struct{}, 1),
		tmo:   make(chan struct{}, 1),
		slots: make([]slot, cfg.Slots),
		free:  make([]uint32, cfg.Slots),
		burst: batchSize,
	}
	for i := range mx.free {
		mx.free[i] = uint32(len(mx.free) - 1 - i) // slot 0 first
	}
	if cfg.Rate > 0 {
		// Small bursts: about a millisecond's worth per write, at least one
		// packet. The bucket holds up to 5 ms, so that a sleep that
		// overshoots (timers are coarse on a busy host) is made up for
		// instead of lowering the rate.
		mx.burst = min(max(int(cfg.Rate/1000), 1), batchSize)
		mx.lim = rate.NewLimiter(rate.Limit(cfg.Rate), min(max(mx.burst, int(cfg.Rate/200)), 4096))
	}
	mx.sends = [][2]Conn{{cfg.Send4, cfg.Send6}}
	for len(mx.sends) < cfg.Senders && cfg.OpenSend != nil {
		var more [2]Conn
		var err error
		for fi, primary := range mx.sends[0] {
			if primary != nil && err == nil {
				more[fi], err = cfg.OpenSend(fi == 1)
			}
		}
		if err != nil {
			for _, c := range more {
				if c != nil {
					_ = c.Close()
				}
			}
			cfg.Logger.Info("bulk engine: fewer senders", slog.String("engine", cfg.EngineName), slog.Int("senders", len(mx.sends)), slog.Any("error", err))
			break
		}
		mx.sends = append(mx.sends, more)
	}
	ctx, stop := context.WithCancel(context.Background())
	mx.stop = stop
	mx.eg, ctx = errgroup.WithContext(ctx)
	for _, conns := range mx.sends {
		mx.eg.Go(func() error { return mx.sendLoop(ctx, conns) })
	}
	mx.eg.Go(func() error { return mx.timerLoop(ctx) })
	for _, r := range cfg.Recv {
		mx.eg.Go(func() error { return mx.readLoop(ctx, r) })
	}
	return mx, nil
}

// CookieKey is the Mux's cookie key (for tests that forge answers).
func (mx *Mux) CookieKey() rawsock.CookieKey { return mx.key }

// Supports reports whether the Mux can send to addr's family.
func (mx *Mux) Supports(addr netip.Addr) bool {
	if addr.Unmap().Is4() {
		return mx.cfg.Send4 != nil
	}
	return mx.cfg.Send6 != nil
}

// Stats returns the counters.
func (mx *Mux) Stats() Stats {
	return Stats{
		Sent: mx.sent.Load(), Answered: mx.answered.Load(), TimedOut: mx.timedOut.Load(),
		Malformed: mx.malformed.Load(), Foreign: mx.foreign.Load(), Spoofed: mx.spoofed.Load(), Late: mx.late.Load(),
	}
}

// Close stops the loops, closes the sockets and fails every pending job.
func (mx *Mux) Close() error {
	mx.mu.Lock()
	if mx.closed {
		mx.mu.Unlock()
		return nil
	}
	mx.closed = true
	mx.mu.Unlock()
	mx.stop()
	for _, conns := range mx.sends {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}
	for _, r := range mx.cfg.Recv {
		_ = r.Conn.Close()
	}
	err := mx.eg.Wait()
	// Fail what is left: in flight, waiting for a retry, or queued.
	mx.mu.Lock()
	var left []*Job
	for i := range mx.slots {
		if s := &mx.slots[i]; s.busy {
			left = append(left, s.job)
			*s = slot{}
		}
	}
	left = append(left, mx.retry...)
	mx.retry = nil
	for j := mx.queue.pop(); j != nil; j = mx.queue.pop() {
		left = append(left, j)
	}
	mx.mu.Unlock()
	signal(mx.space) // submitters waiting for room see closed
	for _, j := range left {
		mx.finishErr(j, ErrClosed)
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// NewJob prepares a job; done receives its result exactly once.
func (mx *Mux) NewJob(res *vantagev1.ProbeResult, addr netip.Addr, done func(*vantagev1.ProbeResult)) *Job {
	res.Engine = mx.cfg.EngineName
	res.Kind = mx.cfg.Kind
	return &Job{Addr: addr.Unmap(), res: res, done: done}
}

// SetDone sets the function that receives j's result exactly once.
func (j *Job) SetDone(done func(*vantagev1.ProbeResult)) { j.done = done }

func (mx *Mux) finishErr(j *Job, err error) {
	j.res.Outcome = vantagev1.Outcome_OUTCOME_ERROR
	if j.res.Error != "" {
		j.res.Error = err.Error() + "; " + j.res.Error
	} else {
		j.res.Error = err.Error()
	}
	j.done(j.res)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
