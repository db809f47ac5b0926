package verdict

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// pattern runs rounds warmup.. of a scope whose networks are all down in
// the rounds down says, up otherwise, for rounds rounds, then up until
// the end (30 more), and returns the scope's transitions after warmup.
func pattern(t *testing.T, rounds int64, down func(k int64) bool) []*vantagev1.Transition {
	t.Helper()
	cfg := labConfig()
	e := warmed(t, cfg, agents3)
	var ss []step
	for k := int64(0); k < rounds+30; k++ {
		w := world(allUp)
		if k < rounds && down(k) {
			w = netsDown(allNets...)
		}
		ss = append(ss, step{warmup + k, agents3, w})
	}
	return transitionsOf(flat(run(t, e, cfg, ss)), scopeID)
}

func describe(trs []*vantagev1.Transition) string {
	var b strings.Builder
	for _, tr := range trs {
		fmt.Fprintf(&b, " r%d:%s->%s", tr.GetRound()-warmup, shortState(tr.GetFrom()), shortState(tr.GetTo()))
	}
	return b.String()
}

// flapEvery is down for d rounds, up for u rounds, repeating.
func flapEvery(d, u int64) func(int64) bool { return func(k int64) bool { return k%(d+u) < d } }

// TestFlappingEpisode: flapping is UNSTABLE within 3 rounds of its second
// change, the onset is the first flap, and the episode is the first flap's
// transition (published at once: it may be a blackout), one into UNSTABLE
// and one out.
func TestFlappingEpisode(t *testing.T) {
	for _, c := range []struct{ down, up int64 }{{1, 1}, {2, 2}, {1, 3}, {2, 3}, {2, 1}} {
		t.Run(fmt.Sprintf("down %d up %d", c.down, c.up), func(t *testing.T) {
			trs := pattern(t, 20, flapEvery(c.down, c.up))
			second := c.down // the round of the second change (the first recovery)
			t.Logf("%d scope transitions:%s", len(trs), describe(trs))
			if len(trs) != 3 || trs[1].GetTo() != unstable || trs[2].GetFrom() != unstable {
				t.Fatalf("scope transitions%s; want 3: the first flap, into UNSTABLE, out of it", describe(trs))
			}
			if at := trs[1].GetRound() - warmup; at > second+3 {
				t.Errorf("UNSTABLE in round %d, more than 3 rounds after the second change (round %d)", at, second)
			}
			// No traces: the UNSTABLE transition promises no location it
			// will never refine (the lab suite showed LOCATING there).
			if l := trs[1].GetLocation(); l != vantagev1.Location_LOCATION_UNSPECIFIED && l != vantagev1.Location_LOCATION_NONE {
				t.Errorf("UNSTABLE at %s without traces, want no location", l)
			}
			if !trs[1].GetOnsetLatest().AsTime().Equal(trs[0].GetOnsetLatest().AsTime()) {
				t.Errorf("UNSTABLE onset %s, want the first flap's %s", trs[1].GetOnsetLatest().AsTime(), trs[0].GetOnsetLatest().AsTime())
			}
		})
	}
}

// TestOutageEndsEpisode: a blackout inside an UNSTABLE episode is
// published as UNREACHABLE within 2 rounds of its onset (the episode's
// down stretches were shorter), not after UnstableCalm calm rounds.
func TestOutageEndsEpisode(t *testing.T) {
	for _, c := range []struct {
		down, up  int64
		wantAfter int64 // rounds from the blackout's onset to UNREACHABLE
	}{{1, 1, 1}, {2, 2, 2}, {1, 2, 1}} {
		t.Run(fmt.Sprintf("down %d up %d", c.down, c.up), func(t *testing.T) {
			const flapping = 12
			onset := int64(flapping)
			for onset%(c.down+c.up) != 0 {
				onset++ // begin the blackout where a down stretch would
			}
			trs := pattern(t, onset+10, func(k int64) bool { return k >= onset || flapEvery(c.down, c.up)(k) })
			t.Logf("blackout from round %d:%s", onset, describe(trs))
			var got *vantagev1.Transition
			for _, tr := range trs {
				if tr.GetFrom() == unstable {
					got = tr
					break
				}
			}
			if got == nil || got.GetTo() != unreachable {
				t.Fatalf("no UNSTABLE -> UNREACHABLE:%s", describe(trs))
			}
			after := got.GetRound() - warmup - onset
			t.Logf("UNREACHABLE %d rounds after the blackout's onset", after)
			if after != c.wantAfter {
				t.Errorf("UNREACHABLE %d rounds after the onset, want %d (at most 2)", after, c.wantAfter)
			}
			if !hasNote(got.GetNotes(), "unstable episode ended by a sustained outage") {
				t.Errorf("notes %q lack the reason", got.GetNotes())
			}
			// Its onset is the blackout's, not the episode's.
			if lat := got.GetOnsetLatest().AsTime(); !lat.Equal(roundAt(warmup + onset)) {
				t.Errorf("onset latest %s, want the start of the blackout round", lat)
			}
		})
	}
}

func hasNote(notes []string, prefix string) bool {
	return slices.ContainsFunc(notes, func(n string) bool { return strings.HasPrefix(n, prefix) })
}

// roundAt is the start of round n (the first SentAt: agt-a, target 0).
func roundAt(n int64) time.Time { return t0.Add(time.Duration(n) * round) }

// TestShortOutageHeld: a single short outage is not UNSTABLE; its
// recovery is published flapHold rounds late with its own onset. A
// long outage's recovery is published at once.
func TestShortOutageHeld(t *testing.T) {
	for _, c := range []struct {
		name      string
		down      int64
		wantRound int64 // of the recovery, from the outage's start
	}{{"one round down", 1, 1 + flapHold}, {"two rounds down", 2, 2 + flapHold}, {"three rounds down", 3, 3}, {"ten rounds down", 10, 10}} {
		t.Run(c.name, func(t *testing.T) {
			trs := pattern(t, c.down, func(int64) bool { return true })
			t.Logf("%s", describe(trs))
			if len(trs) != 2 || trs[0].GetTo() != unreachable || trs[1].GetTo() != reachable {
				t.Fatalf("scope transitions%s; want UNREACHABLE then REACHABLE", describe(trs))
			}
			if at := trs[1].GetRound() - warmup; at != c.wantRound {
				t.Errorf("recovery published in round %d, want %d", at, c.wantRound)
			}
			if lat := trs[1].GetOnsetLatest().AsTime(); !lat.Equal(roundAt(warmup + c.down)) {
				t.Errorf("recovery onset latest %s, want the first round back up", lat)
			}
		})
	}
}
