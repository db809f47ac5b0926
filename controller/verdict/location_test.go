package verdict

import (
	"slices"
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The trace stop reasons and router roles are causetrack_test.go's.

// TestClassifyStopReason: where a path dies depends on why the trace
// stopped, not only on its last responsive hop.
func TestClassifyStopReason(t *testing.T) {
	const upstr, border, transit = "198.51.100.42", "198.51.100.50", "198.51.100.26"
	noRouteAtUp := PathEvidence{Agent: "a", Target: "t", LastHop: upstr, LastHopRole: roleUpstream, PassedUpstream: true, UpstreamAlive: true, BaselineGap: -1, Stop: stopUnreachable}
	silentAtUp := PathEvidence{Agent: "b", Target: "t", LastHop: upstr, LastHopRole: roleUpstream, PassedUpstream: true, UpstreamAlive: true, BaselineGap: -1, Stop: stopGap}
	silentBeforeUp := PathEvidence{Agent: "c", Target: "t", LastHop: transit, UpstreamAlive: true, BaselineGap: 1, Stop: stopGap}
	noRouteAtBorder := PathEvidence{Agent: "a", Target: "t", LastHop: border, LastHopRole: roleBorder, PassedUpstream: true, UpstreamAlive: true, BaselineGap: -1, Stop: stopUnreachable}
	with := func(p PathEvidence, agent, target string) PathEvidence { p.Agent, p.Target = agent, target; return p }
	for _, c := range []struct {
		name    string
		paths   []PathEvidence
		want    vantagev1.Location
		wantHop string
	}{
		// Before: TARGET_NETWORK (the upstream answered on the path).
		{"the upstream answers destination unreachable", []PathEvidence{noRouteAtUp, with(noRouteAtUp, "b", "t"), with(noRouteAtUp, "c", "u")},
			vantagev1.Location_LOCATION_UPSTREAM, upstr},
		// Before: PATH_SPECIFIC (TARGET_NETWORK=2 UPSTREAM=1 or so, varying
		// with which unreachables the rate limit let through).
		{"rate-limited unreachables: some silent at the upstream, some before it", []PathEvidence{noRouteAtUp, silentAtUp, silentBeforeUp},
			vantagev1.Location_LOCATION_UPSTREAM, upstr},
		{"silent at an upstream that never said unreachable", []PathEvidence{silentAtUp, with(silentAtUp, "c", "t")},
			vantagev1.Location_LOCATION_TARGET_NETWORK, upstr},
		{"the country's border has no route", []PathEvidence{noRouteAtBorder, with(noRouteAtBorder, "b", "t")},
			vantagev1.Location_LOCATION_TARGET_NETWORK, border},
	} {
		t.Run(c.name, func(t *testing.T) {
			loc, hop, note := Classify(c.paths)
			if loc != c.want || hop != c.wantHop {
				t.Errorf("Classify = %s, %q (%s), want %s, %q", loc, hop, note, c.want, c.wantHop)
			}
			rev := slices.Clone(c.paths)
			slices.Reverse(rev)
			if l2, h2, _ := Classify(rev); l2 != loc || h2 != hop {
				t.Errorf("order matters: %s %q vs %s %q", l2, h2, loc, hop)
			}
		})
	}
}

// TestClassifyVantage: VANTAGE means only that a minority of the
// vantages fail while the others reach the target.
func TestClassifyVantage(t *testing.T) {
	reached := func(agent, target string) PathEvidence {
		return PathEvidence{Agent: agent, Target: target, Reached: true, LastHop: target, BaselineGap: -1}
	}
	dies := func(agent, target string) PathEvidence {
		return PathEvidence{Agent: agent, Target: target, LastHop: "10.0.0.1", BaselineGap: -1, Stop: stopGap}
	}
	silent := func(agent, target string) PathEvidence {
		return PathEvidence{Agent: agent, Target: target, BaselineGap: -1, Stop: stopGap}
	}
	for _, c := range []struct {
		name  string
		paths []PathEvidence
		want  vantagev1.Location
	}{
		{"one of three fails on every path, the others reach", []PathEvidence{dies("a", "t"), dies("a", "u"), reached("b", "t"), reached("b", "u"), reached("c", "t")},
			vantagev1.Location_LOCATION_VANTAGE},
		{"one of three silent, the others reach", []PathEvidence{silent("a", "t"), reached("b", "t"), reached("c", "t")},
			vantagev1.Location_LOCATION_VANTAGE},
		{"two of three fail", []PathEvidence{dies("a", "t"), dies("b", "t"), reached("c", "t")},
			vantagev1.Location_LOCATION_PATH_SPECIFIC},
		{"one of two fails (not a minority)", []PathEvidence{dies("a", "t"), reached("b", "t")},
			vantagev1.Location_LOCATION_PATH_SPECIFIC},
		{"the failing vantage reaches another target", []PathEvidence{dies("a", "t"), reached("a", "u"), reached("b", "t"), reached("c", "t")},
			vantagev1.Location_LOCATION_PATH_SPECIFIC},
		// Before: VANTAGE.
		{"every vantage silent", []PathEvidence{silent("a", "t"), silent("b", "t"), silent("c", "t")},
			vantagev1.Location_LOCATION_UNSPECIFIED},
	} {
		t.Run(c.name, func(t *testing.T) {
			if loc, _, note := Classify(c.paths); loc != c.want {
				t.Errorf("Classify = %s (%s), want %s", loc, note, c.want)
			}
		})
	}
}

// unreachDown: host probes get "destination unreachable" (a router
// without a route answers), routers answer.
func unreachDown(_ string, tg Target) []vantagev1.Outcome {
	if tg.Role == vantagev1.TargetRole_TARGET_ROLE_HOST {
		return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_UNREACHABLE}
	}
	return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_REPLY}
}

