// Package trace runs ICMP traceroutes with golang.org/x/net: one echo
// request per TTL, sent a window of TTLs at a time, replies matched back to
// their TTL by echo id and sequence number (time exceeded and destination
// unreachable quote our request; the destination answers with an echo
// reply). With TraceSpec.paris the flow stays constant across TTLs: the same
// echo id and a payload that keeps the ICMP checksum the same, so per-flow
// load balancers send every probe down one path.
//
// It needs a raw ICMP socket (root or CAP_NET_RAW): datagram ICMP sockets do
// not deliver time-exceeded messages to read(2). The socket sits behind the
// unexported conn interface so the matching logic is tested without root.
// Packets that are malformed, truncated, or not answers to this trace are
// ignored and counted (PacketsIgnored); they never stop a trace.
package trace

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Engine is the name reported in ProbeResult.engine.
const Engine = "trace/icmp"

// Defaults for TraceSpec fields left zero, and hard caps.
const (
	DefaultMaxTTL   = 30
	DefaultGapLimit = 5
	DefaultTimeout  = 2 * time.Second
	maxTTLCap       = 64
	// window is how many TTLs are in flight at once.
	window = 8
)

// Limiter paces probe packets (the agent's guard).
type Limiter interface {
	Wait(ctx context.Context) error
}

// Prober runs traceroutes.
type Prober struct {
	listen  listenFunc
	lim     Limiter
	ignored atomic.Uint64
}

// New returns a Prober using raw sockets. lim may be nil (no pacing; tests).
func New(lim Limiter) *Prober {
	return &Prober{listen: listenRaw, lim: lim}
}

// PacketsIgnored counts received packets that were malformed, truncated or
// not answers to a running trace, since start.
func (p *Prober) PacketsIgnored() uint64 { return p.ignored.Load() }

type sentProbe struct {
	ttl int
	at  time.Time
}

type answer struct {
	kind replyKind
	hop  *vantagev1.Hop
}

// tracer is the state of one traceroute.
type tracer struct {
	p       *Prober
	v6      bool
	dst     netip.Addr
	id      uint16 // with paris the id of every probe; else the base id
	paris   bool
	sent    map[uint16]sentProbe // by echo seq
	answers map[int]answer       // by ttl
}

// Probe traces the path to t.Target.
func (p *Prober) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	res := &vantagev1.ProbeResult{Target: t.GetTarget(), Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Engine: Engine}
	spec := t.GetTrace()
	switch spec.GetProtocol() {
	case vantagev1.TraceProtocol_TRACE_PROTOCOL_UNSPECIFIED, vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP:
	default:
		return fail(res, fmt.Errorf("trace.protocol %v: not implemented in this agent; only ICMP", spec.GetProtocol()))
	}
	dst, err := netip.ParseAddr(t.GetTarget())
	if err != nil {
		return fail(res, fmt.Errorf("target %q: not an IP address", t.GetTarget()))
	}
	dst = dst.Unmap()
	maxTTL := int(spec.GetMaxTtl())
	if maxTTL == 0 {
		maxTTL = DefaultMaxTTL
	}
	maxTTL = min(maxTTL, maxTTLCap)
	gapLimit := int(spec.GetGapLimit())
	if gapLimit == 0 {
		gapLimit = DefaultGapLimit
	}
	timeout := time.Duration(spec.GetTimeoutMs()) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTimeout
	}

	c, err := p.listen(dst.Is6())
	if err != nil {
		return fail(res, fmt.Errorf("trace needs a raw ICMP socket (root or CAP_NET_RAW): %w", err))
	}
	defer c.Close()
	// Closing the socket wakes a blocked read when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	tr := &tracer{
		p: p, v6: dst.Is6(), dst: dst,
		id:      uint16(rand.UintN(1 << 16)),
		sent:    make(map[uint16]sentProbe, maxTTL),
		answers: make(map[int]answer, maxTTL),
	}
	base := uint16(rand.UintN(1 << 16))
	seqFor := func(ttl int) uint16 { return base + uint16(ttl) }
	tr.paris = spec.GetParis()

	gap := 0
	for lo := 1; lo <= maxTTL; lo += window {
		hi := min(lo+window-1, maxTTL)
		var last time.Time
		for ttl := lo; ttl <= hi; ttl++ {
			if p.lim != nil {
				if err := p.lim.Wait(ctx); err != nil {
					return tr.finish(res, vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR, err)
				}
			}
			seq := seqFor(ttl)
			last = time.Now()
			if err := c.WriteTo(buildEcho(tr.v6, tr.paris, tr.idFor(ttl), seq), ttl, dst); err != nil {
				return tr.finish(res, vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR, fmt.Errorf("send ttl %d: %w", ttl, err))
			}
			if res.SentAt == nil {
				res.SentAt = timestamppb.New(last)
			}
			res.Attempts++
			tr.sent[seq] = sentProbe{ttl: ttl, at: last}
		}
		if err := tr.collect(ctx, c, last.Add(timeout), lo, hi); err != nil {
			return tr.finish(res, vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR, err)
		}
		final := tr.firstFinal(lo, hi)
		for ttl := lo; ttl <= hi; ttl++ {
			a, ok := tr.answers[ttl]
			if !ok {
				res.Hops = append(res.Hops, &vantagev1.Hop{Ttl: uint32(ttl)})
				gap++
				if final == 0 && gap >= gapLimit {
					return tr.finish(res, vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT, nil)
				}
				continue
			}
			gap = 0
			res.Hops = append(res.Hops, a.hop)
			switch a.kind {
			case kindEchoReply:
				return tr.finish(res, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, nil)
			case kindUnreachable:
				return tr.finish(res, vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE, nil)
			}
		}
	}
	return tr.finish(res, vantagev1.TraceStopReason_TRACE_STOP_REASON_MAX_TTL, nil)
}

