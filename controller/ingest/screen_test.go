package ingest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict/live"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// mutableSpecs is a Campaigns whose active set a test changes.
type mutableSpecs struct {
	mu sync.Mutex
	sp []*campaign.Spec
}

func (m *mutableSpecs) Active() []*campaign.Spec {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sp
}

func (m *mutableSpecs) set(sp ...*campaign.Spec) {
	m.mu.Lock()
	m.sp = sp
	m.mu.Unlock()
}

// fate says whether the agent's result seq (of epoch) was stored, and
// else the reason of the gap that holds it ("" when neither).
func fate(t *testing.T, ta *testAgent, epoch, seq uint64) (bool, string) {
	t.Helper()
	ctx := context.Background()
	stored := false
	err := ta.db.QueryResults(ctx, store.ResultQuery{AgentID: ta.id}, func(r store.StoredResult) error {
		stored = stored || (r.Epoch == epoch && r.Result.GetSeq() == seq)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	gaps, err := ta.db.Gaps(ctx, ta.id)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gaps {
		if g.GetEpoch() == epoch && g.GetFirstSeq() <= seq && seq <= g.GetLastSeq() {
			return stored, g.GetReason()
		}
	}
	return stored, ""
}

// resultCase is one result sent alone and what must become of it: stored,
// or refused as a gap whose reason contains refused.
type resultCase struct {
	name    string
	r       *vantagev1.ProbeResult
	refused string // "" means stored
}

// runCases sends each case's result as its own batch on s (epoch, seqs
// from first) and checks what became of it.
func runCases(t *testing.T, ta *testAgent, s vantagev1.AgentService_SessionClient, epoch, first uint64, cases []resultCase) {
	t.Helper()
	for i, c := range cases {
		seq := first + uint64(i)
		c.r.Seq = seq
		if a := fixture.SendAwaitAck(t, s, &vantagev1.ResultBatch{Epoch: epoch, FirstSeq: seq, LastSeq: seq, Results: []*vantagev1.ProbeResult{c.r}}); a.GetUpToSeq() != seq {
			t.Fatalf("%s: ack %v", c.name, a)
		}
		stored, why := fate(t, ta, epoch, seq)
		switch {
		case c.refused == "" && (!stored || why != ""):
			t.Errorf("%s: stored %v, gap %q; want it stored", c.name, stored, why)
		case c.refused != "" && (stored || !strings.Contains(why, c.refused)):
			t.Errorf("%s: stored %v, gap %q; want it refused as a gap naming %q", c.name, stored, why, c.refused)
		}
	}
}

func probe(task, camp, target, trigger string, sent time.Time) *vantagev1.ProbeResult {
	return &vantagev1.ProbeResult{TaskId: task, Campaign: camp, Target: target, TriggerId: trigger, SentAt: timestamppb.New(sent),
		Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO}
}

// TestTriggerResultsChecked: a result that names a trigger is stored only
// for one of that trigger's tasks, with its campaign and target, until the
// trigger's expiry plus its grace, across reconnects; a trigger's task id
// is not an assignment forever after. Before, any result carrying a trigger
// id the session had received was stored whatever its task, campaign and
// target, and a trigger's task ids (a discovery sweep's) were accepted
// forever with any campaign and target.
func TestTriggerResultsChecked(t *testing.T) {
	clk := fixture.NewClock(time.Now())
	ta := newTestAgentWith(t, nil, nil, nil, func(c *Config) { c.Now = clk.Now })
	s, _ := ta.session(t, 1)
	const sweep, addr = "c/icmp/198.18.0.77", "198.18.0.77"
	tr := &vantagev1.Trigger{Id: "trg-0000000000000001", IssuedAt: timestamppb.New(clk.Now()), ExpiresAt: timestamppb.New(clk.Now().Add(2 * time.Minute)),
		Tasks: []*vantagev1.Task{{Id: sweep, Campaign: "c", Target: addr, Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO}}}
	if !ta.srv.SendTrigger(ta.id, tr) {
		t.Fatal("SendTrigger = false with a live session")
	}
	now := clk.Now()
	runCases(t, ta, s, 1, 1, []resultCase{
		{"the trigger's task", probe(sweep, "c", addr, tr.GetId(), now), ""},
		{"the trigger id on another campaign's task", probe("x/icmp/192.0.2.1", "x", "192.0.2.1", tr.GetId(), now), "not assigned"},
		{"the trigger's task id with another campaign and target", probe(sweep, "other", "192.0.2.5", tr.GetId(), now), "does not match"},
		{"the trigger's task id without the trigger", probe(sweep, "c", addr, "", now), "not assigned"},
		{"the trigger's task id, no trigger, another target", probe(sweep, "zzz", "192.0.2.6", "", now), "not assigned"},
	})
	// A reconnect (the agent's spool re-sends) within the grace.
	s2, _ := ta.session(t, 2)
	runCases(t, ta, s2, 2, 1, []resultCase{
		{"after a reconnect", probe(sweep, "c", addr, tr.GetId(), clk.Now()), ""},
	})
	clk.Add(2*time.Minute + DefaultTriggerGrace + time.Second)
	s3, _ := ta.session(t, 3)
	runCases(t, ta, s3, 3, 1, []resultCase{
		{"after the trigger's expiry and grace", probe(sweep, "c", addr, tr.GetId(), clk.Now()), "not assigned"},
	})
}

// TestKnownTasksKeepCampaignAndTarget: a task given in an earlier
// assignment (no longer in the current one) is still accepted, but only
// with its own campaign and target. Before, its id alone was enough.
func TestKnownTasksKeepCampaignAndTarget(t *testing.T) {
	sp := fixture.Spec(t, spec)
	camps := &mutableSpecs{sp: []*campaign.Spec{sp}}
	ta := newTestAgentWith(t, nil, nil, nil, func(c *Config) { c.Campaigns = camps })
	_, task := ta.session(t, 1)
	camps.set() // the campaign is gone from the active set
	s, tasks := ta.rawSession(t, 2)
	if len(tasks) != 0 {
		t.Fatalf("assignment without campaigns has %d tasks", len(tasks))
	}
	now := time.Now()
	runCases(t, ta, s, 2, 1, []resultCase{
		{"an earlier task with its campaign and target", probe(task.GetId(), task.GetCampaign(), task.GetTarget(), "", now), ""},
		{"an earlier task with another target", probe(task.GetId(), task.GetCampaign(), "192.0.2.99", "", now), "does not match"},
		{"an earlier task with another campaign", probe(task.GetId(), "other", task.GetTarget(), "", now), "does not match"},
	})
}

// TestLocaliseResultsAfterReconnect: the traces a localisation trigger
// (live.Localiser, sending through this server) asks for are stored when
// they come back on a later session (the agent's spool after a reconnect).
// Before, a localisation trigger was remembered by its session only.
func TestLocaliseResultsAfterReconnect(t *testing.T) {
	ta := newTestAgent(t, nil, nil, nil)
	s, _ := ta.session(t, 1)
	loc := live.NewLocaliser(live.LocaliserConfig{Campaigns: ta.srv.cfg.Campaigns, Triggers: ta.srv})
	loc.Localise([]*vantagev1.Transition{{Campaign: "c", Level: vantagev1.Level_LEVEL_SCOPE, Subject: "KP",
		From: vantagev1.State_STATE_REACHABLE, To: vantagev1.State_STATE_UNREACHABLE}})
	var tr *vantagev1.Trigger
	for tr == nil {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("no trigger: %v", err)
		}
		tr = m.GetTrigger()
	}
	tk := tr.GetTasks()[0]
	s2, _ := ta.session(t, 2)
	r := probe(tk.GetId(), tk.GetCampaign(), tk.GetTarget(), tr.GetId(), time.Now())
	r.Kind = vantagev1.ProbeKind_PROBE_KIND_TRACE
	r.Round = int64(time.Since(tk.GetScheduleStart().AsTime()) / (time.Duration(tk.GetRoundMs()) * time.Millisecond))
	runCases(t, ta, s2, 2, 1, []resultCase{{"a trace of the trigger, on the next session", r, ""}})
}

// TestSentAtWindowAndRound: a result sent long before it was received (one
// stamped 1970 in each chunk made a Limit 1 query hold 77 MB) or after it
// (a clock ahead), or whose round is negative or after its sent_at's round,
// is refused: acked and recorded as a gap naming the field. A spool replay
// of results days old is still stored, and so is a small clock skew.
func TestSentAtWindowAndRound(t *testing.T) {
	ta := newTestAgent(t, nil, nil, nil)
	s, task := ta.session(t, 1)
	now := time.Now()
	at := func(sent time.Time, round int64) *vantagev1.ProbeResult {
		r := probe(task.GetId(), task.GetCampaign(), task.GetTarget(), "", sent)
		r.Round = round
		return r
	}
	cur := int64(now.Sub(time.Unix(0, 0)) / (5 * time.Second)) // the campaign's round is 5s, from the Unix epoch
	runCases(t, ta, s, 1, 1, []resultCase{
		{"now, this round", at(now, cur), ""},
		{"sent in 1970", at(time.Unix(0, 0), 0), "sent_at 1970-01-01T00:00:00Z: more than"},
		{"sent an hour ahead", at(now.Add(time.Hour), cur), "sent_at " + now.Add(time.Hour).UTC().Format(time.RFC3339) + ": more than 5m0s after"},
		{"a replay 29 days old", at(now.Add(-29*24*time.Hour), cur-29*24*720), ""},
		{"a clock 4 minutes ahead", at(now.Add(4*time.Minute), cur+48), ""},
		{"round 2^62", at(now, 1<<62), "round 4611686018427387904: after sent_at"},
		{"a negative round", at(now, -1), "round -1: negative"},
		{"a round ten minutes after its sent_at", at(now, cur+120), "after sent_at"},
	})
}

// countingVoucher vouches for the results of vouched (campaign c, any
// target) and counts its calls.
type countingVoucher struct {
	specs
	calls   atomic.Int64
	vouched string
}

func (v *countingVoucher) Vouches(_ context.Context, camp, taskID, target string, _ map[string]string) bool {
	v.calls.Add(1)
	return camp == "c" && taskID == v.vouched && taskID == "c/icmp/"+target
}

// TestVoucherLookupsBounded: results of tasks the agent was not given are
// looked up in the store once per task and batch, at most MaxVouchMisses
// unvouched ones per batch, and only after the batch passed the agent's
// rate. Before, every such result was looked up, before the rate check.
func TestVoucherLookupsBounded(t *testing.T) {
	sp := fixture.Spec(t, spec)
	v := &countingVoucher{specs: specs{sp}, vouched: "c/icmp/198.18.0.200"}
	ta := newTestAgentWith(t, nil, nil, nil, func(c *Config) { c.Campaigns = v; c.RatePerAgent = 1 }) // burst 10,000, next to no refill
	s, _ := ta.session(t, 1)
	now := time.Now()
	batchOf := func(first uint64, n int, r func(i int) *vantagev1.ProbeResult) *vantagev1.ResultBatch {
		b := &vantagev1.ResultBatch{Epoch: 1, FirstSeq: first, LastSeq: first + uint64(n) - 1}
		for i := range n {
			x := r(i)
			x.Seq = first + uint64(i)
			b.Results = append(b.Results, x)
		}
		return b
	}
	// 500 results of one vouched task: one lookup, all stored.
	fixture.SendAwaitAck(t, s, batchOf(1, 500, func(int) *vantagev1.ProbeResult { return probe(v.vouched, "c", "198.18.0.200", "", now) }))
	if n := v.calls.Load(); n != 1 {
		t.Errorf("%d lookups for 500 results of one task; want 1", n)
	}
	// 1,000 results of 1,000 tasks nobody gave: MaxVouchMisses lookups.
	v.calls.Store(0)
	fixture.SendAwaitAck(t, s, batchOf(501, 1000, func(i int) *vantagev1.ProbeResult {
		addr := fmt.Sprintf("192.0.%d.%d", i/256, i%256)
		return probe("c/icmp/"+addr, "c", addr, "", now)
	}))
	if n := v.calls.Load(); n != MaxVouchMisses {
		t.Errorf("%d lookups for 1,000 results of unknown tasks; want %d (MaxVouchMisses)", n, MaxVouchMisses)
	}
	ag, err := ta.db.GetAgent(context.Background(), ta.id)
	if err != nil {
		t.Fatal(err)
	}
	if ag.ResultsStored != 500 || ag.Gaps != 1000 {
		t.Errorf("stored %d, gaps %d; want 500 stored, 1000 refused as gaps", ag.ResultsStored, ag.Gaps)
	}
	// 1,516 of the bucket's 10,000 are spent (a refused run's gap costs
	// GapWork); 8,400 more leave 84: the next batch of 200 is refused by
	// the rate before any lookup.
	fixture.SendAwaitAck(t, s, batchOf(1501, 8400, func(int) *vantagev1.ProbeResult { return probe(v.vouched, "c", "198.18.0.200", "", now) }))
	v.calls.Store(0)
	_, st, _ := sendOn(t, s, batchOf(9901, 200, func(i int) *vantagev1.ProbeResult {
		return probe(fmt.Sprintf("c/icmp/192.0.2.%d", i), "c", fmt.Sprintf("192.0.2.%d", i), "", now)
	}))
	if st.Code() != codes.ResourceExhausted || v.calls.Load() != 0 {
		t.Errorf("a batch over the rate: status %v after %d lookups; want RESOURCE_EXHAUSTED after none", st, v.calls.Load())
	}
}

// TestRememberTrigger: a trigger's tasks are found until its expiry plus
// the grace; one task list sent to many agents is indexed once; an agent's
// triggers are bounded, the first to expire going first.
func TestRememberTrigger(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	srv := New(Config{TriggerGrace: time.Minute})
	t.Cleanup(srv.Wait)
	tasks := []*vantagev1.Task{{Id: "c/icmp/198.18.0.1", Campaign: "c", Target: "198.18.0.1"}}
	trig := func(id string, exp time.Time, tasks []*vantagev1.Task) *vantagev1.Trigger {
		return &vantagev1.Trigger{Id: id, ExpiresAt: timestamppb.New(exp), Tasks: tasks}
	}
	srv.mu.Lock()
	srv.rememberTrigger("a", trig("t1", now.Add(time.Minute), tasks), now)
	srv.rememberTrigger("b", trig("t1", now.Add(time.Minute), tasks), now)
	shared := reflect.ValueOf(srv.triggers["a"]["t1"].tasks).UnsafePointer() == reflect.ValueOf(srv.triggers["b"]["t1"].tasks).UnsafePointer()
	srv.mu.Unlock()
	if !shared {
		t.Error("one task list sent to two agents was indexed twice")
	}
	for _, c := range []struct {
		name   string
		at     time.Time
		agent  string
		task   string
		wantOK bool
	}{
		{"live", now, "a", "c/icmp/198.18.0.1", true},
		{"another agent's copy", now, "b", "c/icmp/198.18.0.1", true},
		{"a task the trigger does not have", now, "a", "c/icmp/198.18.0.2", false},
		{"within the grace", now.Add(2 * time.Minute), "a", "c/icmp/198.18.0.1", true},
		{"past the grace", now.Add(2*time.Minute + time.Second), "a", "c/icmp/198.18.0.1", false},
	} {
		if ref, ok := srv.triggerTask(c.agent, "t1", c.task, c.at); ok != c.wantOK || (ok && ref.target != "198.18.0.1") {
			t.Errorf("%s: triggerTask = %+v, %v; want ok %v", c.name, ref, ok, c.wantOK)
		}
	}
	srv.mu.Lock()
	for i := range MaxTriggersPerAgent + 10 {
		srv.rememberTrigger("a", trig(fmt.Sprint("n", i), now.Add(time.Hour+time.Duration(i)*time.Second), tasks), now)
	}
	n := len(srv.triggers["a"])
	_, first := srv.triggers["a"]["t1"]
	srv.mu.Unlock()
	if n != MaxTriggersPerAgent || first {
		t.Errorf("%d triggers remembered (the earliest to expire kept: %v); want %d, without it", n, first, MaxTriggersPerAgent)
	}
}
