package verdict

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	unstable = vantagev1.State_STATE_UNSTABLE
	warmup   = 20 // rounds of clean data before each scenario
	scopeID  = "country/scope/KP"
)

// warmed returns an engine fed warmup clean rounds (0..warmup-1).
func warmed(t *testing.T, cfg Config, agents []string) *Engine {
	t.Helper()
	e := newEngine(t, cfg)
	run(t, e, cfg, steps(0, warmup-1, agents, allUp))
	return e
}

// flat lists every transition of a run in round order.
func flat(byRound map[int64][]*vantagev1.Transition) []*vantagev1.Transition {
	var rounds []int64
	for n := range byRound {
		rounds = append(rounds, n)
	}
	slices.Sort(rounds)
	var out []*vantagev1.Transition
	for _, n := range rounds {
		out = append(out, byRound[n]...)
	}
	return out
}

func TestBeliefUpdate(t *testing.T) {
	for _, c := range []struct {
		name                 string
		prior, a             float64
		answered             bool
		packets              int
		wantLo, wantHi       float64
		wantUp, wantDownView bool
	}{
		{"answer from down is up in one round", 0.01, 0.99, true, 1, 0.9, 0.99, true, false},
		{"answer from prior", 0.5, 0.5, true, 1, 0.99, 0.99, true, false},
		{"clean path, miss with one retry: down in one round", 0.99, 0.99, false, 2, 0.01, 0.1, false, true},
		{"clean path, one packet missed: uncertain", 0.99, 0.99, false, 1, 0.4, 0.6, false, false},
		{"lossy path, full miss: uncertain", 0.99, 0.8, false, 3, 0.3, 0.6, false, false},
		{"lossy path, second full miss: down", 0.44, 0.8, false, 3, 0.01, 0.1, false, true},
		{"low availability: a miss says little", 0.99, 0.05, false, 3, 0.98, 0.99, true, false},
		{"clamped at BeliefMin", 0.01, 0.99, false, 5, BeliefMin, BeliefMin, false, true},
		{"clamped at BeliefMax", 0.99, 0.99, true, 1, BeliefMax, BeliefMax, true, false},
		{"NaN availability is safe", 0.5, math.NaN(), false, 1, 0.01, 0.99, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Update(c.prior, c.a, c.answered, c.packets)
			if got < c.wantLo-1e-9 || got > c.wantHi+1e-9 || math.IsNaN(got) {
				t.Fatalf("Update(%v, %v, %v, %d) = %v, want in [%v, %v]", c.prior, c.a, c.answered, c.packets, got, c.wantLo, c.wantHi)
			}
			if (got >= DefaultBeliefUp) != c.wantUp || (got <= DefaultBeliefDown) != c.wantDownView {
				t.Errorf("Update = %v: up %v down %v, want up %v down %v", got, got >= DefaultBeliefUp, got <= DefaultBeliefDown, c.wantUp, c.wantDownView)
			}
		})
	}
}

