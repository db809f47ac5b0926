package main

import (
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// discoverCampaign sweeps a /28 (14 addresses) in batches of 10 (agent_pps
// 10 x 1s rounds, no retry) and finds the routers before it.
var discoverCampaign = fixture.Campaign{Name: "disc", Networks: []string{"198.18.0.0/28"}, PerNetwork: 2, Discover: true, Upstreams: true,
	Probes: []string{"icmp: {timeout: 200ms}"}, Round: "1s", Budget: "{agent_pps: 10}"}.YAML()

// fakeAgent answers discovery triggers as the lab would: hosts in up reply
// to echo, the rest time out, and every trace crosses the exchange, the
// transit, the upstream and the border before reaching its host.
type fakeAgent struct {
	t  *testing.T
	s  vantagev1.AgentService_SessionClient
	mu sync.Mutex
	up map[string]bool
	// triggers counts the triggers received, by kind of their first task.
	triggers map[vantagev1.ProbeKind]int
	done     chan struct{}
}

var labPath = []string{"198.51.100.1", "198.51.100.26", "198.51.100.42", "198.51.100.50"}

func startFakeAgent(t *testing.T, c *ctl, up ...string) *fakeAgent {
	t.Helper()
	a := newAgent(t, c)
	s, _ := openSession(t, c, a, 1)
	f := &fakeAgent{t: t, s: s, triggers: map[vantagev1.ProbeKind]int{}, done: make(chan struct{})}
	f.answer(up...)
	go f.loop()
	t.Cleanup(func() { s.CloseSend(); <-f.done })
	return f
}

func (f *fakeAgent) answer(up ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.up = map[string]bool{}
	for _, a := range up {
		f.up[a] = true
	}
}

func (f *fakeAgent) count(k vantagev1.ProbeKind) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.triggers[k]
}

// loop is the agent's only sender and receiver.
func (f *fakeAgent) loop() {
	defer close(f.done)
	seq := uint64(1)
	for {
		m, err := f.s.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled {
				f.t.Logf("fake agent: %v", err)
			}
			return
		}
		tr := m.GetTrigger()
		if tr == nil {
			continue
		}
		b := &vantagev1.ResultBatch{Epoch: 1, FirstSeq: seq}
		f.mu.Lock()
		if len(tr.GetTasks()) > 0 {
			f.triggers[tr.GetTasks()[0].GetKind()]++
		}
		for _, tk := range tr.GetTasks() {
			r := &vantagev1.ProbeResult{Seq: seq, TaskId: tk.GetId(), Campaign: tk.GetCampaign(), Target: tk.GetTarget(),
				Kind: tk.GetKind(), SentAt: timestamppb.Now(), TriggerId: tr.GetId(), Attempts: 1,
				Outcome: vantagev1.Outcome_OUTCOME_TIMEOUT}
			up := f.up[tk.GetTarget()]
			switch {
			case tk.GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE:
				for i, h := range labPath {
					r.Hops = append(r.Hops, &vantagev1.Hop{Ttl: uint32(i + 1), Addr: h, RttUs: 100})
				}
				if up {
					r.Hops = append(r.Hops, &vantagev1.Hop{Ttl: uint32(len(labPath) + 1), Addr: tk.GetTarget(), RttUs: 100})
					r.Outcome = vantagev1.Outcome_OUTCOME_REPLY
				}
			case up:
				r.Outcome, r.RttUs, r.ReplyFrom = vantagev1.Outcome_OUTCOME_REPLY, 100, tk.GetTarget()
			}
			b.Results = append(b.Results, r)
			seq++
		}
		f.mu.Unlock()
		b.LastSeq = seq - 1
		if len(b.Results) == 0 {
			continue
		}
		if err := f.s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			f.t.Logf("fake agent send: %v", err)
			return
		}
	}
}

