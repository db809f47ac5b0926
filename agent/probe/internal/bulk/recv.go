package bulk

// Receiving: answers read in batches, decoded by the kind and matched to
// their slots.

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
)

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
// Mux costs nothing.
func (mx *Mux) readLoop(ctx context.Context, r Receiver) error {
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
		case canPoll && empty < pollMaxEmpty && mx.inflight.Load() >= pollMinInflight:
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
			mx.cfg.Logger.Warn("raw socket read failed", slog.String("engine", mx.cfg.EngineName), slog.Any("error", err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		full = n == len(msgs)
		mx.handle(r, rb, n)
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
func (mx *Mux) handle(r Receiver, b *rxBuf, n int) {
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
			mx.malformed.Add(1)
			ans = ans[:len(ans)-1]
		case Foreign:
			mx.foreign.Add(1)
			ans = ans[:len(ans)-1]
		}
	}
	if len(ans) > 0 {
		mx.deliver(ans)
	}
}

// drain reads what the receive sockets already hold, so that an answer the
// kernel received before its deadline counts even when the reader is late
// (a busy host). The timer loop calls it before expiring deadlines.
func (mx *Mux) drain(b *rxBuf) {
	for _, r := range mx.cfg.Recv {
		now, ok := r.Conn.(nowReader)
		if !ok {
			continue
		}
		for range 64 { // bounded: the reader is there for a flood
			n, err := now.ReadBatchNow(b.msgs)
			if err != nil || n == 0 {
				break
			}
			mx.handle(r, b, n)
		}
	}
}

// answer is a decoded packet of ours and its receive time.
type answer struct {
	m  Match
	ts time.Time
}

// deliver matches a batch of answers to their slots and ends their jobs.
func (mx *Mux) deliver(ans []answer) {
	var done [rxBatch]*Job
	nd := 0
	mx.mu.Lock()
	for i := range ans {
		m, ts := &ans[i].m, ans[i].ts
		if int(m.Slot) >= len(mx.slots) {
			mx.foreign.Add(1)
			continue
		}
		s := &mx.slots[m.Slot]
		switch {
		case !s.busy || s.sent.IsZero():
			mx.late.Add(1) // timed out already, or the slot was never used
			continue
		case s.job.Addr != m.Dst || s.job.Port != m.Port:
			mx.foreign.Add(1)
			continue
		case (s.cookie^m.Cookie)&m.CookieMask != 0:
			mx.spoofed.Add(1) // forged, or an answer to an earlier use of the slot
			continue
		}
		j, sent := s.job, s.sent
		*s = slot{}
		mx.putFree(m.Slot)
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
	mx.mu.Unlock()
	if nd == 0 {
		return
	}
	signal(mx.kick)
	mx.answered.Add(uint64(nd))
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
