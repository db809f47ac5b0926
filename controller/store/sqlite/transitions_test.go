package sqlite

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	fUnspec   = vantagev1.State_STATE_UNSPECIFIED
	fUp       = vantagev1.State_STATE_REACHABLE
	fDown     = vantagev1.State_STATE_UNREACHABLE
	fUnstable = vantagev1.State_STATE_UNSTABLE
	fScope    = "kp/scope/KP"
	fNet      = "kp/network/net0"
)

// ftr is a transition of verdict id in round n (10 s rounds from t0; onset
// at the round's start, detected at its end).
func ftr(id string, n int64, from, to vantagev1.State) *vantagev1.Transition {
	return &vantagev1.Transition{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, VerdictId: id, Round: n, From: from, To: to,
		OnsetEarliest: timestamppb.New(t0.Add(time.Duration(n) * 10 * time.Second)),
		DetectedAt:    timestamppb.New(t0.Add(time.Duration(n+1) * 10 * time.Second))}
}

// unstableSince is a transition into UNSTABLE in round n folding since
// round since, with that round's onset.
func unstableSince(id string, n, since int64) *vantagev1.Transition {
	t := ftr(id, n, fUp, fUnstable)
	t.FoldsSinceRound, t.OnsetEarliest = since, ftr(id, since, 0, 0).OnsetEarliest
	return t
}

func ids(ts []*vantagev1.Transition) []int64 {
	var out []int64
	for _, t := range ts {
		out = append(out, t.GetId())
	}
	return out
}

// TestFoldTransitions: storing a transition into UNSTABLE marks what it
// folds (column and body); Timeline leaves those out unless asked, and its
// folded view is verdict.Fold's.
func TestFoldTransitions(t *testing.T) {
	ctx := context.Background()
	renumbered := ftr(fScope, 21, fUp, fDown) // a round from before a campaign edit
	renumbered.DetectedAt = timestamppb.New(t0.Add(-time.Hour))
	for _, c := range []struct {
		name    string
		batches [][]*vantagev1.Transition
		folded  []int64 // ids folded into the UNSTABLE transition
	}{
		{"one batch", [][]*vantagev1.Transition{{ftr(fScope, 0, fUnspec, fUp), ftr(fScope, 20, fUp, fDown), ftr(fNet, 20, fUp, fDown),
			ftr(fScope, 21, fDown, fDown), unstableSince(fScope, 22, 20)}}, []int64{2, 4}},
		{"a batch per round", [][]*vantagev1.Transition{{ftr(fScope, 0, fUnspec, fUp)}, {ftr(fScope, 20, fUp, fDown), ftr(fNet, 20, fUp, fDown)},
			{ftr(fScope, 21, fDown, fDown)}, {unstableSince(fScope, 22, 20)}}, []int64{2, 4}},
		{"before the onset round", [][]*vantagev1.Transition{{ftr(fScope, 19, fUp, fDown), ftr(fScope, 20, fDown, fUp)},
			{unstableSince(fScope, 22, 20)}}, []int64{2}},
		{"detected before the onset (renumbered)", [][]*vantagev1.Transition{{renumbered}, {unstableSince(fScope, 22, 20)}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, _ := openTest(t)
			var all []*vantagev1.Transition
			for _, b := range c.batches {
				if err := db.AddTransitions(ctx, b); err != nil {
					t.Fatal(err)
				}
				all = append(all, b...)
			}
			into := all[len(all)-1].GetId()
			stored, err := db.Timeline(ctx, store.TimelineQuery{Campaign: "kp", IncludeFolded: true})
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, s := range stored {
				var col int64
				if err := db.r.QueryRow(`SELECT folded_into FROM transitions WHERE id = ?`, s.GetId()).Scan(&col); err != nil {
					t.Fatal(err)
				}
				if col != s.GetFoldedInto() || (col != 0 && col != into) {
					t.Errorf("transition %d: column folded_into %d, body %d; want both 0 or %d", s.GetId(), col, s.GetFoldedInto(), into)
				}
				if col != 0 {
					got = append(got, s.GetId())
				}
			}
			if !slices.Equal(got, c.folded) {
				t.Errorf("folded %v, want %v", got, c.folded)
			}
			if len(c.batches) == 1 { // the caller's transitions, folded in the same batch
				for _, tr := range all {
					want := int64(0)
					if slices.Contains(c.folded, tr.GetId()) {
						want = into
					}
					if tr.GetFoldedInto() != want {
						t.Errorf("caller's transition %d folded into %d, want %d", tr.GetId(), tr.GetFoldedInto(), want)
					}
				}
			}
			view, err := db.Timeline(ctx, store.TimelineQuery{Campaign: "kp"})
			if err != nil {
				t.Fatal(err)
			}
			if want := ids(verdict.Fold(stored)); !slices.Equal(ids(view), want) {
				t.Errorf("Timeline %v, want verdict.Fold's %v", ids(view), want)
			}
			if len(view)+len(c.folded) != len(stored) {
				t.Errorf("Timeline has %d, with folded %d; %d folded", len(view), len(stored), len(c.folded))
			}
			last, err := db.Timeline(ctx, store.TimelineQuery{Campaign: "kp", Limit: 2})
			if err != nil || len(last) != min(2, len(view)) || last[len(last)-1].GetId() != into {
				t.Errorf("Timeline limit 2 = %v, %v; want the folded view's newest 2", ids(last), err)
			}
		})
	}
}

