package verdict

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ErrRestore is wrapped by Restore errors.
var ErrRestore = errors.New("verdict: restore")

// Published is what a previous engine published for one subject: its
// newest transition and the newest one that changed its state (the same
// unless the newest is a location refinement). Changed may be nil.
type Published struct {
	Latest, Changed *vantagev1.Transition
}

// Restore makes a fresh engine carry on from where a previous one (before
// a controller restart, or before the campaign was edited) left off. Call
// it before the first Observe and Evaluate.
//
// Every subject with an entry in published (by verdict id; unknown ids are
// ignored and counted in the result) takes the state, onset, first round
// and location of its stored transitions, so its next transition is a real
// change from that state, not UNSPECIFIED -> same state, and an ongoing
// episode keeps its original onset. Rounds before resume were evaluated by
// the previous engine: when re-fed history closes them, they update the
// beliefs, the learned availability and the flapping history as usual, but
// publish nothing and leave the published states alone. From round resume
// on, evaluation publishes as always.
func (e *Engine) Restore(resume int64, published map[string]Published) (unknown int, err error) {
	if e.started || e.stats.Accepted > 0 {
		return 0, fmt.Errorf("%w: the engine has already observed or evaluated", ErrRestore)
	}
	if resume < 0 || resume > e.maxRound() {
		return 0, fmt.Errorf("%w: resume round %d out of range", ErrRestore, resume)
	}
	e.resume = resume
	for _, id := range slices.Sorted(maps.Keys(published)) {
		p := published[id]
		s, ok := e.byID[id]
		if !ok || p.Latest == nil {
			unknown++
			continue
		}
		e.restoreSubject(s, p)
	}
	return unknown, nil
}

func (e *Engine) restoreSubject(s *subject, p Published) {
	t := p.Latest
	s.state = t.GetTo()
	s.stateRound = t.GetRound()
	if p.Changed != nil {
		s.stateRound = p.Changed.GetRound()
	}
	s.onsetEarliest = t.GetOnsetEarliest().AsTime().UnixNano()
	s.onsetLatest = t.GetOnsetLatest().AsTime().UnixNano()
	s.location, s.pubLoc = t.GetLocation(), t.GetLocation()
	// What it published, so an episode entered after the restart folds
	// the first flap the previous engine published.
	s.pubs = s.pubs[:0]
	if p.Changed != nil && p.Changed != t {
		s.pubs = append(s.pubs, pubEntry{round: p.Changed.GetRound(), from: p.Changed.GetFrom(), to: p.Changed.GetTo()})
	}
	s.pubs = append(s.pubs, pubEntry{round: t.GetRound(), from: t.GetFrom(), to: t.GetTo()})
	switch s.state {
	case vantagev1.State_STATE_UNSTABLE:
		// When the flapping began: re-fed history adds the recent flips.
		s.stab.since = flip{round: e.roundOf(s.onsetLatest), earliest: s.onsetEarliest, latest: s.onsetLatest}
	case vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_DEGRADED, vantagev1.State_STATE_UNREACHABLE:
		s.stab.lastRaw = s.state
	}
}

// Resume is the first round whose evaluation publishes (Restore; 0 when
// never restored).
func (e *Engine) Resume() int64 { return e.resume }

// ReportedSince returns the vantages whose latest reported round is n or
// later, sorted by id.
func (e *Engine) ReportedSince(n int64) []string {
	var out []string
	for _, a := range e.sortedAgents() {
		if a.view != nil && a.lastRound >= n {
			out = append(out, a.id)
		}
	}
	return out
}

// SetAgentExcluded leaves a vantage out of every round closed from now on,
// as unhealthy with reason (the controller's judgement, e.g. "refused 312
// of 312 tasks: ..."): it counts toward no quorum and no round waits for
// it. An empty reason counts it again.
func (e *Engine) SetAgentExcluded(agent, reason string) {
	if agent == "" {
		return
	}
	if i, ok := e.agentIdx[agent]; ok {
		e.agents[i].excluded = reason
		return
	}
	if reason == "" {
		return
	}
	if ai := e.agentIndex(agent); ai >= 0 {
		e.agents[ai].excluded = reason
	}
}

// LatestResults is the vantage's latest reported round and how many
// results it sent for it (-1, 0 when none).
func (e *Engine) LatestResults(agent string) (round int64, results int) {
	i, ok := e.agentIdx[agent]
	if !ok || e.agents[i].view == nil {
		return -1, 0
	}
	a := e.agents[i]
	return a.lastRound, int(a.view.results)
}
