package verdict

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	round = 3 * time.Second
	grace = 1500 * time.Millisecond

	reachable   = vantagev1.State_STATE_REACHABLE
	degraded    = vantagev1.State_STATE_DEGRADED
	unreachable = vantagev1.State_STATE_UNREACHABLE
	unknown     = vantagev1.State_STATE_UNKNOWN
	unspec      = vantagev1.State_STATE_UNSPECIFIED

	icmp = vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO
	tcp  = vantagev1.ProbeKind_PROBE_KIND_TCP
)

var agents3 = []string{"agt-a", "agt-b", "agt-c"}

// labConfig is the lab's country campaign: net0..net3 with hosts .10-.13,
// then the two upstream routers.
func labConfig() Config {
	cfg := Config{
		Campaign: "country", Scope: "KP", Start: t0, Round: round, Quorum: 2,
		Networks: []string{"net0", "net1", "net2", "net3"},
	}
	for n := range 4 {
		for h := 10; h <= 13; h++ {
			cfg.Targets = append(cfg.Targets, Target{
				Addr: fmt.Sprintf("198.18.%d.%d", n, h), Network: fmt.Sprintf("net%d", n),
				Role: vantagev1.TargetRole_TARGET_ROLE_HOST,
			})
		}
	}
	for _, a := range []string{"198.51.100.42", "198.51.100.50"} {
		cfg.Targets = append(cfg.Targets, Target{Addr: a, Role: vantagev1.TargetRole_TARGET_ROLE_UPSTREAM})
	}
	return cfg
}

// world says what one agent's probes of one target get in a round.
type world func(agent string, target Target) []vantagev1.Outcome

func allUp(string, Target) []vantagev1.Outcome {
	return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_REPLY}
}

// netsDown: hosts of the listed networks time out, everything else replies.
func netsDown(nets ...string) world {
	return func(_ string, t Target) []vantagev1.Outcome {
		if slices.Contains(nets, t.Network) {
			return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_TIMEOUT}
		}
		return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_REPLY}
	}
}

var allNets = []string{"net0", "net1", "net2", "net3"}

// sentAt is when agent ai probes target ti in round n: ai*100ms + ti*10ms
// into the round.
func sentAt(n int64, ai, ti int) time.Time {
	return t0.Add(time.Duration(n)*round + time.Duration(ai)*100*time.Millisecond + time.Duration(ti)*10*time.Millisecond)
}

// feed sends round n's results of the given agents. Outcomes are sent as
// ICMP echo, except TCP_* outcomes which are sent as TCP.
func feed(e *Engine, cfg Config, n int64, agents []string, w world) {
	for _, ag := range agents {
		ai := slices.Index(agents3, ag)
		for ti, t := range cfg.Targets {
			for _, out := range w(ag, t) {
				kind := icmp
				if out == vantagev1.Outcome_OUTCOME_TCP_RST || out == vantagev1.Outcome_OUTCOME_TCP_SYNACK {
					kind = tcp
				}
				att := uint32(1)
				if out == vantagev1.Outcome_OUTCOME_TIMEOUT && kind == icmp {
					att = 2 // one adaptive retry
				}
				e.Observe(Observation{Agent: ag, Target: t.Addr, Round: n, SentAt: sentAt(n, ai, ti), Kind: kind, Outcome: out, RTT: time.Millisecond, Attempts: att})
			}
		}
	}
}

// closeAt is when round n closes: its end + grace.
func closeAt(n int64) time.Time { return t0.Add(time.Duration(n+1)*round + grace) }

func newEngine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	return e
}

func mustVerdict(t *testing.T, e *Engine, id string) *vantagev1.Verdict {
	t.Helper()
	v, ok := e.Verdict(id)
	if !ok {
		t.Fatalf("no verdict %s", id)
	}
	return v
}

