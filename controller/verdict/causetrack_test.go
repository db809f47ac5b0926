package verdict

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	ix, transitHop           = "198.51.100.1", "198.51.100.26"
	unicom, rostelecom       = "198.51.100.42", "198.51.100.46"
	borderA                  = "198.51.100.50"
	stopCompleted            = vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED
	stopUnreachable          = vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE
	stopGap                  = vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT
	roleUpstream             = vantagev1.TargetRole_TARGET_ROLE_UPSTREAM
	roleBorder               = vantagev1.TargetRole_TARGET_ROLE_BORDER
	outageRound        int64 = warmup
)

// namedConfig is the lab's four networks behind named routers: upstream
// unicom (and, multi-homed, rostelecom) and the border ryugyong.
func namedConfig(multiHomed bool) Config {
	cfg := labConfig()
	cfg.Targets = slices.DeleteFunc(cfg.Targets, func(t Target) bool { return t.Role != vantagev1.TargetRole_TARGET_ROLE_HOST })
	cfg.Targets = append(cfg.Targets, Target{Addr: unicom, Role: roleUpstream, Name: "unicom"},
		Target{Addr: borderA, Role: roleBorder, Name: "ryugyong"})
	if multiHomed {
		cfg.Targets = append(cfg.Targets, Target{Addr: rostelecom, Role: roleUpstream, Name: "rostelecom"})
	}
	return cfg
}

// upstreamOf is the upstream a network's paths cross: unicom, or (multi-
// homed) rostelecom for net2 and net3.
func upstreamOf(multiHomed bool, network string) string {
	if multiHomed && (network == "net2" || network == "net3") {
		return rostelecom
	}
	return unicom
}

// outageWorld: the listed networks' hosts and the listed routers time
// out; everything else answers.
func outageWorld(nets []string, routers ...string) world {
	return func(_ string, t Target) []vantagev1.Outcome {
		if slices.Contains(nets, t.Network) || slices.Contains(routers, t.Addr) {
			return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_TIMEOUT}
		}
		return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_REPLY}
	}
}

