package verdict

import (
	"net/netip"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Hop is one TTL of a trace as the engine keeps it.
type Hop struct {
	TTL  uint32
	Addr string
}

// Observation is one probe result as the engine needs it.
type Observation struct {
	Agent   string
	Target  string
	Round   int64
	SentAt  time.Time
	Kind    vantagev1.ProbeKind
	Outcome vantagev1.Outcome
	RTT     time.Duration
	// Attempts is the number of probes sent for this result, adaptive
	// retries included (0 is read as 1).
	Attempts uint32
	// Traces only: the hops in TTL order, why the trace stopped, and the
	// trigger that asked for it ("" for a scheduled trace).
	Hops       []Hop
	StopReason vantagev1.TraceStopReason
	TriggerID  string
}

// Stats counts what Observe did with its input.
type Stats struct {
	Accepted      uint64
	UnknownTarget uint64
	NoAgent       uint64
	NegativeRound uint64
	TooOld        uint64
	TooNew        uint64
	// Traces counts trace results kept for localisation.
	Traces uint64
}

// Stats returns the counters of Observe.
func (e *Engine) Stats() Stats { return e.stats }

// Observe adds one result. Unknown targets, empty agent ids, negative
// rounds, rounds already closed and rounds too far ahead are ignored and
// counted in Stats. Traces are kept for localisation whatever their round.
func (e *Engine) Observe(o Observation) {
	ti, ok := e.resolveTarget(o.Target)
	if !ok {
		e.stats.UnknownTarget++
		return
	}
	if o.Agent == "" {
		e.stats.NoAgent++
		return
	}
	if o.Kind == vantagev1.ProbeKind_PROBE_KIND_TRACE {
		e.observeTrace(ti, o)
		e.observeQuality(ti, -1, o)
		return
	}
	rb := e.buffer(o.Round)
	if rb == nil {
		return
	}
	ai := e.agentIndex(o.Agent)
	if ai < 0 {
		e.stats.NoAgent++
		return
	}
	r := e.rowOf(rb, ai)
	r.results++
	r.record(ti, o, e.isHost[ti])
	e.observeQuality(ti, ai, o)
	e.noteSentAt(rb, ai, ti, o)
	rb.obs++
	e.stats.Accepted++
}

// resolveTarget returns the index of the target addr names, in the
// spelling the tasks carry or in its canonical form.
func (e *Engine) resolveTarget(addr string) (int, bool) {
	if ti, ok := e.targetIdx[addr]; ok {
		return ti, true
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return 0, false
	}
	ti, ok := e.targetIdx[a.String()]
	return ti, ok
}

// rowOf returns vantage ai's row in rb, taking one from the pool on the
// vantage's first result in the round.
func (e *Engine) rowOf(rb *roundBuf, ai int) *row {
	for len(rb.rows) <= ai {
		rb.rows = append(rb.rows, nil)
	}
	r := rb.rows[ai]
	if r == nil {
		r = e.alloc()
		rb.rows[ai] = r
	}
	return r
}

// record adds one scheduled result for target ti to the row: its flags,
// the packets sent and the results answered per probe family, and the
// host counters when ti is a host.
func (r *row) record(ti int, o Observation, host bool) {
	var add byte
	isICMP := o.Kind == vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO
	switch o.Outcome {
	case vantagev1.Outcome_OUTCOME_REPLY, vantagev1.Outcome_OUTCOME_TCP_SYNACK, vantagev1.Outcome_OUTCOME_TCP_RST:
		add = fSeen | fUp
		if isICMP {
			add |= fICMP | fICMPUp
		} else {
			add |= fOtherUp
		}
		if rp := r.rp[fam(isICMP)]; rp[ti] < 255 {
			rp[ti]++
		}
	case vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.Outcome_OUTCOME_UNREACHABLE:
		add = fSeen
		if isICMP {
			add |= fICMP
		}
		if o.Outcome == vantagev1.Outcome_OUTCOME_UNREACHABLE {
			add |= fUnreach
		}
	}
	if add != 0 {
		att := min(max(o.Attempts, 1), 16)
		pk := r.pk[fam(isICMP)]
		pk[ti] = byte(min(int(pk[ti])+int(att), 255))
	}
	old := r.flags[ti]
	if nf := old | add; nf != old {
		r.flags[ti] = nf
		if host {
			if old&fSeen == 0 {
				r.hostSeen++
			}
			if old&fUp == 0 && nf&fUp != 0 {
				r.hostUp++
			}
		}
	}
}

// noteSentAt widens round rb's SentAt bounds for target ti, and vantage
// ai's latest result time, when o's SentAt lies near its round: onset
// bounds only trust those.
func (e *Engine) noteSentAt(rb *roundBuf, ai, ti int, o Observation) {
	if o.SentAt.IsZero() {
		return
	}
	ns := o.SentAt.UnixNano()
	if ns < e.roundStart(o.Round)-e.roundLen || ns > e.roundEnd(o.Round)+e.roundLen {
		return
	}
	if rb.minSent[ti] == 0 || ns < rb.minSent[ti] {
		rb.minSent[ti] = ns
	}
	if ns > rb.maxSent[ti] {
		rb.maxSent[ti] = ns
	}
	if a := e.agents[ai]; ns > a.lastResultAt {
		a.lastResultAt = ns
	}
}
