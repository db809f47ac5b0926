package verdict

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	rLoss    = vantagev1.Reason_REASON_LOSS
	rLatency = vantagev1.Reason_REASON_LATENCY
	rPartial = vantagev1.Reason_REASON_PARTIAL
	rNone    = vantagev1.Reason_REASON_UNSPECIFIED
)

// TestQualityStep is the quality state machine, round by round.
func TestQualityStep(t *testing.T) {
	c := QualityConfig{}.withDefaults()
	ok := func(loss float64) measure { return measure{loss: loss, lossOK: true, groups: 3} }
	rtt := func(p50 float64) measure { return measure{p50: p50, lossOK: true, rttOK: true, groups: 3} }
	R, D, U := reachable, degraded, unknown
	type rnd struct {
		raw  vantagev1.State
		m    measure
		want vantagev1.Reason
	}
	rs := func(raw vantagev1.State, ms []measure, want ...vantagev1.Reason) []rnd {
		out := make([]rnd, len(ms))
		for i := range ms {
			out[i] = rnd{raw, ms[i], want[i]}
		}
		return out
	}
	losses := func(xs ...float64) []measure {
		out := make([]measure, len(xs))
		for i, x := range xs {
			out[i] = ok(x)
		}
		return out
	}
	cat := func(parts ...[]rnd) []rnd { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name   string
		rounds []rnd
	}{
		{"loss rising: DEGRADED(LOSS) at the second lossy round",
			rs(R, losses(0, 0, 0.3, 0.4, 0.4), rNone, rNone, rNone, rLoss, rLoss)},
		{"one lossy round is noise",
			rs(R, losses(0, 0.5, 0, 0.5, 0), rNone, rNone, rNone, rNone, rNone)},
		{"clears after two calm rounds",
			rs(R, losses(0.4, 0.4, 0.4, 0, 0, 0), rNone, rLoss, rLoss, rLoss, rNone, rNone)},
		{"hysteresis: between the clear and the entry thresholds it holds",
			rs(R, losses(0.2, 0.2, 0.08, 0.07, 0.09, 0.08, 0.02, 0.01), rNone, rLoss, rLoss, rLoss, rLoss, rLoss, rLoss, rNone)},
		{"hysteresis: hovering just under the entry threshold never enters",
			rs(R, losses(0.09, 0.095, 0.09, 0.099, 0.09, 0.095), rNone, rNone, rNone, rNone, rNone, rNone)},
		{"alternating over and under the threshold never enters",
			rs(R, losses(0.3, 0, 0.3, 0, 0.3, 0), rNone, rNone, rNone, rNone, rNone, rNone)},
		{"a calm round inside the episode does not clear it",
			rs(R, losses(0.3, 0.3, 0, 0.3, 0, 0), rNone, rLoss, rLoss, rLoss, rLoss, rNone)},
		{"an UNREACHABLE round ends the episode",
			cat(rs(R, losses(0.3, 0.3), rNone, rLoss), rs(unreachable, losses(1), rNone), rs(R, losses(0.3), rNone))},
		{"a partial DEGRADED round is evidence too",
			cat(rs(R, losses(0.3), rNone), rs(D, losses(0.3, 0.3), rLoss, rLoss), rs(R, losses(0, 0), rLoss, rNone))},
		{"UNKNOWN and rounds without quorum change nothing",
			cat(rs(R, losses(0.3), rNone), rs(U, losses(0.9), rNone), rs(R, []measure{{}}, rNone), rs(R, losses(0.3), rLoss))},
		{"latency waits for a baseline, then doubles for two rounds",
			rs(R, []measure{rtt(100), rtt(100), rtt(100), rtt(300), rtt(100), rtt(300), rtt(300)}, rNone, rNone, rNone, rNone, rNone, rNone, rLatency)},
		{"latency below the absolute floor is not slow",
			rs(R, []measure{rtt(1), rtt(1), rtt(1), rtt(10), rtt(10), rtt(10)}, rNone, rNone, rNone, rNone, rNone, rNone)},
		{"latency clears below the clear factor",
			rs(R, []measure{rtt(100), rtt(100), rtt(100), rtt(300), rtt(300), rtt(170), rtt(140), rtt(140)},
				rNone, rNone, rNone, rNone, rLatency, rLatency, rLatency, rNone)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q qualSubject
			for i, r := range tc.rounds {
				q.step(c, r.raw, r.m)
				if q.active != r.want {
					t.Fatalf("round %d (raw %s, loss %.2f, p50 %.0f): reason %s, want %s", i, r.raw, r.m.loss, r.m.p50, q.active, r.want)
				}
			}
		})
	}
}