// waitCampaign polls GetCampaign until ok.
func waitCampaign(t *testing.T, ops vantagev1.OperatorServiceClient, c *ctl, name, what string, ok func(*vantagev1.Campaign) bool) *vantagev1.Campaign {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *vantagev1.Campaign
	for time.Now().Before(deadline) {
		got, err := ops.GetCampaign(bearer(c.admin), &vantagev1.GetCampaignRequest{Name: name})
		if err != nil {
			t.Fatalf("GetCampaign: %v", err)
		}
		if ok(got) {
			return got
		}
		last = got
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: campaign %s stayed %v, discovery %v", what, name, last.GetState(), last.GetDiscovery())
	return nil
}

func targetList(c *vantagev1.Campaign) []string {
	var out []string
	for _, t := range c.GetTargets() {
		out = append(out, t.GetAddress()+" "+t.GetNetwork()+" "+strings.TrimPrefix(t.GetRole().String(), "TARGET_ROLE_"))
	}
	return out
}

// TestDiscoveryStateMachine runs host and upstream discovery through the
// real controller (SQLite, gRPC over loopback, mTLS) with a scripted agent:
// DISCOVERING while no agent is connected, then sweep, traces and ACTIVE
// with the discovered targets assigned; a re-apply discovers again.
func TestDiscoveryStateMachine(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	discovering := func(p *vantagev1.Campaign) bool {
		return p.GetState() == vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING
	}

	// No agent enrolled: refused without the flag, waiting with it.
	_, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: discoverCampaign})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "vantages.quorum: 1 is more than the 0 enrolled active agent(s)") {
		t.Fatalf("apply with no agent = %v; want InvalidArgument naming vantages.quorum", err)
	}
	p, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: discoverCampaign, AllowFewerVantages: true})
	if err != nil {
		t.Fatal(err)
	}
	if !discovering(p) || len(p.GetTargets()) != 0 || p.GetDiscovery().GetStartedAt() == nil {
		t.Fatalf("after apply: state %v, %d targets, discovery %v", p.GetState(), len(p.GetTargets()), p.GetDiscovery())
	}
	waitCampaign(t, ops, c, "disc", "waiting without agents", func(p *vantagev1.Campaign) bool {
		return discovering(p) && strings.HasPrefix(p.GetDiscovery().GetNote(), "waiting for agents: no connected agent matches vantages.select")
	})

	// An agent arrives: sweep (2 batches), traces, then ACTIVE.
	t0 := time.Now()
	ag := startFakeAgent(t, c, "198.18.0.9", "198.18.0.3", "198.18.0.5")
	p = waitCampaign(t, ops, c, "disc", "discovery with one agent", func(p *vantagev1.Campaign) bool {
		return p.GetState() == vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE
	})
	t.Logf("discovered in %s: %s", time.Since(t0).Round(time.Millisecond), p.GetDiscovery().GetNote())
	want := []string{"198.18.0.3 net0 HOST", "198.18.0.5 net0 HOST", "198.51.100.42  UPSTREAM", "198.51.100.50  BORDER"}
	if got := targetList(p); !slices.Equal(got, want) {
		t.Fatalf("targets %q, want %q", got, want)
	}
	d := p.GetDiscovery()
	if d.GetFinishedAt() == nil || d.GetAddressesSwept() != 14 || d.GetHostsResponsive() != 3 || d.GetHostsSelected() != 2 ||
		d.GetTraces() != 2 || len(d.GetRoutersFound()) != 2 {
		t.Fatalf("discovery status %v", d)
	}
	if n := ag.count(vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO); n != 2 {
		t.Errorf("%d sweep triggers, want 2 batches", n)
	}
	if len(p.GetAgentIds()) != 1 {
		t.Errorf("agent_ids %v", p.GetAgentIds())
	}

	// Re-apply: discovery runs again and finds what answers now.
	ag.answer("198.18.0.10", "198.18.0.14")
	p, err = ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: discoverCampaign})
	if err != nil {
		t.Fatal(err)
	}
	if !discovering(p) || p.GetDiscovery().GetFinishedAt() != nil {
		t.Fatalf("re-apply: state %v discovery %v", p.GetState(), p.GetDiscovery())
	}
	p = waitCampaign(t, ops, c, "disc", "re-discovery", func(p *vantagev1.Campaign) bool {
		return p.GetState() == vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE
	})
	want = []string{"198.18.0.10 net0 HOST", "198.18.0.14 net0 HOST", "198.51.100.42  UPSTREAM", "198.51.100.50  BORDER"}
	if got := targetList(p); !slices.Equal(got, want) {
		t.Fatalf("after re-apply targets %q, want %q", got, want)
	}

	// Nothing answers: the campaign stays DISCOVERING with a note, never
	// an empty target set.
	ag.answer()
	quiet := strings.NewReplacer("name: disc", "name: quiet", "198.18.0.0/28", "198.18.1.0/28").Replace(discoverCampaign)
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: quiet}); err != nil {
		t.Fatal(err)
	}
	p = waitCampaign(t, ops, c, "quiet", "nothing answering", func(p *vantagev1.Campaign) bool {
		return strings.HasPrefix(p.GetDiscovery().GetNote(), "nothing answered")
	})
	if !discovering(p) || len(p.GetTargets()) != 0 || p.GetDiscovery().GetHostsResponsive() != 0 {
		t.Fatalf("nothing answering: state %v targets %v discovery %v", p.GetState(), p.GetTargets(), p.GetDiscovery())
	}
	if want := "nothing answered: 14 addresses swept from 1 agent(s) (14 of 14 results in), no host replied to ICMP echo; " +
		"the campaign stays DISCOVERING - check the prefixes and the agents, then apply it again"; p.GetDiscovery().GetNote() != want {
		t.Errorf("note\n got: %s\nwant: %s", p.GetDiscovery().GetNote(), want)
	}
	// The verdict engine runs only the discovered campaign.
	vs, err := ops.GetVerdicts(bearer(c.admin), &vantagev1.GetVerdictsRequest{Campaign: "quiet"})
	if err != nil || len(vs.GetVerdicts()) != 0 {
		t.Errorf("verdicts of a discovering campaign: %v, %v", vs.GetVerdicts(), err)
	}
}