func TestStatesAndTransitions(t *testing.T) {
	cfg := labConfig()
	e := warmed(t, cfg, agents3)
	ss := steps(20, 22, agents3, netsDown(allNets...))
	ss = append(ss, steps(23, 24, agents3, netsDown("net2", "net3"))...)
	ss = append(ss, steps(25, 26, agents3, allUp)...)
	byRound := run(t, e, cfg, ss)
	r := func(n int64, d time.Duration) time.Time { return t0.Add(time.Duration(n)*round + d) }

	// Blackout: UNREACHABLE in the first bad round; the onset lies between
	// the last host probe of round 19 (agt-c, host 15: 200ms + 150ms) and
	// the first of round 20.
	checkTransition(t, byRound[20], transWant{
		id: scopeID, from: reachable, to: unreachable, round: 20,
		earliest: r(19, 350*time.Millisecond), latest: r(20, 0), location: vantagev1.Location_LOCATION_LOCATING,
		downKids: "net0,net1,net2,net3",
	}, closeAt(20))
	checkTransition(t, byRound[20], transWant{
		id: "country/target/198.18.2.11", from: reachable, to: unreachable, round: 20,
		earliest: r(19, 290*time.Millisecond), latest: r(20, 90*time.Millisecond), location: vantagev1.Location_LOCATION_LOCATING,
		downKids: "agt-a,agt-b,agt-c",
	}, closeAt(20))
	if n := len(byRound[20]); n != 1+4+16 {
		t.Errorf("round 20: %d transitions, want 21 (upstreams stay up)", n)
	}
	if len(byRound[21]) != 0 || len(byRound[22]) != 0 {
		t.Errorf("transitions while the blackout lasts: %v %v", byRound[21], byRound[22])
	}
	checkTransition(t, byRound[23], transWant{
		id: scopeID, from: unreachable, to: degraded, round: 23,
		earliest: r(22, 350*time.Millisecond), latest: r(23, 0), location: vantagev1.Location_LOCATION_LOCATING,
		upKids: "net0,net1", downKids: "net2,net3",
	}, closeAt(23))
	v := mustVerdict(t, e, scopeID)
	if v.GetState() != reachable {
		t.Errorf("scope at the end: %s", v.GetState())
	}
	checkTransition(t, byRound[25], transWant{
		id: scopeID, from: degraded, to: reachable, round: 25,
		earliest: r(24, 350*time.Millisecond), latest: r(25, 0), location: vantagev1.Location_LOCATION_NONE,
		upKids: "net0,net1,net2,net3",
	}, closeAt(25))
	// Issue 11: no traces and the upstreams answering say nothing of where
	// the paths die (an upstream blackout leaves its routers answering):
	// LOCATING, not TARGET_NETWORK, and marked as such.
	e2 := warmed(t, cfg, agents3)
	run(t, e2, cfg, steps(20, 20, agents3, netsDown(allNets...)))
	v = mustVerdict(t, e2, scopeID)
	if !slices.ContainsFunc(v.GetNotes(), func(s string) bool { return strings.HasPrefix(s, "location LOCATING: awaiting traces") }) {
		t.Errorf("notes %q lack the LOCATING note", v.GetNotes())
	}
}

func TestUpstreamDownToo(t *testing.T) {
	cfg := labConfig()
	e := warmed(t, cfg, agents3)
	down := func(_ string, tg Target) []vantagev1.Outcome {
		return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_TIMEOUT}
	}
	byRound := run(t, e, cfg, steps(20, 20, agents3, down))
	for _, tr := range transitionsOf(byRound[20], scopeID) {
		if tr.GetTo() != unreachable || tr.GetLocation() != vantagev1.Location_LOCATION_UPSTREAM {
			t.Errorf("scope: %s at %s, want UNREACHABLE at UPSTREAM", tr.GetTo(), tr.GetLocation())
		}
	}
	if v := mustVerdict(t, e, "country/target/198.51.100.42"); v.GetLocation() != vantagev1.Location_LOCATION_UPSTREAM {
		t.Errorf("upstream target location %s", v.GetLocation())
	}
}

func TestUnstableHysteresis(t *testing.T) {
	cfg := labConfig()
	e := warmed(t, cfg, agents3)
	var ss []step
	for n := int64(20); n < 50; n++ { // 30 rounds of flapping
		w := world(allUp)
		if n%2 == 0 {
			w = netsDown(allNets...)
		}
		ss = append(ss, step{n, agents3, w})
	}
	ss = append(ss, steps(50, 70, agents3, allUp)...)
	trs := transitionsOf(flat(run(t, e, cfg, ss)), scopeID)
	var got []string
	for _, tr := range trs {
		got = append(got, shortState(tr.GetTo()))
	}
	// The flip at 20 is published (it may be a blackout); the recovery at
	// 21 came one round after it and is held; the flip at 22, within the
	// hold, enters UNSTABLE (issue 11: within 3 rounds of the second
	// change, the transitions before it folded into the episode); the last
	// flip is round 49; 5 calm rounds later (54) it leaves.
	want := []string{"UNREACHABLE", "UNSTABLE", "REACHABLE"}
	if !slices.Equal(got, want) {
		t.Fatalf("scope transitions %v, want %v", got, want)
	}
	in, out := trs[1], trs[2]
	if in.GetRound() != 22 || out.GetRound() != 54 {
		t.Errorf("UNSTABLE from round %d to %d, want 22 to 54", in.GetRound(), out.GetRound())
	}
	// Into UNSTABLE: onset of the first flip (round 20); out: of the last (49).
	if !in.GetOnsetEarliest().AsTime().Equal(trs[0].GetOnsetEarliest().AsTime()) || !in.GetOnsetLatest().AsTime().Equal(trs[0].GetOnsetLatest().AsTime()) {
		t.Errorf("UNSTABLE onset [%s, %s], want that of round 20", in.GetOnsetEarliest().AsTime(), in.GetOnsetLatest().AsTime())
	}
	if lat := out.GetOnsetLatest().AsTime(); !lat.Equal(t0.Add(49 * round)) {
		t.Errorf("recovery onset latest %s, want the start of round 49", lat)
	}
	if !slices.ContainsFunc(in.GetNotes(), func(s string) bool { return strings.HasPrefix(s, "unstable: ") }) {
		t.Errorf("UNSTABLE notes %q", in.GetNotes())
	}
	// A blackout, a partial and a full restoration (the e2e story) are
	// two flips: never UNSTABLE.
	e = warmed(t, cfg, agents3)
	ss = steps(20, 21, agents3, netsDown(allNets...))
	ss = append(ss, steps(22, 23, agents3, netsDown("net2", "net3"))...)
	ss = append(ss, steps(24, 25, agents3, allUp)...)
	for _, tr := range flat(run(t, e, cfg, ss)) {
		if tr.GetTo() == unstable {
			t.Errorf("blackout and restoration made %s UNSTABLE", tr.GetVerdictId())
		}
	}
}

