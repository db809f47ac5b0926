package verdict

import (
	"fmt"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// flip is one crossing of the REACHABLE boundary by a subject's raw state.
type flip struct {
	round            int64 // first round on the new side
	earliest, latest int64 // its onset bounds, Unix ns
}

// Episode constants (see the package comment, UNSTABLE).
const (
	// shortOutage: a bad published state that ends (raw back on the
	// REACHABLE side) within this many rounds of its start may be the
	// first flap of an episode: its recovery is held.
	shortOutage = 3
	// flapHold: a held recovery is published once it has lasted this many
	// rounds; a crossing back before that makes the subject UNSTABLE.
	flapHold = 3
	// sustained: inside an UNSTABLE episode, raw UNREACHABLE for this many
	// rounds in a row is a sustained outage: it ends the episode, so a
	// blackout is published in its second round (issue 11). The flaps an
	// episode is made of are one round down; two rounds down is an outage.
	sustained = 2
)

// stability tracks a subject's raw-state crossings for UNSTABLE.
type stability struct {
	lastRaw vantagev1.State // last known raw state (never UNKNOWN)
	flips   []flip          // within the window, oldest first
	since   flip            // when the current UNSTABLE episode began
	// downRun: rounds in a row with raw UNREACHABLE (UNKNOWN rounds
	// skipped).
	downRun int
	// pending: a recovery held to tell it from a flap (pending.round > 0:
	// the round it began).
	pending flip
	// ended explains, for the round it happened only, why an episode
	// ended early.
	ended string
}

// quickRecovery reports whether round n crossed back to REACHABLE less
// than shortOutage rounds after the crossing that left it.
func (st *stability) quickRecovery(n int64) bool {
	k := len(st.flips)
	return k >= 2 && st.flips[k-1].round == n && n-st.flips[k-2].round < shortOutage
}

// reset clears the flip history (episode over, or beliefs lost).
func (st *stability) reset() {
	st.flips, st.pending = st.flips[:0], flip{}
}

// track records round n's raw state: a crossing of the REACHABLE
// boundary, the run of UNREACHABLE rounds, and the window's flips.
func (st *stability) track(raw vantagev1.State, n, window int64, f flip) {
	st.ended = ""
	if raw != vantagev1.State_STATE_UNKNOWN {
		if st.lastRaw != vantagev1.State_STATE_UNSPECIFIED && isGood(raw) != isGood(st.lastRaw) {
			st.flips = append(st.flips, f)
		}
		st.lastRaw = raw
		if raw == vantagev1.State_STATE_UNREACHABLE {
			st.downRun++
		} else {
			st.downRun = 0
		}
	}
	drop := 0
	for drop < len(st.flips) && st.flips[drop].round <= n-window {
		drop++
	}
	st.flips = st.flips[drop:]
}

func isGood(s vantagev1.State) bool { return s == vantagev1.State_STATE_REACHABLE }

// known reports whether s is a published state other than UNKNOWN.
func known(s vantagev1.State) bool {
	return s != vantagev1.State_STATE_UNSPECIFIED && s != vantagev1.State_STATE_UNKNOWN
}

// settle moves s to its state for round n, applying the UNSTABLE
// episode rules (see the package comment), and emits a transition if the
// published state changed. lo/hi are the earliest and latest SentAt in
// round n.
func (e *Engine) settle(s *subject, n, lo, hi, now int64, out *[]*vantagev1.Transition) {
	// Onset bounds for a change in round n.
	earliest := e.roundStart(n)
	if s.state != vantagev1.State_STATE_UNSPECIFIED {
		earliest = s.lastMaxSent
		if earliest == 0 {
			earliest = e.roundStart(max(e.lastClosed, 0))
		}
	}
	latest := lo
	if latest == 0 {
		latest = e.roundEnd(n)
	}
	st := &s.stab
	st.track(s.raw, n, int64(e.cfg.UnstableWindow), flip{round: n, earliest: earliest, latest: latest})
	if n < e.resume {
		// Evaluated by a previous engine (Restore): learn, publish nothing.
		if s.raw == vantagev1.State_STATE_UNKNOWN {
			st.reset()
		}
		s.lastMaxSent = hi
		return
	}
	from := s.state
	next, ob := e.nextState(s, n, flip{earliest: earliest, latest: latest})
	switch {
	case next != s.state:
		if next == vantagev1.State_STATE_UNSTABLE && s.location == vantagev1.Location_LOCATION_LOCATING {
			// No refinement follows an UNSTABLE transition: it carries what
			// the episode's traces said, or nothing, never a promise.
			s.location, s.lastHop = e.episodeLocation(s)
		}
		s.state, s.stateRound = next, n
		s.onsetEarliest, s.onsetLatest = ob.earliest, ob.latest
		notes, since := e.notes(s), int64(0)
		if next == vantagev1.State_STATE_UNSTABLE {
			from, since, notes = e.folds(s, from, notes)
		}
		tr := e.transition(s, from, n, now, notes)
		tr.FoldsSinceRound = since
		*out = append(*out, tr)
	case e.refined(s, n):
		// Same state, better location: traces arrived after the state
		// changed (the transition carried the provisional location).
		note := fmt.Sprintf("location refined from %s to %s by traces",
			strings.TrimPrefix(s.pubLoc.String(), "LOCATION_"), strings.TrimPrefix(s.location.String(), "LOCATION_"))
		*out = append(*out, e.transition(s, s.state, n, now, append([]string{note}, e.notes(s)...)))
	case e.reasonRefined(s):
		*out = append(*out, e.transition(s, s.state, n, now, append([]string{e.reasonNote(s)}, e.notes(s)...)))
	}
	s.lastMaxSent = hi
}

// nextState is the state s publishes for round n and the onset bounds of
// a change to it (ob, this round's, unless the rule says otherwise).
func (e *Engine) nextState(s *subject, n int64, ob flip) (vantagev1.State, flip) {
	raw, st := s.raw, &s.stab
	if raw != vantagev1.State_STATE_UNKNOWN {
		s.held = 0
	}
	switch {
	case raw == vantagev1.State_STATE_UNKNOWN && !s.unknownGlobal && known(s.state) && s.held < e.cfg.UncertainHold:
		// Beliefs in flux, quorum intact: no evidence of a change. The
		// state and the flip history stand.
		s.held++
		return s.state, ob
	case raw == vantagev1.State_STATE_UNKNOWN:
		s.held = 0
		st.reset()
		return raw, ob
	case s.state == vantagev1.State_STATE_UNSTABLE:
		return e.inEpisode(s, n)
	case len(st.flips) >= e.cfg.UnstableFlips:
		return e.enterEpisode(s)
	case st.pending.round > 0 && !isGood(raw):
		// Back down while a quick recovery was held: a flap.
		return e.enterEpisode(s)
	case st.pending.round > 0 && n-st.pending.round >= flapHold:
		// The recovery held: publish it, with its own onset.
		p := st.pending
		st.pending = flip{}
		return raw, p
	case st.pending.round > 0:
		return s.state, ob
	case isGood(raw) && known(s.state) && !isGood(s.state) && st.quickRecovery(n):
		// A recovery right after the subject went bad: hold it for
		// flapHold rounds, it may be the second flap of an episode.
		st.pending = st.flips[len(st.flips)-1]
		return s.state, ob
	case isGood(raw) && isGood(s.state) && n-s.stateRound >= e.routingRateRounds() && e.routingUnstable(s, n):
		// Dyn's "steady beat of routing instability": the prefixes flap in
		// BGP before (or without) the probes seeing loss. Only from a
		// REACHABLE that has held for the rate's window: the updates of an
		// outage just ended (its withdrawal and re-announcement) are
		// recovery, not instability.
		st.since = flip{round: n, earliest: ob.earliest, latest: ob.latest}
		return vantagev1.State_STATE_UNSTABLE, st.since
	}
	return raw, ob
}

// routingRateRounds is how many rounds RoutingRateWindow spans.
func (e *Engine) routingRateRounds() int64 {
	return (int64(RoutingRateWindow) + e.roundLen - 1) / e.roundLen
}

// routingUnstable: the BGP evidence says s's prefixes' update rate is far
// above their baseline (RoutingFinding: UNSTABLE) at round n's end.
func (e *Engine) routingUnstable(s *subject, n int64) bool {
	return s.level != vantagev1.Level_LEVEL_TARGET && len(Instability(e.routingEvidence(s, n))) > 0
}

// enterEpisode makes s UNSTABLE; the episode's onset is the first flip in
// the window (the first flap).
func (e *Engine) enterEpisode(s *subject) (vantagev1.State, flip) {
	st := &s.stab
	st.pending = flip{}
	st.since = st.flips[0]
	return vantagev1.State_STATE_UNSTABLE, st.flips[0]
}

// inEpisode is the state of an UNSTABLE subject in round n: UNREACHABLE
// when its raw state has been UNREACHABLE for sustained rounds in a row
// (onset: the crossing that began it), its raw state once
// UnstableCalm rounds pass without a crossing (onset: the last crossing),
// UNSTABLE otherwise. Either way out, the flip history is cleared, so
// re-entering needs fresh flips.
func (e *Engine) inEpisode(s *subject, n int64) (vantagev1.State, flip) {
	st := &s.stab
	last := st.since
	if k := len(st.flips); k > 0 {
		last = st.flips[k-1]
	}
	switch {
	case s.raw == vantagev1.State_STATE_UNREACHABLE && st.downRun >= sustained:
		ended := fmt.Sprintf("unstable episode ended by a sustained outage: UNREACHABLE for %d rounds in a row (a flap is down for 1)",
			st.downRun)
		st.reset()
		st.ended = ended
		return s.raw, last
	case e.routingUnstable(s, n):
		// The routing still flaps: the episode goes on, however calm the
		// probes are.
	case n-last.round >= int64(e.cfg.UnstableCalm):
		st.reset()
		return s.raw, last
	}
	return vantagev1.State_STATE_UNSTABLE, last
}

// refined reports whether a DEGRADED or UNREACHABLE subject's location,
// established by traces, differs from the one last published and has held
// for two closed rounds (n and the one before). Only trace-based locations
// are published this way: a provisional one that changes (an upstream
// target flickering) is not news, nor is one round's half-arrived traces.
func (e *Engine) refined(s *subject, n int64) bool {
	switch {
	case s.state != vantagev1.State_STATE_DEGRADED && s.state != vantagev1.State_STATE_UNREACHABLE,
		s.raw != s.state || !s.locTraced || s.location == s.pubLoc:
		s.candLoc = vantagev1.Location_LOCATION_UNSPECIFIED
		return false
	case s.candLoc != s.location:
		s.candLoc, s.candRound = s.location, n
		return false
	}
	return n > s.candRound
}

// transition publishes s's current state (from -> s.state; from == s.state
// for a location refinement) and remembers the location it carried.
func (e *Engine) transition(s *subject, from vantagev1.State, n, now int64, notes []string) *vantagev1.Transition {
	s.pubLoc, s.candLoc = s.location, vantagev1.Location_LOCATION_UNSPECIFIED
	up, down := e.children(s)
	t := &vantagev1.Transition{
		Campaign:      e.cfg.Campaign,
		Level:         s.level,
		Subject:       s.name,
		From:          from,
		To:            s.state,
		OnsetEarliest: ts(s.onsetEarliest),
		OnsetLatest:   ts(s.onsetLatest),
		DetectedAt:    ts(now),
		Round:         n,
		Location:      s.location,
		Reason:        e.publishReason(s),
		VerdictId:     s.id,
		UpChildren:    up,
		DownChildren:  down,
		Notes:         notes,
	}
	e.remember(s, t)
	return t
}

// episodeNotes explains a held recovery or an episode's early end.
func (e *Engine) episodeNotes(s *subject) []string {
	st := &s.stab
	switch {
	case st.ended != "":
		return []string{st.ended}
	case st.pending.round > 0:
		return []string{fmt.Sprintf("recovering: %s since round %d, %s kept for up to %d rounds in case it is a flap (the outage lasted under %d rounds)",
			shortState(s.raw), st.pending.round, shortState(s.state), flapHold, shortOutage)}
	}
	return nil
}

// unstableNote describes an UNSTABLE subject's window.
func (e *Engine) unstableNote(s *subject) string {
	if e.routingUnstable(s, s.stateRound) && len(s.stab.flips) < e.cfg.UnstableFlips {
		why := Instability(e.routingEvidence(s, s.stateRound))
		return fmt.Sprintf("unstable: BGP shows routing instability since round %d (%s); the probes see %s",
			s.stab.since.round, strings.Join(why, "; "), shortState(s.raw))
	}
	return fmt.Sprintf("unstable: %d crossings of the REACHABLE boundary in the last %d rounds (enter at %d, or when a quick recovery goes down again within %d rounds; leave after %d calm rounds, or on %d rounds UNREACHABLE in a row); flapping since round %d; now %s",
		len(s.stab.flips), e.cfg.UnstableWindow, e.cfg.UnstableFlips, flapHold, e.cfg.UnstableCalm, sustained, s.stab.since.round, shortState(s.raw))
}

func shortState(s vantagev1.State) string {
	switch s {
	case vantagev1.State_STATE_REACHABLE:
		return "REACHABLE"
	case vantagev1.State_STATE_DEGRADED:
		return "DEGRADED"
	case vantagev1.State_STATE_UNSTABLE:
		return "UNSTABLE"
	case vantagev1.State_STATE_UNREACHABLE:
		return "UNREACHABLE"
	case vantagev1.State_STATE_UNKNOWN:
		return "UNKNOWN"
	}
	return "UNSPECIFIED"
}