// TestLocationWithoutTraces: a transition carries a location only when
// this round's evidence or the path signature supports one.
func TestLocationWithoutTraces(t *testing.T) {
	cfg := labConfig()
	allDown := func(string, Target) []vantagev1.Outcome {
		return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_TIMEOUT}
	}
	for _, c := range []struct {
		name string
		w    world
		want vantagev1.Location
	}{
		// Before: TARGET_NETWORK.
		{"upstreams answer, no traces", netsDown(allNets...), vantagev1.Location_LOCATION_LOCATING},
		{"upstreams down too", allDown, vantagev1.Location_LOCATION_UPSTREAM},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := warmed(t, cfg, agents3)
			trs := transitionsOf(run(t, e, cfg, steps(20, 20, agents3, c.w))[20], scopeID)
			if len(trs) != 1 || trs[0].GetLocation() != c.want {
				t.Fatalf("scope transitions %v, want one at %s", trs, c.want)
			}
		})
	}
}

// flapsThenDown is rounds 20 to 34: down 1, up 1, for 12 rounds, then down
// from round 32 on.
func flapsThenDown() []step {
	var ss []step
	for k := int64(0); k < 12; k++ {
		w := world(allUp)
		if k%2 == 0 {
			w = unreachDown
		}
		ss = append(ss, step{20 + k, agents3, w})
	}
	return append(ss, steps(32, 34, agents3, unreachDown)...)
}