// TestSteadyLossyVantage: one vantage behind 20% loss per packet for 200
// rounds, seeded; echo with one retry plus a TCP probe per target.
func TestSteadyLossyVantage(t *testing.T) {
	cfg := labConfig()
	e := newEngine(t, cfg)
	rng := rand.New(rand.NewPCG(42, 4))
	var all []*vantagev1.Transition
	for n := int64(0); n < 200; n++ {
		for ai, ag := range agents3 {
			for ti, tg := range cfg.Targets {
				lost := func() bool { return ag == "agt-c" && rng.Float64() < 0.2 }
				o := Observation{Agent: ag, Target: tg.Addr, Round: n, SentAt: sentAt(n, ai, ti), Kind: icmp,
					Outcome: vantagev1.Outcome_OUTCOME_REPLY, Attempts: 1}
				if lost() {
					o.Attempts = 2
					if lost() {
						o.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT
					}
				}
				e.Observe(o)
				o = Observation{Agent: ag, Target: tg.Addr, Round: n, SentAt: sentAt(n, ai, ti), Kind: tcp,
					Outcome: vantagev1.Outcome_OUTCOME_TCP_SYNACK, Attempts: 1}
				if lost() {
					o.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT
				}
				e.Observe(o)
			}
		}
		trs := e.Evaluate(closeAt(n))
		if n > 0 {
			all = append(all, trs...)
		}
	}
	if len(all) != 0 {
		t.Fatalf("%d false transitions, first %v", len(all), all[0])
	}
	if v := mustVerdict(t, e, scopeID); v.GetState() != reachable || v.GetHealthyVantages() != 3 {
		t.Errorf("scope %s with %d healthy vantages", v.GetState(), v.GetHealthyVantages())
	}
}

func TestQuorumDistinctLabels(t *testing.T) {
	for _, c := range []struct {
		name   string
		label  string
		quorum int
		want   vantagev1.State
	}{
		{"two providers, quorum 2", "", 2, reachable},
		{"two providers, quorum 3", "", 3, unknown},
		{"label ignored, quorum 3", "-", 3, reachable},
		{"another label, quorum 3", "asn", 3, reachable},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := labConfig()
			cfg.Quorum, cfg.QuorumLabel = c.quorum, c.label
			e := newEngine(t, cfg)
			e.SetAgentLabels("agt-a", map[string]string{"provider": "hetzner", "asn": "1"})
			e.SetAgentLabels("agt-b", map[string]string{"provider": "hetzner", "asn": "2"})
			e.SetAgentLabels("agt-c", map[string]string{"provider": "ovh", "asn": "3"})
			run(t, e, cfg, steps(0, 2, agents3, allUp))
			v := mustVerdict(t, e, scopeID)
			if v.GetState() != c.want {
				t.Errorf("scope %s, want %s (notes %q)", v.GetState(), c.want, v.GetNotes())
			}
		})
	}
	// Disagreement along provider lines: hetzner (2 vantages) sees net3
	// down, ovh sees it up: one group each, quorum 2: DEGRADED, not
	// UNREACHABLE.
	cfg := labConfig()
	e := newEngine(t, cfg)
	e.SetAgentLabels("agt-a", map[string]string{"provider": "hetzner"})
	e.SetAgentLabels("agt-b", map[string]string{"provider": "hetzner"})
	run(t, e, cfg, steps(0, warmup-1, agents3, allUp))
	runRound(t, e, cfg, 20, step{20, []string{"agt-a", "agt-b"}, netsDown("net3")}, step{20, []string{"agt-c"}, allUp})
	if v := mustVerdict(t, e, "country/network/net3"); v.GetState() != degraded {
		t.Errorf("net3 %s, want DEGRADED", v.GetState())
	}
}

