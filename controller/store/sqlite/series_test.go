package sqlite

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// point is one quality point of round n (rounds of 10s from t0).
func point(campaign, network, agent string, n int64, loss float64) *vantagev1.QualityPoint {
	return &vantagev1.QualityPoint{Campaign: campaign, Network: network, AgentId: agent, Round: n,
		RoundStart: timestamppb.New(t0.Add(time.Duration(n) * 10 * time.Second)), Probes: 10,
		FirstTryAnswers: uint32(10 - 10*loss), Loss: loss, RttP50Ms: 1.5, RttP90Ms: 3, Answers: map[string]uint32{"icmp": 5, "tcp": 5}}
}

func keys(ps []*vantagev1.QualityPoint) string {
	var b []string
	for _, p := range ps {
		b = append(b, fmt.Sprintf("%s/%s/%s/%d:%.1f", p.GetCampaign(), p.GetNetwork(), p.GetAgentId(), p.GetRound(), p.GetLoss()))
	}
	return strings.Join(b, " ")
}

func TestSeries(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	var ps []*vantagev1.QualityPoint
	for n := int64(0); n < 3; n++ {
		for _, nw := range []string{"net0", "net1"} {
			for _, ag := range []string{"agt-b", "agt-a"} {
				ps = append(ps, point("kp", nw, ag, n, 0))
			}
		}
	}
	ps = append(ps, point("other", "net0", "agt-a", 1, 0))
	if err := db.AddQualityPoints(ctx, ps); err != nil {
		t.Fatal(err)
	}
	// A round evaluated again (a restart) replaces its point.
	if err := db.AddQualityPoints(ctx, []*vantagev1.QualityPoint{point("kp", "net1", "agt-a", 2, 0.4)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		q    store.SeriesQuery
		want string
	}{
		{"one vantage and network", store.SeriesQuery{Campaign: "kp", Network: "net1", AgentID: "agt-a"},
			"kp/net1/agt-a/0:0.0 kp/net1/agt-a/1:0.0 kp/net1/agt-a/2:0.4"},
		{"ordered by round, network, vantage", store.SeriesQuery{Campaign: "kp", From: t0.Add(10 * time.Second), To: t0.Add(20 * time.Second)},
			"kp/net0/agt-a/1:0.0 kp/net0/agt-b/1:0.0 kp/net1/agt-a/1:0.0 kp/net1/agt-b/1:0.0"},
		{"limit keeps the newest", store.SeriesQuery{Campaign: "kp", Network: "net0", Limit: 3},
			"kp/net0/agt-b/1:0.0 kp/net0/agt-a/2:0.0 kp/net0/agt-b/2:0.0"},
		{"campaign filter", store.SeriesQuery{Campaign: "other"}, "other/net0/agt-a/1:0.0"},
		{"nothing", store.SeriesQuery{Campaign: "kp", AgentID: "agt-z"}, ""},
	} {
		got, err := db.Series(ctx, c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if keys(got) != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, keys(got), c.want)
		}
	}
	got, err := db.Series(ctx, store.SeriesQuery{Campaign: "kp", Network: "net1", AgentID: "agt-a", From: t0.Add(20 * time.Second)})
	if err != nil || len(got) != 1 || got[0].GetAnswers()["tcp"] != 5 || got[0].GetFirstTryAnswers() != 6 || got[0].GetRttP90Ms() != 3 {
		t.Errorf("stored point %v, %v", got, err)
	}
}

// TestSeriesPrunedWithResults: retention (PruneResults) takes the series
// points of rounds that started before its cutoff, and keeps the rest.
func TestSeriesPrunedWithResults(t *testing.T) {
	db := pruneFixture(t)
	ctx := context.Background()
	var ps []*vantagev1.QualityPoint
	for n := int64(0); n < 4; n++ {
		ps = append(ps, point("kp", "net0", "agt-a", n, 0))
	}
	if err := db.AddQualityPoints(ctx, ps); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.PruneResults(ctx, t0.Add(25*time.Second), 10); err != nil {
		t.Fatal(err)
	}
	got, err := db.Series(ctx, store.SeriesQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "kp/net0/agt-a/3:0.0"; keys(got) != want {
		t.Errorf("after pruning at round 2.5: %s, want %s", keys(got), want)
	}
}

// TestSeriesNetworkIndex: one network's series, newest first up to a
// limit as the API asks, is read through the (campaign, network,
// round_start, agent_id) index, not by scanning every network's points in
// the window.
func TestSeriesNetworkIndex(t *testing.T) {
	db, _ := openTest(t)
	query, args := seriesSQL(store.SeriesQuery{Campaign: "kp", Network: "net0", From: t0, To: t0.Add(time.Hour), Limit: 5000})
	wantPlan(t, db, query, args, "USING INDEX quality_series_network")
}
