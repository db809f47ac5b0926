package scenarios

// The country's outages, one per question asked of North Korea's in 2014
// (issue 11): did it switch itself off (a cut inside the border: SELF), did
// its upstream (a withdrawal: UPSTREAM), did its routers fail (the border
// down: FAILURE), or was it an attack (loss and RTT rising at the border:
// ATTACK_OR_CONGESTION)? And the instability before it: loss that a host
// answering "some" probes used to hide.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/verdict"
	"github.com/vantage-net/vantage/deploy/lab"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// lossy: the upstream drops 40% of what it forwards to the country (net0
// and net1 are behind it) for five rounds. The hosts still answer some
// probes, so reachability alone sees nothing; the loss series must make
// the scope DEGRADED with reason LOSS within 3 rounds, and REACHABLE within
// 2 rounds after the loss ends.
func (s *suite) lossy(t *testing.T) {
	const (
		lossRounds  = 5
		maxOnset    = 3
		maxRecovery = 2
	)
	b := s.atBoundary(t, "40% loss at the upstream", func() error { return s.h.Lab.Loss("upstream", 40) })
	s.waitScope(t, lossRounds, "scope DEGRADED(LOSS)", func(v *vantagev1.Verdict) bool {
		return state(v, vantagev1.State_STATE_DEGRADED) && v.GetReason() == vantagev1.Reason_REASON_LOSS
	})
	tr := s.firstTo(t, b.Add(-s.round), vantagev1.State_STATE_DEGRADED)
	lat, closed := s.latency(b, tr)
	time.Sleep(time.Until(b.Add(lossRounds*s.round - s.round/2)))
	e := s.atBoundary(t, "loss ends", func() error { return s.h.Lab.Loss("upstream", 0) })
	s.waitScope(t, 10, "scope REACHABLE after the loss", func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_REACHABLE) })
	back := s.firstTo(t, e.Add(-s.round), vantagev1.State_STATE_REACHABLE)
	latBack, closedBack := s.latency(e, back)
	ts := s.transitions(t, vantagev1.Level_LEVEL_SCOPE, b.Add(-s.round), time.Now())
	reason := strings.TrimPrefix(tr.GetReason().String(), "REASON_")
	ok := closed <= maxOnset && closedBack <= maxRecovery && tr.GetReason() == vantagev1.Reason_REASON_LOSS && len(ts) == 2
	s.record(result{scenario: "40% loss at the upstream, 5 rounds", want: fmt.Sprintf("DEGRADED(LOSS) <= %d rounds, REACHABLE <= %d after", maxOnset, maxRecovery),
		got:      fmt.Sprintf("%s(%s), back after %d closed rounds, %d scope transitions", short(tr.GetTo()), reason, closedBack, len(ts)),
		location: loc(tr.GetLocation()), cause: causeName(tr.GetCause().GetCause()), hasLatency: true, latency: lat, closed: closed, pass: ok,
		note: fmt.Sprintf("REACHABLE %s after the loss ended (%s rounds); down children %v", latBack.Round(10*time.Millisecond), s.rounds(latBack), tr.GetDownChildren())})
	t.Logf("40%% loss: DEGRADED(%s) after %s (%s rounds, %d closed), down %v; REACHABLE %s after it ended (%d closed); transitions:%s",
		reason, lat.Round(time.Millisecond), s.rounds(lat), closed, tr.GetDownChildren(), latBack.Round(time.Millisecond), closedBack, describeTransitions(ts))
	if !ok {
		t.Errorf("40%% loss: DEGRADED(%s) after %d closed rounds (want LOSS, <= %d), REACHABLE %d closed rounds after (want <= %d), %d scope transitions (want 2):%s",
			reason, closed, maxOnset, closedBack, maxRecovery, len(ts), describeTransitions(ts))
	}
	s.waitClean(t, 15)
}

// borderCut: the networks' links behind the border go down (lab.CutInside):
// the upstreams and the border itself still answer, the hosts do not. The
// country is cut off inside its own border: TARGET_NETWORK, cause SELF.
func (s *suite) borderCut(t *testing.T) {
	s.outage(t, "cut inside the border", func() error { return s.h.Lab.CutInside() },
		outageWant{state: vantagev1.State_STATE_UNREACHABLE, loc: vantagev1.Location_LOCATION_TARGET_NETWORK,
			cause: vantagev1.Cause_CAUSE_SELF, maxClosed: 2})
	time.Sleep(s.round)
	s.restoration(t, "cut inside repaired", func() error { return s.h.Lab.RepairInside() }, 1)
	s.waitClean(t, 15)
}

// blackout: the networks' routes are withdrawn at the upstreams and the
// withdrawal propagates (transit and the exchange lose them too; the
// exchange answers "net unreachable"). The upstream and border routers keep
// their own addresses and answer. Before traces the transition says
// LOCATING: an answering upstream says nothing about where the paths die
// (before issue 11 it said TARGET_NETWORK). The traces say more: every path
// dies before the upstreams while the same vantages still reach the
// upstream routers: UPSTREAM, cause UPSTREAM.
func (s *suite) blackout(t *testing.T) {
	s.outage(t, "blackout (routes withdrawn at the upstream)", func() error { return s.h.Lab.Blackout() },
		outageWant{state: vantagev1.State_STATE_UNREACHABLE, loc: vantagev1.Location_LOCATION_UPSTREAM,
			cause: vantagev1.Cause_CAUSE_UPSTREAM, maxClosed: 2})
	time.Sleep(2 * s.round)
	s.restoration(t, "full restoration after blackout", func() error { return s.h.Lab.Restore() }, 1)
	s.waitClean(t, 15)
}

