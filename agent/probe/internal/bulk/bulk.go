// Package bulk is the engine core shared by the raw-socket probe kinds
// (ICMP echo and TCP SYN). It exists because what makes a prober scale is
// the same for every kind: one socket per address family for every task,
// probe identity encoded in the packet (a slot number plus a keyed cookie)
// instead of a socket or goroutine per probe, batched system calls, kernel
// receive timestamps, token-bucket pacing in small bursts, and an in-flight
// table whose size bounds memory.
//
// A kind supplies an Encode function (the probe packet for a slot) and one
// Decode function per receive socket (packet -> Match). The core owns the
// slots, deadlines, retries, pacing and counters. It never starts a
// goroutine per probe: one sender (or Config.Senders), one reader per
// socket and one timer loop.
package bulk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
// engine.
var ErrClosed = errors.New("bulk engine closed")

// Limiter paces probe packets (the agent's guard); Wait is called once per
// packet on top of the engine's own rate.
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
	Note               string // constant text for ProbeResult.error, e.g. time exceeded
	From               netip.Addr
	TTL                int
}

// Receiver is one receive socket and its parser.
type Receiver struct {
	Conn   Conn
	Decode func(pkt []byte, from netip.Addr, hopLimit int, m *Match) Verdict
}

// Job is one task in the engine.
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
	Engine string
	Kind   vantagev1.ProbeKind
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
	// Rate is the engine's own packets per second; 0 means unlimited.
	Rate float64
	// Limiter, when set, is waited on once per packet as well.
	Limiter Limiter
	// MinGap is the per-target budget: retries of one task are at least
	// this far apart (they are always at least the timeout apart).
	MinGap time.Duration
	Logger *slog.Logger
}

// Stats are the engine's counters since it started.
type Stats struct {
	Sent, Answered, TimedOut          uint64
	Malformed, Foreign, Spoofed, Late uint64
}

// Ignored is the total of received packets the engine could not use.
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

