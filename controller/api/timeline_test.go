package api

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// episode is a flapping episode's scope transitions as the engine
// publishes them: the first flap (round 20), a refinement of it, the
// transition into UNSTABLE that folds both, and the way out; and a network
// transition of round 20 that stays.
func episode() []*vantagev1.Transition {
	at := func(n int64) *timestamppb.Timestamp {
		return timestamppb.New(seriesT0.Add(time.Duration(n) * 10 * time.Second))
	}
	tr := func(id string, n int64, from, to vantagev1.State) *vantagev1.Transition {
		return &vantagev1.Transition{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, VerdictId: id, Round: n, From: from, To: to,
			OnsetEarliest: at(n), DetectedAt: at(n + 1)}
	}
	const scope, net = "kp/scope/KP", "kp/network/net0"
	up, down, unstable := vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_UNREACHABLE, vantagev1.State_STATE_UNSTABLE
	in := tr(scope, 22, up, unstable)
	in.FoldsSinceRound, in.OnsetEarliest = 20, at(20)
	netDown := tr(net, 20, up, down)
	netDown.Level = vantagev1.Level_LEVEL_NETWORK
	return []*vantagev1.Transition{tr(scope, 20, up, down), netDown, tr(scope, 21, down, down), in, tr(scope, 30, unstable, up)}
}

func rounds(ts []*vantagev1.Transition) []int64 {
	var out []int64
	for _, t := range ts {
		out = append(out, t.GetRound())
	}
	return out
}

// TestGetTimelineFolded: GetTimeline returns the folded view; with
// include_folded every transition, the folded ones marked.
func TestGetTimelineFolded(t *testing.T) {
	db, ca, _ := fixture.StoreAndCA(t)
	fixture.PutCampaign(t, db, "kp", fixture.Campaign{Name: "kp"}.YAML(), seriesT0)
	ts := episode()
	if err := db.AddTransitions(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
	c, ctx := serveOperator(t, db, ca)
	for _, tc := range []struct {
		name   string
		req    *vantagev1.GetTimelineRequest
		rounds []int64
		folded map[int64]int64 // round -> folded into (the id of the round-22 transition)
	}{
		{"folded view", &vantagev1.GetTimelineRequest{Campaign: "kp"}, []int64{20, 22, 30}, nil},
		{"folded view, scope", &vantagev1.GetTimelineRequest{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE}, []int64{22, 30}, nil},
		{"include_folded", &vantagev1.GetTimelineRequest{Campaign: "kp", IncludeFolded: true}, []int64{20, 20, 21, 22, 30},
			map[int64]int64{20: ts[3].GetId(), 21: ts[3].GetId()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.GetTimeline(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			got := resp.GetTransitions()
			if !slices.Equal(rounds(got), tc.rounds) {
				t.Fatalf("rounds %v, want %v", rounds(got), tc.rounds)
			}
			for _, tr := range got {
				want := int64(0)
				if tr.GetVerdictId() == "kp/scope/KP" {
					want = tc.folded[tr.GetRound()]
				}
				if tr.GetFoldedInto() != want {
					t.Errorf("%s round %d folded into %d, want %d", tr.GetVerdictId(), tr.GetRound(), tr.GetFoldedInto(), want)
				}
			}
		})
	}
}

// TestReplayView: a replay's transitions are numbered from 1 and folded
// as the store folds them, unless include_folded.
func TestReplayView(t *testing.T) {
	got := replayView(episode(), false)
	if !slices.Equal(rounds(got), []int64{20, 22, 30}) || got[1].GetId() != 4 {
		t.Errorf("folded view: rounds %v, ids %d..; want 20 (net0), 22 (id 4), 30", rounds(got), got[0].GetId())
	}
	all := replayView(episode(), true)
	var into []int64
	for _, tr := range all {
		into = append(into, tr.GetFoldedInto())
	}
	if len(all) != 5 || !slices.Equal(into, []int64{4, 0, 4, 0, 0}) || all[4].GetId() != 5 {
		t.Errorf("include_folded: %d transitions folded into %v; want 5, [4 0 4 0 0]", len(all), into)
	}
}

// TestGetTimelineSubjects: subjects keeps those subjects' transitions at
// the level asked; a bad list is refused naming the field.
func TestGetTimelineSubjects(t *testing.T) {
	db, ca, _ := fixture.StoreAndCA(t)
	fixture.PutCampaign(t, db, "kp", fixture.Campaign{Name: "kp"}.YAML(), seriesT0)
	target := vantagev1.Level_LEVEL_TARGET
	var ts []*vantagev1.Transition
	for i, addr := range []string{"198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.10"} {
		ts = append(ts, &vantagev1.Transition{Campaign: "kp", Level: target, Subject: addr, VerdictId: "kp/target/" + addr,
			Round: int64(i), From: vantagev1.State_STATE_REACHABLE, To: vantagev1.State_STATE_UNREACHABLE,
			DetectedAt: timestamppb.New(seriesT0.Add(time.Duration(i) * time.Minute))})
	}
	if err := db.AddTransitions(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
	c, ctx := serveOperator(t, db, ca)
	for _, tc := range []struct {
		name   string
		req    *vantagev1.GetTimelineRequest
		rounds []int64
	}{
		{"two targets", &vantagev1.GetTimelineRequest{Campaign: "kp", Level: target, Subjects: []string{"198.18.0.12", "198.18.0.10"}}, []int64{0, 2, 3}},
		{"one target", &vantagev1.GetTimelineRequest{Campaign: "kp", Level: target, Subjects: []string{"198.18.0.11"}}, []int64{1}},
		{"the same name as a network", &vantagev1.GetTimelineRequest{Campaign: "kp", Level: vantagev1.Level_LEVEL_NETWORK,
			Subjects: []string{"198.18.0.11"}}, nil},
		{"no subjects", &vantagev1.GetTimelineRequest{Campaign: "kp", Level: target}, []int64{0, 1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.GetTimeline(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := rounds(resp.GetTransitions()); !slices.Equal(got, tc.rounds) {
				t.Errorf("rounds %v, want %v", got, tc.rounds)
			}
		})
	}
	tooMany := make([]string, MaxTimelineSubjects+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf("198.18.%d.%d", i/256, i%256)
	}
	for _, bad := range []struct {
		name string
		req  *vantagev1.GetTimelineRequest
		msg  string
	}{
		{"too many", &vantagev1.GetTimelineRequest{Campaign: "kp", Level: target, Subjects: tooMany}, "subjects: 1001 is more than 1000"},
		{"an empty one", &vantagev1.GetTimelineRequest{Campaign: "kp", Level: target, Subjects: []string{"198.18.0.10", ""}}, "subjects[1]: empty"},
		{"no campaign", &vantagev1.GetTimelineRequest{Level: target, Subjects: []string{"198.18.0.10"}}, "campaign: required with subjects"},
		{"no level", &vantagev1.GetTimelineRequest{Campaign: "kp", Subjects: []string{"198.18.0.10"}},
			"level: required with subjects (LEVEL_SCOPE, LEVEL_NETWORK or LEVEL_TARGET), got LEVEL_UNSPECIFIED"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := c.GetTimeline(ctx, bad.req)
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "invalid argument: "+bad.msg {
				t.Errorf("%v %q, want InvalidArgument %q", st.Code(), st.Message(), bad.msg)
			}
		})
	}
}
