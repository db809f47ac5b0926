package verdict

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// trace is the latest trace of one vantage toward one target, reduced to
// what localisation needs, plus the last path that got through (baseline).
type trace struct {
	round    int64
	trigger  string
	stop     vantagev1.TraceStopReason
	hops     []Hop // responsive hops only, TTL order
	reached  bool
	baseline []Hop // the latest path that reached the target or an upstream
}

// observeTrace keeps a trace result for localisation.
func (e *Engine) observeTrace(ti int, o Observation) {
	if o.Round < 0 || o.Round > e.maxRound() || (e.clockKnown && o.Round > e.roundOf(e.now)+futureRounds) {
		e.stats.TooNew++
		return
	}
	ai := e.agentIndex(o.Agent)
	if ai < 0 {
		e.stats.NoAgent++
		return
	}
	a := e.agents[ai]
	if a.traces == nil {
		a.traces = map[int]*trace{}
	}
	tr := a.traces[ti]
	if tr == nil {
		tr = &trace{round: -1}
		a.traces[ti] = tr
	}
	if o.Round < tr.round {
		return // an older trace arriving late
	}
	target := e.targets[ti].name
	hops := make([]Hop, 0, min(len(o.Hops), maxHops))
	reached := o.StopReason == vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED
	for _, h := range o.Hops {
		if len(hops) == maxHops {
			break
		}
		if h.Addr == "" {
			continue
		}
		addr := h.Addr
		if p, err := netip.ParseAddr(addr); err == nil {
			addr = p.String()
		} else {
			continue // garbage is not a hop
		}
		if addr == target {
			reached = true
		}
		hops = append(hops, Hop{TTL: h.TTL, Addr: addr})
	}
	if o.Outcome == vantagev1.Outcome_OUTCOME_ERROR {
		return // the trace did not run: no evidence
	}
	tr.round, tr.trigger, tr.stop, tr.hops, tr.reached = o.Round, o.TriggerID, o.StopReason, hops, reached
	if reached || e.passesUpstream(hops) {
		tr.baseline = hops
	}
	e.stats.Traces++
}

// roleOf is the campaign role of a hop address (UNSPECIFIED when it is not
// a campaign target).
func (e *Engine) roleOf(addr string) vantagev1.TargetRole {
	if ti, ok := e.targetIdx[addr]; ok {
		return e.targets[ti].role
	}
	return vantagev1.TargetRole_TARGET_ROLE_UNSPECIFIED
}

func (e *Engine) passesUpstream(hops []Hop) bool {
	for _, h := range hops {
		if r := e.roleOf(h.Addr); r == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || r == vantagev1.TargetRole_TARGET_ROLE_BORDER {
			return true
		}
	}
	return false
}

// PathEvidence is one healthy vantage's trace toward one affected target,
// reduced for Classify.
type PathEvidence struct {
	Agent, Target string
	// Reached: the destination answered the trace.
	Reached bool
	// LastHop is the last responsive hop ("" when nothing answered) and
	// LastHopRole its campaign role (UNSPECIFIED when not a campaign target).
	LastHop     string
	LastHopRole vantagev1.TargetRole
	// PassedUpstream: an UPSTREAM or BORDER target answered on this path.
	PassedUpstream bool
	// UpstreamAlive: this vantage reaches some UPSTREAM or BORDER target
	// (its belief, or a completed trace to it).
	UpstreamAlive bool
	// BaselineGap is how many responsive hops separated LastHop from the
	// first UPSTREAM/BORDER hop on this vantage's last good path to the
	// target; -1 when unknown (no baseline, or LastHop not on it).
	BaselineGap int
}

// pathClass is the location one path points at.
func (p PathEvidence) class() vantagev1.Location {
	switch {
	case p.Reached:
		return vantagev1.Location_LOCATION_NONE
	case p.PassedUpstream, p.LastHopRole == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM,
		p.LastHopRole == vantagev1.TargetRole_TARGET_ROLE_BORDER, p.LastHopRole == vantagev1.TargetRole_TARGET_ROLE_HOST:
		return vantagev1.Location_LOCATION_TARGET_NETWORK
	case p.LastHop == "":
		return vantagev1.Location_LOCATION_VANTAGE
	case p.UpstreamAlive:
		return vantagev1.Location_LOCATION_UPSTREAM
	case p.BaselineGap >= 2:
		return vantagev1.Location_LOCATION_TRANSIT
	default:
		return vantagev1.Location_LOCATION_UPSTREAM
	}
}