// Engine is a running core. It is safe for concurrent use.
type Engine struct {
	cfg   Config
	key   rawsock.Key
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

// New starts an engine; Close stops it.
func New(cfg Config) (*Engine, error) {
	if cfg.Send4 == nil && cfg.Send6 == nil {
		return nil, fmt.Errorf("bulk %s: no send socket", cfg.Engine)
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
	e := &Engine{
		cfg:   cfg,
		key:   rawsock.NewKey(),
		epoch: time.Now(),
		kick:  make(chan struct{}, 1),
		space: make(chan struct{}, 1),
		tmo:   make(chan struct{}, 1),
		slots: make([]slot, cfg.Slots),
		free:  make([]uint32, cfg.Slots),
		burst: batchSize,
	}
	for i := range e.free {
		e.free[i] = uint32(len(e.free) - 1 - i) // slot 0 first
	}
	if cfg.Rate > 0 {
		// Small bursts: about a millisecond's worth per write, at least one
		// packet. The bucket holds up to 5 ms, so that a sleep that
		// overshoots (timers are coarse on a busy host) is made up for
		// instead of lowering the rate.
		e.burst = min(max(int(cfg.Rate/1000), 1), batchSize)
		e.lim = rate.NewLimiter(rate.Limit(cfg.Rate), min(max(e.burst, int(cfg.Rate/200)), 4096))
	}
	e.sends = [][2]Conn{{cfg.Send4, cfg.Send6}}
	for len(e.sends) < cfg.Senders && cfg.OpenSend != nil {
		var more [2]Conn
		var err error
		for fi, primary := range e.sends[0] {
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
			cfg.Logger.Info("bulk engine: fewer senders", slog.String("engine", cfg.Engine), slog.Int("senders", len(e.sends)), slog.Any("error", err))
			break
		}
		e.sends = append(e.sends, more)
	}
	ctx, stop := context.WithCancel(context.Background())
	e.stop = stop
	e.eg, ctx = errgroup.WithContext(ctx)
	for _, conns := range e.sends {
		e.eg.Go(func() error { return e.sendLoop(ctx, conns) })
	}
	e.eg.Go(func() error { return e.timerLoop(ctx) })
	for _, r := range cfg.Recv {
		e.eg.Go(func() error { return e.readLoop(ctx, r) })
	}
	return e, nil
}

// Key is the engine's cookie key (for tests that forge answers).
func (e *Engine) Key() rawsock.Key { return e.key }

// Supports reports whether the engine can send to addr's family.
func (e *Engine) Supports(addr netip.Addr) bool {
	if addr.Unmap().Is4() {
		return e.cfg.Send4 != nil
	}
	return e.cfg.Send6 != nil
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Sent: e.sent.Load(), Answered: e.answered.Load(), TimedOut: e.timedOut.Load(),
		Malformed: e.malformed.Load(), Foreign: e.foreign.Load(), Spoofed: e.spoofed.Load(), Late: e.late.Load(),
	}
}

// Close stops the loops, closes the sockets and fails every pending job.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.stop()
	for _, conns := range e.sends {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}
	for _, r := range e.cfg.Recv {
		_ = r.Conn.Close()
	}
	err := e.eg.Wait()
	// Fail what is left: in flight, waiting for a retry, or queued.
	e.mu.Lock()
	var left []*Job
	for i := range e.slots {
		if s := &e.slots[i]; s.busy {
			left = append(left, s.job)
			*s = slot{}
		}
	}
	left = append(left, e.retry...)
	e.retry = nil
	for j := e.queue.pop(); j != nil; j = e.queue.pop() {
		left = append(left, j)
	}
	e.mu.Unlock()
	signal(e.space) // submitters waiting for room see closed
	for _, j := range left {
		e.finishErr(j, ErrClosed)
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// NewJob prepares a job; done receives its result exactly once.
func (e *Engine) NewJob(res *vantagev1.ProbeResult, addr netip.Addr, done func(*vantagev1.ProbeResult)) *Job {
	res.Engine = e.cfg.Engine
	res.Kind = e.cfg.Kind
	return &Job{Addr: addr.Unmap(), res: res, done: done}
}

// SetDone sets the function that receives j's result exactly once.
func (j *Job) SetDone(done func(*vantagev1.ProbeResult)) { j.done = done }

// Submit queues j; it blocks while the queue is full.
func (e *Engine) Submit(ctx context.Context, j *Job) error {
	one := [1]*Job{j}
	_, err := e.submit(ctx, one[:])
	return err
}

// queueCap bounds jobs submitted but not yet sent.
const queueCap = 1024

// submit queues jobs in order, blocking while the queue is full. It
// returns how many it queued: all of them unless it fails.
func (e *Engine) submit(ctx context.Context, jobs []*Job) (int, error) {
	n := 0
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			signal(e.space) // pass the news on to the next waiter
			return n, ErrClosed
		}
		for n < len(jobs) && e.queue.len() < queueCap {
			e.queue.push(jobs[n])
			n++
		}
		roomLeft := e.queue.len() < queueCap && e.waiters > 0
		if n == len(jobs) {
			e.mu.Unlock()
			signal(e.kick)
			if roomLeft {
				signal(e.space)
			}
			return n, nil
		}
		e.waiters++
		e.mu.Unlock()
		signal(e.kick)
		select {
		case <-e.space:
		case <-ctx.Done():
		}
		e.mu.Lock()
		e.waiters--
		e.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return n, err
		}
	}
}

// jobRing is a FIFO of up to queueCap jobs.
type jobRing struct {
	buf     [queueCap]*Job
	head, n int
}

func (r *jobRing) len() int { return r.n }

func (r *jobRing) push(j *Job) {
	r.buf[(r.head+r.n)%queueCap] = j
	r.n++
}

func (r *jobRing) pop() *Job {
	if r.n == 0 {
		return nil
	}
	j := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % queueCap
	r.n--
	return j
}