// runRound feeds several steps for the same round before closing it.
func runRound(t *testing.T, e *Engine, cfg Config, n int64, ss ...step) []*vantagev1.Transition {
	t.Helper()
	for _, s := range ss {
		feed(e, cfg, n, s.agents, s.w)
	}
	return e.Evaluate(closeAt(n))
}

func controlConfig() Config {
	cfg := labConfig()
	for _, a := range []string{"192.0.2.1", "192.0.2.2"} {
		cfg.Targets = append(cfg.Targets, Target{Addr: a, Role: vantagev1.TargetRole_TARGET_ROLE_CONTROL})
	}
	return cfg
}

func TestVantageHealthGating(t *testing.T) {
	controlsDown := func(ag string, tg Target) []vantagev1.Outcome {
		if tg.Role == vantagev1.TargetRole_TARGET_ROLE_CONTROL {
			return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_TIMEOUT}
		}
		return allUp(ag, tg)
	}
	everythingDown := func(string, Target) []vantagev1.Outcome {
		return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_TIMEOUT}
	}
	others := []string{"agt-a", "agt-c"}
	for _, c := range []struct {
		name        string
		steps       []step
		connected   bool
		wantHealthy int
		wantReason  string // of agt-b; "" healthy
		wantScope   vantagev1.State
	}{
		{"control targets fail", []step{{0, []string{"agt-b"}, controlsDown}, {0, others, allUp}}, true, 2,
			"control targets fail (2 of 2 down while other vantages reach them)", reachable},
		{"controls dead for everyone are ignored", []step{{0, agents3, controlsDown}}, true, 3, "", reachable},
		{"isolated: sees nearly everything down", []step{{0, []string{"agt-b"}, everythingDown}, {0, others, allUp}}, true, 2,
			"sees nearly everything down while others don't", reachable},
		{"session gone", []step{{0, agents3, allUp}}, false, 2, "session down", reachable},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := controlConfig()
			e := warmed(t, cfg, agents3)
			if !c.connected {
				e.SetAgentConnected("agt-b", false, t0.Add(warmup*round))
			}
			n := int64(warmup)
			for k := int64(0); k < 2; k++ {
				var ss []step
				for _, s := range c.steps {
					ss = append(ss, step{n + k, s.agents, s.w})
				}
				if trs := transitionsOf(runRound(t, e, cfg, n+k, ss...), scopeID); len(trs) != 0 {
					t.Errorf("scope transition %v", trs)
				}
			}
			v := mustVerdict(t, e, scopeID)
			if v.GetState() != c.wantScope || int(v.GetHealthyVantages()) != c.wantHealthy {
				t.Errorf("scope %s with %d healthy, want %s with %d", v.GetState(), v.GetHealthyVantages(), c.wantScope, c.wantHealthy)
			}
			for _, ev := range v.GetEvidence() {
				if ev.GetAgentId() != "agt-b" {
					continue
				}
				if ev.GetHealthy() != (c.wantReason == "") || !strings.HasPrefix(ev.GetReason(), c.wantReason) {
					t.Errorf("agt-b evidence healthy=%v reason %q, want reason %q", ev.GetHealthy(), ev.GetReason(), c.wantReason)
				}
			}
		})
	}
}

func TestQuorumLostIsUnknown(t *testing.T) {
	cfg := labConfig()
	e := warmed(t, cfg, agents3)
	trs := runRound(t, e, cfg, 20, step{20, []string{"agt-a", "agt-b"}, allUp})
	if len(transitionsOf(trs, scopeID)) != 0 {
		t.Errorf("two of three vantages left: %v", trs)
	}
	trs = runRound(t, e, cfg, 21, step{21, []string{"agt-a"}, allUp})
	got := transitionsOf(trs, scopeID)
	if len(got) != 1 || got[0].GetTo() != unknown {
		t.Fatalf("one vantage left: %v, want one transition to UNKNOWN", got)
	}
	if !strings.HasPrefix(got[0].GetNotes()[0], "unknown: 1 healthy vantages") {
		t.Errorf("notes %q", got[0].GetNotes())
	}
}

