package trace

// One trace from start to result: a slot, every TTL queued at once, the
// wait for answers (extending, retrying silent TTLs), and the hops.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

type answer struct {
	final uint8 // 0 hop, finalDest, finalUnreach
	hop   *vantagev1.Hop
}

const (
	finalDest    = 1
	finalUnreach = 2
)

// traceState is one running trace. Guarded by Tracer.mu.
type traceState struct {
	id       probeID
	maxTTL   int
	gapLimit int
	timeout  time.Duration
	sent     [maxTTLCap + 1]time.Time
	ans      [maxTTLCap + 1]answer
	nsent    int
	nDone    int // sent or dropped
	nQueued  int // ever queued; all sent when nDone == nQueued
	attempt  int // rounds of probing so far (retries of silent TTLs)
	horizon  int // probes are queued for TTL 1..horizon
	lastSent time.Time
	sendErr  error
	finished bool
	kick     chan struct{} // all queued probes sent, or all answered below horizon
	done     chan struct{}
	doneSet  bool
}

// Probe traces the path to t.Target and returns when the trace ends.
func (tc *Tracer) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	res := &vantagev1.ProbeResult{TaskId: t.GetId(), Campaign: t.GetCampaign(), Target: t.GetTarget(), Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE}
	tr, err := tc.newTrace(t, res)
	if err != nil {
		return fail(res, err)
	}
	select {
	case <-tc.slotSem:
	case <-ctx.Done():
		return fail(res, fmt.Errorf("waiting for a free trace slot: %w", ctx.Err()))
	case <-tc.stop:
		return fail(res, errTracerClosed)
	}
	tc.start(tr)
	defer tc.release(tr)
	why, err := tc.await(ctx, tr)
	return tc.result(tr, res, why, err)
}

// await waits for tr's answers until the trace is decided: extending it
// when the path is longer than expected, giving silent TTLs another
// attempt, and stopping once every probe was sent and the last one's
// timeout has passed. It returns TRACE_STOP_REASON_ERROR and the cause when
// the trace cannot finish, else the zero reason (the hops decide).
func (tc *Tracer) await(ctx context.Context, tr *traceState) (vantagev1.TraceStopReason, error) {
	tm := time.NewTimer(time.Hour)
	tm.Stop()
	defer tm.Stop()
	var deadline <-chan time.Time
	for {
		select {
		case <-tr.done:
			return 0, nil
		case <-tr.kick:
			tc.mu.Lock()
			last, serr, allSent := tr.lastSent, tr.sendErr, tr.nDone == tr.nQueued
			extend := tr.shouldExtend(false)
			tc.mu.Unlock()
			if extend {
				tc.extend(tr)
				deadline = nil
				continue
			}
			if allSent && deadline == nil {
				if serr != nil && last.IsZero() {
					return vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR, serr
				}
				tm.Reset(time.Until(last.Add(tr.timeout)))
				deadline = tm.C
			}
		case <-deadline:
			deadline = nil
			if !tc.timedOut(tr) {
				return 0, nil
			}
		case <-ctx.Done():
			return vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR, ctx.Err()
		case <-tc.stop:
			return vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR, errTracerClosed
		}
	}
}

// timedOut handles the timeout after the last probe: the trace extends,
// or its silent TTLs get another attempt (as scamper's attempts: routers
// rate-limit their ICMP errors), or it is over (false).
func (tc *Tracer) timedOut(tr *traceState) bool {
	tc.mu.Lock()
	extend := tr.shouldExtend(true)
	var retry []int
	if !extend && tr.attempt+1 < tc.cfg.Attempts {
		retry = tr.silent()
	}
	tc.mu.Unlock()
	switch {
	case extend:
		tc.extend(tr)
	case len(retry) > 0:
		tr.attempt++
		tc.enqueueTTLs(tr, retry)
	default:
		return false
	}
	return true
}

// result ends tr and fills res: attempts, the first send time, the hops
// and why the trace stopped (why, when await gave one).
func (tc *Tracer) result(tr *traceState, res *vantagev1.ProbeResult, why vantagev1.TraceStopReason, err error) *vantagev1.ProbeResult {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tr.finished = true
	for ttl := 1; ttl <= tr.maxTTL; ttl++ {
		if !tr.sent[ttl].IsZero() {
			res.Attempts++
			if res.SentAt == nil || tr.sent[ttl].Before(res.SentAt.AsTime()) {
				res.SentAt = timestamppb.New(tr.sent[ttl])
			}
		}
	}
	if why == vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR {
		tr.hops(res)
		return finish(res, why, err)
	}
	return finish(res, tr.hops(res), nil)
}

var errTracerClosed = errors.New("trace engine closed")

