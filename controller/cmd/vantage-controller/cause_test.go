package main

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// causeCampaign has one host behind a named upstream and a named border.
const causeCampaign = `name: cz
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefix: 198.18.0.0/24, hosts: [198.18.0.10]}
  upstreams: [{name: unicom, addrs: [198.51.100.42]}]
  borders: [{name: ryugyong, addrs: [198.51.100.50]}]
probes:
  - icmp: {timeout: 200ms}
  - trace: {protocol: icmp, every: 1m, max_ttl: 8, timeout: 200ms}
schedule: {round: 1s}
budget: {per_target_pps: 2}
`

// blackoutResults is one 1s round of an agent's results: the routers
// answer; the host answers until the blackout, then times out; the trace
// to the host crosses unicom and the border before it and dies at the
// exchange, which has no route, during it.
func blackoutResults(tasks []*vantagev1.Task, round int64, dark bool) []*vantagev1.ProbeResult {
	var out []*vantagev1.ProbeResult
	for _, tk := range tasks {
		r := &vantagev1.ProbeResult{TaskId: tk.GetId(), Campaign: tk.GetCampaign(), Target: tk.GetTarget(), Kind: tk.GetKind(),
			Round: round, SentAt: timestamppb.Now(), Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: 1000, Attempts: 1}
		host := tk.GetTarget() == "198.18.0.10"
		switch {
		case tk.GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE && !host:
			continue
		case tk.GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE && dark:
			r.Outcome, r.RttUs, r.StopReason = vantagev1.Outcome_OUTCOME_TIMEOUT, 0, vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE
			r.Hops = []*vantagev1.Hop{{Ttl: 1, Addr: "198.51.100.1", RttUs: 500}}
		case tk.GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE:
			r.StopReason = vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED
			for i, a := range []string{"198.51.100.1", "198.51.100.42", "198.51.100.50", "198.18.0.10"} {
				r.Hops = append(r.Hops, &vantagev1.Hop{Ttl: uint32(i + 1), Addr: a, RttUs: 500})
			}
		case host && dark:
			r.Outcome, r.RttUs = vantagev1.Outcome_OUTCOME_TIMEOUT, 0
		}
		out = append(out, r)
	}
	return out
}

// TestExplainCauseOverGRPC: a real controller, one agent over mTLS and an
// upstream blackout. Explain (over gRPC) gives the scope's location router
// (unicom, UPSTREAM), the upstream views and the cause UPSTREAM with its
// evidence, and the stored timeline carries the same cause and router.
func TestExplainCauseOverGRPC(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	camp, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: causeCampaign})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range camp.GetTargets() {
		if tg.GetName() != "" {
			names = append(names, tg.GetAddress()+"="+tg.GetName())
		}
	}
	if want := []string{"198.51.100.42=unicom", "198.51.100.50=ryugyong"}; !slices.Equal(names, want) {
		t.Fatalf("stored campaign's router names %v, want %v", names, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := newAgent(t, c)
	s, _ := openSession(t, c, a, 1)
	tasks := fixture.RecvAssignment(t, s).GetTasks()
	var dark atomic.Bool
	go func() {
		seq := uint64(1)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			rs := blackoutResults(tasks, time.Now().Unix(), dark.Load())
			for i, r := range rs {
				r.Seq = seq + uint64(i)
			}
			b := &vantagev1.ResultBatch{Epoch: 1, FirstSeq: seq, LastSeq: seq + uint64(len(rs)) - 1, Results: rs}
			if s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}) != nil {
				return
			}
			seq += uint64(len(rs))
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	go func() { // drain acks
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}()
	scope := "cz/scope/KP"
	waitExplain := func(what string, ok func(*vantagev1.Verdict) bool) *vantagev1.ExplainResponse {
		t.Helper()
		for {
			ex, err := ops.Explain(bearer(c.admin), &vantagev1.ExplainRequest{VerdictId: scope, Rounds: 5})
			if err == nil && ok(ex.GetVerdict()) {
				return ex
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: never; last %v, %v", what, ex.GetVerdict(), err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitExplain("scope REACHABLE", func(v *vantagev1.Verdict) bool { return v.GetState() == vantagev1.State_STATE_REACHABLE })
	time.Sleep(2 * time.Second) // calm rounds before the onset
	dark.Store(true)
	start := time.Now()
	ex := waitExplain("cause UPSTREAM", func(v *vantagev1.Verdict) bool {
		return v.GetState() == vantagev1.State_STATE_UNREACHABLE && v.GetCause().GetCause() == vantagev1.Cause_CAUSE_UPSTREAM
	})
	v := ex.GetVerdict()
	t.Logf("cause %s after %s: confidence %.2f, router %v, upstreams %v, evidence %q", v.GetCause().GetCause(), time.Since(start).Round(time.Millisecond),
		v.GetCause().GetConfidence(), v.GetLocationHop(), v.GetUpstreams(), v.GetCause().GetEvidence())
	if h := v.GetLocationHop(); v.GetLocation() != vantagev1.Location_LOCATION_UPSTREAM || h.GetAddress() != "198.51.100.42" ||
		h.GetRole() != vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || h.GetName() != "unicom" {
		t.Errorf("location %s at %v, want UPSTREAM at 198.51.100.42 (UPSTREAM, unicom)", v.GetLocation(), h)
	}
	if u := v.GetUpstreams(); len(u) != 1 || u[0].GetName() != "unicom" || !u[0].GetDead() || !slices.Equal(u[0].GetNetworksDown(), []string{"net0"}) {
		t.Errorf("upstreams %v, want unicom dead with net0 down", u)
	}
	evidence := strings.Join(v.GetCause().GetEvidence(), "; ")
	for _, want := range []string{"paths die at upstream unicom (198.51.100.42)", "border targets answering: 1 of 1", "upstream:"} {
		if !strings.Contains(evidence, want) {
			t.Errorf("evidence %q lacks %q", evidence, want)
		}
	}
	var tl *vantagev1.Transition
	for ctx.Err() == nil && tl == nil {
		resp, err := ops.GetTimeline(bearer(c.admin), &vantagev1.GetTimelineRequest{Campaign: "cz", Level: vantagev1.Level_LEVEL_SCOPE})
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range resp.GetTransitions() {
			if tr.GetCause().GetCause() == vantagev1.Cause_CAUSE_UPSTREAM {
				tl = tr
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if tl == nil || tl.GetLocationHop().GetName() != "unicom" || len(tl.GetCause().GetEvidence()) == 0 || len(tl.GetUpstreams()) != 1 {
		t.Fatalf("stored timeline: %v, want a scope transition with cause UPSTREAM, router unicom, evidence and the upstream view", tl)
	}
}