// lossy returns a feeder where each agent's probes lose their first try
// with probability loss[agent] (the ICMP retry then answers unless it is
// lost too; a TCP connect retransmits inside the kernel, so only a loss of
// both SYNs shows, as a timeout), with RTT rtt.
func lossy(rng *rand.Rand, loss map[string]float64, rtt time.Duration) func(e *Engine, cfg Config, n int64) {
	return func(e *Engine, cfg Config, n int64) {
		for ai, ag := range agents3 {
			p := loss[ag]
			lost := func() bool { return rng.Float64() < p }
			for ti, tg := range cfg.Targets {
				o := Observation{Agent: ag, Target: tg.Addr, Round: n, SentAt: sentAt(n, ai, ti), Kind: icmp,
					Outcome: vantagev1.Outcome_OUTCOME_REPLY, Attempts: 1, RTT: rtt}
				if lost() {
					o.Attempts = 2
					if lost() {
						o.Outcome, o.RTT = vantagev1.Outcome_OUTCOME_TIMEOUT, 0
					}
				}
				e.Observe(o)
				o = Observation{Agent: ag, Target: tg.Addr, Round: n, SentAt: sentAt(n, ai, ti), Kind: tcp,
					Outcome: vantagev1.Outcome_OUTCOME_TCP_SYNACK, Attempts: 1, RTT: rtt}
				if lost() && lost() {
					o.Outcome, o.RTT = vantagev1.Outcome_OUTCOME_TIMEOUT, 0
				}
				e.Observe(o)
			}
		}
	}
}

// runFeed closes rounds from..to fed by f and returns their transitions
// by round.
func runFeed(e *Engine, cfg Config, from, to int64, f func(*Engine, Config, int64)) map[int64][]*vantagev1.Transition {
	out := map[int64][]*vantagev1.Transition{}
	for n := from; n <= to; n++ {
		f(e, cfg, n)
		out[n] = e.Evaluate(closeAt(n))
	}
	return out
}

func firstTo(byRound map[int64][]*vantagev1.Transition, id string, to vantagev1.State, from int64) (*vantagev1.Transition, bool) {
	for _, tr := range flat(byRound) {
		if tr.GetVerdictId() == id && tr.GetTo() == to && tr.GetRound() >= from {
			return tr, true
		}
	}
	return nil, false
}

// TestQualityLossEpisode: 40% loss at the upstream for 5 rounds is
// DEGRADED(LOSS) within 3 rounds and REACHABLE within 2 rounds after it
// ends, for the scope and every network, over many seeds.
func TestQualityLossEpisode(t *testing.T) {
	cfg := labConfig()
	ids := []string{scopeID, "country/network/net0", "country/network/net1", "country/network/net2", "country/network/net3"}
	worstOn, worstOff := map[string]int64{}, map[string]int64{}
	partialFirst := 0
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		e := newEngine(t, cfg)
		clean := lossy(rng, nil, time.Millisecond)
		all := map[string]float64{"agt-a": 0.4, "agt-b": 0.4, "agt-c": 0.4}
		runFeed(e, cfg, 0, 19, clean)
		on := runFeed(e, cfg, 20, 24, lossy(rng, all, time.Millisecond))
		off := runFeed(e, cfg, 25, 34, clean)
		for _, id := range ids {
			tr, ok := firstLoss(on, id)
			if !ok || tr.GetRound()-20 > 2 {
				t.Fatalf("seed %d: %s not DEGRADED(LOSS) by round 22: %s", seed, id, describeReasons(flat(on)))
			}
			if first, _ := firstTo(on, id, degraded, 20); first != tr {
				partialFirst++ // a few targets' beliefs went down before the loss was agreed
			}
			worstOn[id] = max(worstOn[id], tr.GetRound()-20+1)
			back, ok := firstTo(off, id, reachable, 25)
			if !ok || back.GetRound()-25 > 1 {
				t.Fatalf("seed %d: %s back to REACHABLE %v (round %d), want by round 26", seed, id, ok, back.GetRound())
			}
			worstOff[id] = max(worstOff[id], back.GetRound()-25+1)
			if n := len(transitionsOf(flat(on), id)) + len(transitionsOf(flat(off), id)); n > 3 {
				t.Fatalf("seed %d: %s has %d transitions, want at most 3 (PARTIAL, refined to LOSS, REACHABLE): %s",
					seed, id, n, describeReasons(append(flat(on), flat(off)...)))
			}
		}
		if seed == 1 {
			v := mustVerdict(t, e, scopeID)
			if v.GetReason() != rNone {
				t.Errorf("scope reason after the episode %s", v.GetReason())
			}
		}
	}
	for _, id := range ids {
		t.Logf("%s: DEGRADED(LOSS) at worst in round %d of the loss, REACHABLE at worst in round %d after it (20 seeds)", id, worstOn[id], worstOff[id])
	}
	t.Logf("%d of %d subject-episodes were DEGRADED(PARTIAL) first, then refined to LOSS", partialFirst, 20*len(ids))
}

