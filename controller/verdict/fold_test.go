package verdict

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ftr is a transition of verdict id in round n (detected at the round's
// end, onset its start), from -> to, folding since foldsSince.
func ftr(id string, n int64, from, to vantagev1.State, foldsSince int64) *vantagev1.Transition {
	return &vantagev1.Transition{VerdictId: id, Round: n, From: from, To: to, FoldsSinceRound: foldsSince,
		OnsetEarliest: timestamppb.New(roundAt(n)), DetectedAt: timestamppb.New(roundAt(n + 1))}
}

// TestFold: the folded view leaves out what a transition into UNSTABLE
// folds, and only that.
func TestFold(t *testing.T) {
	const a, b = "c/scope/a", "c/network/b"
	up, down, unspec := reachable, unreachable, vantagev1.State_STATE_UNSPECIFIED
	// episodeOnset: an UNSTABLE transition whose onset is round 20's.
	episodeOnset := func(tr *vantagev1.Transition) *vantagev1.Transition {
		tr.OnsetEarliest = timestamppb.New(roundAt(20))
		return tr
	}
	renumbered := ftr(a, 21, up, down, 0) // a round number from before a campaign edit
	renumbered.DetectedAt = timestamppb.New(roundAt(5))
	marked := ftr(a, 20, up, down, 0)
	marked.FoldedInto = 9
	for _, c := range []struct {
		name string
		ts   []*vantagev1.Transition
		want []int // indices of ts kept
	}{
		{"nothing to fold", []*vantagev1.Transition{ftr(a, 0, unspec, up, 0), ftr(a, 20, up, down, 0), ftr(a, 24, down, up, 0)}, []int{0, 1, 2}},
		{"the first flap", []*vantagev1.Transition{ftr(a, 0, unspec, up, 0), ftr(a, 20, up, down, 0),
			episodeOnset(ftr(a, 22, up, unstable, 20)), ftr(a, 30, unstable, up, 0)}, []int{0, 2, 3}},
		{"the first flap and its refinement", []*vantagev1.Transition{ftr(a, 20, up, down, 0), ftr(a, 21, down, down, 0),
			episodeOnset(ftr(a, 22, up, unstable, 20))}, []int{2}},
		{"another verdict's transitions stay", []*vantagev1.Transition{ftr(a, 20, up, down, 0), ftr(b, 20, up, down, 0),
			episodeOnset(ftr(a, 22, up, unstable, 20)), ftr(b, 23, down, up, 0)}, []int{1, 2, 3}},
		{"before the onset round stays", []*vantagev1.Transition{ftr(a, 19, up, down, 0), ftr(a, 20, down, up, 0),
			episodeOnset(ftr(a, 22, up, unstable, 20))}, []int{0, 2}},
		{"detected before the onset stays (renumbered rounds)", []*vantagev1.Transition{renumbered,
			episodeOnset(ftr(a, 22, up, unstable, 20))}, []int{0, 1}},
		{"marked folded is left out", []*vantagev1.Transition{marked, ftr(a, 22, down, unstable, 0)}, []int{1}},
		{"an UNSTABLE transition that folds nothing", []*vantagev1.Transition{ftr(a, 18, up, down, 0),
			episodeOnset(ftr(a, 22, down, unstable, 0))}, []int{0, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var want []*vantagev1.Transition
			for _, i := range c.want {
				want = append(want, c.ts[i])
			}
			if got := Fold(c.ts); !slices.Equal(got, want) {
				t.Errorf("Fold = %s, want %s", describeRounds(got), describeRounds(want))
			}
		})
	}
}

func TestMarkFolded(t *testing.T) {
	ts := []*vantagev1.Transition{ftr("v", 0, 0, reachable, 0), ftr("v", 20, reachable, unreachable, 0), ftr("v", 21, unreachable, unreachable, 0),
		ftr("v", 22, reachable, unstable, 20)}
	ts[3].OnsetEarliest = ts[1].OnsetEarliest
	for i, tr := range ts {
		tr.Id = int64(i + 1)
	}
	if n := MarkFolded(ts); n != 2 {
		t.Errorf("MarkFolded = %d, want 2", n)
	}
	for i, want := range []int64{0, 4, 4, 0} {
		if got := ts[i].GetFoldedInto(); got != want {
			t.Errorf("transition %d folded into %d, want %d", i+1, got, want)
		}
	}
	if got := Fold(ts); len(got) != 2 || got[1] != ts[3] {
		t.Errorf("Fold of the marked timeline = %s, want rounds 0 and 22", describeRounds(got))
	}
}

// TestFlappingFolded: the transition into UNSTABLE folds the first flap's
// (published at once: it may be a blackout), so the folded view of a
// flapping episode is 2 scope transitions: REACHABLE -> UNSTABLE with the
// first flap's onset, and out. Before folding: 3.
func TestFlappingFolded(t *testing.T) {
	for _, c := range []struct{ down, up int64 }{{1, 1}, {1, 2}, {1, 3}} {
		t.Run(fmt.Sprintf("down %d up %d", c.down, c.up), func(t *testing.T) {
			trs := pattern(t, 20, flapEvery(c.down, c.up))
			folded := Fold(trs)
			t.Logf("%d scope transitions, %d folded:%s", len(trs), len(folded), describe(folded))
			if len(trs) != 3 {
				t.Fatalf("scope transitions%s; want 3", describe(trs))
			}
			first, in := trs[0], trs[1]
			if in.GetTo() != unstable || in.GetFrom() != reachable || in.GetFoldsSinceRound() != first.GetRound() {
				t.Errorf("into UNSTABLE: %s -> %s folding since round %d; want REACHABLE -> UNSTABLE folding since %d (the first flap)",
					shortState(in.GetFrom()), shortState(in.GetTo()), in.GetFoldsSinceRound(), first.GetRound())
			}
			note := fmt.Sprintf("folds the UNREACHABLE published at round %d: the episode's first flap", first.GetRound())
			if len(in.GetNotes()) == 0 || in.GetNotes()[0] != note {
				t.Errorf("notes %q, want %q first", in.GetNotes(), note)
			}
			if len(folded) != 2 || folded[0] != in || folded[1].GetFrom() != unstable || folded[1].GetTo() != reachable {
				t.Errorf("folded view%s; want REACHABLE -> UNSTABLE, UNSTABLE -> REACHABLE", describe(folded))
			}
			if !in.GetOnsetLatest().AsTime().Equal(first.GetOnsetLatest().AsTime()) {
				t.Errorf("UNSTABLE onset %s, want the first flap's %s", in.GetOnsetLatest().AsTime(), first.GetOnsetLatest().AsTime())
			}
		})
	}
}

// TestFoldsNothingPublished: an episode whose onset is after everything
// its subject published folds nothing: folds_since_round 0, from the
// current state.
func TestFoldsNothingPublished(t *testing.T) {
	e := newEngine(t, labConfig())
	s := e.scope
	s.pubs = []pubEntry{{round: 3, from: reachable, to: unreachable}}
	s.stab.since = flip{round: 5}
	from, since, notes := e.folds(s, unreachable, []string{"x"})
	if from != unreachable || since != 0 || !slices.Equal(notes, []string{"x"}) {
		t.Errorf("folds = %s, %d, %q; want UNREACHABLE, 0, the notes unchanged", shortState(from), since, notes)
	}
	s.pubs = append(s.pubs, pubEntry{round: 5, from: unreachable, to: reachable}, pubEntry{round: 6, from: reachable, to: reachable})
	from, since, notes = e.folds(s, reachable, nil)
	want := "folds the 2 transitions published since the episode's first flap (round 5): REACHABLE at round 5, REACHABLE (refined) at round 6"
	if from != unreachable || since != 5 || len(notes) != 1 || notes[0] != want {
		t.Errorf("folds = %s, %d, %q; want UNREACHABLE, 5, %q", shortState(from), since, notes, want)
	}
}

// TestRestoreFolds: the first flap published before a restart is folded
// by the episode the restored engine enters.
func TestRestoreFolds(t *testing.T) {
	cfg := labConfig()
	orig := warmed(t, cfg, agents3)
	before := run(t, orig, cfg, steps(warmup, warmup, agents3, netsDown(allNets...))) // the first flap
	e := newEngine(t, cfg)
	if _, err := e.Restore(warmup+1, published(before)); err != nil {
		t.Fatal(err)
	}
	ss := steps(0, warmup-1, agents3, allUp) // re-fed
	ss = append(ss, steps(warmup, warmup, agents3, netsDown(allNets...))...)
	ss = append(ss, steps(warmup+1, warmup+1, agents3, allUp)...)
	ss = append(ss, steps(warmup+2, warmup+2, agents3, netsDown(allNets...))...)
	trs := transitionsOf(flat(run(t, e, cfg, ss)), scopeID)
	if len(trs) != 1 || trs[0].GetTo() != unstable || trs[0].GetFrom() != reachable || trs[0].GetFoldsSinceRound() != warmup {
		t.Fatalf("restored scope transitions%s (folding since %v); want REACHABLE -> UNSTABLE folding since round %d",
			describe(trs), foldsSince(trs), warmup)
	}
}

func foldsSince(trs []*vantagev1.Transition) []int64 {
	var out []int64
	for _, tr := range trs {
		out = append(out, tr.GetFoldsSinceRound())
	}
	return out
}