// TestEngineCause: observations of each lab fault, with the traces the
// vantages would send, give the scope its location router, upstream views
// and cause. Calm rounds come first, so the history says the loss is
// abrupt.
func TestEngineCause(t *testing.T) {
	for _, c := range []struct {
		name       string
		multiHomed bool
		nets       []string // networks cut
		routers    []string // routers silent
		trace      func(up, host string) (vantagev1.TraceStopReason, []string)
		wantState  vantagev1.State
		wantLoc    vantagev1.Location
		wantHop    string // "addr ROLE name"
		wantCause  vantagev1.Cause
		wantViews  []string
	}{
		{"upstream blackout: routes withdrawn at unicom", false, allNets, nil,
			func(string, string) (vantagev1.TraceStopReason, []string) { return stopUnreachable, []string{ix} },
			unreachable, locUpstream, unicom + " UPSTREAM unicom", causeUpstream,
			[]string{"unicom dead up=[] down=[net0 net1 net2 net3]"}},
		{"multi-homed: unicom withdraws, rostelecom carries net2 and net3", true, []string{"net0", "net1"}, nil,
			func(string, string) (vantagev1.TraceStopReason, []string) { return stopUnreachable, []string{ix} },
			degraded, locUpstream, unicom + " UPSTREAM unicom", causeUpstream,
			[]string{"unicom dead up=[] down=[net0 net1]", "rostelecom up=[net2 net3] down=[]"}},
		{"cut inside the border", false, allNets, nil,
			func(up, _ string) (vantagev1.TraceStopReason, []string) {
				return stopGap, []string{ix, transitHop, up, borderA}
			},
			unreachable, locTarget, borderA + " BORDER ryugyong", causeSelf,
			[]string{"unicom dead up=[] down=[net0 net1 net2 net3]"}},
		{"the border link goes down abruptly", false, allNets, []string{borderA},
			func(up, _ string) (vantagev1.TraceStopReason, []string) { return stopGap, []string{ix, transitHop, up} },
			unreachable, locTarget, unicom + " UPSTREAM unicom", causeFailure,
			[]string{"unicom dead up=[] down=[net0 net1 net2 net3]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := namedConfig(c.multiHomed)
			e := warmed(t, cfg, agents3)
			for _, ag := range agents3 {
				for _, tg := range cfg.Targets {
					if tg.Role == vantagev1.TargetRole_TARGET_ROLE_HOST {
						up := upstreamOf(c.multiHomed, tg.Network)
						e.Observe(traceObs(ag, tg.Addr, 5, stopCompleted, ix, transitHop, up, borderA, tg.Addr))
					}
				}
			}
			w := outageWorld(c.nets, c.routers...)
			first := flat(run(t, e, cfg, steps(outageRound, outageRound, agents3, w)))
			for _, ag := range agents3 {
				for _, tg := range cfg.Targets {
					if slices.Contains(c.nets, tg.Network) {
						stop, hops := c.trace(upstreamOf(c.multiHomed, tg.Network), tg.Addr)
						e.Observe(traceObs(ag, tg.Addr, outageRound, stop, hops...))
					}
				}
			}
			later := flat(run(t, e, cfg, steps(outageRound+1, outageRound+3, agents3, w)))
			scope := transitionsOf(append(first, later...), scopeID)
			t.Logf("scope transitions: %s", describeCauses(scope))
			if len(scope) == 0 || scope[0].GetTo() != c.wantState {
				t.Fatalf("scope transitions %s, want the first to %s", describeCauses(scope), c.wantState)
			}
			last := scope[len(scope)-1]
			v := mustVerdict(t, e, scopeID)
			for what, got := range map[string]struct {
				loc   vantagev1.Location
				hop   *vantagev1.Router
				cause *vantagev1.CauseFinding
				views []*vantagev1.UpstreamView
			}{
				"verdict":         {v.GetLocation(), v.GetLocationHop(), v.GetCause(), v.GetUpstreams()},
				"last transition": {last.GetLocation(), last.GetLocationHop(), last.GetCause(), last.GetUpstreams()},
			} {
				wantHop := c.wantHop
				if what == "last transition" && last.GetRound() == outageRound {
					wantHop = "" // published before the traces: no router named yet
				}
				if got.loc != c.wantLoc || routerString(got.hop) != wantHop || got.cause.GetCause() != c.wantCause ||
					!slices.Equal(viewStrings(got.views), c.wantViews) {
					t.Errorf("%s: location %s hop %q cause %s views %q; want %s %q %s %q (evidence %q)", what, got.loc, routerString(got.hop),
						got.cause.GetCause(), viewStrings(got.views), c.wantLoc, wantHop, c.wantCause, c.wantViews, got.cause.GetEvidence())
				}
			}
			if len(v.GetCause().GetEvidence()) < 3 {
				t.Errorf("cause evidence %q: want the observations behind it", v.GetCause().GetEvidence())
			}
		})
	}
}

// TestCauseRefinedOnce: the cause the traces find (a cut inside the border:
// SELF) is published once, in the one refinement (from == to) that follows
// the change published before the traces (LOCATING, cause UNDETERMINED); a
// steady outage publishes nothing more.
func TestCauseRefinedOnce(t *testing.T) {
	cfg := namedConfig(false)
	e := warmed(t, cfg, agents3)
	w := outageWorld(allNets)
	first := transitionsOf(flat(run(t, e, cfg, steps(outageRound, outageRound, agents3, w))), scopeID)
	if len(first) != 1 || first[0].GetLocation() != vantagev1.Location_LOCATION_LOCATING || first[0].GetCause().GetCause() != causeUndetermined {
		t.Fatalf("transitions %s, want one, LOCATING (no traces yet), cause UNDETERMINED", describeCauses(first))
	}
	for _, ag := range agents3 {
		for _, tg := range cfg.Targets {
			if tg.Role == vantagev1.TargetRole_TARGET_ROLE_HOST {
				e.Observe(traceObs(ag, tg.Addr, outageRound, stopGap, ix, transitHop, unicom, borderA))
			}
		}
	}
	more := transitionsOf(flat(run(t, e, cfg, steps(outageRound+1, outageRound+8, agents3, w))), scopeID)
	if len(more) != 1 || more[0].GetFrom() != unreachable || more[0].GetTo() != unreachable || more[0].GetCause().GetCause() != causeSelf ||
		more[0].GetLocation() != locTarget {
		t.Fatalf("after the traces: %s, want one refinement to TARGET_NETWORK, cause SELF", describeCauses(more))
	}
	t.Logf("refinement at round %d (traces of round %d): %s; notes %q", more[0].GetRound(), outageRound, describeCauses(more), more[0].GetNotes()[0])
}