// firstLoss is the first transition of id to DEGRADED with reason LOSS
// (a change of state or a refinement of the reason).
func firstLoss(byRound map[int64][]*vantagev1.Transition, id string) (*vantagev1.Transition, bool) {
	for _, tr := range flat(byRound) {
		if tr.GetVerdictId() == id && tr.GetTo() == degraded && tr.GetReason() == rLoss {
			return tr, true
		}
	}
	return nil, false
}

func describeReasons(trs []*vantagev1.Transition) string {
	var b strings.Builder
	for _, tr := range trs {
		b.WriteString("\n  " + tr.GetVerdictId() + " " + shortState(tr.GetFrom()) + "->" + shortState(tr.GetTo()) + " " + tr.GetReason().String())
	}
	return b.String()
}

// TestQualityNoisyVantage: one vantage at 20% loss (or 60%, or slow) for
// 300 rounds (15 minutes of 3s rounds) gives no transition: the others
// outvote it.
func TestQualityNoisyVantage(t *testing.T) {
	cfg := labConfig()
	for _, p := range []float64{0.2, 0.6} {
		rng := rand.New(rand.NewPCG(7, uint64(p*100)))
		e := newEngine(t, cfg)
		feed := lossy(rng, map[string]float64{"agt-c": p}, time.Millisecond)
		byRound := runFeed(e, cfg, 0, 299, feed)
		delete(byRound, 0)
		if trs := flat(byRound); len(trs) != 0 {
			t.Fatalf("one vantage at %.0f%% loss: %d transitions:%s", 100*p, len(trs), describeReasons(trs))
		}
		t.Logf("one vantage at %.0f%% loss, 300 rounds: 0 transitions", 100*p)
	}
}

// TestQualityLatency: the RTT p50 tripling at every vantage is
// DEGRADED(LATENCY); one slow vantage is not.
func TestQualityLatency(t *testing.T) {
	cfg := labConfig()
	rng := rand.New(rand.NewPCG(3, 3))
	e := newEngine(t, cfg)
	runFeed(e, cfg, 0, 9, lossy(rng, nil, 40*time.Millisecond))
	slow := runFeed(e, cfg, 10, 13, lossy(rng, nil, 120*time.Millisecond))
	tr, ok := firstTo(slow, scopeID, degraded, 10)
	if !ok || tr.GetReason() != rLatency || tr.GetRound() > 11 {
		t.Fatalf("slow rounds: %s", describeReasons(flat(slow)))
	}
	if v := mustVerdict(t, e, scopeID); v.GetReason() != rLatency || !slices.ContainsFunc(v.GetNotes(), func(s string) bool { return strings.HasPrefix(s, "latency: RTT p50 120.0 ms") }) {
		t.Errorf("scope verdict reason %s notes %q", v.GetReason(), v.GetNotes())
	}
	back := runFeed(e, cfg, 14, 16, lossy(rng, nil, 40*time.Millisecond))
	if _, ok := firstTo(back, scopeID, reachable, 14); !ok {
		t.Fatalf("latency over: %s", describeReasons(flat(back)))
	}
}