func (e *Engine) finishErr(j *Job, err error) {
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

// sendLoop takes jobs (retries first), gives each a slot and a cookie,
// and writes them in batches paced by the token bucket. It takes a whole
// batch under one lock, and waits only when there is nothing to send or
// no free slot.
func (e *Engine) sendLoop(ctx context.Context, conns [2]Conn) error {
	type family struct {
		conn Conn
		msgs []rawsock.Message
		jobs []*Job
		idx  []uint32
	}
	fams := [2]*family{}
	for i, c := range conns {
		if c == nil {
			continue
		}
		f := &family{conn: c, msgs: make([]rawsock.Message, batchSize), jobs: make([]*Job, 0, batchSize), idx: make([]uint32, 0, batchSize)}
		for k := range f.msgs {
			f.msgs[k].Buffers = [][]byte{make([]byte, txBufSize)}
			f.msgs[k].Addr = &net.IPAddr{IP: make(net.IP, 0, net.IPv6len)}
		}
		fams[i] = f
	}
	type taken struct {
		j      *Job
		idx    uint32
		cookie uint64
	}
	batch := make([]taken, 0, batchSize)
	var unsendable []*Job // no socket for the family
	for {
		// Take up to a burst: retries first, then the queue, each with a
		// free slot, under one lock.
		batch, unsendable = batch[:0], unsendable[:0]
		e.mu.Lock()
		for len(batch) < e.burst && len(e.free) > 0 {
			var j *Job
			if len(e.retry) > 0 {
				j = e.retry[0]
				e.retry[0] = nil
				if e.retry = e.retry[1:]; len(e.retry) == 0 {
					e.retry = nil // let the backing array go
				}
			} else if j = e.queue.pop(); j == nil {
				break
			}
			if fams[familyOf(j.Addr)] == nil {
				unsendable = append(unsendable, j)
				continue
			}
			idx, cookie := e.alloc(j)
			batch = append(batch, taken{j, idx, cookie})
		}
		room := e.waiters > 0 && e.queue.len() <= queueCap/2
		more := len(e.sends) > 1 && len(e.free) > 0 && (e.queue.len() > 0 || len(e.retry) > 0)
		e.mu.Unlock()
		if room {
			signal(e.space)
		}
		if more {
			signal(e.kick) // another sender may take the rest
		}
		for _, j := range unsendable {
			e.finishErr(j, fmt.Errorf("target %s: %s has no socket for this address family", j.Addr, e.cfg.Engine))
		}
		if len(batch) == 0 {
			if len(unsendable) > 0 {
				continue
			}
			// Nothing queued, or no free slot: wait for either to change.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-e.kick:
			}
			continue
		}
		for _, t := range batch {
			f := fams[familyOf(t.j.Addr)]
			m := &f.msgs[len(f.jobs)]
			buf := m.Buffers[0][:cap(m.Buffers[0])]
			n, err := e.cfg.Encode(buf, t.j, t.idx, t.cookie)
			if err != nil {
				e.release(t.idx, t.j, err)
				continue
			}
			m.Buffers[0] = buf[:n]
			ip := m.Addr.(*net.IPAddr)
			if t.j.Addr.Is4() {
				a := t.j.Addr.As4()
				ip.IP = append(ip.IP[:0], a[:]...)
			} else {
				a := t.j.Addr.As16()
				ip.IP = append(ip.IP[:0], a[:]...)
			}
			f.jobs = append(f.jobs, t.j)
			f.idx = append(f.idx, t.idx)
		}
		pending := 0
		for _, f := range fams {
			if f != nil {
				pending += len(f.jobs)
			}
		}
		if pending == 0 {
			continue
		}
		if err := e.pace(ctx, pending); err != nil {
			for _, f := range fams {
				if f == nil {
					continue
				}
				for k, j := range f.jobs {
					e.release(f.idx[k], j, ErrClosed)
				}
				f.jobs, f.idx = f.jobs[:0], f.idx[:0]
			}
			return err
		}
		now := time.Now() // send time: right before the write
		e.mu.Lock()
		for _, f := range fams {
			if f == nil {
				continue
			}
			for k, j := range f.jobs {
				s := &e.slots[f.idx[k]]
				s.sent = now
				j.lastSent = now
				j.res.Attempts++
				if j.res.SentAt == nil {
					j.res.SentAt = j.sentAt(now)
				}
				e.pushDeadline(now.Add(j.Timeout), f.idx[k], s.cookie, false)
			}
		}
		e.mu.Unlock()
		for _, f := range fams {
			if f == nil || len(f.jobs) == 0 {
				continue
			}
			ms := f.msgs[:len(f.jobs)]
			for off := 0; off < len(ms); {
				n, err := f.conn.WriteBatch(ms[off:])
				e.sent.Add(uint64(max(n, 0)))
				off += max(n, 0)
				if err == nil && n <= 0 {
					err = errors.New("sendmmsg sent nothing")
				}
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					// The packet at off failed (e.g. no route): that probe
					// ends in ERROR; the rest of the batch goes on.
					e.release(f.idx[off], f.jobs[off], fmt.Errorf("send to %s: %w", f.jobs[off].Addr, err))
					off++
				}
			}
			f.jobs, f.idx = f.jobs[:0], f.idx[:0]
		}
	}
}

