package scenarios

// Flapping routes (issue 11): an episode, not a flood of transitions; and
// a blackout in the middle of one, published as fast as any other.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// flapper runs lab.Flap (every route withdrawn and restored, each for
// flapPeriod) in a goroutine it owns until stop.
type flapper struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error
}

// flapPeriod is how many rounds the routes stay withdrawn, then restored:
// one. Two rounds down is an outage (the verdict engine's rule, issue 11),
// so a two-round period would be a string of outages, not an episode.
const flapPeriod = 1

// startFlapping starts flapping at the next boundary and returns it. The
// flapping stops at the test's end if stop was not called (a failed wait
// must not leave the lab flapping under the next scenario).
func (s *suite) startFlapping(t *testing.T) (*flapper, time.Time) {
	t.Helper()
	f := &flapper{}
	fctx, cancel := context.WithCancel(s.ctx)
	f.cancel = cancel
	b := s.atBoundary(t, "start flapping", func() error {
		f.wg.Go(func() { f.err = s.h.Lab.Flap(fctx, flapPeriod*s.round) })
		return nil
	})
	t.Cleanup(func() { f.cancel(); f.wg.Wait() })
	return f, b
}

// stop ends the flapping (Flap restores every route) and waits for it.
func (f *flapper) stop(t *testing.T) {
	t.Helper()
	f.cancel()
	f.wg.Wait()
	if f.err != nil {
		t.Fatalf("flap: %v", f.err)
	}
}

// flapping: every route withdrawn and restored every flapPeriod rounds for
// twenty rounds. The scope must become UNSTABLE within 3 rounds of the second
// change (the first restoration), stay UNSTABLE until the flapping stops,
// and the timeline (its folded view, what a reader quotes) must show at
// most 2 scope transitions for the episode: into UNSTABLE, with the
// episode's onset at the first flap, and out. The first flap's
// UNREACHABLE is published at once (it could be a blackout) and folded
// into the episode when it begins.
func (s *suite) flapping(t *testing.T) {
	const (
		flapRounds         = 20
		maxEnter           = 3
		maxFlapTransitions = 2
	)
	// The crossings of the scenario before (inside the engine's unstable
	// window) would make the first flap UNSTABLE at once: let them age out,
	// so the episode is this flapping's own.
	time.Sleep(verdict.DefaultUnstableWindow * s.round)
	f, b := s.startFlapping(t)
	// Each round, what the scope and its networks say (the log shows how
	// the episode went).
	for next := b.Add(s.round * 3 / 4); next.Before(b.Add(flapRounds * s.round)); next = next.Add(s.round) {
		time.Sleep(time.Until(next))
		t.Logf("flapping: %s", s.roundView(t))
	}
	time.Sleep(time.Until(b.Add(flapRounds * s.round)))
	f.stop(t)
	end := time.Now()
	// Leaving UNSTABLE takes the engine's calm rounds; allow 30 rounds.
	wctx, wcancel := context.WithTimeout(s.ctx, 30*s.round)
	_, werr := s.h.WaitVerdict(wctx, s.name, s.scopeID, func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_REACHABLE) })
	wcancel()
	settled := time.Now()
	ts := s.transitions(t, vantagev1.Level_LEVEL_SCOPE, b.Add(-s.round), time.Time{})
	all := s.allTransitions(t, vantagev1.Level_LEVEL_SCOPE, b.Add(-s.round))
	episodes := 0
	var first, exit *vantagev1.Transition
	for _, tr := range ts {
		if tr.GetTo() == vantagev1.State_STATE_UNSTABLE {
			episodes++
			if first == nil {
				first = tr
			}
		}
		if tr.GetFrom() == vantagev1.State_STATE_UNSTABLE && exit == nil {
			exit = tr
		}
	}
	// The second change is the first restoration, flapPeriod rounds in.
	second := b.Add(flapPeriod * s.round)
	enter := -1
	if first != nil {
		_, enter = s.latency(second, first)
	}
	// Leaving UNSTABLE before the last flap (allow one round for it to be
	// seen) would cut the period into pieces.
	exitEarly := exit != nil && exit.GetDetectedAt().AsTime().Before(end.Add(-s.round))
	ok := episodes == 1 && werr == nil && len(ts) <= maxFlapTransitions && !exitEarly && enter >= 0 && enter <= maxEnter &&
		!first.GetDetectedAt().AsTime().Before(second)
	r := result{scenario: fmt.Sprintf("flapping routes (%d down, %d up, %d rounds)", flapPeriod, flapPeriod, flapRounds),
		want: fmt.Sprintf("UNSTABLE <= %d rounds after the 2nd change, <= %d transitions", maxEnter, maxFlapTransitions),
		got:  fmt.Sprintf("%d UNSTABLE episodes, %d scope transitions (%d before folding)", episodes, len(ts), len(all)), location: "-", pass: ok,
		note: fmt.Sprintf("back to REACHABLE %s rounds after the flapping stopped", s.rounds(settled.Sub(end)))}
	if first != nil {
		r.hasLatency, r.closed = true, enter
		r.latency, _ = s.latency(second, first)
		r.location = loc(first.GetLocation())
		r.note += fmt.Sprintf("; the episode's onset %s, the first flap %s; latency from the 2nd change",
			first.GetOnsetEarliest().AsTime().Format("15:04:05.000"), b.Format("15:04:05.000"))
	}
	if werr != nil {
		r.note = "scope not back to REACHABLE within 30 rounds after the flapping stopped"
	}
	s.record(r)
	t.Logf("flapping: %d scope transitions (folded view):%s", len(ts), describeTransitions(ts))
	t.Logf("flapping: %d scope transitions before folding:%s", len(all), describeTransitions(all))
	switch {
	case episodes != 1:
		t.Errorf("flapping for %d rounds gave %d UNSTABLE episodes, want exactly 1", flapRounds, episodes)
	case first.GetDetectedAt().AsTime().Before(second):
		t.Errorf("UNSTABLE at %s, before the second change (%s): crossings from before the flapping made the episode",
			first.GetDetectedAt().AsTime().Format("15:04:05.000"), second.Format("15:04:05.000"))
	case enter < 0 || enter > maxEnter:
		t.Errorf("UNSTABLE %d closed rounds after the second change, want <= %d", enter, maxEnter)
	}
	if werr != nil {
		t.Errorf("scope not REACHABLE within 30 rounds after the flapping stopped: %v", werr)
	}
	if len(ts) > maxFlapTransitions {
		t.Errorf("flapping gave %d scope transitions, want at most %d (one UNSTABLE episode, not a flood)", len(ts), maxFlapTransitions)
	}
	if t.Failed() || testing.Verbose() {
		for _, lv := range []vantagev1.Level{vantagev1.Level_LEVEL_NETWORK} {
			t.Logf("%s transitions during the flapping (folded ones too):%s", lv, describeTransitions(s.allTransitions(t, lv, b.Add(-s.round))))
		}
	}
	if exitEarly {
		t.Errorf("the UNSTABLE episode ended at %s (%s -> %s), before the flapping stopped at %s",
			exit.GetDetectedAt().AsTime().Format("15:04:05.000"), short(exit.GetFrom()), short(exit.GetTo()), end.Format("15:04:05.000"))
	}
	s.waitClean(t, 30)
}

