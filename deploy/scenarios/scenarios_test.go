package scenarios

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/verdict/live"
	"github.com/vantage-net/vantage/deploy/demo"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var (
	steadyRounds = flag.Int("scenarios.steady-rounds", 45, "rounds of the real-lab steady scenario")
	binDir       string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(demo.RunWithBinaries(m, &binDir, demo.AgentCmd, demo.ControllerCmd))
}

// result is one line of the closing table.
type result struct {
	scenario, want, got, location string
	latency                       time.Duration
	closed                        int
	hasLatency                    bool
	pass                          bool
	note                          string
}

// suite is the running lab and what the scenarios share.
type suite struct {
	t       *testing.T
	h       *demo.Harness
	ctx     context.Context
	name    string
	scopeID string
	start   time.Time
	round   time.Duration
	grace   time.Duration

	mu      sync.Mutex
	results []result
}

func (s *suite) record(r result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results = append(s.results, r)
}

// TestScenarios runs every lab scenario against one lab, controller and
// three agents, in an order that leaves the lab clean between scenarios.
func TestScenarios(t *testing.T) {
	demo.SkipUnlessLab(t, "lab scenario suite")
	spec := readSpec(t, "campaign.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 14*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	h := startLab(t, ctx, "vs", logger, 3000)
	s := &suite{t: t, h: h, ctx: ctx}
	t.Cleanup(func() { s.printTable(os.Stdout) }) // runs first: cleanups run last-in, first-out
	camp, err := h.Operator.ApplyCampaign(h.Authed(ctx), &vantagev1.ApplyCampaignRequest{SpecYaml: string(spec)})
	if err != nil {
		t.Fatalf("apply campaign: %v", err)
	}
	s.name = camp.GetName()
	s.scopeID = s.name + "/scope/" + camp.GetScope()
	s.round = time.Duration(camp.GetRoundMs()) * time.Millisecond
	s.grace = live.GraceFor(s.round)
	s.start = time.Unix(0, 0) // campaign.yaml has no schedule.start: rounds align to the epoch
	s.waitClean(t, 30)

	t.Run("steady with one vantage behind 20% loss: zero transitions", s.steady)
	t.Run("one vantage isolated: no scope transition, vantage unhealthy", s.isolated)
	t.Run("ICMP filtered at the border, TCP open: REACHABLE with FILTERED", s.filtered)
	t.Run("cut inside the border, upstream answering: UNREACHABLE at TARGET_NETWORK", s.borderCut)
	t.Run("blackout at the upstream: UNREACHABLE within 2 rounds, restored within 1", s.blackout)
	t.Run("partial restoration: DEGRADED with net0 and net1 up", s.partial)
	t.Run("flapping routes: one UNSTABLE episode", s.flapping)
	t.Run("vantages leave: two of three continue, one is UNKNOWN", s.vantagesLeave)
}

// ---- scenarios ----

// steady: vantage-a loses 20% of the packets it sends to every target (an
// nftables rule in its own namespace, so only its view suffers) for
// -scenarios.steady-rounds rounds. No verdict at any level may change.
func (s *suite) steady(t *testing.T) {
	const table = "inet vs_steady_loss"
	s.nftIn(t, "vantage-a", "add table "+table+"\n"+
		"add chain "+table+" out { type filter hook output priority 0; }\n"+
		"add rule "+table+" out ip daddr { 198.18.0.0/16, 198.51.100.42, 198.51.100.50 } numgen random mod 100 < 20 counter drop\n")
	defer s.nftIn(t, "vantage-a", "delete table "+table+"\n")
	from := time.Now()
	time.Sleep(time.Duration(*steadyRounds) * s.round)
	to := time.Now()
	counters := s.nftIn(t, "vantage-a", "list table "+table+"\n")
	dropped := ""
	if i := strings.Index(counters, "counter packets"); i >= 0 {
		dropped = strings.Fields(counters[i:])[2]
	}
	ts := s.transitions(t, vantagev1.Level_LEVEL_UNSPECIFIED, from, to)
	v := s.scope(t)
	r := result{scenario: "steady (lab, vantage-a 20% loss)", want: "0 transitions", got: fmt.Sprintf("%d transitions", len(ts)),
		location: loc(v.GetLocation()), pass: len(ts) == 0,
		note: fmt.Sprintf("%d rounds; %s packets dropped at vantage-a", *steadyRounds, dropped)}
	s.record(r)
	t.Logf("steady: %d rounds, vantage-a dropped %s probe packets, %d transitions%s", *steadyRounds, dropped, len(ts), describeTransitions(ts))
	if len(ts) != 0 {
		t.Errorf("steady run with one lossy vantage: %d transitions, want 0:%s", len(ts), describeTransitions(ts))
	}
	if dropped == "" || dropped == "0" {
		t.Errorf("the 20%% loss rule dropped nothing (%q): the scenario did not test loss", dropped)
	}
}

// isolated: vantage-b loses everything but its controller session.
func (s *suite) isolated(t *testing.T) {
	const hold = 8
	b := s.atBoundary(t, "isolate vantage-b", func() error { return s.h.Lab.Isolate("vantage-b") })
	var unhealthyAt time.Time
	var reason string
	for time.Since(b) < hold*s.round {
		if unhealthyAt.IsZero() {
			agents, err := s.h.Operator.ListAgents(s.authed(), &vantagev1.ListAgentsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range agents.GetAgents() {
				if a.GetName() == "vantage-b" && !a.GetHealthy() {
					unhealthyAt, reason = time.Now(), a.GetHealthReason()
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	ts := s.transitions(t, vantagev1.Level_LEVEL_SCOPE, b.Add(-s.round), time.Now())
	v := s.scope(t)
	var evidence string
	for _, ev := range v.GetEvidence() {
		if ev.GetAgentName() == "vantage-b" {
			evidence = fmt.Sprintf("healthy=%v reason=%q", ev.GetHealthy(), ev.GetReason())
			if ev.GetHealthy() {
				t.Errorf("scope evidence counts isolated vantage-b as healthy")
			}
		}
	}
	r := result{scenario: "vantage-b isolated", want: "0 scope transitions, b unhealthy",
		got: fmt.Sprintf("%d scope transitions, scope %s", len(ts), short(v.GetState())), location: loc(v.GetLocation()),
		pass: len(ts) == 0 && !unhealthyAt.IsZero()}
	if !unhealthyAt.IsZero() {
		r.hasLatency, r.latency = true, unhealthyAt.Sub(b)
		r.closed = max(int((r.latency-s.grace)/s.round), 0)
		r.note = "latency = until agents list shows b unhealthy: " + reason
	} else {
		r.note = "agents list never showed vantage-b unhealthy"
		t.Errorf("isolated vantage-b never listed as unhealthy within %d rounds", hold)
	}
	s.record(r)
	t.Logf("vantage-b evidence in the scope verdict: %s", evidence)
	if len(ts) != 0 {
		t.Errorf("isolating one vantage changed the scope:%s", describeTransitions(ts))
	}
	if err := s.h.Lab.Unisolate("vantage-b"); err != nil {
		t.Fatal(err)
	}
	s.waitClean(t, 15)
}

// filtered: the border drops echo requests to the target space; TCP to
// port 80 still passes, so the hosts are up.
func (s *suite) filtered(t *testing.T) {
	const hold = 6
	b := s.atBoundary(t, "filter ICMP at the border", func() error { return s.h.Lab.FilterICMP("border") })
	var filteredAt time.Time
	for time.Since(b) < hold*s.round {
		if filteredAt.IsZero() && noted(s.scope(t)) {
			filteredAt = time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
	ts := s.transitions(t, vantagev1.Level_LEVEL_SCOPE, b.Add(-s.round), time.Now())
	v := s.scope(t)
	hostsFiltered, hosts := 0, 0
	for _, tv := range s.verdicts(t, vantagev1.Level_LEVEL_TARGET) {
		if tv.GetNetwork() == "" {
			continue
		}
		hosts++
		if tv.GetState() == vantagev1.State_STATE_REACHABLE && noted(tv) {
			hostsFiltered++
		}
	}
	ok := len(ts) == 0 && v.GetState() == vantagev1.State_STATE_REACHABLE && noted(v) && hostsFiltered == hosts
	r := result{scenario: "ICMP filtered at border", want: "REACHABLE + FILTERED, 0 scope transitions",
		got:      fmt.Sprintf("%s, %d scope transitions, %d/%d hosts FILTERED", short(v.GetState()), len(ts), hostsFiltered, hosts),
		location: loc(v.GetLocation()), pass: ok, note: "notes: " + strings.Join(v.GetNotes(), "; ")}
	if !filteredAt.IsZero() {
		r.hasLatency, r.latency = true, filteredAt.Sub(b)
		r.closed = max(int((r.latency-s.grace)/s.round), 0)
	}
	s.record(r)
	t.Logf("ICMP filtered: scope %s location %s notes %q, %d/%d hosts REACHABLE+FILTERED, %d scope transitions",
		short(v.GetState()), loc(v.GetLocation()), v.GetNotes(), hostsFiltered, hosts, len(ts))
	if !ok {
		t.Errorf("ICMP filtered: scope %s location %s notes %q, %d/%d hosts REACHABLE+FILTERED, scope transitions:%s",
			short(v.GetState()), loc(v.GetLocation()), v.GetNotes(), hostsFiltered, hosts, describeTransitions(ts))
	}
	if err := s.h.Lab.UnfilterICMP("border"); err != nil {
		t.Fatal(err)
	}
	s.waitClean(t, 15)
}

// causeLog is the verdict's cause, router and upstream views, and the
// first transition's cause, for the log (issue 11).
func causeLog(v *vantagev1.Verdict, tr *vantagev1.Transition) string {
	var ups []string
	for _, u := range v.GetUpstreams() {
		ups = append(ups, fmt.Sprintf("%s dead=%v up=%v down=%v", u.GetName(), u.GetDead(), u.GetNetworksUp(), u.GetNetworksDown()))
	}
	h := v.GetLocationHop()
	return fmt.Sprintf("cause %s (confidence %.2f; first transition: %s), router %s %s %q, upstreams %v, evidence %q",
		v.GetCause().GetCause(), v.GetCause().GetConfidence(), tr.GetCause().GetCause(), h.GetAddress(), h.GetRole(), h.GetName(), ups, v.GetCause().GetEvidence())
}

// noted: the verdict says FILTERED (location or a note).
func noted(v *vantagev1.Verdict) bool {
	if v.GetLocation() == vantagev1.Location_LOCATION_FILTERED {
		return true
	}
	return slices.ContainsFunc(v.GetNotes(), func(n string) bool { return strings.Contains(strings.ToLower(n), "filtered") })
}

// outage applies fault at a boundary, expects the scope UNREACHABLE at
// wantLoc within maxClosed closed rounds, and records it.
func (s *suite) outage(t *testing.T, name string, fault func() error, wantLoc vantagev1.Location, maxClosed int) {
	t.Helper()
	b := s.atBoundary(t, name, fault)
	v := s.waitScope(t, 10, name+": scope UNREACHABLE", func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_UNREACHABLE) })
	tr := s.firstTo(t, b.Add(-s.round), vantagev1.State_STATE_UNREACHABLE)
	lat, closed := s.latency(b, tr)
	// Localisation refines the location once the triggered traces are
	// back: the verdict at once (with the last responsive hop), the
	// timeline once the new location held two closed rounds. Give both up
	// to four rounds.
	var inTimeline vantagev1.Location
	for deadline := time.Now().Add(4 * s.round); ; time.Sleep(s.round / 4) {
		v, inTimeline = s.scope(t), s.located(t, tr)
		traced := v.GetLastResponsiveHop() != ""
		if (traced && v.GetLocation() == wantLoc && inTimeline == wantLoc) || time.Now().After(deadline) {
			break
		}
	}
	ok := closed <= maxClosed && v.GetLocation() == wantLoc && inTimeline == wantLoc && state(v, vantagev1.State_STATE_UNREACHABLE)
	s.record(result{scenario: name, want: fmt.Sprintf("UNREACHABLE at %s, <= %d rounds", loc(wantLoc), maxClosed),
		got: short(v.GetState()), location: loc(v.GetLocation()), hasLatency: true, latency: lat, closed: closed, pass: ok,
		note: fmt.Sprintf("transition location %s, timeline %s, last hop %q, onset ±%s", loc(tr.GetLocation()), loc(inTimeline), v.GetLastResponsiveHop(),
			tr.GetOnsetLatest().AsTime().Sub(tr.GetOnsetEarliest().AsTime()).Round(time.Millisecond))})
	t.Logf("%s: detected after %s (%s rounds, %d closed), location %s (transition: %s, timeline after refinement: %s), last responsive hop %q, notes %q",
		name, lat.Round(time.Millisecond), s.rounds(lat), closed, loc(v.GetLocation()), loc(tr.GetLocation()), loc(inTimeline), v.GetLastResponsiveHop(), v.GetNotes())
	t.Logf("%s: %s", name, causeLog(v, tr))
	if closed > maxClosed {
		t.Errorf("%s: detected after %d closed rounds (%s), want <= %d", name, closed, lat, maxClosed)
	}
	if v.GetLocation() != wantLoc {
		t.Errorf("%s: location %s, want %s", name, loc(v.GetLocation()), loc(wantLoc))
	}
	if inTimeline != wantLoc {
		t.Errorf("%s: the timeline says %s (transition %s and no refinement to %s), the verdict %s", name, loc(inTimeline), loc(tr.GetLocation()), loc(wantLoc), loc(v.GetLocation()))
	}
}

// restoration repairs at a boundary and expects REACHABLE within maxClosed.
func (s *suite) restoration(t *testing.T, name string, repair func() error, maxClosed int) {
	t.Helper()
	b := s.atBoundary(t, name, repair)
	s.waitScope(t, 10, name+": scope REACHABLE", func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_REACHABLE) })
	tr := s.firstTo(t, b.Add(-s.round), vantagev1.State_STATE_REACHABLE)
	lat, closed := s.latency(b, tr)
	s.record(result{scenario: name, want: fmt.Sprintf("REACHABLE, <= %d round", maxClosed), got: short(tr.GetTo()),
		location: loc(tr.GetLocation()), hasLatency: true, latency: lat, closed: closed, pass: closed <= maxClosed})
	t.Logf("%s: detected after %s (%s rounds, %d closed)", name, lat.Round(time.Millisecond), s.rounds(lat), closed)
	if closed > maxClosed {
		t.Errorf("%s: detected after %d closed rounds (%s), want <= %d", name, closed, lat, maxClosed)
	}
}

// borderCut: the border drops everything it forwards into the networks;
// the upstream and the border itself still answer. The networks are cut
// off inside the country's border: TARGET_NETWORK.
func (s *suite) borderCut(t *testing.T) {
	s.outage(t, "cut inside the border", func() error { return s.h.Lab.Loss("border", 100) },
		vantagev1.Location_LOCATION_TARGET_NETWORK, 2)
	time.Sleep(2 * s.round)
	s.restoration(t, "border cut repaired", func() error { return s.h.Lab.Loss("border", 0) }, 1)
	s.waitClean(t, 15)
}

// blackout: the networks' routes are withdrawn at the upstream and the
// withdrawal propagates (transit and the exchange lose them too; the
// exchange answers "net unreachable"). The upstream and border routers keep
// their own addresses and answer. So where is the fault? The provisional
// answer (before traces) is TARGET_NETWORK, because the upstream answers.
// The traces say more: every path dies at the exchange, before the
// upstream, while the same vantages still reach the upstream router. The
// routes are missing at the upstream and everything above it, which is
// exactly where the lab withdrew them: UPSTREAM. (A cut inside the border
// is the opposite case: paths reach the border and die after it, and that
// scenario asserts TARGET_NETWORK.) The location is read two rounds after
// the transition, once the triggered traces are in.
func (s *suite) blackout(t *testing.T) {
	s.outage(t, "blackout (routes withdrawn at the upstream)", func() error { return s.h.Lab.Blackout() },
		vantagev1.Location_LOCATION_UPSTREAM, 2)
	time.Sleep(3 * s.round)
	s.restoration(t, "full restoration after blackout", func() error { return s.h.Lab.Restore() }, 1)
	s.waitClean(t, 15)
}

// partial: after a blackout, net0 and net1 come back.
func (s *suite) partial(t *testing.T) {
	if err := s.h.Lab.Blackout(); err != nil {
		t.Fatal(err)
	}
	s.waitScope(t, 10, "blackout before partial restoration", func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_UNREACHABLE) })
	time.Sleep(3 * s.round)
	b := s.atBoundary(t, "restore net0 and net1", func() error { return s.h.Lab.Restore("net0", "net1") })
	want := map[string]vantagev1.State{"net0": vantagev1.State_STATE_REACHABLE, "net1": vantagev1.State_STATE_REACHABLE,
		"net2": vantagev1.State_STATE_UNREACHABLE, "net3": vantagev1.State_STATE_UNREACHABLE}
	v := s.waitScope(t, 10, "scope DEGRADED", func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_DEGRADED) })
	tr := s.firstTo(t, b.Add(-s.round), vantagev1.State_STATE_DEGRADED)
	lat, closed := s.latency(b, tr)
	// The networks must settle to exactly the restored ones.
	var nets map[string]vantagev1.State
	v = s.waitScope(t, 6, "networks settle to net0, net1 up", func(v *vantagev1.Verdict) bool {
		nets = map[string]vantagev1.State{}
		resp, err := s.h.Operator.GetVerdicts(s.authed(), &vantagev1.GetVerdictsRequest{Campaign: s.name, Level: vantagev1.Level_LEVEL_NETWORK})
		if err != nil {
			return false
		}
		for _, n := range resp.GetVerdicts() {
			nets[n.GetSubject()] = n.GetState()
		}
		for k, st := range want {
			if nets[k] != st {
				return false
			}
		}
		return state(v, vantagev1.State_STATE_DEGRADED)
	})
	// Like the blackout, net2 and net3 are still withdrawn at the upstream:
	// once the triggered traces are in, the location must say so.
	time.Sleep(2 * s.round)
	v = s.scope(t)
	up, down := slices.Sorted(slices.Values(v.GetUpChildren())), slices.Sorted(slices.Values(v.GetDownChildren()))
	ok := closed <= 1 && slices.Equal(up, []string{"net0", "net1"}) && slices.Equal(down, []string{"net2", "net3"}) &&
		v.GetLocation() == vantagev1.Location_LOCATION_UPSTREAM
	s.record(result{scenario: "partial restoration (net0, net1)", want: "DEGRADED up=[net0 net1] at UPSTREAM, <= 1 round",
		got: fmt.Sprintf("%s up=%v down=%v", short(v.GetState()), up, down), location: loc(v.GetLocation()),
		hasLatency: true, latency: lat, closed: closed, pass: ok, note: strings.Join(v.GetNotes(), "; ")})
	t.Logf("partial restoration: DEGRADED after %s (%s rounds, %d closed), up=%v down=%v, location %s, notes %q",
		lat.Round(time.Millisecond), s.rounds(lat), closed, up, down, loc(v.GetLocation()), v.GetNotes())
	t.Logf("partial restoration: %s", causeLog(v, tr))
	if !ok {
		t.Errorf("partial restoration: %d closed rounds (want <= 1), up=%v down=%v (want [net0 net1] / [net2 net3]), location %s (want UPSTREAM)",
			closed, up, down, loc(v.GetLocation()))
	}
	time.Sleep(3 * s.round)
	if err := s.h.Lab.Restore(); err != nil {
		t.Fatal(err)
	}
	s.waitClean(t, 15)
}

