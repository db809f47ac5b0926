package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func tr(campaign, id string, from, to vantagev1.State, round int64, loc vantagev1.Location) *vantagev1.Transition {
	return &vantagev1.Transition{Campaign: campaign, VerdictId: id, From: from, To: to, Round: round, Location: loc,
		Level: vantagev1.Level_LEVEL_TARGET, DetectedAt: timestamppb.New(t0.Add(time.Duration(round) * time.Second)),
		OnsetEarliest: timestamppb.New(t0.Add(time.Duration(round) * time.Second))}
}

func TestLatestVerdicts(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	const (
		unspec = vantagev1.State_STATE_UNSPECIFIED
		up     = vantagev1.State_STATE_REACHABLE
		down   = vantagev1.State_STATE_UNREACHABLE
		none   = vantagev1.Location_LOCATION_NONE
		tn     = vantagev1.Location_LOCATION_TARGET_NETWORK
		us     = vantagev1.Location_LOCATION_UPSTREAM
	)
	ts := []*vantagev1.Transition{
		tr("kp", "kp/target/a", unspec, up, 1, none),
		tr("kp", "kp/target/b", unspec, up, 1, none),
		tr("other", "other/target/a", unspec, down, 1, tn),
		tr("kp", "kp/target/a", up, down, 5, tn),
		tr("kp", "kp/target/a", down, down, 7, us), // refinement
		tr("kp", "kp/target/a", down, down, 8, tn), // another one
		tr("kp", "kp/target/b", up, down, 9, tn),
		tr("kp", "kp/target/b", down, up, 12, none),
	}
	if err := db.AddTransitions(ctx, ts); err != nil {
		t.Fatal(err)
	}
	got, err := db.LatestVerdicts(ctx, "kp")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d verdicts, want 2 (kp only): %v", len(got), got)
	}
	a, b := got["kp/target/a"], got["kp/target/b"]
	if a.Latest.GetRound() != 8 || a.Latest.GetLocation() != tn || a.Changed.GetRound() != 5 || a.Changed.GetTo() != down {
		t.Errorf("a: latest round %d %v, changed round %d to %v; want 8 TARGET_NETWORK (refined), changed at 5 to UNREACHABLE",
			a.Latest.GetRound(), a.Latest.GetLocation(), a.Changed.GetRound(), a.Changed.GetTo())
	}
	if b.Latest.GetRound() != 12 || b.Changed != b.Latest || b.Latest.GetTo() != up {
		t.Errorf("b: latest %v, changed %v; want both the round-12 REACHABLE", b.Latest, b.Changed)
	}
	if none, err := db.LatestVerdicts(ctx, "absent"); err != nil || len(none) != 0 {
		t.Errorf("campaign without transitions: %v, %v", none, err)
	}
}

// TestLatestVerdictsLarge: every verdict of a campaign with tens of
// thousands of subjects, however long its timeline (Timeline's Limit kept
// only the newest 10,000 transitions, so a restarted engine re-stored
// "same state" transitions for the rest).
func TestLatestVerdictsLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 60,000 transitions")
	}
	db, _ := openTest(t)
	ctx := context.Background()
	const subjects = 30000
	var ts []*vantagev1.Transition
	for i := range subjects {
		ts = append(ts, tr("big", fmt.Sprintf("big/target/10.%d.%d.%d", i>>16, i>>8&255, i&255),
			vantagev1.State_STATE_UNSPECIFIED, vantagev1.State_STATE_REACHABLE, 1, vantagev1.Location_LOCATION_NONE))
	}
	for i := range subjects {
		ts = append(ts, tr("big", fmt.Sprintf("big/target/10.%d.%d.%d", i>>16, i>>8&255, i&255),
			vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_UNKNOWN, 2, vantagev1.Location_LOCATION_UNSPECIFIED))
	}
	if err := db.AddTransitions(ctx, ts); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := db.LatestVerdicts(ctx, "big")
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LatestVerdicts over %d transitions of %d verdicts: %v", len(ts), subjects, took.Round(time.Millisecond))
	if len(got) != subjects {
		t.Fatalf("%d verdicts, want %d", len(got), subjects)
	}
	for id, vs := range got {
		if vs.Latest.GetTo() != vantagev1.State_STATE_UNKNOWN || vs.Changed != vs.Latest {
			t.Fatalf("%s: %v", id, vs.Latest)
		}
	}
}

func TestLastResultSentAt(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	if at, err := db.LastResultSentAt(ctx, "kp"); err != nil || !at.IsZero() {
		t.Fatalf("no results: %v, %v; want the zero time", at, err)
	}
	enroll(t, db, "agt-0000000000000001")
	if _, _, err := db.CommitBatch(ctx, "agt-0000000000000001", 1, results(1, 40), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CommitBatch(ctx, "agt-0000000000000001", 1, results(10, 20), nil); err != nil {
		t.Fatal(err)
	}
	at, err := db.LastResultSentAt(ctx, "kp")
	if want := t0.Add(40 * time.Second); err != nil || !at.Equal(want) {
		t.Fatalf("LastResultSentAt = %v, %v; want %v", at, err, want)
	}
	if at, err := db.LastResultSentAt(ctx, "other"); err != nil || !at.IsZero() {
		t.Fatalf("other campaign: %v, %v", at, err)
	}
}