func TestICMPFiltered(t *testing.T) {
	cfg := labConfig()
	filtered := func(ag string, tg Target) []vantagev1.Outcome {
		if tg.Network == "net0" {
			return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.Outcome_OUTCOME_TCP_SYNACK}
		}
		return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_REPLY, vantagev1.Outcome_OUTCOME_TCP_RST}
	}
	e := newEngine(t, cfg)
	run(t, e, cfg, steps(0, 3, agents3, filtered))
	v := mustVerdict(t, e, "country/target/198.18.0.10")
	if v.GetState() != reachable || v.GetLocation() != vantagev1.Location_LOCATION_FILTERED {
		t.Errorf("target %s at %s", v.GetState(), v.GetLocation())
	}
	if nv := mustVerdict(t, e, "country/network/net0"); nv.GetLocation() != vantagev1.Location_LOCATION_FILTERED {
		t.Errorf("net0 at %s", nv.GetLocation())
	}
	if sv := mustVerdict(t, e, scopeID); sv.GetState() != reachable || !slices.ContainsFunc(sv.GetNotes(), func(s string) bool {
		return strings.Contains(s, "ICMP filtered on 1 children")
	}) {
		t.Errorf("scope %s notes %q", sv.GetState(), sv.GetNotes())
	}
}

func TestEarlyClose(t *testing.T) {
	cfg := labConfig()
	cfg.ResultsPerRound = len(cfg.Targets)
	e := newEngine(t, cfg)
	feed(e, cfg, 0, agents3, allUp)
	if e.Evaluate(t0.Add(2 * time.Second)); e.ClosedRound() != 0 {
		t.Fatalf("complete round 0 not closed early: closed %d", e.ClosedRound())
	}
	feed(e, cfg, 1, []string{"agt-a", "agt-b"}, allUp) // agt-c is late
	if e.Evaluate(t0.Add(round + 2*time.Second)); e.ClosedRound() != 0 {
		t.Fatalf("incomplete round 1 closed early")
	}
	feed(e, cfg, 1, []string{"agt-c"}, allUp)
	if e.Evaluate(t0.Add(round + 2500*time.Millisecond)); e.ClosedRound() != 1 {
		t.Fatalf("round 1 not closed once complete")
	}
	// A round that has not started never closes early.
	feed(e, cfg, 2, agents3, allUp)
	if e.Evaluate(t0.Add(2*round - time.Millisecond)); e.ClosedRound() != 1 {
		t.Fatalf("round 2 closed before it started")
	}
}

func TestClassify(t *testing.T) {
	const (
		up = vantagev1.TargetRole_TARGET_ROLE_UPSTREAM
		bd = vantagev1.TargetRole_TARGET_ROLE_BORDER
	)
	reached := PathEvidence{Agent: "a", Target: "t", Reached: true, LastHop: "t", BaselineGap: -1}
	pastUp := PathEvidence{Agent: "b", Target: "t", LastHop: "198.51.100.50", LastHopRole: bd, PassedUpstream: true, BaselineGap: -1}
	atUpstream := PathEvidence{Agent: "b", Target: "t", LastHop: "198.51.100.42", LastHopRole: up, PassedUpstream: true, BaselineGap: -1}
	nothing := PathEvidence{Agent: "c", Target: "t", BaselineGap: -1}
	withdrawn := PathEvidence{Agent: "a", Target: "t", LastHop: "198.51.100.1", UpstreamAlive: true, BaselineGap: 2}
	silentNear := PathEvidence{Agent: "a", Target: "t", LastHop: "198.51.100.26", BaselineGap: 1}
	silentFar := PathEvidence{Agent: "a", Target: "t", LastHop: "198.51.100.1", BaselineGap: 2}
	silentNoBase := PathEvidence{Agent: "a", Target: "t", LastHop: "198.51.100.1", BaselineGap: -1}
	with := func(p PathEvidence, agent string) PathEvidence { p.Agent = agent; return p }
	for _, c := range []struct {
		name    string
		paths   []PathEvidence
		want    vantagev1.Location
		wantHop string
	}{
		{"no traces", nil, vantagev1.Location_LOCATION_UNSPECIFIED, ""},
		{"all reach", []PathEvidence{reached, with(reached, "b")}, vantagev1.Location_LOCATION_UNSPECIFIED, ""},
		{"border answers, targets do not", []PathEvidence{pastUp, with(pastUp, "c")}, vantagev1.Location_LOCATION_TARGET_NETWORK, "198.51.100.50"},
		{"upstream answers, border does not", []PathEvidence{atUpstream}, vantagev1.Location_LOCATION_TARGET_NETWORK, "198.51.100.42"},
		{"routes withdrawn, upstream alive", []PathEvidence{withdrawn, with(withdrawn, "b")}, vantagev1.Location_LOCATION_UPSTREAM, "198.51.100.1"},
		{"dies just before a silent upstream", []PathEvidence{silentNear}, vantagev1.Location_LOCATION_UPSTREAM, "198.51.100.26"},
		{"dies in transit", []PathEvidence{silentFar, with(silentFar, "b")}, vantagev1.Location_LOCATION_TRANSIT, "198.51.100.1"},
		{"silent upstream, no baseline", []PathEvidence{silentNoBase}, vantagev1.Location_LOCATION_UPSTREAM, "198.51.100.1"},
		// Issue 11: VANTAGE only when the other vantages get through.
		{"vantage cannot get out, alone", []PathEvidence{nothing}, vantagev1.Location_LOCATION_UNSPECIFIED, ""},
		{"some paths reach", []PathEvidence{reached, pastUp}, vantagev1.Location_LOCATION_PATH_SPECIFIC, "198.51.100.50"},
		{"paths disagree", []PathEvidence{pastUp, silentFar}, vantagev1.Location_LOCATION_PATH_SPECIFIC, "198.51.100.1"},
		{"a stuck vantage next to agreeing ones", []PathEvidence{pastUp, with(pastUp, "a"), nothing}, vantagev1.Location_LOCATION_TARGET_NETWORK, "198.51.100.50"},
	} {
		t.Run(c.name, func(t *testing.T) {
			loc, hop, note := Classify(c.paths)
			if loc != c.want || hop != c.wantHop {
				t.Errorf("Classify = %s, %q (%s), want %s, %q", loc, hop, note, c.want, c.wantHop)
			}
			rev := slices.Clone(c.paths)
			slices.Reverse(rev)
			if l2, h2, n2 := Classify(rev); l2 != loc || h2 != hop || n2 != note {
				t.Errorf("order matters: %s %q %q vs %s %q %q", l2, h2, n2, loc, hop, note)
			}
		})
	}
}