// withdrawOne: satgate (the lab's upstream-b, which carries net2 and net3)
// withdraws the country's routes and answers "net unreachable"; unicom
// still carries net0 and net1. The scope must be DEGRADED, name satgate as
// the upstream whose paths die, say net0 and net1 are up through unicom,
// and give the cause UPSTREAM.
func (s *suite) withdrawOne(t *testing.T) {
	o := s.outage(t, "satgate withdraws net2 and net3", func() error { return s.h.Lab.Withdraw("upstream-b", lab.WithdrawUnreachable) },
		outageWant{state: vantagev1.State_STATE_DEGRADED, cause: vantagev1.Cause_CAUSE_UPSTREAM, maxClosed: 2})
	v := o.v
	up := slices.Sorted(slices.Values(v.GetUpChildren()))
	sat, uni := upstreamView(v, "satgate"), upstreamView(v, "unicom")
	t.Logf("satgate withdraws: up %v, down %v, router %s, satgate %v, unicom %v", up, v.GetDownChildren(), hopName(v), sat, uni)
	if !slices.Equal(up, []string{"net0", "net1"}) {
		t.Errorf("networks up %v, want [net0 net1]", up)
	}
	if v.GetLocationHop().GetName() != "satgate" {
		t.Errorf("the location names router %s, want satgate", hopName(v))
	}
	if !sat.GetDead() || !slices.Equal(slices.Sorted(slices.Values(sat.GetNetworksDown())), []string{"net2", "net3"}) {
		t.Errorf("satgate's view %v: want dead, networks down [net2 net3]", sat)
	}
	if uni.GetDead() || !slices.Equal(slices.Sorted(slices.Values(uni.GetNetworksUp())), []string{"net0", "net1"}) {
		t.Errorf("unicom's view %v: want alive, networks up [net0 net1]", uni)
	}
	s.restoration(t, "satgate reannounces", func() error { return s.h.Lab.Reannounce("upstream-b") }, 1)
	s.waitClean(t, 15)
}

// borderFails: the border's uplinks to both upstreams go down at once, as
// when its line cards or its power go: nothing degraded before, and the
// border itself stops answering. Cause FAILURE. Within 3 rounds, not 2:
// the packets die in silence (no router answers "unreachable"), weaker
// evidence that the beliefs need a second round of.
func (s *suite) borderFails(t *testing.T) {
	// The rule reads the rounds before the onset: the last scenario's
	// recovery (a raw DEGRADED round while the published state was held)
	// must be out of them, as a real failure strikes a calm network.
	time.Sleep(verdict.CauseHistoryRounds * s.round)
	s.outage(t, "the border fails (uplinks down)", func() error { return s.h.Lab.BorderDown("border") },
		outageWant{state: vantagev1.State_STATE_UNREACHABLE, cause: vantagev1.Cause_CAUSE_FAILURE, maxClosed: 3})
	time.Sleep(s.round)
	s.restoration(t, "the border is back", func() error { return s.h.Lab.BorderUp("border") }, 1)
	s.waitClean(t, 15)
}

// blackouts: the upstream blackout ten times. Each time the first location
// the timeline publishes (LOCATING aside: it claims none) must be the one
// it ends with; at least nine of ten must.
func (s *suite) blackouts(t *testing.T) {
	const runs, wantFinal = 10, 9
	final, locating, upstream := 0, 0, 0
	var trails []string
	for i := range runs {
		name := fmt.Sprintf("blackout %d of %d", i+1, runs)
		o := s.observeOutage(t, name, func() error { return s.h.Lab.Blackout() },
			outageWant{state: vantagev1.State_STATE_UNREACHABLE, loc: vantagev1.Location_LOCATION_UPSTREAM, maxClosed: 2})
		if o.firstLocated() == o.final() && o.final() != vantagev1.Location_LOCATION_LOCATING {
			final++
		}
		if o.locs[0] == vantagev1.Location_LOCATION_LOCATING {
			locating++
		}
		if o.final() == vantagev1.Location_LOCATION_UPSTREAM {
			upstream++
		}
		trails = append(trails, fmt.Sprintf("%s (%d closed)", o.trail(), o.closed))
		t.Logf("%s: published %s, %d closed rounds, cause %s", name, o.trail(), o.closed, causeName(o.v.GetCause().GetCause()))
		if err := s.h.Lab.Restore(); err != nil {
			t.Fatal(err)
		}
		s.waitClean(t, 15)
		// Blackouts closer together than the engine's unstable window
		// are flapping, and it says so (UNSTABLE): let the window pass.
		time.Sleep(verdict.DefaultUnstableWindow * s.round)
	}
	ok := final >= wantFinal && upstream >= wantFinal
	s.record(result{scenario: fmt.Sprintf("%d upstream blackouts", runs), want: fmt.Sprintf("first location final in >= %d", wantFinal),
		got: fmt.Sprintf("final in %d, UPSTREAM in %d", final, upstream), location: "UPSTREAM", pass: ok,
		note: fmt.Sprintf("%d published LOCATING first; %v", locating, trails)})
	if !ok {
		t.Errorf("%d blackouts: the first location was final in %d, UPSTREAM at the end in %d (want >= %d each): %v", runs, final, upstream, wantFinal, trails)
	}
}