// flapping: all routes withdrawn and restored every two rounds for twenty
// rounds. The timeline must show one UNSTABLE episode, not a dozen
// UNREACHABLE/REACHABLE pairs: at most maxFlapTransitions scope transitions
// from the start of the flapping until the scope is REACHABLE again (a few
// ordinary ones before instability is recognised, one into UNSTABLE, one
// out), and the episode must last until the flapping stops.
func (s *suite) flapping(t *testing.T) {
	const (
		flapRounds = 20
		// verdict's documented bound: UnstableFlips-1 (3) ordinary
		// transitions, one into UNSTABLE and one out of it.
		maxFlapTransitions = 5
	)
	period := 2 * s.round
	var flapErr error
	var wg sync.WaitGroup
	fctx, cancel := context.WithCancel(s.ctx)
	b := s.atBoundary(t, "start flapping", func() error {
		wg.Add(1)
		go func() {
			defer wg.Done()
			flapErr = s.h.Lab.Flap(fctx, period)
		}()
		return nil
	})
	time.Sleep(time.Until(b.Add(flapRounds * s.round)))
	cancel()
	wg.Wait()
	if flapErr != nil {
		t.Fatalf("flap: %v", flapErr)
	}
	end := time.Now()
	// Leaving UNSTABLE takes the engine's exit window; allow 30 rounds.
	wctx, wcancel := context.WithTimeout(s.ctx, 30*s.round)
	_, werr := s.h.WaitVerdict(wctx, s.name, s.scopeID, func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_REACHABLE) })
	wcancel()
	settled := time.Now()
	ts := s.transitions(t, vantagev1.Level_LEVEL_SCOPE, b.Add(-s.round), time.Time{})
	episodes := 0
	var first, exit *vantagev1.Transition
	for _, tr := range ts {
		if tr.GetTo() == vantagev1.State_STATE_UNSTABLE {
			episodes++
			if first == nil {
				first = tr
			}
		}
		if tr.GetFrom() == vantagev1.State_STATE_UNSTABLE && exit == nil {
			exit = tr
		}
	}
	// The episode must cover the flapping: leaving UNSTABLE before the last
	// flap (the flapping stops at end; allow one round for the last one to
	// be seen) means the period was cut into pieces.
	exitEarly := exit != nil && exit.GetDetectedAt().AsTime().Before(end.Add(-s.round))
	r := result{scenario: "flapping routes (period 2 rounds, 20 rounds)", want: "1 UNSTABLE episode",
		got: fmt.Sprintf("%d UNSTABLE episodes, %d scope transitions", episodes, len(ts)), location: "-",
		pass: episodes == 1 && werr == nil && len(ts) <= maxFlapTransitions && !exitEarly,
		note: fmt.Sprintf("back to REACHABLE %s rounds after the flapping stopped", s.rounds(settled.Sub(end)))}
	if first != nil {
		r.hasLatency = true
		r.latency, r.closed = s.latency(b, first)
		r.location = loc(first.GetLocation())
	}
	if werr != nil {
		r.note = "scope not back to REACHABLE within 30 rounds after the flapping stopped"
	}
	s.record(r)
	t.Logf("flapping: %d scope transitions:%s", len(ts), describeTransitions(ts))
	if episodes != 1 {
		t.Errorf("flapping for %d rounds gave %d UNSTABLE episodes, want exactly 1 (scope transitions:%s)", flapRounds, episodes, describeTransitions(ts))
	}
	if werr != nil {
		t.Errorf("scope not REACHABLE within 30 rounds after the flapping stopped: %v", werr)
	}
	if len(ts) > maxFlapTransitions {
		t.Errorf("flapping gave %d scope transitions, want at most %d (one UNSTABLE episode, not a flood)", len(ts), maxFlapTransitions)
	}
	if t.Failed() { // why any subject went UNKNOWN meanwhile
		for _, lv := range []vantagev1.Level{vantagev1.Level_LEVEL_NETWORK, vantagev1.Level_LEVEL_TARGET} {
			var unknown []*vantagev1.Transition
			for _, tr := range s.transitions(t, lv, b.Add(-s.round), time.Time{}) {
				if tr.GetTo() == vantagev1.State_STATE_UNKNOWN {
					unknown = append(unknown, tr)
				}
			}
			t.Logf("%s transitions to UNKNOWN during the flapping:%s", lv, describeTransitions(unknown))
		}
	}
	if exitEarly {
		t.Errorf("the UNSTABLE episode ended at %s (%s -> %s), before the flapping stopped at %s",
			exit.GetDetectedAt().AsTime().Format("15:04:05.000"), short(exit.GetFrom()), short(exit.GetTo()), end.Format("15:04:05.000"))
	}
	s.waitClean(t, 30)
}