// traceObs is a trace of ag toward target in round n through hops.
func traceObs(ag, target string, n int64, stop vantagev1.TraceStopReason, hops ...string) Observation {
	o := Observation{Agent: ag, Target: target, Round: n, SentAt: t0.Add(time.Duration(n) * round), Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE,
		Outcome: vantagev1.Outcome_OUTCOME_TIMEOUT, StopReason: stop, TriggerID: "trg-1"}
	if stop == vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED {
		o.Outcome = vantagev1.Outcome_OUTCOME_REPLY
	}
	for i, h := range hops {
		o.Hops = append(o.Hops, Hop{TTL: uint32(i + 1), Addr: h})
	}
	return o
}

func TestTraceLocalisation(t *testing.T) {
	const (
		ix, transit, upstr, border = "198.51.100.1", "198.51.100.26", "198.51.100.42", "198.51.100.50"
		completed                  = vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED
		unreach                    = vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE
		gap                        = vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT
	)
	cfg := labConfig()
	hosts := func() []string {
		var out []string
		for _, tg := range cfg.Targets {
			if tg.Role == vantagev1.TargetRole_TARGET_ROLE_HOST {
				out = append(out, tg.Addr)
			}
		}
		return out
	}()
	for _, c := range []struct {
		name    string
		trace   func(target string) Observation
		agents  []string
		want    vantagev1.Location
		wantHop string
	}{
		{"routes withdrawn at the upstream", func(tg string) Observation { return traceObs("", tg, 20, unreach, ix) },
			agents3, vantagev1.Location_LOCATION_UPSTREAM, ix},
		{"cut inside the border", func(tg string) Observation { return traceObs("", tg, 20, gap, ix, transit, upstr, border) },
			agents3, vantagev1.Location_LOCATION_TARGET_NETWORK, border},
		{"one vantage's traces only", func(tg string) Observation { return traceObs("", tg, 20, gap, ix, transit, upstr) },
			[]string{"agt-a"}, vantagev1.Location_LOCATION_TARGET_NETWORK, upstr},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := warmed(t, cfg, agents3)
			// Baseline paths, from periodic traces before the outage.
			for _, ag := range agents3 {
				for _, h := range hosts {
					e.Observe(traceObs(ag, h, 5, completed, ix, transit, upstr, border, h))
				}
			}
			before := transitionsOf(flat(run(t, e, cfg, steps(20, 20, agents3, netsDown(allNets...)))), scopeID)
			if len(before) != 1 || before[0].GetTo() != vantagev1.State_STATE_UNREACHABLE {
				t.Fatalf("outage: scope transitions %v, want one to UNREACHABLE", before)
			}
			provisional := before[0].GetLocation()
			for _, ag := range c.agents {
				for _, h := range hosts {
					o := c.trace(h)
					o.Agent = ag
					e.Observe(o)
				}
			}
			// The state holds; a location the traces change is published as
			// a refinement (from == to), an unchanged one is not.
			trs := transitionsOf(flat(run(t, e, cfg, steps(21, 23, agents3, netsDown(allNets...)))), scopeID)
			switch {
			case c.want == provisional && len(trs) != 0:
				t.Errorf("traces confirmed the provisional %s, yet transitions %v", provisional, trs)
			case c.want != provisional && (len(trs) != 1 || trs[0].GetFrom() != trs[0].GetTo() || trs[0].GetLocation() != c.want ||
				!strings.HasPrefix(trs[0].GetNotes()[0], "location refined from "+strings.TrimPrefix(provisional.String(), "LOCATION_"))):
				t.Errorf("traces moved the location from %s to %s: want one refinement (UNREACHABLE -> UNREACHABLE at %s, noted), got %v",
					provisional, c.want, c.want, trs)
			}
			v := mustVerdict(t, e, scopeID)
			if v.GetLocation() != c.want || v.GetLastResponsiveHop() != c.wantHop {
				t.Errorf("scope at %s, last hop %q, want %s, %q (notes %q)", v.GetLocation(), v.GetLastResponsiveHop(), c.want, c.wantHop, v.GetNotes())
			}
			if !slices.ContainsFunc(v.GetNotes(), func(s string) bool { return strings.HasPrefix(s, "location ") && strings.Contains(s, "traces") }) {
				t.Errorf("notes %q lack the trace evidence", v.GetNotes())
			}
		})
	}
}

