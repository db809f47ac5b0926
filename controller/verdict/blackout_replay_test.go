package verdict

import (
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestUpstreamBlackoutFirstLocation replays an upstream blackout as the
// lab and the demo make it: the routes are withdrawn at the upstream, its
// routers keep answering, the host probes get "destination unreachable",
// and the traces the transition triggers arrive a round later. The first
// location published for the scope and every network is UPSTREAM or
// LOCATING, never TARGET_NETWORK, and the first real location is the
// final one. Before issue 11 the first was TARGET_NETWORK (from the
// answering upstream), and when the upstream itself answered the
// traces' unreachables the final one was TARGET_NETWORK or PATH_SPECIFIC.
func TestUpstreamBlackoutFirstLocation(t *testing.T) {
	const (
		ix, transit, upstr, border = "198.51.100.1", "198.51.100.26", "198.51.100.42", "198.51.100.50"
		completed                  = vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED
		unreach                    = vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE
		gap                        = vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT
	)
	cfg := labConfig()
	cfg.Targets[len(cfg.Targets)-1].Role = vantagev1.TargetRole_TARGET_ROLE_BORDER
	hostsDown := func(_ string, tg Target) []vantagev1.Outcome {
		if tg.Role == vantagev1.TargetRole_TARGET_ROLE_HOST {
			return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_UNREACHABLE}
		}
		return []vantagev1.Outcome{vantagev1.Outcome_OUTCOME_REPLY}
	}
	type path struct {
		stop vantagev1.TraceStopReason
		hops []string
	}
	for _, c := range []struct {
		name  string
		paths map[string]path // per agent
	}{
		{"withdrawal propagated: the exchange has no route", map[string]path{
			"agt-a": {unreach, []string{ix}}, "agt-b": {unreach, []string{ix}}, "agt-c": {unreach, []string{ix}}}},
		{"the upstream has no route and says so", map[string]path{
			"agt-a": {unreach, []string{ix, transit, upstr}}, "agt-b": {unreach, []string{ix, transit, upstr}}, "agt-c": {unreach, []string{ix, transit, upstr}}}},
		{"the upstream rate-limits its unreachables", map[string]path{
			"agt-a": {unreach, []string{ix, transit, upstr}}, "agt-b": {gap, []string{ix, transit, upstr}}, "agt-c": {gap, []string{ix, transit}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := warmed(t, cfg, agents3)
			for _, ag := range agents3 {
				for _, tg := range cfg.Targets[:16] {
					e.Observe(traceObs(ag, tg.Addr, 5, completed, ix, transit, upstr, border, tg.Addr))
				}
			}
			byRound := run(t, e, cfg, steps(20, 20, agents3, hostsDown))
			for _, ag := range agents3 { // the triggered traces, a round later
				p := c.paths[ag]
				for _, tg := range cfg.Targets[:16] {
					e.Observe(traceObs(ag, tg.Addr, 21, p.stop, p.hops...))
				}
			}
			for n, trs := range run(t, e, cfg, steps(21, 25, agents3, hostsDown)) {
				byRound[n] = trs
			}
			all := flat(byRound)
			for _, id := range []string{scopeID, "country/network/net0", "country/network/net1", "country/network/net2", "country/network/net3"} {
				var locs []vantagev1.Location
				for _, tr := range transitionsOf(all, id) {
					locs = append(locs, tr.GetLocation())
				}
				final := mustVerdict(t, e, id).GetLocation()
				t.Logf("%s: published %v, final %s", id, locs, final)
				if len(locs) == 0 {
					t.Fatalf("%s: no transition", id)
				}
				if first := locs[0]; first != vantagev1.Location_LOCATION_UPSTREAM && first != vantagev1.Location_LOCATION_LOCATING {
					t.Errorf("%s: first published location %s, want UPSTREAM or LOCATING", id, first)
				}
				firstReal := vantagev1.Location_LOCATION_UNSPECIFIED
				for _, l := range locs {
					if l != vantagev1.Location_LOCATION_LOCATING {
						firstReal = l
						break
					}
				}
				if final != vantagev1.Location_LOCATION_UPSTREAM || firstReal != final || locs[len(locs)-1] != final {
					t.Errorf("%s: published %v, verdict %s; want the first real location to be the final UPSTREAM", id, locs, final)
				}
			}
		})
	}
}