// idFor is the echo id of the probe with this TTL: constant for Paris
// traces; otherwise it changes per TTL, and the checksum with it, as in
// classic traceroute.
func (tr *tracer) idFor(ttl int) uint16 {
	if tr.paris {
		return tr.id
	}
	return tr.id + uint16(ttl)*257
}

// firstFinal is the lowest TTL in [lo, hi] answered by the destination or
// with unreachable, or 0.
func (tr *tracer) firstFinal(lo, hi int) int {
	for ttl := lo; ttl <= hi; ttl++ {
		if a, ok := tr.answers[ttl]; ok && a.kind != kindTimeExceeded {
			return ttl
		}
	}
	return 0
}

// windowDone reports whether every TTL that matters in [lo, hi] is answered:
// all of them, or all below the first final answer.
func (tr *tracer) windowDone(lo, hi int) bool {
	if f := tr.firstFinal(lo, hi); f != 0 {
		hi = f - 1
	}
	for ttl := lo; ttl <= hi; ttl++ {
		if _, ok := tr.answers[ttl]; !ok {
			return false
		}
	}
	return true
}

// collect reads replies until the window is done or deadline passes.
func (tr *tracer) collect(ctx context.Context, c conn, deadline time.Time, lo, hi int) error {
	buf := make([]byte, 1600)
	for !tr.windowDone(lo, hi) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
		n, ttl, src, err := c.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
		tr.handle(buf[:n], ttl, src, time.Now())
	}
	return nil
}

// handle matches one received ICMP message to a probe, or counts it ignored.
func (tr *tracer) handle(msg []byte, replyTTL int, src netip.Addr, now time.Time) {
	r, err := parseReply(tr.v6, msg)
	if err != nil {
		tr.p.ignored.Add(1)
		return
	}
	probe, ok := tr.sent[r.seq]
	if !ok || tr.idFor(probe.ttl) != r.id {
		tr.p.ignored.Add(1)
		return
	}
	switch r.kind {
	case kindEchoReply:
		if src != tr.dst {
			tr.p.ignored.Add(1)
			return
		}
	default:
		if r.quotedDst != tr.dst {
			tr.p.ignored.Add(1)
			return
		}
	}
	if _, dup := tr.answers[probe.ttl]; dup {
		tr.p.ignored.Add(1)
		return
	}
	tr.answers[probe.ttl] = answer{kind: r.kind, hop: &vantagev1.Hop{
		Ttl:       uint32(probe.ttl),
		Addr:      src.String(),
		RttUs:     uint32(min(max(now.Sub(probe.at).Microseconds(), 0), 1<<32-1)),
		IcmpType:  uint32(r.icmpType),
		IcmpCode:  uint32(r.icmpCode),
		QuotedTtl: uint32(r.quotedTTL),
		ReplyTtl:  uint32(max(replyTTL, 0)),
	}}
}

// finish fills the summary fields of res from its last hop.
func (tr *tracer) finish(res *vantagev1.ProbeResult, why vantagev1.TraceStopReason, err error) *vantagev1.ProbeResult {
	res.StopReason = why
	var last *vantagev1.Hop
	if n := len(res.Hops); n > 0 {
		last = res.Hops[n-1]
	}
	switch why {
	case vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED:
		res.Outcome = vantagev1.Outcome_OUTCOME_REPLY
	case vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE:
		res.Outcome = vantagev1.Outcome_OUTCOME_UNREACHABLE
		res.UnreachableCode = last.GetIcmpCode()
	case vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR:
		res.Outcome = vantagev1.Outcome_OUTCOME_ERROR
		res.Error = err.Error()
		return res
	default:
		res.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT
		return res
	}
	res.RttUs, res.ReplyFrom, res.ReplyTtl = last.GetRttUs(), last.GetAddr(), last.GetReplyTtl()
	return res
}

func fail(res *vantagev1.ProbeResult, err error) *vantagev1.ProbeResult {
	res.Outcome = vantagev1.Outcome_OUTCOME_ERROR
	res.StopReason = vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR
	res.Error = err.Error()
	return res
}