// history is a deterministic stream of observations for rounds 0..n-1:
// steady, a blackout 15..17, agt-c silent 25..29, then steady.
func history(cfg Config, n int64) []Observation {
	var out []Observation
	for r := int64(0); r < n; r++ {
		for ai, ag := range agents3 {
			if ag == "agt-c" && r >= 25 && r < 30 {
				continue
			}
			for ti, tg := range cfg.Targets {
				o := Observation{Agent: ag, Target: tg.Addr, Round: r, SentAt: sentAt(r, ai, ti), Kind: icmp, Outcome: vantagev1.Outcome_OUTCOME_REPLY, Attempts: 1}
				if r >= 15 && r < 18 && tg.Role == vantagev1.TargetRole_TARGET_ROLE_HOST {
					o.Outcome, o.Attempts = vantagev1.Outcome_OUTCOME_TIMEOUT, 2
				}
				out = append(out, o)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Observation) int { return a.SentAt.Compare(b.SentAt) })
	return out
}

func replay(t *testing.T, cfg Config, obs []Observation, until time.Time) []*vantagev1.Transition {
	t.Helper()
	r, err := NewReplayer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range obs {
		r.Observe(o)
	}
	return r.Finish(until)
}

func summary(trs []*vantagev1.Transition) []string {
	var out []string
	for _, tr := range trs {
		out = append(out, strings.Join([]string{tr.GetVerdictId(), shortState(tr.GetFrom()), shortState(tr.GetTo()),
			tr.GetOnsetEarliest().AsTime().String(), tr.GetOnsetLatest().AsTime().String(), tr.GetLocation().String(),
			strings.Join(tr.GetUpChildren(), ","), strings.Join(tr.GetDownChildren(), ","), strings.Join(tr.GetNotes(), "|")}, " "))
	}
	return out
}

func TestReplayEqualsLive(t *testing.T) {
	cfg := labConfig()
	const rounds = 40
	obs := history(cfg, rounds)
	// Live: results arrive round by round and the clock closes each round.
	live := newEngine(t, cfg)
	var liveTrs []*vantagev1.Transition
	i := 0
	for n := int64(0); n < rounds; n++ {
		for i < len(obs) && obs[i].Round <= n {
			live.Observe(obs[i])
			i++
		}
		liveTrs = append(liveTrs, live.Evaluate(closeAt(n))...)
	}
	rep := replay(t, cfg, obs, t0.Add(rounds*round))
	if a, b := summary(liveTrs), summary(rep); !slices.Equal(a, b) {
		t.Fatalf("replay differs from live:\nlive   %d %q\nreplay %d %q", len(a), a, len(b), b)
	}
	if len(rep) == 0 {
		t.Fatal("no transitions")
	}
	// Other parameters give another timeline: quorum 3 makes the rounds
	// without agt-c UNKNOWN.
	cfg3, err := WithParams(cfg, map[string]string{"quorum": "3"})
	if err != nil {
		t.Fatal(err)
	}
	rep3 := replay(t, cfg3, obs, t0.Add(rounds*round))
	toUnknown := 0
	for _, tr := range transitionsOf(rep3, scopeID) {
		if tr.GetTo() == unknown && tr.GetRound() == 25 {
			toUnknown++
		}
	}
	if toUnknown != 1 || slices.Equal(summary(rep), summary(rep3)) {
		t.Errorf("quorum 3: %d scope transitions to UNKNOWN at round 25, want 1", toUnknown)
	}
}

func TestWithParams(t *testing.T) {
	base := labConfig()
	for _, c := range []struct {
		params  map[string]string
		wantErr string
	}{
		{map[string]string{"quorum": "3", "grace": "2s", "unstable_window": "20", "belief_up": "0.95", "quorum_label": "asn"}, ""},
		{map[string]string{"quorum": "zero"}, `params["quorum"]: "zero" is not an integer`},
		{map[string]string{"quorum": "0"}, `params["quorum"]`},
		{map[string]string{"grace": "-1s"}, `params["grace"]`},
		{map[string]string{"belief_up": "1.5"}, `params["belief_up"]`},
		{map[string]string{"belief_down": "0.95"}, "BeliefDown"},
		{map[string]string{"unstable_flips": "50"}, "UnstableFlips"},
		{map[string]string{"bogus": "1"}, `params["bogus"]: unknown parameter`},
	} {
		t.Run(strings.Join(slices.Sorted(func(yield func(string) bool) {
			for k := range c.params {
				if !yield(k) {
					return
				}
			}
		}), ","), func(t *testing.T) {
			cfg, err := WithParams(base, c.params)
			if c.wantErr == "" {
				if err != nil || cfg.Quorum != 3 || cfg.Grace != 2*time.Second || cfg.UnstableWindow != 20 || cfg.BeliefUp != 0.95 || cfg.QuorumLabel != "asn" {
					t.Fatalf("WithParams = %+v, %v", cfg, err)
				}
				return
			}
			if !errors.Is(err, ErrParam) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("WithParams err %v, want ErrParam containing %q", err, c.wantErr)
			}
		})
	}
}