func routerString(r *vantagev1.Router) string {
	if r == nil {
		return ""
	}
	out := fmt.Sprintf("%s %s %s", r.GetAddress(), strings.TrimPrefix(r.GetRole().String(), "TARGET_ROLE_"), r.GetName())
	if r.GetAsn() != 0 {
		out += fmt.Sprintf(" AS%d", r.GetAsn())
	}
	return out
}

func viewStrings(vs []*vantagev1.UpstreamView) []string {
	var out []string
	for _, v := range vs {
		dead := ""
		if v.GetDead() {
			dead = " dead"
		}
		out = append(out, fmt.Sprintf("%s%s up=%v down=%v", v.GetName(), dead, v.GetNetworksUp(), v.GetNetworksDown()))
	}
	return out
}

func describeCauses(trs []*vantagev1.Transition) string {
	var out []string
	for _, tr := range trs {
		out = append(out, fmt.Sprintf("r%d %s->%s at %s hop %q cause %s", tr.GetRound(), shortState(tr.GetFrom()), shortState(tr.GetTo()),
			strings.TrimPrefix(tr.GetLocation().String(), "LOCATION_"), routerString(tr.GetLocationHop()), causeWord(tr.GetCause().GetCause())))
	}
	return strings.Join(out, "; ")
}

// TestObserveHistory: the rounds before an onset skip UNKNOWN ones
// (beliefs in flux as an outage begins) but not a gap in evaluation; an
// escalation (DEGRADED, then UNREACHABLE) keeps the episode's onset and
// the history before it.
func TestObserveHistory(t *testing.T) {
	for _, c := range []struct {
		name          string
		raws          []vantagev1.State // rounds 10.., the last one the onset
		border        int               // round with a DEGRADED border, or 0
		gapAt         int               // round skipped, or 0
		known, degrad int
		episode       int // the episode's first round (0: the onset)
	}{
		{"calm", []vantagev1.State{reachable, reachable, reachable, reachable, unreachable}, 0, 0, 3, 0, 0},
		{"UNKNOWN rounds before the onset are skipped", []vantagev1.State{reachable, reachable, reachable, unknown, unknown, unknown, unknown,
			unknown, unknown, unknown, unreachable}, 0, 0, 3, 0, 0},
		{"a DEGRADED round", []vantagev1.State{reachable, degraded, reachable, unknown, unreachable}, 0, 0, 3, 1, 0},
		{"a DEGRADED border while UNKNOWN", []vantagev1.State{reachable, reachable, reachable, unknown, unreachable}, 13, 0, 3, 1, 0},
		{"too short a history", []vantagev1.State{reachable, unknown, unknown, unreachable}, 0, 0, 1, 0, 0},
		{"a gap", []vantagev1.State{reachable, reachable, reachable, reachable, unreachable}, 0, 13, 0, 0, 0},
		{"a partial first round, then UNREACHABLE", []vantagev1.State{reachable, reachable, reachable, degraded, unreachable}, 0, 0, 3, 0, 13},
		{"a long decline, then UNREACHABLE", []vantagev1.State{reachable, reachable, reachable, degraded, degraded, unknown, degraded, unreachable}, 0, 0, 3, 0, 13},
	} {
		t.Run(c.name, func(t *testing.T) {
			ct := &causeTrack{lastEval: 9}
			for i, raw := range c.raws {
				r := int64(10 + i)
				if r == int64(c.gapAt) {
					continue
				}
				ct.observe(r, raw, r == int64(c.border))
			}
			onset, episode := int64(10+len(c.raws)-1), int64(c.episode)
			if episode == 0 {
				episode = onset
			}
			if ct.known != c.known || ct.degraded != c.degrad || ct.onset != onset || ct.episode != episode {
				t.Errorf("onset %d episode %d known %d degraded %d, want onset %d episode %d, %d %d", ct.onset, ct.episode, ct.known, ct.degraded, onset, episode, c.known, c.degrad)
			}
		})
	}
}