// vantagesLeave: vantage-c stops (two of three left, quorum 2: verdicts go
// on), then vantage-b stops (one left: UNKNOWN, never a guess).
func (s *suite) vantagesLeave(t *testing.T) {
	b := s.atBoundary(t, "stop vantage-c", func() error { return s.h.StopAgent("vantage-c") })
	v := s.waitScope(t, 8, "scope REACHABLE with 2 healthy vantages", func(v *vantagev1.Verdict) bool {
		return state(v, vantagev1.State_STATE_REACHABLE) && v.GetHealthyVantages() == 2
	})
	time.Sleep(3 * s.round)
	ts := s.transitions(t, vantagev1.Level_LEVEL_SCOPE, b.Add(-s.round), time.Now())
	v = s.scope(t)
	ok2 := len(ts) == 0 && state(v, vantagev1.State_STATE_REACHABLE) && v.GetHealthyVantages() == 2
	s.record(result{scenario: "two of three vantages left", want: "REACHABLE, 0 scope transitions",
		got:      fmt.Sprintf("%s, %d healthy, %d scope transitions", short(v.GetState()), v.GetHealthyVantages(), len(ts)),
		location: loc(v.GetLocation()), pass: ok2})
	if !ok2 {
		t.Errorf("with two of three vantages: scope %s, %d healthy, transitions:%s", short(v.GetState()), v.GetHealthyVantages(), describeTransitions(ts))
	}

	b = s.atBoundary(t, "stop vantage-b", func() error { return s.h.StopAgent("vantage-b") })
	v = s.waitScope(t, 8, "scope UNKNOWN with one vantage", func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_UNKNOWN) })
	tr := s.firstTo(t, b.Add(-s.round), vantagev1.State_STATE_UNKNOWN)
	lat, closed := s.latency(b, tr)
	s.record(result{scenario: "one of three vantages left", want: "UNKNOWN", got: fmt.Sprintf("%s, %d healthy", short(v.GetState()), v.GetHealthyVantages()),
		location: loc(v.GetLocation()), hasLatency: true, latency: lat, closed: closed, pass: true})
	t.Logf("one vantage left: UNKNOWN after %s (%s rounds, %d closed)", lat.Round(time.Millisecond), s.rounds(lat), closed)

	for _, a := range []string{"vantage-b", "vantage-c"} {
		if err := s.h.StartAgent(s.ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	s.waitClean(t, 20)
}
