package verdict

import (
	"fmt"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Folding (issue 11). The first flap of an episode is published at once:
// it may be a blackout, and a blackout must be on the timeline within the
// round. When the subject then turns UNSTABLE, its transition into
// UNSTABLE folds the ones it published since the episode's onset (the
// first flap's UNREACHABLE, a location refinement of it, a held recovery
// published in the window): its From is the state published before them
// and its folds_since_round the episode's first round, so the folded view
// of the timeline reads REACHABLE -> UNSTABLE with the first flap's onset,
// one episode. Nothing is rewritten here or deleted by the store: the
// folded transitions stay on the timeline, marked (folded_into), and are
// returned on request.

// pubEntry is one transition a subject published, as much of it as
// folding needs.
type pubEntry struct {
	round    int64
	from, to vantagev1.State
}

// remember records t, which s just published. Only the last
// UnstableWindow rounds' entries are kept: an episode's onset is a flip in
// the window, so older ones are never folded.
func (e *Engine) remember(s *subject, t *vantagev1.Transition) {
	n := t.GetRound()
	drop := 0
	for drop < len(s.pubs) && s.pubs[drop].round <= n-int64(e.cfg.UnstableWindow) {
		drop++
	}
	s.pubs = append(s.pubs[:0], s.pubs[drop:]...)
	s.pubs = append(s.pubs, pubEntry{round: n, from: t.GetFrom(), to: t.GetTo()})
}

// folds returns what s's transition into UNSTABLE carries: the state it
// comes from (the one published before the first transition since the
// episode's onset, from when nothing was published since), the round it
// folds since (0: nothing) and its notes, led by one naming what it folds.
func (e *Engine) folds(s *subject, from vantagev1.State, notes []string) (vantagev1.State, int64, []string) {
	since := s.stab.since.round
	i := len(s.pubs)
	for i > 0 && s.pubs[i-1].round >= since {
		i--
	}
	folded := s.pubs[i:]
	if since <= 0 || len(folded) == 0 {
		return from, 0, notes
	}
	return folded[0].from, since, append([]string{foldNote(folded, since)}, notes...)
}

// foldNote names the transitions an UNSTABLE transition folds.
func foldNote(folded []pubEntry, since int64) string {
	name := func(p pubEntry) string {
		if p.from == p.to {
			return shortState(p.to) + " (refined)"
		}
		return shortState(p.to)
	}
	onset := fmt.Sprintf("the episode's first flap (round %d)", since)
	if folded[0].round != since {
		onset = fmt.Sprintf("the episode's onset (round %d)", since)
	}
	if len(folded) == 1 {
		if folded[0].round == since {
			return fmt.Sprintf("folds the %s published at round %d: the episode's first flap", name(folded[0]), since)
		}
		return fmt.Sprintf("folds the %s published at round %d, after %s", name(folded[0]), folded[0].round, onset)
	}
	parts := make([]string, len(folded))
	for i, p := range folded {
		parts[i] = fmt.Sprintf("%s at round %d", name(p), p.round)
	}
	return fmt.Sprintf("folds the %d transitions published since %s: %s", len(folded), onset, strings.Join(parts, ", "))
}

// Fold returns the folded view of ts, transitions in the order they were
// published (an engine's or a replay's output, or a stored timeline with
// its folded transitions): ts without the transitions a later one folds
// and without those marked folded (FoldedInto set). A transition with
// FoldsSinceRound > 0 folds the transitions of its verdict (VerdictId)
// that precede it, latest first, while their round is in
// [FoldsSinceRound, its round] and they were detected no earlier than its
// OnsetEarliest (a campaign edit may renumber rounds; the clock is not
// renumbered; without an OnsetEarliest it folds nothing). The store
// applies the same rule (controller/store/sqlite).
// ts is not modified.
func Fold(ts []*vantagev1.Transition) []*vantagev1.Transition {
	by := foldedBy(ts)
	out := make([]*vantagev1.Transition, 0, len(ts))
	for i, t := range ts {
		if by[i] < 0 && t.GetFoldedInto() == 0 {
			out = append(out, t)
		}
	}
	return out
}

// MarkFolded sets FoldedInto, on each transition of ts that a later one
// folds (see Fold), to the folding transition's Id, and returns how many
// it marked. Ids must be set (a replay numbers its transitions).
func MarkFolded(ts []*vantagev1.Transition) int {
	n := 0
	for i, j := range foldedBy(ts) {
		if j >= 0 {
			ts[i].FoldedInto = ts[j].GetId()
			n++
		}
	}
	return n
}

// foldedBy is, for each transition of ts, the index of the transition that
// folds it, -1 if none.
func foldedBy(ts []*vantagev1.Transition) []int {
	by := make([]int, len(ts))
	open := map[string][]int{} // per verdict id: unfolded transitions so far
	for i, t := range ts {
		by[i] = -1
		if t.GetFoldedInto() != 0 {
			continue // folded already (a stored timeline's)
		}
		id := t.GetVerdictId()
		list := open[id]
		if since := t.GetFoldsSinceRound(); since > 0 {
			for len(list) > 0 && folds(t, ts[list[len(list)-1]]) {
				by[list[len(list)-1]] = i
				list = list[:len(list)-1]
			}
		}
		open[id] = append(list, i)
	}
	return by
}

// folds reports whether f, a transition with FoldsSinceRound set, folds
// t, an earlier transition of the same verdict.
func folds(f, t *vantagev1.Transition) bool {
	if r := t.GetRound(); r < f.GetFoldsSinceRound() || r > f.GetRound() {
		return false
	}
	if f.GetOnsetEarliest() == nil || t.GetDetectedAt() == nil {
		return false // no onset to bound it by (the engine always sets both)
	}
	return !t.GetDetectedAt().AsTime().Before(f.GetOnsetEarliest().AsTime())
}