// TestPathSignature: inside an UNSTABLE episode whose traces located it,
// the sustained outage that ends it carries that location at once; a
// border cut's traces do not locate a later outage that only looks the
// same to the probes (the lab scenario suite's border cut, then upstream
// blackout, published the blackout at TARGET_NETWORK with signatures
// that ignored the episode).
func TestPathSignature(t *testing.T) {
	const ix, border = "198.51.100.1", "198.51.100.50"
	cfg := labConfig()
	cfg.Targets[len(cfg.Targets)-1].Role = roleBorder
	traces := func(e *Engine, n int64, stop vantagev1.TraceStopReason, hops ...string) {
		for _, ag := range agents3 {
			for _, tg := range cfg.Targets[:16] {
				e.Observe(traceObs(ag, tg.Addr, n, stop, hops...))
			}
		}
	}
	t.Run("the episode's sustained outage", func(t *testing.T) {
		e := warmed(t, cfg, agents3)
		traces(e, 20, stopUnreachable, ix) // triggered by the first flap
		trs := transitionsOf(flat(run(t, e, cfg, flapsThenDown())), scopeID)
		if in := trs[1]; in.GetTo() != unstable || in.GetLocation() != vantagev1.Location_LOCATION_UPSTREAM {
			t.Errorf("second scope transition to %s at %s, want UNSTABLE at UPSTREAM (the episode's traces)", shortState(in.GetTo()), in.GetLocation())
		}
		last := trs[len(trs)-1]
		t.Logf("scope:%s at %s", describe(trs), last.GetLocation())
		if last.GetFrom() != unstable || last.GetTo() != unreachable || last.GetLocation() != vantagev1.Location_LOCATION_UPSTREAM {
			t.Errorf("last scope transition %s -> %s at %s, want UNSTABLE -> UNREACHABLE at UPSTREAM (the episode's traces)",
				shortState(last.GetFrom()), shortState(last.GetTo()), last.GetLocation())
		}
	})
	t.Run("mixed traces do not locate the outage that ends the episode", func(t *testing.T) {
		// The lab's CI run: traces taken across a flap's edge, some
		// reaching their targets and some dying (PATH_SPECIFIC), published
		// the blackout that ended the episode at PATH_SPECIFIC, and fresh
		// traces refined it to UPSTREAM.
		e := warmed(t, cfg, agents3)
		for i, ag := range agents3 {
			for _, tg := range cfg.Targets[:16] {
				if i == 0 {
					e.Observe(traceObs(ag, tg.Addr, 20, stopCompleted, ix, tg.Addr))
				} else {
					e.Observe(traceObs(ag, tg.Addr, 20, stopUnreachable, ix))
				}
			}
		}
		trs := transitionsOf(flat(run(t, e, cfg, flapsThenDown())), scopeID)
		last := trs[len(trs)-1]
		if last.GetTo() != unreachable || last.GetLocation() != vantagev1.Location_LOCATION_LOCATING {
			t.Errorf("last scope transition %s -> %s at %s, want UNREACHABLE at LOCATING (no trace of this outage yet)",
				shortState(last.GetFrom()), shortState(last.GetTo()), last.GetLocation())
		}
	})
	t.Run("traces that reached their targets do not place an outage nothing gets through", func(t *testing.T) {
		// The lab's CI run again (blackout during flapping): the traces of
		// the round before the outage, some reaching their targets (an
		// up-flap) and some dying, counted as the outage's own and
		// published it at PATH_SPECIFIC.
		e := warmed(t, cfg, agents3)
		ss := flapsThenDown()
		run(t, e, cfg, ss[:len(ss)-3])
		for i, ag := range agents3 {
			for _, tg := range cfg.Targets[:16] {
				if i == 0 {
					e.Observe(traceObs(ag, tg.Addr, 31, stopCompleted, ix, tg.Addr))
				} else {
					e.Observe(traceObs(ag, tg.Addr, 31, stopUnreachable, ix))
				}
			}
		}
		trs := transitionsOf(flat(run(t, e, cfg, ss[len(ss)-3:])), scopeID)
		if len(trs) == 0 {
			t.Fatal("no scope transition for the outage")
		}
		for _, tr := range trs {
			if tr.GetTo() == unreachable && tr.GetLocation() == vantagev1.Location_LOCATION_PATH_SPECIFIC {
				t.Errorf("scope %s -> %s at PATH_SPECIFIC: a trace that reached its target cannot describe an outage nothing gets through",
					shortState(tr.GetFrom()), shortState(tr.GetTo()))
			}
		}
	})
	t.Run("a border cut does not locate the next outage", func(t *testing.T) {
		e := warmed(t, cfg, agents3)
		traces(e, 20, stopGap, ix, border) // TARGET_NETWORK
		ss := steps(20, 23, agents3, netsDown(allNets...))
		ss = append(ss, steps(24, 26, agents3, allUp)...)
		ss = append(ss, steps(27, 27, agents3, netsDown(allNets...))...)
		byRound := run(t, e, cfg, ss)
		trs := transitionsOf(byRound[27], scopeID)
		if len(trs) != 1 || trs[0].GetLocation() != vantagev1.Location_LOCATION_LOCATING {
			t.Errorf("round 27: scope transitions %v, want one at LOCATING", trs)
		}
	})
}