// hops fills res.Hops from TTL 1 and says why the trace stops: at the
// destination, at an unreachable, at a forwarding loop, after gap_limit
// silent TTLs, or at max_ttl.
func (tr *traceState) hops(res *vantagev1.ProbeResult) vantagev1.TraceStopReason {
	gap := 0
	loop := loopAt(tr.ans[:tr.maxTTL+1])
	for ttl := 1; ttl <= tr.maxTTL; ttl++ {
		a := tr.ans[ttl]
		if a.hop == nil {
			res.Hops = append(res.Hops, &vantagev1.Hop{Ttl: uint32(ttl)})
			gap++
			if gap >= tr.gapLimit {
				return vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT
			}
			continue
		}
		gap = 0
		res.Hops = append(res.Hops, a.hop)
		if ttl == loop {
			return vantagev1.TraceStopReason_TRACE_STOP_REASON_LOOP
		}
		switch a.final {
		case finalDest:
			return vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED
		case finalUnreach:
			return vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE
		}
	}
	return vantagev1.TraceStopReason_TRACE_STOP_REASON_MAX_TTL
}

// start gives tr a slot and queues its probes, every TTL at once; pacing
// decides when each leaves.
func (tc *Tracer) start(tr *traceState) {
	tc.mu.Lock()
	idx := tc.free[0]
	tc.free = tc.free[1:]
	s := &tc.slots[idx]
	s.gen++
	s.tr, s.lastDst = tr, tr.id.dst
	tr.id.slot, tr.id.gen = idx, s.gen
	tr.id.cookie = tc.cookie(&tr.id)
	tr.horizon = tr.maxTTL
	if n, ok := tc.dist[tr.id.dst]; ok {
		// Known distance: probe one TTL beyond it, not all the way to
		// max_ttl; the trace extends if the path got longer.
		tr.horizon = min(tr.maxTTL, int(n)+1)
	}
	tc.mu.Unlock()
	tc.enqueue(tr, 1, tr.horizon)
}

// extend queues the TTLs beyond tr's horizon up to max_ttl.
func (tc *Tracer) extend(tr *traceState) {
	tc.mu.Lock()
	lo := tr.horizon + 1
	tr.horizon = tr.maxTTL
	tc.mu.Unlock()
	tc.enqueue(tr, lo, tr.maxTTL)
}

// shouldExtend: the path is longer than expected. Either every TTL up to
// the horizon answered without reaching the destination, or (timedOut)
// the horizon's answers are in and the gap limit was not hit. Called with
// tc.mu held.
func (tr *traceState) shouldExtend(timedOut bool) bool {
	if tr.horizon >= tr.maxTTL || tr.finished || loopAt(tr.ans[:tr.horizon+1]) != 0 {
		return false
	}
	gap := 0
	for ttl := 1; ttl <= tr.horizon; ttl++ {
		a := tr.ans[ttl]
		if a.final != 0 {
			return false
		}
		if a.hop == nil {
			if !timedOut {
				return false
			}
			gap++
			if gap >= tr.gapLimit {
				return false
			}
		} else {
			gap = 0
		}
	}
	return true
}

// silent lists the TTLs that matter and stayed silent: those below the
// first final answer (or up to the horizon), stopping after a gap_limit run.
// Called with tc.mu held.
func (tr *traceState) silent() []int {
	var out []int
	gap := 0
	for ttl := 1; ttl <= tr.horizon; ttl++ {
		a := tr.ans[ttl]
		if a.final != 0 {
			break
		}
		if a.hop != nil {
			gap = 0
			continue
		}
		out = append(out, ttl)
		if gap++; gap >= tr.gapLimit {
			break
		}
	}
	return out
}

// release frees tr's slot. Probes still queued are dropped by the sender.
func (tc *Tracer) release(tr *traceState) {
	tc.mu.Lock()
	tr.finished = true
	tc.slots[tr.id.slot].tr = nil
	tc.free = append(tc.free, tr.id.slot)
	tc.mu.Unlock()
	tc.slotSem <- struct{}{}
}

// cookie is a keyed hash of the probe's identity with the tracer's secret.
func (tc *Tracer) cookie(id *probeID) uint32 {
	var b [24]byte
	binary.BigEndian.PutUint16(b[0:2], id.slot)
	b[2], b[3] = id.gen, id.proto
	a := id.dst.As16()
	copy(b[4:20], a[:])
	binary.BigEndian.PutUint16(b[20:22], id.port)
	return uint32(maphash.Bytes(tc.seed, b[:]))
}

// finish fills the summary fields of res from its last hop.
func finish(res *vantagev1.ProbeResult, why vantagev1.TraceStopReason, err error) *vantagev1.ProbeResult {
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