// flapBlackout: flapping until the scope is UNSTABLE, then, at a boundary,
// a blackout that stays. A sustained outage ends the episode: the scope
// must be UNREACHABLE (from UNSTABLE) within 2 rounds of the blackout,
// located at the upstream as any blackout is.
func (s *suite) flapBlackout(t *testing.T) {
	f, _ := s.startFlapping(t)
	s.waitScope(t, 8, "scope UNSTABLE while flapping", func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_UNSTABLE) })
	time.Sleep(2 * s.round)
	f.stop(t)
	if v := s.scope(t); !state(v, vantagev1.State_STATE_UNSTABLE) {
		t.Fatalf("scope %s before the blackout, want UNSTABLE: the scenario would not test a blackout inside an episode", short(v.GetState()))
	}
	o := s.outage(t, "blackout during flapping", func() error { return s.h.Lab.Blackout() },
		outageWant{state: vantagev1.State_STATE_UNREACHABLE, loc: vantagev1.Location_LOCATION_UPSTREAM, maxClosed: 2})
	if o.tr.GetFrom() != vantagev1.State_STATE_UNSTABLE {
		t.Errorf("the blackout's transition is %s -> %s, want from UNSTABLE", short(o.tr.GetFrom()), short(o.tr.GetTo()))
	}
	if err := s.h.Lab.Restore(); err != nil {
		t.Fatal(err)
	}
	s.waitClean(t, 30)
}

// roundView is the scope's state and notes and its networks' states, in
// one line.
func (s *suite) roundView(t *testing.T) string {
	t.Helper()
	v := s.scope(t)
	nets := ""
	for _, n := range s.verdicts(t, vantagev1.Level_LEVEL_NETWORK) {
		nets += fmt.Sprintf(" %s=%s", n.GetSubject(), short(n.GetState()))
	}
	hosts := ""
	for _, tv := range s.verdicts(t, vantagev1.Level_LEVEL_TARGET) {
		if tv.GetSubject() != "198.18.0.10" && tv.GetSubject() != "198.18.2.10" {
			continue
		}
		hosts += fmt.Sprintf(" %s=%s[", tv.GetSubject(), short(tv.GetState()))
		for _, ev := range tv.GetEvidence() {
			hosts += fmt.Sprintf(" %s:%s/r%d", ev.GetAgentName(), short(ev.GetState()), ev.GetLastRound())
		}
		hosts += fmt.Sprintf("] %q", tv.GetNotes())
	}
	return fmt.Sprintf("round %d scope %s%s; notes %q;%s", v.GetRound(), short(v.GetState()), nets, v.GetNotes(), hosts)
}

// allTransitions is every scope-or-level transition detected from `from`,
// folded ones included.
func (s *suite) allTransitions(t *testing.T, level vantagev1.Level, from time.Time) []*vantagev1.Transition {
	t.Helper()
	resp, err := s.h.Operator.GetTimeline(s.authed(), &vantagev1.GetTimelineRequest{Campaign: s.name, Level: level, IncludeFolded: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []*vantagev1.Transition
	for _, tr := range resp.GetTransitions() {
		if !tr.GetDetectedAt().AsTime().Before(from) && tr.GetFrom() != tr.GetTo() {
			out = append(out, tr)
		}
	}
	return out
}