func transitionsOf(trs []*vantagev1.Transition, id string) []*vantagev1.Transition {
	var out []*vantagev1.Transition
	for _, tr := range trs {
		if tr.GetVerdictId() == id {
			out = append(out, tr)
		}
	}
	return out
}

type step struct {
	n      int64
	agents []string
	w      world
}

func steps(from, to int64, agents []string, w world) []step {
	var out []step
	for n := from; n <= to; n++ {
		out = append(out, step{n, agents, w})
	}
	return out
}

// run feeds every step and closes each round right after, returning all
// transitions by round.
func run(t *testing.T, e *Engine, cfg Config, ss []step) map[int64][]*vantagev1.Transition {
	t.Helper()
	out := map[int64][]*vantagev1.Transition{}
	for _, s := range ss {
		feed(e, cfg, s.n, s.agents, s.w)
		out[s.n] = e.Evaluate(closeAt(s.n))
		if e.ClosedRound() != s.n {
			t.Fatalf("after Evaluate(%s) ClosedRound = %d, want %d", closeAt(s.n), e.ClosedRound(), s.n)
		}
	}
	return out
}

type transWant struct {
	id               string
	from, to         vantagev1.State
	round            int64
	earliest, latest time.Time
	location         vantagev1.Location
	upKids, downKids string
}

func checkTransition(t *testing.T, trs []*vantagev1.Transition, w transWant, detected time.Time) {
	t.Helper()
	got := transitionsOf(trs, w.id)
	if len(got) != 1 {
		t.Fatalf("%d transitions of %s, want 1: %v", len(got), w.id, got)
	}
	tr := got[0]
	if tr.GetFrom() != w.from || tr.GetTo() != w.to || tr.GetRound() != w.round {
		t.Errorf("%s: %s -> %s round %d, want %s -> %s round %d", w.id, tr.GetFrom(), tr.GetTo(), tr.GetRound(), w.from, w.to, w.round)
	}
	if !tr.GetOnsetEarliest().AsTime().Equal(w.earliest) || !tr.GetOnsetLatest().AsTime().Equal(w.latest) {
		t.Errorf("%s: onset [%s, %s], want [%s, %s]", w.id, tr.GetOnsetEarliest().AsTime(), tr.GetOnsetLatest().AsTime(), w.earliest, w.latest)
	}
	if !tr.GetDetectedAt().AsTime().Equal(detected) {
		t.Errorf("%s: detected %s, want %s", w.id, tr.GetDetectedAt().AsTime(), detected)
	}
	if tr.GetLocation() != w.location {
		t.Errorf("%s: location %s, want %s", w.id, tr.GetLocation(), w.location)
	}
	if up, down := strings.Join(tr.GetUpChildren(), ","), strings.Join(tr.GetDownChildren(), ","); up != w.upKids || down != w.downKids {
		t.Errorf("%s: up [%s] down [%s], want up [%s] down [%s]", w.id, up, down, w.upKids, w.downKids)
	}
	if tr.GetId() != 0 || tr.GetCampaign() != "country" {
		t.Errorf("%s: id %d campaign %q", w.id, tr.GetId(), tr.GetCampaign())
	}
}

func TestStaleVantage(t *testing.T) {
	cfg := labConfig()
	e := newEngine(t, cfg)
	run(t, e, cfg, steps(0, 0, agents3, allUp))
	run(t, e, cfg, steps(1, 1, []string{"agt-a", "agt-b"}, allUp))
	v := mustVerdict(t, e, "country/scope/KP")
	ev := v.GetEvidence()[2]
	if v.GetState() != reachable || v.GetHealthyVantages() != 2 || ev.GetHealthy() || ev.GetReason() != "no fresh data" || ev.GetLastRound() != 0 {
		t.Errorf("scope %s healthy %d, agt-c evidence %v", v.GetState(), v.GetHealthyVantages(), ev)
	}
}

