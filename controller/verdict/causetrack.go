package verdict

import (
	"fmt"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// histEntry is one round of a subject's raw state with a verdict.
type histEntry struct {
	round  int64
	raw    vantagev1.State
	border bool // a border target was DEGRADED that round (or in the UNKNOWN rounds after it)
}

// causeTrack is a network's or the scope's cause state across rounds.
type causeTrack struct {
	// recent: the last CauseHistoryRounds rounds with a known raw state,
	// oldest first; lastEval the last round explained (a gap clears it).
	recent          []histEntry
	lastEval        int64
	lastRaw         vantagev1.State
	onset           int64 // the first round of the current raw state
	episode         int64 // the first round of the episode (DEGRADED or UNREACHABLE since)
	known, degraded int   // of the CauseHistoryRounds known rounds before the episode
	finding         *vantagev1.CauseFinding
	hop             *vantagev1.Router
	views           []*vantagev1.UpstreamView
	// pub is the cause last published; cand, candRound a different one
	// and the round it was first seen (published once it holds a second
	// round, like a location refinement).
	pub       vantagev1.Cause
	cand      vantagev1.Cause
	candRound int64
}

// explainAll finds, after locateAll, the location's router, the upstream
// views and the cause of every network and the scope for round n.
func (e *Engine) explainAll(n int64) {
	borderDegraded := false
	for _, u := range e.upstreams {
		if t := e.targets[u]; t.role == vantagev1.TargetRole_TARGET_ROLE_BORDER && t.raw == vantagev1.State_STATE_DEGRADED {
			borderDegraded = true
		}
	}
	for _, s := range e.networks {
		e.explain(s, n, borderDegraded)
	}
	e.explain(e.scope, n, borderDegraded)
}

func (e *Engine) explain(s *subject, n int64, borderDegraded bool) {
	ct := s.cz
	if ct == nil {
		ct = &causeTrack{onset: -1, candRound: -1, lastEval: -2}
		s.cz = ct
	}
	ct.observe(n, s.raw, borderDegraded)
	ct.finding, ct.hop, ct.views = nil, nil, nil
	if s.raw != vantagev1.State_STATE_DEGRADED && s.raw != vantagev1.State_STATE_UNREACHABLE {
		return
	}
	ct.views = e.upstreamViews(s)
	ct.hop = e.locationHop(s, ct.views)
	ct.finding = Cause(e.causeEvidence(s, n))
}

// observe records round n's raw state. A known state other than the last
// known one is an onset. An onset from REACHABLE (or the first) begins an
// episode: the CauseHistoryRounds known rounds before it (rounds whose raw
// state was UNKNOWN, beliefs in flux as an outage begins, are skipped) say
// whether the change was abrupt (none of them DEGRADED, nor a border
// DEGRADED). An onset from DEGRADED to UNREACHABLE (or back) escalates the
// episode and keeps its history: the partial first round of a fault is
// the fault's own, not a degradation before it.
func (ct *causeTrack) observe(n int64, raw vantagev1.State, border bool) {
	if n != ct.lastEval+1 {
		ct.recent = ct.recent[:0] // a gap: what came before is not known
	}
	ct.lastEval = n
	if known(raw) && raw != ct.lastRaw {
		escalates := isBad(raw) && isBad(ct.lastRaw)
		ct.lastRaw, ct.onset = raw, n
		if !escalates {
			ct.episode = n
			ct.known, ct.degraded = len(ct.recent), 0
			for _, h := range ct.recent {
				if h.raw == vantagev1.State_STATE_DEGRADED || h.border {
					ct.degraded++
				}
			}
		}
	}
	switch {
	case known(raw):
		if len(ct.recent) == CauseHistoryRounds {
			ct.recent = append(ct.recent[:0], ct.recent[1:]...)
		}
		ct.recent = append(ct.recent, histEntry{round: n, raw: raw, border: border})
	case border && len(ct.recent) > 0:
		ct.recent[len(ct.recent)-1].border = true
	}
}

// isBad: a raw state an episode is made of.
func isBad(s vantagev1.State) bool {
	return s == vantagev1.State_STATE_DEGRADED || s == vantagev1.State_STATE_UNREACHABLE
}

// causeEvidence gathers s's CauseEvidence for round n.
func (e *Engine) causeEvidence(s *subject, n int64) CauseEvidence {
	ct := s.cz
	ev := CauseEvidence{State: s.raw, Location: s.location, Traced: s.locTraced, Hop: ct.hop,
		Onset: ct.episode, Escalation: ct.onset - ct.episode, Known: ct.known, Degraded: ct.degraded,
		Quality: e.qualityTrend(s, ct.onset-CauseHistoryRounds, n), BGP: e.routingEvidence(s, n)}
	for _, u := range e.upstreams {
		t := e.targets[u]
		up := t.raw == vantagev1.State_STATE_REACHABLE || t.raw == vantagev1.State_STATE_DEGRADED
		if !up && t.raw != vantagev1.State_STATE_UNREACHABLE {
			continue // no verdict
		}
		switch t.role {
		case vantagev1.TargetRole_TARGET_ROLE_UPSTREAM:
			ev.Upstreams++
			if up {
				ev.UpstreamsUp++
			}
		case vantagev1.TargetRole_TARGET_ROLE_BORDER:
			ev.Borders++
			if up {
				ev.BordersUp++
			}
		}
	}
	for _, v := range ct.views {
		ev.Views = append(ev.Views, UpstreamState{Name: v.GetName(), Dead: v.GetDead(), Answers: e.upstreamAnswers(v.GetName())})
	}
	return ev
}

// qualityTrend is the hook for the loss and RTT series (quality*.go): per
// round from..to, how many vantages had a quality sample toward s (its
// hosts) and how many saw loss, and RTT, above s's baseline. Without
// series (quality off, a target) it returns nil, and Cause never finds
// ATTACK_OR_CONGESTION (the evidence says "no loss/RTT series").
func (e *Engine) qualityTrend(s *subject, from, to int64) []QualityRound {
	return e.qualityRounds(s, from, to)
}

// annotate fills the transitions settleAll appended from index k (the
// router of the location, the cause, the upstream views), then publishes
// a cause refinement (from == to) for every network and the scope whose
// cause changed with no transition this round and held two rounds.
func (e *Engine) annotate(k int, n, now int64, out *[]*vantagev1.Transition) {
	moved := map[*subject]bool{}
	for _, tr := range (*out)[k:] {
		if s := e.byID[tr.GetVerdictId()]; s != nil {
			e.fill(s, tr)
			moved[s] = true
		}
	}
	subjects := append([]*subject{e.scope}, e.networks...)
	for _, s := range subjects {
		ct := s.cz
		if ct == nil || moved[s] {
			continue
		}
		cur := vantagev1.Cause_CAUSE_UNSPECIFIED
		if ct.finding != nil && s.raw == s.state &&
			(s.state == vantagev1.State_STATE_DEGRADED || s.state == vantagev1.State_STATE_UNREACHABLE) {
			cur = ct.finding.GetCause()
		}
		switch {
		case n < e.resume:
			ct.pub = cur // a previous engine published it (Restore)
		case cur == vantagev1.Cause_CAUSE_UNSPECIFIED || cur == ct.pub:
			ct.cand = vantagev1.Cause_CAUSE_UNSPECIFIED
		case ct.cand != cur:
			ct.cand, ct.candRound = cur, n
		case n > ct.candRound:
			note := fmt.Sprintf("cause refined from %s to %s", causeWord(ct.pub), causeWord(cur))
			tr := e.transition(s, s.state, n, now, append([]string{note}, e.notes(s)...))
			e.fill(s, tr)
			*out = append(*out, tr)
		}
	}
}

// fill sets a transition's location router, cause and upstream views from
// its subject, and remembers the cause as published.
func (e *Engine) fill(s *subject, tr *vantagev1.Transition) {
	hop, cause, views := e.explained(s)
	tr.LocationHop, tr.Cause, tr.Upstreams = hop, cause, views
	if ct := s.cz; ct != nil {
		ct.pub, ct.cand = cause.GetCause(), vantagev1.Cause_CAUSE_UNSPECIFIED
	}
}

// explained is s's location router, cause and upstream views as
// published: set while s is DEGRADED, UNREACHABLE or UNSTABLE (the cause
// only for networks and the scope).
func (e *Engine) explained(s *subject) (*vantagev1.Router, *vantagev1.CauseFinding, []*vantagev1.UpstreamView) {
	switch s.state {
	case vantagev1.State_STATE_DEGRADED, vantagev1.State_STATE_UNREACHABLE, vantagev1.State_STATE_UNSTABLE:
	default:
		return nil, nil, nil
	}
	if s.level == vantagev1.Level_LEVEL_TARGET {
		if s.raw == vantagev1.State_STATE_REACHABLE {
			return nil, nil, nil
		}
		return e.locationHop(s, nil), nil, nil
	}
	ct := s.cz
	if ct == nil || ct.finding == nil {
		return nil, nil, nil
	}
	return ct.hop, ct.finding, ct.views
}

// annotateVerdict sets v's location router, cause and upstream views.
func (e *Engine) annotateVerdict(s *subject, v *vantagev1.Verdict) {
	v.LocationHop, v.Cause, v.Upstreams = e.explained(s)
	if v.Cause != nil {
		v.Notes = append(v.Notes, fmt.Sprintf("cause %s (confidence %.2f)", causeWord(v.Cause.GetCause()), v.Cause.GetConfidence()))
	}
	v.Notes = append(v.Notes, describeViews(v.Upstreams)...)
}

// causeWord is "UPSTREAM" for CAUSE_UPSTREAM.
func causeWord(c vantagev1.Cause) string { return strings.TrimPrefix(c.String(), "CAUSE_") }
