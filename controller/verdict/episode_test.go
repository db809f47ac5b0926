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
// and one out. The flaps are one round down: two rounds down is a
// sustained outage (TestTwoRoundsDownIsAnOutage).
func TestFlappingEpisode(t *testing.T) {
	for _, c := range []struct{ down, up int64 }{{1, 1}, {1, 2}, {1, 3}} {
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
// published as UNREACHABLE in its second round (2 rounds down in a row is
// a sustained outage), not after UnstableCalm calm rounds. Before issue
// 11's 2-round rule it took one round more than the episode's longest
// down stretch: 3 rounds after a first flap 2 rounds long.
func TestOutageEndsEpisode(t *testing.T) {
	// firstLong: the first flap is 2 rounds down (its recovery held, the
	// next flap the episode), then 1 down, 1 up.
	firstLong := func(k int64) bool { return k < 2 || k%2 == 1 }
	for _, c := range []struct {
		name  string
		flaps func(int64) bool
		onset int64 // the blackout's first round, after an up round
	}{
		{"down 1 up 1", flapEvery(1, 1), 12},
		{"down 1 up 2", flapEvery(1, 2), 12},
		{"down 1 up 3", flapEvery(1, 3), 12},
		{"first flap 2 rounds down, then down 1 up 1", firstLong, 13},
	} {
		t.Run(c.name, func(t *testing.T) {
			onset := c.onset
			trs := pattern(t, onset+10, func(k int64) bool { return k >= onset || c.flaps(k) })
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
			if after != sustained-1 {
				t.Errorf("UNREACHABLE %d rounds after the onset, want %d (published in its round %d)", after, sustained-1, sustained)
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

// TestTwoRoundsDownIsAnOutage: flapping 2 rounds down is a series of
// outages, each published as UNREACHABLE in its second round at the
// latest; an episode it enters lasts one round. (Before issue 11's 2-round
// rule these patterns were one episode, and a blackout inside it took 3
// rounds.)
func TestTwoRoundsDownIsAnOutage(t *testing.T) {
	for _, c := range []struct{ down, up int64 }{{2, 1}, {2, 2}, {2, 3}} {
		t.Run(fmt.Sprintf("down %d up %d", c.down, c.up), func(t *testing.T) {
			flaps := flapEvery(c.down, c.up)
			trs := pattern(t, 20, flaps)
			t.Logf("%d scope transitions:%s", len(trs), describe(trs))
			for k := int64(1); k < 20; k++ {
				if !flaps(k) || !flaps(k-1) || (k >= 2 && flaps(k-2)) {
					continue // not the second round of a down stretch
				}
				if st := stateAt(trs, warmup+k); st != unreachable {
					t.Errorf("round %d, the second of a down stretch: %s, want UNREACHABLE", k, shortState(st))
				}
			}
		})
	}
}

// stateAt is the state trs (one subject's, in order) published for round n.
func stateAt(trs []*vantagev1.Transition, n int64) vantagev1.State {
	st := vantagev1.State_STATE_REACHABLE
	for _, tr := range trs {
		if tr.GetRound() <= n {
			st = tr.GetTo()
		}
	}
	return st
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