func TestGarbageIgnored(t *testing.T) {
	cfg := labConfig()
	e := newEngine(t, cfg)
	e.Evaluate(t0.Add(time.Second)) // starts the timeline at round 0
	good := Observation{Agent: "agt-a", Target: "198.18.0.10", Round: 0, SentAt: t0, Kind: icmp, Outcome: vantagev1.Outcome_OUTCOME_REPLY}
	garbage := []struct {
		name string
		mod  func(o *Observation)
	}{
		{"unknown target", func(o *Observation) { o.Target = "203.0.113.9" }},
		{"not an address", func(o *Observation) { o.Target = "\x00garbage" }},
		{"empty agent", func(o *Observation) { o.Agent = "" }},
		{"negative round", func(o *Observation) { o.Round = -5 }},
		{"far-future round", func(o *Observation) { o.Round = 1 << 60 }},
		{"max round", func(o *Observation) { o.Round = 1<<63 - 1 }},
		{"next week", func(o *Observation) { o.Round = 200000 }},
		{"zero sent_at", func(o *Observation) { o.SentAt = time.Time{}; o.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT }},
		{"absurd sent_at", func(o *Observation) { o.SentAt = time.Unix(1<<40, 0); o.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT }},
		{"unknown enum", func(o *Observation) { o.Kind, o.Outcome = 99, 99 }},
	}
	for _, g := range garbage {
		t.Run(g.name, func(t *testing.T) {
			o := good
			g.mod(&o)
			e.Observe(o)
		})
	}
	want := Stats{Accepted: 3, UnknownTarget: 2, NoAgent: 1, NegativeRound: 1, TooNew: 3}
	if got := e.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	feed(e, cfg, 0, agents3, allUp)
	e.Evaluate(closeAt(0))
	e.Observe(good) // round 0 is closed now
	if got := e.Stats().TooOld; got != 1 {
		t.Errorf("TooOld = %d, want 1", got)
	}
	v := mustVerdict(t, e, "country/scope/KP")
	if v.GetState() != reachable || !v.GetOnsetLatest().AsTime().Equal(t0) {
		t.Errorf("scope %s onset_latest %s", v.GetState(), v.GetOnsetLatest().AsTime())
	}
	if _, ok := e.Verdict("country/target/203.0.113.9"); ok {
		t.Error("verdict for an unknown target")
	}
	// A clock far in the past or future does not break it either.
	if tr := e.Evaluate(t0.Add(-time.Hour)); len(tr) != 0 {
		t.Errorf("going back in time: %v", tr)
	}
}

func TestGapFastForward(t *testing.T) {
	cfg := labConfig()
	e := newEngine(t, cfg)
	run(t, e, cfg, steps(0, 0, agents3, allUp))
	// A day with no data at all: one UNKNOWN round, then a jump.
	day := int64(24 * time.Hour / round)
	trs := e.Evaluate(closeAt(day))
	if e.ClosedRound() != day {
		t.Fatalf("ClosedRound %d, want %d", e.ClosedRound(), day)
	}
	if tr := transitionsOf(trs, "country/scope/KP"); len(tr) != 1 || tr[0].GetTo() != unknown || tr[0].GetRound() != 1 {
		t.Errorf("scope transitions over the gap: %v", tr)
	}
	byRound := run(t, e, cfg, steps(day+1, day+1, agents3, allUp))
	checkTransition(t, byRound[day+1], transWant{
		id: "country/scope/KP", from: unknown, to: reachable, round: day + 1,
		earliest: t0.Add(time.Duration(day) * round), latest: t0.Add(time.Duration(day+1) * round),
		location: vantagev1.Location_LOCATION_NONE, upKids: "net0,net1,net2,net3",
	}, closeAt(day+1))
}