// familyOf indexes the send sockets: 0 for IPv4, 1 for IPv6.
func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func (e *Engine) pace(ctx context.Context, n int) error {
	if e.lim != nil {
		if err := e.lim.WaitN(ctx, n); err != nil {
			return err
		}
	}
	if e.cfg.Limiter != nil {
		for range n {
			if err := e.cfg.Limiter.Wait(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// alloc takes a free slot for j and draws its cookie; e.mu is held and
// a slot is free.
func (e *Engine) alloc(j *Job) (uint32, uint64) {
	idx := e.free[len(e.free)-1]
	e.free = e.free[:len(e.free)-1]
	e.inflight.Add(1)
	e.ctr++
	c := e.key.Cookie(j.Addr, j.Port, idx, e.ctr)
	e.slots[idx] = slot{job: j, cookie: c, busy: true}
	return idx, c
}

// putFree returns a slot to the free list; e.mu is held.
func (e *Engine) putFree(idx uint32) {
	e.free = append(e.free, idx)
	e.inflight.Add(-1)
}

// release frees a slot whose probe failed locally and ends the job.
func (e *Engine) release(idx uint32, j *Job, err error) {
	e.mu.Lock()
	e.slots[idx] = slot{}
	e.putFree(idx)
	e.mu.Unlock()
	signal(e.kick)
	e.finishErr(j, err)
}

// nowReader is a Conn that can also read without waiting (rawsock.Conn).
type nowReader interface {
	ReadBatchNow(ms []rawsock.Message) (int, error)
}

const (
	// pollInterval is how long the reader lets answers gather while many
	// probes are in flight, instead of waking for each one.
	pollInterval = 2 * time.Millisecond
	// pollMinInflight probes in flight make the reader poll.
	pollMinInflight = 16
	// pollMaxEmpty empty polls in a row send the reader back to blocking:
	// nothing is coming back (dead targets).
	pollMaxEmpty = 3
)

// readLoop drains one receive socket in batches. While many probes are in
// flight (a sweep), answers arrive one by one as fast as probes leave:
// rather than wake for each, the reader sleeps pollInterval between reads
// that do not fill the batch. Otherwise it blocks in ReadBatch, so an idle
// engine costs nothing.
func (e *Engine) readLoop(ctx context.Context, r Receiver) error {
	rb := newRxBuf()
	msgs := rb.msgs
	now, canPoll := r.Conn.(nowReader)
	nap := time.NewTimer(time.Hour)
	nap.Stop()
	full, empty := false, 0
	for {
		var n int
		var err error
		switch {
		case canPoll && full:
			n, err = now.ReadBatchNow(msgs)
		case canPoll && empty < pollMaxEmpty && e.inflight.Load() >= pollMinInflight:
			nap.Reset(pollInterval)
			select {
			case <-ctx.Done():
				return nil
			case <-nap.C:
			}
			if n, err = now.ReadBatchNow(msgs); err == nil && n == 0 {
				empty++
				continue
			}
		default:
			n, err = r.Conn.ReadBatch(msgs)
		}
		empty = 0
		if err != nil {
			if ctx.Err() != nil || rawsock.IsClosed(err) {
				return nil
			}
			e.cfg.Logger.Warn("raw socket read failed", slog.String("engine", e.cfg.Engine), slog.Any("error", err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		full = n == len(msgs)
		e.handle(r, rb, n)
	}
}

// rxBuf is a reader's batch: messages with their buffers, and the decoded
// answers.
type rxBuf struct {
	msgs []rawsock.Message
	ans  []answer
}

func newRxBuf() *rxBuf {
	b := &rxBuf{msgs: make([]rawsock.Message, rxBatch), ans: make([]answer, 0, rxBatch)}
	for i := range b.msgs {
		b.msgs[i].Buffers = [][]byte{make([]byte, rxBufSize)}
		b.msgs[i].OOB = make([]byte, rawsock.OOBSize)
		b.msgs[i].Addr = &net.IPAddr{IP: make(net.IP, 0, net.IPv6len)}
	}
	return b
}

// handle decodes the first n messages of b read from r and delivers ours.
func (e *Engine) handle(r Receiver, b *rxBuf, n int) {
	var fallback time.Time // receive time when the kernel gave none
	ans := b.ans[:0]
	for i := range n {
		msg := &b.msgs[i]
		ts, hop := rawsock.ParseOOB(msg.OOB[:msg.NN])
		if ts.IsZero() {
			if fallback.IsZero() {
				fallback = time.Now()
			}
			ts = fallback
		}
		ans = append(ans, answer{ts: ts})
		a := &ans[len(ans)-1]
		switch r.Decode(msg.Buffers[0][:msg.N], rawsock.AddrOf(msg.Addr), hop, &a.m) {
		case Malformed:
			e.malformed.Add(1)
			ans = ans[:len(ans)-1]
		case Foreign:
			e.foreign.Add(1)
			ans = ans[:len(ans)-1]
		}
	}
	if len(ans) > 0 {
		e.deliver(ans)
	}
}

// drain reads what the receive sockets already hold, so that an answer the
// kernel received before its deadline counts even when the reader is late
// (a busy host). The timer loop calls it before expiring deadlines.
func (e *Engine) drain(b *rxBuf) {
	for _, r := range e.cfg.Recv {
		now, ok := r.Conn.(nowReader)
		if !ok {
			continue
		}
		for range 64 { // bounded: the reader is there for a flood
			n, err := now.ReadBatchNow(b.msgs)
			if err != nil || n == 0 {
				break
			}
			e.handle(r, b, n)
		}
	}
}

// answer is a decoded packet of ours and its receive time.
type answer struct {
	m  Match
	ts time.Time
}

// deliver matches a batch of answers to their slots and ends their jobs.
func (e *Engine) deliver(ans []answer) {
	var done [rxBatch]*Job
	nd := 0
	e.mu.Lock()
	for i := range ans {
		m, ts := &ans[i].m, ans[i].ts
		if int(m.Slot) >= len(e.slots) {
			e.foreign.Add(1)
			continue
		}
		s := &e.slots[m.Slot]
		switch {
		case !s.busy || s.sent.IsZero():
			e.late.Add(1) // timed out already, or the slot was never used
			continue
		case s.job.Addr != m.Dst || s.job.Port != m.Port:
			e.foreign.Add(1)
			continue
		case (s.cookie^m.Cookie)&m.CookieMask != 0:
			e.spoofed.Add(1) // forged, or an answer to an earlier use of the slot
			continue
		}
		j, sent := s.job, s.sent
		*s = slot{}
		e.putFree(m.Slot)
		res := j.res
		res.Outcome = m.Outcome
		res.UnreachableCode = m.Code
		if m.Note != "" {
			res.Error = m.Note
		}
		rtt := max(ts.Sub(sent), 0)
		res.RttUs = uint32(min(rtt.Microseconds(), 1<<32-1))
		res.ReplyFrom = addrString(m.From, res.Target)
		res.ReplyTtl = uint32(max(m.TTL, 0))
		done[nd] = j
		nd++
	}
	e.mu.Unlock()
	if nd == 0 {
		return
	}
	signal(e.kick)
	e.answered.Add(uint64(nd))
	for _, j := range done[:nd] {
		j.done(j.res)
	}
}

// addrString is a.String(), without allocating when it is the same text
// as known (the target, for most answers).
func addrString(a netip.Addr, known string) string {
	var buf [64]byte
	if string(a.AppendTo(buf[:0])) == known {
		return known
	}
	return a.String()
}

// timerSlack is the least time between two runs of the timer loop.
const timerSlack = 2 * time.Millisecond

// timerLoop expires deadlines: a miss is retried (within the task's
// retries and budget) or ends the job with TIMEOUT.
func (e *Engine) timerLoop(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var rb *rxBuf
	for {
		e.mu.Lock()
		due := e.dl.Len() > 0 && e.dl[0].at <= e.mono(time.Now())
		e.mu.Unlock()
		if due {
			if rb == nil {
				rb = newRxBuf()
			}
			e.drain(rb)
		}
		now := time.Now()
		var done []*Job
		e.mu.Lock()
		for e.dl.Len() > 0 && e.dl[0].at <= e.mono(now) {
			d := e.dl.pop()
			s := &e.slots[d.slot]
			if d.retry {
				e.retry = append(e.retry, s.job)
				*s = slot{}
				e.putFree(d.slot)
				signal(e.kick)
				continue
			}
			if !s.busy || s.cookie != d.cookie {
				continue // answered meanwhile
			}
			j := s.job
			if int(j.res.Attempts) <= j.Retries {
				e.timedOut.Add(1)
				if gap := j.lastSent.Add(e.cfg.MinGap); gap.After(now) {
					// Per-target budget: keep the slot until the retry may go.
					s.cookie = 0
					s.sent = time.Time{}
					e.pushDeadline(gap, d.slot, 0, true)
					continue
				}
				e.retry = append(e.retry, j)
			} else {
				e.timedOut.Add(1)
				j.res.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT
				done = append(done, j)
			}
			*s = slot{}
			e.putFree(d.slot)
			signal(e.kick)
		}
		next := time.Hour
		if e.dl.Len() > 0 {
			// Deadlines of answered probes stay in the heap until their
			// time; on a long sweep they come microseconds apart, so
			// wake-ups are coalesced (a timeout may end timerSlack late).
			next = max(time.Duration(e.dl[0].at-e.mono(now)), timerSlack)
		}
		e.mu.Unlock()
		for _, j := range done {
			j.done(j.res)
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-e.tmo:
		}
	}
}

// mono is t as nanoseconds on the engine's monotonic clock (cheap to
// compare in the deadline heap).
func (e *Engine) mono(t time.Time) int64 { return int64(t.Sub(e.epoch)) }

// pushDeadline adds a deadline; e.mu is held.
func (e *Engine) pushDeadline(at time.Time, idx uint32, cookie uint64, retry bool) {
	if n := len(e.dl); n >= compactMin && n >= 4*int(e.inflight.Load()) {
		e.compactDeadlines()
	}
	d := deadline{at: e.mono(at), slot: idx, cookie: cookie, retry: retry}
	e.dl.push(d)
	if e.dl[0].slot == idx && e.dl[0].at == d.at {
		signal(e.tmo)
	}
}

// compactMin is the heap size from which answered probes' deadlines are
// dropped, once they are three quarters of it.
const compactMin = 4096

// compactDeadlines drops the deadlines of probes that were answered (on a
// sweep nearly all of them, which would otherwise stay until their time:
// 65,536 for a /16) and restores the heap order; e.mu is held.
func (e *Engine) compactDeadlines() {
	live := e.dl[:0]
	for _, d := range e.dl {
		if s := &e.slots[d.slot]; d.retry || s.busy && s.cookie == d.cookie {
			live = append(live, d)
		}
	}
	clear(e.dl[len(live):])
	e.dl = live
	e.dl.heapify()
}

type deadline struct {
	at     int64 // Engine.mono
	slot   uint32
	cookie uint64
	retry  bool
}

// deadlines is a min-heap by time (typed, so that pushing and popping
// allocate nothing).
type deadlines []deadline

func (d deadlines) Len() int { return len(d) }

func (d *deadlines) push(x deadline) {
	h := append(*d, x)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[i].at >= h[p].at {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	*d = h
}

func (d *deadlines) pop() deadline {
	h := *d
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	h.down(0)
	*d = h
	return top
}

// heapify restores the heap order of any slice (Floyd).
func (d deadlines) heapify() {
	for i := len(d)/2 - 1; i >= 0; i-- {
		d.down(i)
	}
}

// down moves d[i] down to its place.
func (d deadlines) down(i int) {
	h := d
	for {
		l, m := 2*i+1, i
		if l < len(h) && h[l].at < h[m].at {
			m = l
		}
		if r := l + 1; r < len(h) && h[r].at < h[m].at {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// Run is the Batch API: it submits every task from tasks (after prepare
// turns it into a job, or reports why it cannot run) and calls emit once
// per task, from the caller's goroutine. It returns when tasks is closed
// and every result is out, or when ctx ends.
func (e *Engine) Run(ctx context.Context, tasks <-chan *vantagev1.Task,
	prepare func(t *vantagev1.Task, res *vantagev1.ProbeResult) (*Job, error),
	emit func(*vantagev1.ProbeResult)) error {
	results := make(chan *vantagev1.ProbeResult, batchSize*8)
	var inflight atomic.Int64
	fed := make(chan struct{})
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Jobs still in the engine when Run gives up end into the void.
	done := func(r *vantagev1.ProbeResult) {
		select {
		case results <- r:
		case <-fctx.Done():
		}
	}
	var eg errgroup.Group
	eg.Go(func() error {
		defer close(fed)
		// Jobs go to the engine in batches: one lock and at most one
		// wake-up of the sender per batch, not per task.
		batch := make([]*Job, 0, batchSize*2)
		submit := func() {
			n, err := e.submit(fctx, batch)
			for _, j := range batch[n:] {
				e.finishErr(j, err)
			}
			clear(batch)
			batch = batch[:0]
		}
		for {
			var t *vantagev1.Task
			var ok bool
			if len(batch) == 0 {
				select {
				case <-fctx.Done():
					return nil
				case t, ok = <-tasks:
				}
			} else {
				select {
				case t, ok = <-tasks:
				default:
					submit() // the stream paused: send what we have
					continue
				}
			}
			if !ok {
				submit()
				return nil
			}
			inflight.Add(1)
			res := &vantagev1.ProbeResult{TaskId: t.GetId(), Target: t.GetTarget(), Kind: t.GetKind(), Engine: e.cfg.Engine}
			j, err := prepare(t, res)
			if err != nil {
				res.Outcome = vantagev1.Outcome_OUTCOME_ERROR
				res.Error = err.Error()
				done(res)
				continue
			}
			j.done = done
			if batch = append(batch, j); len(batch) == cap(batch) {
				submit()
			}
		}
	})
	defer func() { cancel(); _ = eg.Wait() }()
	fedDone := fed
	for {
		if fedDone == nil && inflight.Load() == 0 {
			return nil
		}
		select {
		case r := <-results: // the common case, without selectgo
			inflight.Add(-1)
			emit(r)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-results:
			inflight.Add(-1)
			emit(r)
		case <-fedDone:
			fedDone = nil
		}
	}
}
