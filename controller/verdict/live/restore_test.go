package live

import (
	"context"
	"fmt"
	"strings"
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

// The restart tests: a worker runs a campaign over real SQLite with an
// injected clock, is dropped without a goodbye (the controller killed with
// SIGKILL), and a new worker on the same store takes over, as
// vantage-controller does at its next start: Reload before any session,
// then the agents reconnect and deliver the backlogs from their spools.

// specRestart is campaign r: two hosts in each of two networks, quorum 2.
var specRestart = fixture.Campaign{Name: "r", Networks: []string{"198.18.0.0/24", "198.18.1.0/24"}, PerNetwork: 2,
	Probes: []string{"icmp: {retries: 1, timeout: 1s}"}, Round: "10s", Start: startYAML, Vantages: "{quorum: 2}"}.YAML()

// rig is a fleet of agents producing results, and the store they end in.
type rig struct {
	t      *testing.T
	ctx    context.Context
	db     *sqlite.DB
	clk    *fixture.Clock
	spec   *campaign.Spec
	grace  time.Duration
	agents []string
	seq    map[string]uint64
	// down says whether a target answers nothing in a round.
	down func(target string, round int64) bool
	// runs says whether an agent runs a target's task (its guard may
	// refuse it); nil: every task.
	runs func(agent, target string) bool
}

func newRig(t *testing.T, spec string, agents int) *rig {
	t.Helper()
	ctx := context.Background()
	db := fixture.Store(t)
	sp, err := catalogue.SpecFor(fixture.PutCampaign(t, db, "r", spec, start))
	if err != nil {
		t.Fatal(err)
	}
	g := &rig{t: t, ctx: ctx, db: db, clk: fixture.NewClock(start), spec: sp, grace: GraceFor(sp.Round()),
		seq: map[string]uint64{}, down: func(string, int64) bool { return false }}
	for i := range agents {
		id := fmt.Sprintf("agt-00000000000000%02d", i+1)
		fixture.ActiveAgent(t, db, id, map[string]string{"provider": fmt.Sprintf("p%d", i+1)}, start)
		g.agents = append(g.agents, id)
	}
	return g
}

func (g *rig) roundStart(n int64) time.Time { return start.Add(time.Duration(n) * g.spec.Round()) }

// worker is a new worker on the rig's store, as a controller start makes it.
func (g *rig) worker() *Worker {
	w := New(Options{Store: g.db, Campaigns: catalogue.New(catalogue.Options{Store: g.db}), Now: g.clk.Now, WatcherBuffer: 1 << 16,
		Log: fixture.Log(g.t)})
	g.t.Cleanup(func() { w.Close() })
	if err := reload(g.ctx, w); err != nil {
		g.t.Fatal(err)
	}
	return w
}

func (g *rig) connect(w *Worker, at time.Time) {
	for _, id := range g.agents {
		w.SetAgentConnected(id, map[string]string{"provider": "p" + strings.TrimLeft(id[len(id)-2:], "0")}, true, at)
	}
}

// produce stores one agent's results of round n and feeds them to w (nil:
// the controller is down, they wait in the agent's spool: see deliver).
func (g *rig) produce(w *Worker, agent string, n int64) []*vantagev1.ProbeResult {
	var rs []*vantagev1.ProbeResult
	ai := strings.Index(strings.Join(g.agents, " "), agent) / (len(agent) + 1)
	sent := g.roundStart(n).Add(time.Second + time.Duration(ai)*100*time.Millisecond)
	for _, tg := range g.spec.Targets() {
		if g.runs != nil && !g.runs(agent, tg.Addr.String()) {
			continue
		}
		g.seq[agent]++
		out, attempts := vantagev1.Outcome_OUTCOME_REPLY, uint32(1)
		if g.down(tg.Addr.String(), n) {
			out, attempts = vantagev1.Outcome_OUTCOME_TIMEOUT, 2 // the echo and its retry
		}
		rs = append(rs, &vantagev1.ProbeResult{Seq: g.seq[agent], Campaign: "r", Target: tg.Addr.String(), Round: n,
			Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, SentAt: timestamppb.New(sent), Outcome: out, Attempts: attempts, RttUs: 2000})
	}
	if w != nil {
		g.deliver(w, agent, rs)
	}
	return rs
}

func (g *rig) deliver(w *Worker, agent string, rs []*vantagev1.ProbeResult) {
	if _, _, err := g.db.CommitBatch(g.ctx, agent, 1, rs, nil); err != nil {
		g.t.Fatal(err)
	}
	w.Feed(agent, rs)
}

func (g *rig) tick(w *Worker, at time.Time) {
	g.clk.Set(at)
	if err := w.Evaluate(g.ctx); err != nil {
		g.t.Fatal(err)
	}
}

// live runs rounds from..to on w: every agent reports, and each round is
// evaluated once its grace has passed.
func (g *rig) live(w *Worker, from, to int64) {
	for n := from; n <= to; n++ {
		g.clk.Set(g.roundStart(n).Add(time.Second))
		for _, a := range g.agents {
			g.produce(w, a, n)
		}
		g.tick(w, g.roundStart(n+1).Add(g.grace+time.Second))
	}
}

// outage kills the controller in round crash (after the first agent's
// results of it were stored) and keeps it down until round back: the
// agents' results of those rounds wait in their spools. It returns them.
func (g *rig) outage(w *Worker, crash, back int64) map[string][][]*vantagev1.ProbeResult {
	spooled := map[string][][]*vantagev1.ProbeResult{}
	for n := crash; n <= back; n++ {
		for i, a := range g.agents {
			if n == crash && i == 0 {
				g.produce(w, a, n) // stored just before the kill
				continue
			}
			spooled[a] = append(spooled[a], g.produce(nil, a, n))
		}
	}
	return spooled
}

// restart starts a new worker at at, then the agents reconnect and send
// their spooled results, oldest first, as uplink does.
func (g *rig) restart(at time.Time, spooled map[string][][]*vantagev1.ProbeResult) *Worker {
	g.clk.Set(at)
	w := g.worker()
	g.tick(w, at.Add(200*time.Millisecond)) // before the agents are back
	g.connect(w, at.Add(time.Second))
	g.clk.Set(at.Add(1500 * time.Millisecond))
	for _, a := range g.agents {
		for _, rs := range spooled[a] {
			g.deliver(w, a, rs)
		}
	}
	g.tick(w, at.Add(2*time.Second))
	return w
}

func (g *rig) timeline() []*vantagev1.Transition {
	ts, err := g.db.Timeline(g.ctx, store.TimelineQuery{Campaign: "r"})
	if err != nil {
		g.t.Fatal(err)
	}
	return ts
}

func after(ts []*vantagev1.Transition, id int64) []*vantagev1.Transition {
	var out []*vantagev1.Transition
	for _, t := range ts {
		if t.GetId() > id {
			out = append(out, t)
		}
	}
	return out
}

func lastID(ts []*vantagev1.Transition) int64 {
	if len(ts) == 0 {
		return 0
	}
	return ts[len(ts)-1].GetId()
}

func describe(ts []*vantagev1.Transition) string {
	var b strings.Builder
	for _, t := range ts {
		fmt.Fprintf(&b, "\n  round %d %s: %s -> %s", t.GetRound(), t.GetVerdictId(), shortName(t.GetFrom()), shortName(t.GetTo()))
	}
	return b.String()
}

func shortName(s vantagev1.State) string { return strings.TrimPrefix(s.String(), "STATE_") }

// TestRestartSteadyPublishesNothing: a steady campaign, the controller
// killed in round 10 and back in round 22 (an outage of 12 rounds): the
// restarted engine publishes no transition (no UNSPECIFIED -> same state,
// no UNKNOWN episode for the outage), evaluates every missed round, and
// its verdicts keep their original since and onset.
func TestRestartSteadyPublishesNothing(t *testing.T) {
	g := newRig(t, specRestart, 3)
	w1 := g.worker()
	g.connect(w1, start)
	g.live(w1, 0, 9)
	before := g.timeline()
	scope0, _ := w1.Verdict("r/scope/KP")
	if scope0.GetState() != vantagev1.State_STATE_REACHABLE {
		t.Fatalf("before the restart the scope is %s", scope0.GetState())
	}
	spooled := g.outage(w1, 10, 22)
	w2 := g.restart(g.roundStart(22).Add(3*time.Second), spooled)
	g.live(w2, 23, 25)

	added := after(g.timeline(), lastID(before))
	closed, _ := w2.ClosedRound("r")
	scope, _ := w2.Verdict("r/scope/KP")
	t.Logf("before the kill: %d transitions; after the restart: %d; closed round %d; scope %s since %s onset [%s, %s]",
		len(before), len(added), closed, shortName(scope.GetState()), scope.GetSince().AsTime().Format(time.TimeOnly),
		scope.GetOnsetEarliest().AsTime().Format(time.TimeOnly), scope.GetOnsetLatest().AsTime().Format(time.TimeOnly))
	if len(added) != 0 {
		t.Errorf("a restart of a steady campaign published %d transitions:%s", len(added), describe(added))
	}
	if closed < 25 {
		t.Errorf("closed round %d after the restart, want 25", closed)
	}
	if scope.GetState() != vantagev1.State_STATE_REACHABLE || !scope.GetSince().AsTime().Equal(scope0.GetSince().AsTime()) ||
		!scope.GetOnsetLatest().AsTime().Equal(scope0.GetOnsetLatest().AsTime()) {
		t.Errorf("scope after the restart: %s since %v onset %v; before: %s since %v onset %v", scope.GetState(), scope.GetSince().AsTime(),
			scope.GetOnsetLatest().AsTime(), scope0.GetState(), scope0.GetSince().AsTime(), scope0.GetOnsetLatest().AsTime())
	}
}

// TestRestartEvaluatesMissedRounds: net1 is down in rounds 13 to 16, while
// the controller is down (killed in round 10, back in round 22). Its
// results are stored once the agents deliver them, and those rounds must
// be evaluated with them: the timeline is the one the same rounds give
// without a restart (net1 down from round 13 to 17, with the same onsets;
// its one uncertain round 13 is the belief's, restart or not), not an
// UNKNOWN episode for the whole outage.
func TestRestartEvaluatesMissedRounds(t *testing.T) {
	down := func(target string, n int64) bool { return strings.HasPrefix(target, "198.18.1.") && n >= 13 && n <= 16 }
	want := func() []string {
		g := newRig(t, specRestart, 3)
		g.down = down
		w := g.worker()
		g.connect(w, start)
		g.live(w, 0, 25)
		return summary(g.timeline())
	}()
	g := newRig(t, specRestart, 3)
	g.down = down
	w1 := g.worker()
	g.connect(w1, start)
	g.live(w1, 0, 9)
	spooled := g.outage(w1, 10, 22)
	w2 := g.restart(g.roundStart(22).Add(3*time.Second), spooled)
	g.live(w2, 23, 25)
	got := summary(g.timeline())
	t.Logf("without a restart:\n  %s", strings.Join(want, "\n  "))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("with the controller down in rounds 10-22 the timeline differs:\n  %s", strings.Join(got, "\n  "))
	}
}