func TestFirstEvaluateStartsAtData(t *testing.T) {
	// Start at the Unix epoch (the campaign default): the first Evaluate
	// must not walk every round since 1970.
	cfg := labConfig()
	cfg.Start = time.Unix(0, 0)
	e := newEngine(t, cfg)
	n := int64(t0.Sub(cfg.Start) / round)
	for _, ag := range agents3 {
		for _, tg := range cfg.Targets {
			e.Observe(Observation{Agent: ag, Target: tg.Addr, Round: n, SentAt: t0, Kind: icmp, Outcome: vantagev1.Outcome_OUTCOME_REPLY})
		}
	}
	trs := e.Evaluate(cfg.Start.Add(time.Duration(n+1)*round + grace))
	if e.ClosedRound() != n || len(trs) != 23 {
		t.Fatalf("ClosedRound %d (want %d), %d transitions", e.ClosedRound(), n, len(trs))
	}
}

func TestOrderIndependence(t *testing.T) {
	cfg := labConfig()
	a, b := newEngine(t, cfg), newEngine(t, cfg)
	var obs []Observation
	for ai, ag := range agents3 {
		for ti, tg := range cfg.Targets {
			out := vantagev1.Outcome_OUTCOME_REPLY
			if (ai+ti)%3 == 0 {
				out = vantagev1.Outcome_OUTCOME_TIMEOUT
			}
			obs = append(obs, Observation{Agent: ag, Target: tg.Addr, Round: 0, SentAt: sentAt(0, ai, ti), Kind: icmp, Outcome: out})
		}
	}
	for _, o := range obs {
		a.Observe(o)
	}
	for i := len(obs) - 1; i >= 0; i-- {
		b.Observe(obs[i])
	}
	ta, tb := a.Evaluate(closeAt(0)), b.Evaluate(closeAt(0))
	if fmt.Sprint(ta) != fmt.Sprint(tb) || fmt.Sprint(a.Verdicts()) != fmt.Sprint(b.Verdicts()) {
		t.Error("results depend on observation order")
	}
}

func TestFreshRounds(t *testing.T) {
	cfg := labConfig()
	cfg.FreshRounds = 2
	e := newEngine(t, cfg)
	run(t, e, cfg, steps(0, 0, agents3, allUp))
	// agt-c skips round 1: with FreshRounds 2 its round-0 view still counts.
	run(t, e, cfg, steps(1, 1, []string{"agt-a", "agt-b"}, allUp))
	if v := mustVerdict(t, e, "country/scope/KP"); v.GetHealthyVantages() != 3 {
		t.Errorf("healthy %d, want 3", v.GetHealthyVantages())
	}
	run(t, e, cfg, steps(2, 2, []string{"agt-a", "agt-b"}, allUp))
	if v := mustVerdict(t, e, "country/scope/KP"); v.GetHealthyVantages() != 2 {
		t.Errorf("healthy %d, want 2", v.GetHealthyVantages())
	}
}

func TestNewEngineErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(c *Config)
		want string
	}{
		{"no campaign", func(c *Config) { c.Campaign = "" }, `Campaign: "" must be non-empty without '/'`},
		{"slash scope", func(c *Config) { c.Scope = "a/b" }, `Scope: "a/b" must be non-empty without '/'`},
		{"no start", func(c *Config) { c.Start = time.Time{} }, "Start: 0001-01-01T00:00:00Z must be between 1970 and 2200"},
		{"zero round", func(c *Config) { c.Round = 0 }, "Round: 0s must be positive"},
		{"negative grace", func(c *Config) { c.Grace = -time.Second }, "Grace: -1s must be in [0, 8 x Round]"},
		{"quorum", func(c *Config) { c.Quorum = 0 }, "Quorum: 0 must be at least 1"},
		{"fresh", func(c *Config) { c.FreshRounds = -1 }, "FreshRounds: -1 must be in [0, 16]"},
		{"no targets", func(c *Config) { c.Targets = nil }, "Targets: at least one target is required"},
		{"no networks", func(c *Config) { c.Networks = nil }, "Networks: at least one network is required"},
		{"dup network", func(c *Config) { c.Networks[1] = "net0" }, `Networks[1]: "net0" is listed twice`},
		{"bad addr", func(c *Config) { c.Targets[3].Addr = "198.18.0.300" }, `Targets[3].Addr: "198.18.0.300" is not an IP address`},
		{"dup addr", func(c *Config) { c.Targets[3].Addr = "198.18.0.10" }, "Targets[3].Addr: 198.18.0.10 is listed twice"},
		{"unknown network", func(c *Config) { c.Targets[0].Network = "net9" }, `Targets[0].Network: "net9" is not in Networks`},
		{"no role", func(c *Config) { c.Targets[0].Role = 0 }, "Targets[0].Role: TARGET_ROLE_UNSPECIFIED is not a target role"},
		{"empty network", func(c *Config) { c.Networks = append(c.Networks, "net4") }, `Networks[4]: "net4" has no ROLE_HOST targets`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := labConfig()
			tc.mod(&cfg)
			_, err := NewEngine(cfg)
			if err == nil || err.Error() != "verdict: invalid config: "+tc.want || !errors.Is(err, ErrConfig) {
				t.Errorf("error %v, want %s", err, tc.want)
			}
		})
	}
}