// TestQualityReasons: the existing partial DEGRADED is REASON_PARTIAL;
// Off keeps quality out of the states but still gives points.
func TestQualityReasons(t *testing.T) {
	cfg := labConfig()
	e := warmed(t, cfg, agents3)
	trs := flat(run(t, e, cfg, steps(warmup, warmup, agents3, netsDown("net0"))))
	for _, tr := range transitionsOf(trs, scopeID) {
		if tr.GetTo() != degraded || tr.GetReason() != rPartial {
			t.Errorf("scope %s reason %s, want DEGRADED PARTIAL", shortState(tr.GetTo()), tr.GetReason())
		}
	}
	if v := mustVerdict(t, e, scopeID); v.GetReason() != rPartial {
		t.Errorf("scope verdict reason %s", v.GetReason())
	}
	if v := mustVerdict(t, e, "country/network/net0"); v.GetState() != unreachable || v.GetReason() != rNone {
		t.Errorf("net0 %s reason %s", v.GetState(), v.GetReason())
	}

	cfg.Quality.Off = true
	rng := rand.New(rand.NewPCG(5, 5))
	e = newEngine(t, cfg)
	runFeed(e, cfg, 0, 9, lossy(rng, nil, time.Millisecond))
	e.TakeQuality()
	all := map[string]float64{"agt-a": 0.5, "agt-b": 0.5, "agt-c": 0.5}
	if trs := flat(runFeed(e, cfg, 10, 15, lossy(rng, all, time.Millisecond))); len(trs) != 0 {
		t.Errorf("quality off, 50%% loss: %s", describeReasons(trs))
	}
	if pts := e.TakeQuality(); len(pts) != 6*3*4 {
		t.Errorf("quality off: %d points, want %d", len(pts), 6*3*4)
	}
}

// TestQualityFilteredIsNotLoss: ICMP that nobody gets an answer from (a
// filtered network) is not loss.
func TestQualityFilteredIsNotLoss(t *testing.T) {
	cfg := labConfig()
	filtered := func(ag string, tg Target) []vantagev1.Outcome {
		if tg.Network == "net0" {
			return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.Outcome_OUTCOME_TCP_SYNACK}
		}
		return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_REPLY, vantagev1.Outcome_OUTCOME_TCP_RST}
	}
	e := newEngine(t, cfg)
	trs := flat(run(t, e, cfg, steps(0, 9, agents3, filtered)))
	if n := len(trs); n != 1+4+len(cfg.Targets) {
		t.Errorf("%d transitions, want only the first ones:%s", n, describeReasons(trs))
	}
	for _, p := range e.TakeQuality() {
		if p.GetLoss() != 0 {
			t.Fatalf("point %v: loss %v, want 0", p, p.GetLoss())
		}
	}
}