// TestFoldKeepsLatestVerdicts: the restore after a restart reads the
// transition into UNSTABLE, the newest, whatever it folded.
func TestFoldKeepsLatestVerdicts(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	ts := []*vantagev1.Transition{ftr(fScope, 0, fUnspec, fUp), ftr(fScope, 20, fUp, fDown), ftr(fScope, 21, fDown, fDown), unstableSince(fScope, 22, 20)}
	if err := db.AddTransitions(ctx, ts); err != nil {
		t.Fatal(err)
	}
	got, err := db.LatestVerdicts(ctx, "kp")
	if err != nil {
		t.Fatal(err)
	}
	vs := got[fScope]
	if vs.Latest.GetId() != ts[3].GetId() || vs.Changed.GetId() != ts[3].GetId() || vs.Latest.GetTo() != fUnstable {
		t.Errorf("latest %d, changed %d; want both %d (UNSTABLE)", vs.Latest.GetId(), vs.Changed.GetId(), ts[3].GetId())
	}
}

// TestMigrateFoldedInto opens a schema-8 database holding a transition: it
// gains folded_into 0, is in the timeline, and can be folded.
func TestMigrateFoldedInto(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	raw := openAtSchema(t, dir, 8)
	old := ftr(fScope, 20, fUp, fDown)
	old.Id = 1
	body, _ := proto.Marshal(old)
	if _, err := raw.Exec(`INSERT INTO transitions (id, campaign, level, verdict_id, detected_at, body) VALUES (1, 'kp', ?, ?, ?, ?)`,
		int32(old.GetLevel()), fScope, nanos(old.GetDetectedAt().AsTime()), body); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	db, err := Open(ctx, dir)
	if err != nil {
		t.Fatalf("Open migrates: %v", err)
	}
	defer db.Close()
	if got, err := db.Timeline(ctx, store.TimelineQuery{}); err != nil || len(got) != 1 || got[0].GetFoldedInto() != 0 {
		t.Fatalf("Timeline after the migration = %v, %v; want the old transition, not folded", got, err)
	}
	if err := db.AddTransitions(ctx, []*vantagev1.Transition{unstableSince(fScope, 22, 20)}); err != nil {
		t.Fatal(err)
	}
	all, err := db.Timeline(ctx, store.TimelineQuery{IncludeFolded: true})
	if err != nil || len(all) != 2 || all[0].GetFoldedInto() != all[1].GetId() {
		t.Fatalf("Timeline with folded = %v, %v; want the old transition folded into the new", all, err)
	}
}