// FuzzObserve feeds arbitrary observations and clocks: the engine must not
// panic and must keep its invariants.
func FuzzObserve(f *testing.F) {
	f.Add("agt-a", "198.18.0.10", int64(0), int64(0), int32(1), int32(1), int64(5))
	f.Add("", "x", int64(-1), int64(-1<<62), int32(9), int32(-3), int64(-9))
	f.Add("agt-b", "198.51.100.42", int64(1<<62), int64(1<<62), int32(2), int32(5), int64(1<<40))
	f.Add("agt-a", "198.18.0.10", int64(0), int64(0), int32(3), int32(2), int64(5)) // a trace
	f.Fuzz(func(t *testing.T, agent, target string, rnd, sentNs int64, kind, outcome int32, nowSec int64) {
		cfg := labConfig()
		e := newEngine(t, cfg)
		for i := range 3 {
			e.Observe(Observation{
				Agent: agent, Target: target, Round: rnd + int64(i), SentAt: time.Unix(0, sentNs),
				Kind: vantagev1.ProbeKind(kind), Outcome: vantagev1.Outcome(outcome), Attempts: uint32(outcome),
				Hops:       []Hop{{TTL: uint32(kind), Addr: target}, {Addr: agent}, {Addr: "198.51.100.42"}},
				StopReason: vantagev1.TraceStopReason(outcome),
			})
			e.Evaluate(t0.Add(time.Duration(nowSec%(1<<32)) * time.Second))
			feed(e, cfg, rnd+int64(i), agents3[:2], allUp)
		}
		if c := e.ClosedRound(); c < -1 {
			t.Fatalf("ClosedRound %d", c)
		}
		if vs := e.Verdicts(); len(vs) != 23 {
			t.Fatalf("%d verdicts", len(vs))
		}
	})
}

// TestRefeedBeforeFirstEvaluate: a new engine is fed the last rounds of
// stored history before it knows the time; the newest rounds must survive.
func TestRefeedBeforeFirstEvaluate(t *testing.T) {
	cfg := labConfig()
	e := newEngine(t, cfg)
	for n := int64(0); n < MaxOpenRounds+4; n++ {
		feed(e, cfg, n, agents3, allUp)
	}
	want := uint64(4 * 3 * 18) // the 4 oldest rounds were evicted
	if got := e.Stats().TooOld; got != want {
		t.Errorf("TooOld %d, want %d", got, want)
	}
	last := int64(MaxOpenRounds + 3)
	trs := e.Evaluate(closeAt(last))
	if e.ClosedRound() != last || len(trs) != 23 || trs[0].GetRound() != 4 {
		t.Errorf("ClosedRound %d, %d transitions, first in round %d", e.ClosedRound(), len(trs), trs[0].GetRound())
	}
}
