package live

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestQualityDefaultsMatch: the campaign's documented quality defaults
// are the engine's.
func TestQualityDefaultsMatch(t *testing.T) {
	sp, err := campaign.Parse([]byte(specA))
	if err != nil {
		t.Fatal(err)
	}
	got := ConfigFor(sp, 0, 0).Quality
	want := verdict.QualityConfig{
		Loss: verdict.DefaultQualityLoss, LossClear: verdict.DefaultQualityLossClear,
		LatencyFactor: verdict.DefaultQualityLatencyFactor, LatencyClearFactor: verdict.DefaultQualityLatencyClearFactor,
		LatencyMin: verdict.DefaultQualityLatencyMin, Rounds: verdict.DefaultQualityRounds, ClearRounds: verdict.DefaultQualityClearRounds,
	}
	if got != want {
		t.Errorf("campaign defaults %+v, engine defaults %+v", got, want)
	}
}

// TestWorkerStoresSeries: the worker writes every closed round's quality
// points to the store, and the campaign's verdict.quality reaches the
// engine.
func TestWorkerStoresSeries(t *testing.T) {
	ctx := context.Background()
	w, db, clk := setup(t)
	spec := specA + "verdict: {quality: {rounds: 3, loss: 0.3}}\n"
	if _, _, err := db.PutCampaign(ctx, "a", spec, start, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if err := reload(ctx, w); err != nil {
		t.Fatal(err)
	}
	sp := specOf(t, w, "a")
	if q := w.get("a").eng.Config().Quality; q.Rounds != 3 || q.Loss != 0.3 || q.ClearRounds != verdict.DefaultQualityClearRounds {
		t.Fatalf("engine quality config %+v", q)
	}
	agents := []string{"agt-00000000000000a1", "agt-00000000000000a2"}
	for _, id := range agents {
		w.SetAgentConnected(id, nil, true, start)
	}
	seq := map[string]uint64{}
	const rounds = 4
	for round := int64(0); round < rounds; round++ {
		roundStart := start.Add(time.Duration(round) * sp.Round())
		for _, id := range agents {
			var rs []*vantagev1.ProbeResult
			for i, tg := range sp.Targets() {
				seq[id]++
				r := &vantagev1.ProbeResult{Seq: seq[id], Campaign: "a", Target: tg.Addr.String(), Round: round,
					Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, SentAt: timestamppb.New(roundStart.Add(time.Second)),
					Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: 2000, Attempts: 1}
				if i == 0 {
					r.Attempts = 2 // answered at the retry
				}
				rs = append(rs, r)
			}
			deliver(t, w, db, id, rs)
		}
		closeRound(t, w, clk, sp, roundStart)
	}
	got, err := db.Series(ctx, store.SeriesQuery{Campaign: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != rounds*len(agents) {
		t.Fatalf("%d points stored, want %d: %v", len(got), rounds*len(agents), got)
	}
	for _, p := range got {
		if p.GetProbes() != 2 || p.GetFirstTryAnswers() != 1 || p.GetLoss() != 0.5 || p.GetRttP50Ms() != 2 || p.GetAnswers()["icmp"] != 2 {
			t.Errorf("point %v", p)
		}
	}
}
