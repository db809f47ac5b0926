package live

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// specA and specB are two campaigns starting at start, with 10s rounds:
// a over two hosts of 198.18.0.0/24, b over one of 198.18.1.0/24.
var (
	specA = fixture.Campaign{Name: "a", PerNetwork: 2, Round: "10s", Start: startYAML}.YAML()
	specB = fixture.Campaign{Name: "b", Networks: []string{"198.18.1.0/24"}, Round: "10s", Start: startYAML}.YAML()
)

const startYAML = "2026-01-01T00:00:00Z"

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func setup(t *testing.T) (*Worker, *sqlite.DB, *fixture.Clock) {
	t.Helper()
	db := fixture.Store(t)
	clk := fixture.NewClock(start)
	w := New(Options{Store: db, Campaigns: catalogue.New(catalogue.Options{Store: db}), Now: clk.Now, WatcherBuffer: 64})
	t.Cleanup(func() { w.Close() })
	return w, db, clk
}

// reload reloads w's catalogue from the store, then w, as
// catalogue.Changed does.
func reload(ctx context.Context, w *Worker) error {
	return errors.Join(w.opts.Campaigns.Reload(ctx), w.Reload(ctx))
}

// deliver stores rs as agent id's batch (epoch 1) and feeds them to w, as
// ingest does.
func deliver(t *testing.T, w *Worker, db *sqlite.DB, id string, rs []*vantagev1.ProbeResult) {
	t.Helper()
	if _, _, err := db.CommitBatch(context.Background(), id, 1, rs, nil); err != nil {
		t.Fatal(err)
	}
	w.Feed(id, rs)
}

