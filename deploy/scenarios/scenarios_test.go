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
	steadyRounds = flag.Int("scenarios.steady-rounds", 300, "rounds of the real-lab steady scenario (300 x 2s = 10 minutes)")
	binDir       string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(demo.RunWithBinaries(m, &binDir, demo.AgentCmd, demo.ControllerCmd))
}

// result is one line of the closing table.
type result struct {
	scenario, want, got, location, cause string
	latency                              time.Duration
	closed                               int
	hasLatency                           bool
	pass                                 bool
	note                                 string
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
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
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
	t.Run("40% loss at the upstream for 5 rounds: DEGRADED(LOSS), then REACHABLE", s.lossy)
	t.Run("cut inside the border, border answering: UNREACHABLE at TARGET_NETWORK, cause SELF", s.borderCut)
	t.Run("blackout at the upstream: UNREACHABLE within 2 rounds, cause UPSTREAM, restored within 1", s.blackout)
	t.Run("partial restoration: DEGRADED with net0 and net1 up", s.partial)
	t.Run("one upstream withdraws: DEGRADED naming it, the other's networks up, cause UPSTREAM", s.withdrawOne)
	t.Run("the border fails abruptly: UNREACHABLE, cause FAILURE", s.borderFails)
	t.Run("loss and RTT rise at the border: cause ATTACK_OR_CONGESTION", s.congestion)
	t.Run("flapping routes: one UNSTABLE episode, at most 2 transitions", s.flapping)
	t.Run("a blackout during flapping: UNREACHABLE within 2 rounds", s.flapBlackout)
	t.Run("ten upstream blackouts: the first location is final in at least 9", s.blackouts)
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
		"add rule "+table+" out ip daddr { 198.18.0.0/16, 198.51.100.42, 198.51.100.50, 198.51.100.58 } numgen random mod 100 < 20 counter drop\n")
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

// noted: the verdict says FILTERED (location or a note).
func noted(v *vantagev1.Verdict) bool {
	if v.GetLocation() == vantagev1.Location_LOCATION_FILTERED {
		return true
	}
	return slices.ContainsFunc(v.GetNotes(), func(n string) bool { return strings.Contains(strings.ToLower(n), "filtered") })
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