// TestClosedPortDoesNotSlowDetection: the TCP port never answers while
// echo does; availability is learned per probe family, so a blackout is
// still UNREACHABLE in its first round.
func TestClosedPortDoesNotSlowDetection(t *testing.T) {
	cfg := labConfig()
	e := newEngine(t, cfg)
	for n := int64(0); n < warmup; n++ {
		for ai, ag := range agents3 {
			for ti, tg := range cfg.Targets {
				e.Observe(Observation{Agent: ag, Target: tg.Addr, Round: n, SentAt: sentAt(n, ai, ti), Kind: icmp, Outcome: vantagev1.Outcome_OUTCOME_REPLY, Attempts: 1})
				e.Observe(Observation{Agent: ag, Target: tg.Addr, Round: n, SentAt: sentAt(n, ai, ti), Kind: tcp, Outcome: vantagev1.Outcome_OUTCOME_TIMEOUT, Attempts: 1})
			}
		}
		e.Evaluate(closeAt(n))
	}
	trs := runRound(t, e, cfg, warmup, step{warmup, agents3, netsDown(allNets...)})
	got := transitionsOf(trs, scopeID)
	if len(got) != 1 || got[0].GetTo() != unreachable {
		t.Fatalf("first blackout round: %v, want UNREACHABLE", got)
	}
}

// TestUnreachableIsStrongEvidence: one echo answered by a router's
// destination unreachable (no retry) is enough for a blackout round.
func TestUnreachableIsStrongEvidence(t *testing.T) {
	cfg := labConfig()
	e := warmed(t, cfg, agents3)
	for ai, ag := range agents3 {
		for ti, tg := range cfg.Targets {
			out := vantagev1.Outcome_OUTCOME_REPLY
			if tg.Role == vantagev1.TargetRole_TARGET_ROLE_HOST {
				out = vantagev1.Outcome_OUTCOME_UNREACHABLE
			}
			e.Observe(Observation{Agent: ag, Target: tg.Addr, Round: warmup, SentAt: sentAt(warmup, ai, ti), Kind: icmp, Outcome: out, Attempts: 1})
		}
	}
	got := transitionsOf(e.Evaluate(closeAt(warmup)), scopeID)
	if len(got) != 1 || got[0].GetTo() != unreachable {
		t.Fatalf("first round of destination unreachable: %v, want UNREACHABLE", got)
	}
}