// closeRound moves the clock past the end and grace of the round of sp
// that began at roundStart, and evaluates.
func closeRound(t *testing.T, w *Worker, clk *fixture.Clock, sp *campaign.Spec, roundStart time.Time) {
	t.Helper()
	clk.Set(roundStart.Add(sp.Round() + GraceFor(sp.Round()) + time.Second))
	if err := w.Evaluate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// runningNames lists the campaigns w runs an engine for, by name.
func runningNames(w *Worker) []string {
	var out []string
	for _, r := range w.all() {
		out = append(out, r.stored.Name)
	}
	return out
}

// specOf is the spec campaign name's engine was built from.
func specOf(t *testing.T, w *Worker, name string) *campaign.Spec {
	t.Helper()
	r := w.get(name)
	if r == nil {
		t.Fatalf("no engine for %s", name)
	}
	return r.spec
}

func TestReloadFollowsCampaignState(t *testing.T) {
	ctx := context.Background()
	w, db, _ := setup(t)
	fixture.PutCampaign(t, db, "a", specA, start)
	fixture.PutCampaign(t, db, "b", specB, start)
	for _, s := range fixture.PauseResumeDelete(db, start) {
		t.Run(s.Name, func(t *testing.T) {
			s.Do(t)
			if err := reload(ctx, w); err != nil {
				t.Fatal(err)
			}
			var got []string
			got = runningNames(w)
			if len(got) != len(s.Want) {
				t.Fatalf("active = %v; want %v", got, s.Want)
			}
			for i := range got {
				if got[i] != s.Want[i] {
					t.Fatalf("active = %v; want %v", got, s.Want)
				}
			}
		})
	}
}

func TestEvaluateStoresAndBroadcastsTransitions(t *testing.T) {
	ctx := context.Background()
	w, db, clk := setup(t)
	db.PutCampaign(ctx, "a", specA, start, store.AuditEntry{})
	if err := reload(ctx, w); err != nil {
		t.Fatal(err)
	}
	wa := w.Watch("a", vantagev1.Level_LEVEL_UNSPECIFIED)
	defer wa.Close()
	other := w.Watch("b", vantagev1.Level_LEVEL_UNSPECIFIED)
	defer other.Close()

	sp := specOf(t, w, "a")
	agents := []string{"agt-00000000000000a1", "agt-00000000000000a2"}
	for _, id := range agents {
		w.SetAgentConnected(id, nil, true, start)
	}
	seq := map[string]uint64{}
	for round := int64(0); round < 6; round++ {
		roundStart := start.Add(time.Duration(round) * sp.Round())
		for _, id := range agents {
			var rs []*vantagev1.ProbeResult
			for _, tg := range sp.Targets() {
				seq[id]++
				rs = append(rs, &vantagev1.ProbeResult{Seq: seq[id], Campaign: "a", Target: tg.Addr.String(), Round: round,
					Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, SentAt: timestamppb.New(roundStart.Add(time.Second)),
					Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: 2000})
			}
			deliver(t, w, db, id, rs)
		}
		closeRound(t, w, clk, sp, roundStart)
	}
	stored, err := db.Timeline(ctx, store.TimelineQuery{Campaign: "a"})
	if err != nil || len(stored) == 0 {
		t.Fatalf("Timeline = %d transitions, %v; want some", len(stored), err)
	}
	for i, st := range stored {
		select {
		case got := <-wa.C:
			if got.GetId() != st.GetId() || got.GetId() == 0 {
				t.Fatalf("watcher transition %d id %d; stored id %d", i, got.GetId(), st.GetId())
			}
		default:
			t.Fatalf("watcher missed transition %d", i)
		}
	}
	select {
	case tr := <-other.C:
		t.Fatalf("watcher of campaign b got %v", tr)
	default:
	}
	if len(w.Verdicts("a", vantagev1.Level_LEVEL_SCOPE)) == 0 {
		t.Fatal("no scope verdict for campaign a")
	}

	// A rebuilt engine (restart) that finds the same states logs nothing new.
	w2 := New(Options{Store: db, Campaigns: catalogue.New(catalogue.Options{Store: db}), Now: clk.Now})
	defer w2.Close()
	if err := reload(ctx, w2); err != nil {
		t.Fatal(err)
	}
	for _, id := range agents {
		w2.SetAgentConnected(id, nil, true, start)
	}
	if err := w2.Evaluate(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := db.Timeline(ctx, store.TimelineQuery{Campaign: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range again[len(stored):] {
		if tr.GetFrom() == vantagev1.State_STATE_UNSPECIFIED {
			t.Errorf("restart re-logged %s -> %s for %s", tr.GetFrom(), tr.GetTo(), tr.GetVerdictId())
		}
	}
}

func TestSlowWatcherIsDropped(t *testing.T) {
	w, _, _ := setup(t)
	w.opts.WatcherBuffer = 1
	slow := w.Watch("", vantagev1.Level_LEVEL_UNSPECIFIED)
	tr := &vantagev1.Transition{Campaign: "a", Level: vantagev1.Level_LEVEL_SCOPE}
	done := make(chan struct{})
	go func() { // never blocks, however slow the watcher
		w.broadcast([]*vantagev1.Transition{tr, tr, tr})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("broadcast blocked on a slow watcher")
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("slow watcher not dropped")
	}
	if !errors.Is(slow.Err(), ErrWatcherTooSlow) {
		t.Fatalf("Err = %v; want ErrWatcherTooSlow", slow.Err())
	}
	w.mu.Lock()
	n := len(w.watchers)
	w.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d watchers registered; want 0", n)
	}
	fresh := w.Watch("", vantagev1.Level_LEVEL_UNSPECIFIED)
	w.Close()
	if !errors.Is(fresh.Err(), ErrWorkerClosed) {
		t.Fatalf("after Close Err = %v; want ErrWorkerClosed", fresh.Err())
	}
}

func TestRefeedOnRestart(t *testing.T) {
	ctx := context.Background()
	_, db, clk := setup(t)
	db.PutCampaign(ctx, "a", specA, start, store.AuditEntry{})
	// Results stored before a "restart"; a fresh worker must see them.
	tok := store.JoinToken{Hash: "h", ExpiresAt: start.Add(time.Hour), CreatedAt: start}
	db.CreateJoinToken(ctx, tok, store.AuditEntry{})
	db.EnrollAgent(ctx, "h", start, store.Agent{ID: "agt-00000000000000a1", Name: "a1", State: vantagev1.AgentState_AGENT_STATE_ACTIVE})
	var rs []*vantagev1.ProbeResult
	for i := range 3 {
		rs = append(rs, &vantagev1.ProbeResult{Seq: uint64(i + 1), Campaign: "a", Target: "198.18.0.10", Round: int64(i),
			SentAt: timestamppb.New(start.Add(time.Duration(i) * 10 * time.Second)), Outcome: vantagev1.Outcome_OUTCOME_REPLY})
	}
	if _, _, err := db.CommitBatch(ctx, "agt-00000000000000a1", 1, rs, nil); err != nil {
		t.Fatal(err)
	}
	clk.Set(start.Add(35 * time.Second))
	w2 := New(Options{Store: db, Campaigns: catalogue.New(catalogue.Options{Store: db}), Now: clk.Now})
	defer w2.Close()
	if err := reload(ctx, w2); err != nil {
		t.Fatal(err)
	}
	if err := w2.Evaluate(ctx); err != nil {
		t.Fatal(err)
	}
	// The agent was reporting when the controller stopped: the campaign
	// waits for its backlog (restore.go), at most CatchUp, as it never
	// comes back here.
	clk.Set(start.Add(35*time.Second + DefaultCatchUp))
	if err := w2.Evaluate(ctx); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range w2.Verdicts("a", vantagev1.Level_LEVEL_UNSPECIFIED) {
		for _, ev := range v.GetEvidence() {
			found = found || ev.GetAgentId() == "agt-00000000000000a1"
		}
		found = found || v.GetState() == vantagev1.State_STATE_REACHABLE
	}
	if !found {
		t.Fatal("re-fed results left no trace in the verdicts")
	}
}