// TestQualityPoints: one vantage's round in numbers.
func TestQualityPoints(t *testing.T) {
	cfg := labConfig()
	e := newEngine(t, cfg)
	hosts := []string{"198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.13"}
	for i, h := range hosts {
		o := Observation{Agent: "agt-a", Target: h, Round: 0, SentAt: sentAt(0, 0, i), Kind: icmp,
			Outcome: vantagev1.Outcome_OUTCOME_REPLY, Attempts: 1, RTT: time.Duration(i+1) * 10 * time.Millisecond}
		if i == 3 {
			o.Attempts = 2 // answered at the retry: a first-try miss
		}
		e.Observe(o)
		e.Observe(Observation{Agent: "agt-a", Target: h, Round: 0, SentAt: sentAt(0, 0, i), Kind: tcp,
			Outcome: vantagev1.Outcome_OUTCOME_TCP_RST, Attempts: 1, RTT: 50 * time.Millisecond})
		e.Observe(Observation{Agent: "agt-a", Target: h, Round: 0, Kind: icmp, Outcome: vantagev1.Outcome_OUTCOME_ERROR})
	}
	e.Observe(traceObs("agt-a", "198.18.0.10", 0, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, "198.51.100.42", "198.18.0.10"))
	e.Observe(Observation{Agent: "agt-a", Target: "198.18.1.10", Round: 0, Kind: icmp, Outcome: vantagev1.Outcome_OUTCOME_TIMEOUT, Attempts: 2})
	e.Evaluate(closeAt(0))
	pts := e.TakeQuality()
	if len(pts) != 1 {
		t.Fatalf("%d points, want 1 (net1's lone timeout was answered by nobody): %v", len(pts), pts)
	}
	p := pts[0]
	want := map[string]uint32{"icmp": 4, "tcp": 4, "trace": 1}
	switch {
	case p.GetNetwork() != "net0" || p.GetAgentId() != "agt-a" || p.GetRound() != 0 || !p.GetRoundStart().AsTime().Equal(t0):
		t.Errorf("point %v", p)
	case p.GetProbes() != 8 || p.GetFirstTryAnswers() != 7 || p.GetLoss() != 1-7.0/8:
		t.Errorf("probes %d first %d loss %v, want 8, 7, 0.125", p.GetProbes(), p.GetFirstTryAnswers(), p.GetLoss())
	case p.GetRttP50Ms() != 40 || p.GetRttP90Ms() != 50:
		t.Errorf("rtt p50 %v p90 %v, want 40 and 50 (nearest rank of 10 20 30 40 50 50 50 50)", p.GetRttP50Ms(), p.GetRttP90Ms())
	case len(p.GetAnswers()) != 3 || p.GetAnswers()["icmp"] != want["icmp"] || p.GetAnswers()["tcp"] != want["tcp"] || p.GetAnswers()["trace"] != want["trace"]:
		t.Errorf("answers %v, want %v", p.GetAnswers(), want)
	}
	if more := e.TakeQuality(); len(more) != 0 {
		t.Errorf("second TakeQuality: %d points", len(more))
	}
}

func TestQualityConfigErrors(t *testing.T) {
	for _, c := range []struct {
		q     QualityConfig
		field string
	}{
		{QualityConfig{Loss: 1}, "Quality.Loss"},
		{QualityConfig{Loss: 0.1, LossClear: 0.2}, "Quality.LossClear"},
		{QualityConfig{LatencyFactor: 0.5}, "Quality.LatencyFactor"},
		{QualityConfig{LatencyFactor: 2, LatencyClearFactor: 3}, "Quality.LatencyClearFactor"},
		{QualityConfig{LatencyMin: -time.Second}, "Quality.LatencyMin"},
		{QualityConfig{Rounds: -1}, "Quality.Rounds"},
		{QualityConfig{ClearRounds: 101}, "Quality.ClearRounds"},
	} {
		cfg := labConfig()
		cfg.Quality = c.q
		_, err := NewEngine(cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.field+":") {
			t.Errorf("%+v: %v, want an error naming %s", c.q, err, c.field)
		}
	}
}

// TestQualityTrend: the per-vantage trend the cause rules read
// (qualityTrend): loss and RTT rising together at every vantage count as
// such, round by round; calm rounds count nothing; one lossy vantage
// counts once.
func TestQualityTrend(t *testing.T) {
	cfg := labConfig()
	rng := rand.New(rand.NewPCG(9, 9))
	e := newEngine(t, cfg)
	runFeed(e, cfg, 0, 9, lossy(rng, map[string]float64{"agt-c": 0.6}, 40*time.Millisecond))
	all := map[string]float64{"agt-a": 0.5, "agt-b": 0.5, "agt-c": 0.5}
	runFeed(e, cfg, 10, 13, lossy(rng, all, 200*time.Millisecond))
	trend := e.qualityTrend(e.scope, 5, 13)
	if len(trend) != 9 {
		t.Fatalf("trend of rounds 5..13: %d rounds: %+v", len(trend), trend)
	}
	for _, r := range trend {
		want := QualityRound{Round: r.Round, Vantages: 3, LossUp: 1}
		if r.Round >= 10 {
			want.LossUp, want.RTTUp = 3, 3
		}
		if r != want {
			t.Errorf("round %d: %+v, want %+v", r.Round, r, want)
		}
	}
	if got := e.qualityTrend(e.targets[0], 0, 13); got != nil {
		t.Errorf("a target has a trend: %+v", got)
	}
	v := mustVerdict(t, e, scopeID)
	t.Logf("scope after 4 rounds of 50%% loss and 5x RTT: %s reason %s cause %s", shortState(v.GetState()), v.GetReason(), v.GetCause().GetCause())
}
