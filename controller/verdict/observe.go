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
	ti, ok := e.targetIdx[o.Target]
	if !ok {
		a, err := netip.ParseAddr(o.Target)
		if err == nil {
			ti, ok = e.targetIdx[a.String()]
		}
		if !ok {
			e.stats.UnknownTarget++
			return
		}
	}
	if o.Agent == "" {
		e.stats.NoAgent++
		return
	}
	if o.Kind == vantagev1.ProbeKind_PROBE_KIND_TRACE {
		e.observeTrace(ti, o)
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
	for len(rb.rows) <= ai {
		rb.rows = append(rb.rows, nil)
	}
	r := rb.rows[ai]
	if r == nil {
		r = e.alloc()
		rb.rows[ai] = r
	}
	r.results++
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
		if e.isHost[ti] {
			if old&fSeen == 0 {
				r.hostSeen++
			}
			if old&fUp == 0 && nf&fUp != 0 {
				r.hostUp++
			}
		}
	}
	if !o.SentAt.IsZero() {
		ns := o.SentAt.UnixNano()
		// Onset bounds only trust SentAt near its round.
		if ns >= e.roundStart(o.Round)-e.round && ns <= e.roundEnd(o.Round)+e.round {
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
	}
	rb.obs++
	e.stats.Accepted++
}