// TestQuorumRefusedAtApply: a quorum above the enrolled active agents that
// the campaign selects is refused with the counts, and nothing is stored.
func TestQuorumRefusedAtApply(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	newAgent(t, c) // one enrolled agent, role=vps, no provider label
	spec := strings.Replace(minimalCampaign, "schedule: {round: 5s}", "schedule: {round: 5s}\nvantages: {select: {role: vps}, quorum: 2}", 1)
	audits := countRows(t, c.dir, `SELECT count(*) FROM audit`)
	for _, dry := range []bool{false, true} {
		_, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: spec, DryRun: dry})
		want := "rpc error: code = InvalidArgument desc = invalid argument: vantages.quorum: 2 is more than the 1 enrolled active agent(s) " +
			"matching vantages.select {role=vps}; every verdict would be UNKNOWN (enrol the agents first, or apply with vantagectl campaign apply --allow-fewer-vantages)"
		if err == nil || err.Error() != want {
			t.Fatalf("dry_run=%v:\n got: %v\nwant: %s", dry, err, want)
		}
	}
	if n := countRows(t, c.dir, `SELECT count(*) FROM campaigns`); n != 0 {
		t.Fatalf("%d campaigns stored after a refused apply", n)
	}
	if n := countRows(t, c.dir, `SELECT count(*) FROM audit`); n != audits {
		t.Fatalf("audit grew from %d to %d after a refused apply", audits, n)
	}
	p, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: spec, AllowFewerVantages: true})
	if err != nil || p.GetState() != vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE {
		t.Fatalf("with allow_fewer_vantages: %v, %v", p.GetState(), err)
	}
	// Two agents of one provider are one quorum group.
	newAgentLabels(t, c, map[string]string{"role": "vps", "provider": "p1"})
	newAgentLabels(t, c, map[string]string{"role": "vps", "provider": "p1"})
	three := strings.Replace(spec, "quorum: 2", "quorum: 3", 1)
	_, err = ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: three})
	if want := `vantages.quorum: 3 is more than the 2 distinct "provider" group(s) among the 3 enrolled active agent(s)`; err == nil ||
		!strings.Contains(err.Error(), want) || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("one provider twice: %v; want %s", err, want)
	}
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: spec}); err != nil {
		t.Fatalf("quorum 2 with 2 groups: %v", err)
	}
}

func newAgentLabels(t *testing.T, c *ctl, labels map[string]string) {
	t.Helper()
	tok := joinToken(t, c, &vantagev1.CreateJoinTokenRequest{Labels: labels})
	if _, err := enroll(t, c, tok); err != nil {
		t.Fatal(err)
	}
}