// summary is a timeline without ids and detection times (a restart
// detects later what happened while it was down).
func summary(ts []*vantagev1.Transition) []string {
	var out []string
	for _, t := range ts {
		out = append(out, fmt.Sprintf("round %d %s: %s -> %s at %s, onset [%s, %s]", t.GetRound(), t.GetVerdictId(),
			shortName(t.GetFrom()), shortName(t.GetTo()), strings.TrimPrefix(t.GetLocation().String(), "LOCATION_"),
			t.GetOnsetEarliest().AsTime().Format("15:04:05.0"), t.GetOnsetLatest().AsTime().Format("15:04:05.0")))
	}
	return out
}

// TestRestartKeepsOngoingEpisode: net1 goes down in round 5 and is still
// down when the controller is killed in round 10 and restarted in round
// 12. Its verdict carries on: UNREACHABLE with the onset and since of round
// 5, no transition while it stays down, and its recovery in round 15 is a
// transition from UNREACHABLE.
func TestRestartKeepsOngoingEpisode(t *testing.T) {
	g := newRig(t, specRestart, 3)
	g.down = func(target string, n int64) bool { return strings.HasPrefix(target, "198.18.1.") && n >= 5 && n < 15 }
	w1 := g.worker()
	g.connect(w1, start)
	g.live(w1, 0, 9)
	before := g.timeline()
	net0, _ := w1.Verdict("r/network/net1")
	if net0.GetState() != vantagev1.State_STATE_UNREACHABLE {
		t.Fatalf("before the restart net1 is %s", net0.GetState())
	}
	spooled := g.outage(w1, 10, 12)
	w2 := g.restart(g.roundStart(12).Add(4*time.Second), spooled)
	g.live(w2, 13, 14)
	net, _ := w2.Verdict("r/network/net1")
	t.Logf("net1 before the kill: %s since %s onset [%s, %s]; after the restart: %s since %s onset [%s, %s]",
		shortName(net0.GetState()), net0.GetSince().AsTime().Format(time.TimeOnly), net0.GetOnsetEarliest().AsTime().Format(time.TimeOnly),
		net0.GetOnsetLatest().AsTime().Format(time.TimeOnly), shortName(net.GetState()), net.GetSince().AsTime().Format(time.TimeOnly),
		net.GetOnsetEarliest().AsTime().Format(time.TimeOnly), net.GetOnsetLatest().AsTime().Format(time.TimeOnly))
	if net.GetState() != vantagev1.State_STATE_UNREACHABLE || !net.GetSince().AsTime().Equal(net0.GetSince().AsTime()) ||
		!net.GetOnsetEarliest().AsTime().Equal(net0.GetOnsetEarliest().AsTime()) || !net.GetOnsetLatest().AsTime().Equal(net0.GetOnsetLatest().AsTime()) {
		t.Errorf("net1's episode did not carry on across the restart")
	}
	if added := after(g.timeline(), lastID(before)); len(added) != 0 {
		t.Errorf("transitions while nothing changed:%s", describe(added))
	}
	mark := lastID(g.timeline())
	g.live(w2, 15, 16)
	var rec *vantagev1.Transition
	for _, tr := range after(g.timeline(), mark) {
		if tr.GetVerdictId() == "r/network/net1" {
			rec = tr
		}
	}
	if rec == nil || rec.GetFrom() != vantagev1.State_STATE_UNREACHABLE || rec.GetTo() != vantagev1.State_STATE_REACHABLE {
		t.Fatalf("net1's recovery: %v; want UNREACHABLE -> REACHABLE", rec)
	}
}

