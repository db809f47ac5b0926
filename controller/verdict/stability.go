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

// stability tracks a subject's raw-state crossings for UNSTABLE.
type stability struct {
	lastRaw vantagev1.State // last known raw state (never UNKNOWN)
	flips   []flip          // within the window, oldest first
	since   flip            // when the current UNSTABLE episode began
}

func isGood(s vantagev1.State) bool { return s == vantagev1.State_STATE_REACHABLE }

// known reports whether s is a published state other than UNKNOWN.
func known(s vantagev1.State) bool {
	return s != vantagev1.State_STATE_UNSPECIFIED && s != vantagev1.State_STATE_UNKNOWN
}

// settle moves s to its state for round n, applying the UNSTABLE
// hysteresis, and emits a transition if the published state changed. lo/hi
// are the earliest and latest SentAt in round n.
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
	raw := s.raw
	st := &s.stab
	if raw != vantagev1.State_STATE_UNKNOWN {
		if st.lastRaw != vantagev1.State_STATE_UNSPECIFIED && isGood(raw) != isGood(st.lastRaw) {
			st.flips = append(st.flips, flip{round: n, earliest: earliest, latest: latest})
		}
		st.lastRaw = raw
	}
	w := int64(e.cfg.UnstableWindow)
	drop := 0
	for drop < len(st.flips) && st.flips[drop].round <= n-w {
		drop++
	}
	st.flips = st.flips[drop:]
	if n < e.resume {
		// Evaluated by a previous engine (Restore): learn, publish nothing.
		if raw == vantagev1.State_STATE_UNKNOWN {
			st.flips = st.flips[:0]
		}
		s.lastMaxSent = hi
		return
	}

	next, from := raw, s.state
	ob := flip{earliest: earliest, latest: latest}
	if raw != vantagev1.State_STATE_UNKNOWN {
		s.held = 0
	}
	switch {
	case raw == vantagev1.State_STATE_UNKNOWN && !s.unknownGlobal && known(s.state) && s.held < e.cfg.UncertainHold:
		// Beliefs in flux, quorum intact: no evidence of a change. The
		// state and the flip history stand.
		s.held++
		next = s.state
	case raw == vantagev1.State_STATE_UNKNOWN:
		s.held = 0
		st.flips = st.flips[:0]
	case s.state == vantagev1.State_STATE_UNSTABLE:
		last := st.since.round
		if k := len(st.flips); k > 0 {
			last = st.flips[k-1].round
			ob = st.flips[k-1]
		}
		if n-last >= int64(e.cfg.UnstableCalm) {
			st.flips = st.flips[:0] // hysteresis: re-entering needs fresh flips
		} else {
			next = vantagev1.State_STATE_UNSTABLE
		}
	case len(st.flips) >= e.cfg.UnstableFlips:
		next = vantagev1.State_STATE_UNSTABLE
		st.since = st.flips[0]
		ob = st.flips[0]
	}
	switch {
	case next != s.state:
		s.state, s.stateRound = next, n
		s.onsetEarliest, s.onsetLatest = ob.earliest, ob.latest
		*out = append(*out, e.transition(s, from, n, now, e.notes(s)))
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
	return &vantagev1.Transition{
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
}

// unstableNote describes an UNSTABLE subject's window.
func (e *Engine) unstableNote(s *subject) string {
	return fmt.Sprintf("unstable: %d crossings of the REACHABLE boundary in the last %d rounds (enter at %d, leave after %d calm rounds); flapping since round %d; now %s",
		len(s.stab.flips), e.cfg.UnstableWindow, e.cfg.UnstableFlips, e.cfg.UnstableCalm, s.stab.since.round, shortState(s.raw))
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