// TestTimelineSubjects: Subjects keeps the transitions of those subjects
// of the level, in this campaign and window, oldest first; without a
// campaign or a level it is refused (they make the verdict ids).
func TestTimelineSubjects(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	tr := func(campaign string, level vantagev1.Level, subject string, min int) *vantagev1.Transition {
		id, _ := verdict.ID(campaign, level, subject)
		return &vantagev1.Transition{Campaign: campaign, Level: level, Subject: subject, VerdictId: id, From: fUp, To: fDown,
			DetectedAt: timestamppb.New(t0.Add(time.Duration(min) * time.Minute))}
	}
	target, network := vantagev1.Level_LEVEL_TARGET, vantagev1.Level_LEVEL_NETWORK
	ts := []*vantagev1.Transition{
		tr("kp", target, "198.18.0.1", 0),
		tr("kp", target, "198.18.0.2", 1),
		tr("kp", target, "198.18.0.3", 2), // not asked for
		tr("kp", target, "198.18.0.1", 3),
		tr("ir", target, "198.18.0.1", 4),   // another campaign
		tr("kp", network, "198.18.0.1", 5),  // another level (a network so named)
		tr("kp", target, "198.18.0.2", 600), // after the window
	}
	if err := db.AddTransitions(ctx, ts); err != nil {
		t.Fatal(err)
	}
	asked := []string{"198.18.0.1", "198.18.0.2", "198.18.9.9"}
	for _, c := range []struct {
		name string
		q    store.TimelineQuery
		want []int64 // indices into ts
	}{
		{"in the window", store.TimelineQuery{Campaign: "kp", Level: target, Subjects: asked, To: t0.Add(time.Hour)}, []int64{0, 1, 3}},
		{"every time", store.TimelineQuery{Campaign: "kp", Level: target, Subjects: asked}, []int64{0, 1, 3, 6}},
		{"the newest 2", store.TimelineQuery{Campaign: "kp", Level: target, Subjects: asked, Limit: 2}, []int64{3, 6}},
		{"one subject from minute 1", store.TimelineQuery{Campaign: "kp", Level: target, Subjects: asked[1:2], From: t0.Add(time.Minute)}, []int64{1, 6}},
		{"the network", store.TimelineQuery{Campaign: "kp", Level: network, Subjects: asked[:1]}, []int64{5}},
		{"nobody's", store.TimelineQuery{Campaign: "kp", Level: target, Subjects: []string{"192.0.2.1"}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := db.Timeline(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			var want []int64
			for _, i := range c.want {
				want = append(want, ts[i].GetId())
			}
			if !slices.Equal(ids(got), want) {
				t.Errorf("Timeline %v, want %v", ids(got), want)
			}
		})
	}
	for _, q := range []store.TimelineQuery{{Level: target, Subjects: asked}, {Campaign: "kp", Subjects: asked}} {
		if got, err := db.Timeline(ctx, q); err == nil {
			t.Errorf("Timeline(%+v) = %v, want an error: subjects need a campaign and a level", q, ids(got))
		}
	}
}

// TestTimelineSubjectsIndex: Timeline reads a few subjects through the
// (verdict_id, detected_at) index, not by scanning the campaign's window.
func TestTimelineSubjectsIndex(t *testing.T) {
	db, _ := openTest(t)
	query, args, err := timelineSQL(store.TimelineQuery{Campaign: "kp", Level: vantagev1.Level_LEVEL_TARGET,
		Subjects: []string{"198.18.0.1", "198.18.0.2"}, From: t0, To: t0.Add(time.Hour), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	wantPlan(t, db, query, args, "USING INDEX transitions_verdict_detected")
}

// wantPlan fails the test unless SQLite's plan for query uses what (an
// index, say), as EXPLAIN QUERY PLAN words it.
func wantPlan(t *testing.T, db *DB, query string, args []any, what string) {
	t.Helper()
	rows, err := db.r.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if !slices.ContainsFunc(plan, func(d string) bool { return strings.Contains(d, what) }) {
		t.Errorf("query plan %q: want %s", plan, what)
	}
}

// TestTimelineLevelIndex: a campaign's timeline at one level, as the
// dashboard reads its scope and network bands, goes through the
// (campaign, level, detected_at) index, not every level's rows in the
// window.
func TestTimelineLevelIndex(t *testing.T) {
	db, _ := openTest(t)
	query, args, err := timelineSQL(store.TimelineQuery{Campaign: "kp", Level: vantagev1.Level_LEVEL_NETWORK, From: t0, To: t0.Add(time.Hour), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	wantPlan(t, db, query, args, "USING INDEX transitions_campaign_level_detected")
}