// TestRestartLargeCampaign: 11,000 targets, each with one stored
// transition (more than Timeline's newest 10,000): a restart soon after a
// kill stores no "same state" transition.
func TestRestartLargeCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("11,000 targets")
	}
	spec := fixture.Campaign{Name: "r", Networks: []string{"10.0.0.0/18"}, PerNetwork: 11000, Probes: []string{"icmp: {retries: 1, timeout: 1s}"},
		Round: "10s", Start: startYAML, Vantages: "{quorum: 1}", Budget: "{per_target_pps: 1, agent_pps: 5000}"}.YAML()
	g := newRig(t, spec, 2)
	w1 := g.worker()
	g.connect(w1, start)
	g.live(w1, 0, 3)
	before := g.timeline()
	spooled := g.outage(w1, 4, 4)
	w2 := g.restart(g.roundStart(4).Add(5*time.Second), spooled)
	g.live(w2, 5, 6)
	added := after(g.timeline(), lastID(before))
	t.Logf("%d targets: %d transitions before the kill, %d after the restart", len(g.spec.Targets()), len(before), len(added))
	if len(added) != 0 {
		t.Errorf("the restart stored %d transitions, e.g.%s", len(added), describe(added[:min(5, len(added))]))
	}
}

// TestRebuildHoldsFedResults: results fed while an engine is fed from the
// store are held and observed once: those also in the store's snapshot
// are not counted twice, those committed after it are not lost.
func TestRebuildHoldsFedResults(t *testing.T) {
	g := newRig(t, specRestart, 3)
	w := g.worker()
	w.mu.Lock()
	w.started = true // a live rebuild (an edit), not a controller start
	w.mu.Unlock()
	g.connect(w, start)
	g.live(w, 0, 3)
	r := w.get("r")
	r.mu.Lock()
	r.building = true
	r.mu.Unlock()
	g.clk.Set(g.roundStart(4).Add(time.Second))
	for _, a := range g.agents {
		g.produce(w, a, 4) // committed, then fed: in the snapshot and held
	}
	late := map[string][]*vantagev1.ProbeResult{}
	for _, a := range g.agents {
		late[a] = g.produce(nil, a, 5)
		w.Feed(a, late[a]) // fed but not in the snapshot (committed after it)
	}
	cfg := w.configFor(r.spec)
	plan, err := w.plan(g.ctx, "r", cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	agents, err := w.storedLabels(g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.rebuild(g.ctx, r, cfg, plan, agents); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	st, building, held := r.eng.Stats(), r.building, len(r.pending)
	r.mu.Unlock()
	perRound := len(g.agents) * len(g.spec.Targets())
	t.Logf("accepted %d observations (rounds 0-4 from the store, round 5 held), %d too old; %d held after", st.Accepted, st.TooOld, held)
	if want := uint64(6 * perRound); st.Accepted != want || building || held != 0 {
		t.Errorf("accepted %d, want %d (each result once); building %v, %d still held", st.Accepted, want, building, held)
	}
}