// Classify turns the paths toward a subject's affected targets into a
// location, the common last responsive hop and a note. It is pure and
// deterministic (input order does not matter). Rules, per path:
//   - reached the target: the path is fine;
//   - an UPSTREAM or BORDER target answered on the path, or the last
//     responsive hop is an upstream, border or host target: TARGET_NETWORK;
//   - nothing answered at all: VANTAGE (it cannot get out);
//   - the path dies before the upstream while this vantage still reaches an
//     upstream target: UPSTREAM (the upstream no longer carries the routes);
//   - the upstream is silent too: TRANSIT when the last responsive hop lies
//     two or more hops before the upstream on this vantage's baseline path,
//     UPSTREAM otherwise (at or just before the upstream, or no baseline).
//
// Across paths: none: UNSPECIFIED; some fine and some not: PATH_SPECIFIC;
// all failing paths in one class: that class; VANTAGE paths next to other
// classes are ignored if the others agree; otherwise PATH_SPECIFIC.
func Classify(paths []PathEvidence) (loc vantagev1.Location, lastHop, note string) {
	if len(paths) == 0 {
		return vantagev1.Location_LOCATION_UNSPECIFIED, "", ""
	}
	fine := 0
	classes := map[vantagev1.Location]int{}
	hopsBy := map[vantagev1.Location][]string{}
	for _, p := range paths {
		c := p.class()
		if c == vantagev1.Location_LOCATION_NONE {
			fine++
			continue
		}
		classes[c]++
		if p.LastHop != "" {
			hopsBy[c] = append(hopsBy[c], p.LastHop)
		}
	}
	failed := len(paths) - fine
	switch {
	case failed == 0:
		return vantagev1.Location_LOCATION_UNSPECIFIED, "", fmt.Sprintf("traces: all %d paths reach their targets", fine)
	case fine > 0:
		return vantagev1.Location_LOCATION_PATH_SPECIFIC, commonHop(hopsBy), fmt.Sprintf("traces: %d of %d paths reach their targets, %d die on the way", fine, len(paths), failed)
	}
	if len(classes) > 1 && classes[vantagev1.Location_LOCATION_VANTAGE] > 0 {
		delete(classes, vantagev1.Location_LOCATION_VANTAGE)
	}
	if len(classes) > 1 {
		names := make([]string, 0, len(classes))
		for c, k := range classes {
			names = append(names, fmt.Sprintf("%s=%d", strings.TrimPrefix(c.String(), "LOCATION_"), k))
		}
		slices.Sort(names)
		return vantagev1.Location_LOCATION_PATH_SPECIFIC, commonHop(hopsBy), "traces disagree: " + strings.Join(names, " ")
	}
	for c, k := range classes {
		h := mostCommon(hopsBy[c])
		return c, h, fmt.Sprintf("traces: %d paths end at %s (last responsive hop %s)", k, strings.TrimPrefix(c.String(), "LOCATION_"), orNone(h))
	}
	return vantagev1.Location_LOCATION_UNSPECIFIED, "", ""
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func commonHop(by map[vantagev1.Location][]string) string {
	var all []string
	for _, hs := range by {
		all = append(all, hs...)
	}
	return mostCommon(all)
}

// mostCommon returns the most frequent string, the smallest on ties.
func mostCommon(xs []string) string {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	best, bestN := "", 0
	for i := 0; i < len(xs); {
		j := i
		for j < len(xs) && xs[j] == xs[i] {
			j++
		}
		if j-i > bestN {
			best, bestN = xs[i], j-i
		}
		i = j
	}
	return best
}

// pathEvidence reduces a's trace toward target t.
func (e *Engine) pathEvidence(a *agent, t int, tr *trace) PathEvidence {
	p := PathEvidence{Agent: a.id, Target: e.targets[t].name, Reached: tr.reached, BaselineGap: -1}
	if k := len(tr.hops); k > 0 {
		p.LastHop = tr.hops[k-1].Addr
		p.LastHopRole = e.roleOf(p.LastHop)
	}
	p.PassedUpstream = e.passesUpstream(tr.hops)
	for _, u := range e.upstreams {
		if e.view(a, u) == viewUp {
			p.UpstreamAlive = true
		}
		if ut := a.traces[u]; ut != nil && ut.reached && ut.round >= tr.round-1 {
			p.UpstreamAlive = true
		}
	}
	if p.LastHop != "" && len(tr.baseline) > 0 {
		at, up := -1, -1
		for i, h := range tr.baseline {
			if h.Addr == p.LastHop && at < 0 {
				at = i
			}
			if r := e.roleOf(h.Addr); up < 0 && (r == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || r == vantagev1.TargetRole_TARGET_ROLE_BORDER) {
				up = i
			}
		}
		if at >= 0 && up > at {
			p.BaselineGap = up - at
		}
	}
	return p
}

// locate sets s.location, s.lastHop and s.locNotes for round n.
func (e *Engine) locate(s *subject, n int64, healthy []*agent, prov vantagev1.Location) {
	s.location, s.lastHop, s.locNotes, s.locTraced = vantagev1.Location_LOCATION_UNSPECIFIED, "", nil, false
	switch s.raw {
	case vantagev1.State_STATE_REACHABLE:
		s.badSince = -1
		s.location = vantagev1.Location_LOCATION_NONE
		if s.filtered > 0 && (s.level == vantagev1.Level_LEVEL_TARGET || s.filtered == s.up) {
			s.location = vantagev1.Location_LOCATION_FILTERED
		}
		return
	case vantagev1.State_STATE_DEGRADED, vantagev1.State_STATE_UNREACHABLE:
		if s.badSince < 0 {
			s.badSince = n
		}
	default:
		return
	}
	// Affected targets: the subject's down hosts (or the target itself).
	var affected []int
	switch s.level {
	case vantagev1.Level_LEVEL_TARGET:
		affected = []int{s.target}
	case vantagev1.Level_LEVEL_NETWORK:
		for _, t := range s.children {
			if e.targets[t].raw != vantagev1.State_STATE_REACHABLE {
				affected = append(affected, t)
			}
		}
	default:
		for _, ni := range s.children {
			for _, t := range e.networks[ni].children {
				if e.targets[t].raw != vantagev1.State_STATE_REACHABLE {
					affected = append(affected, t)
				}
			}
		}
	}
	var paths []PathEvidence
	for _, a := range healthy {
		for _, t := range affected {
			tr := a.traces[t]
			if tr == nil || tr.round < s.badSince-1 {
				continue
			}
			paths = append(paths, e.pathEvidence(a, t, tr))
		}
	}
	loc, hop, note := Classify(paths)
	if loc != vantagev1.Location_LOCATION_UNSPECIFIED {
		s.location, s.lastHop, s.locTraced = loc, hop, true
		s.locNotes = append(s.locNotes, fmt.Sprintf("location %s from %d traces since round %d: %s",
			strings.TrimPrefix(loc.String(), "LOCATION_"), len(paths), s.badSince-1, note))
		return
	}
	if note != "" {
		s.locNotes = append(s.locNotes, note)
	}
	// Provisional, from the reachability of the upstream targets.
	switch {
	case s.level == vantagev1.Level_LEVEL_TARGET && s.raw == vantagev1.State_STATE_DEGRADED:
		s.location = vantagev1.Location_LOCATION_PATH_SPECIFIC
		s.locNotes = append(s.locNotes, fmt.Sprintf("provisional location PATH_SPECIFIC: vantages disagree (%d groups see it up, %d down); awaiting traces", s.upG, s.downG))
	case s.level == vantagev1.Level_LEVEL_TARGET && (s.role == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || s.role == vantagev1.TargetRole_TARGET_ROLE_BORDER):
		s.location = vantagev1.Location_LOCATION_UPSTREAM
		s.locNotes = append(s.locNotes, "provisional location UPSTREAM: this upstream target does not answer; awaiting traces")
	case s.level == vantagev1.Level_LEVEL_TARGET && s.role == vantagev1.TargetRole_TARGET_ROLE_CONTROL:
	case prov == vantagev1.Location_LOCATION_TARGET_NETWORK:
		s.location = prov
		s.locNotes = append(s.locNotes, "provisional location TARGET_NETWORK: upstream targets still answer; awaiting traces")
	case prov == vantagev1.Location_LOCATION_UPSTREAM:
		s.location = prov
		s.locNotes = append(s.locNotes, "provisional location UPSTREAM: upstream targets are down too; awaiting traces")
	default:
		s.locNotes = append(s.locNotes, "location unknown: no upstream target has a verdict and no traces yet")
	}
}
