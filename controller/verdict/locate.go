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
	// Stop is why the trace stopped: UNREACHABLE when LastHop answered
	// "destination unreachable" (it has no route), GAP_LIMIT when the path
	// went silent after it.
	Stop vantagev1.TraceStopReason
}

// deadAt reports whether the path dies at an upstream router that itself
// answers "destination unreachable": the upstream has no route.
func (p PathEvidence) deadAt() bool {
	return !p.Reached && p.Stop == vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE &&
		p.LastHopRole == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM
}

// class is the location one path points at. noRoute holds the upstream
// routers that answered "destination unreachable" on some path: a path
// that goes silent at one of them met its rate limit, not a cut behind
// it.
func (p PathEvidence) class(noRoute map[string]bool) vantagev1.Location {
	switch {
	case p.Reached:
		return vantagev1.Location_LOCATION_NONE
	case p.deadAt(), p.LastHopRole == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM && noRoute[p.LastHop]:
		return vantagev1.Location_LOCATION_UPSTREAM
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
//   - the last responsive hop is an UPSTREAM router that answered
//     "destination unreachable" (the trace's stop reason), or one that
//     did so on another path and is silent after on this one (its
//     unreachables are rate-limited): UPSTREAM (the upstream has no route);
//   - otherwise an UPSTREAM or BORDER target answered on the path, or the
//     last responsive hop is an upstream, border or host target:
//     TARGET_NETWORK;
//   - nothing answered at all: no evidence of where (see below);
//   - the path dies before the upstream while this vantage still reaches an
//     upstream target: UPSTREAM (the upstream no longer carries the routes);
//   - the upstream is silent too: TRANSIT when the last responsive hop lies
//     two or more hops before the upstream on this vantage's baseline path,
//     UPSTREAM otherwise (at or just before the upstream, or no baseline).
//
// Across paths: none: UNSPECIFIED; none failing: UNSPECIFIED; some fine
// and some not: VANTAGE when the failing paths are all those of a strict
// minority of the vantages and every other vantage reaches its targets,
// PATH_SPECIFIC otherwise; all failing paths in one class: that class;
// paths where nothing answered are ignored next to other classes, and
// alone say nothing (UNSPECIFIED: a vantage that cannot get out is not a
// location unless the others get through); otherwise PATH_SPECIFIC.
func Classify(paths []PathEvidence) (loc vantagev1.Location, lastHop, note string) {
	if len(paths) == 0 {
		return vantagev1.Location_LOCATION_UNSPECIFIED, "", ""
	}
	noRoute := map[string]bool{}
	for _, p := range paths {
		if p.deadAt() {
			noRoute[p.LastHop] = true
		}
	}
	fine := 0
	classes := map[vantagev1.Location]int{}
	hopsBy := map[vantagev1.Location][]string{}
	failing, reaching := map[string]bool{}, map[string]bool{}
	for _, p := range paths {
		c := p.class(noRoute)
		if c == vantagev1.Location_LOCATION_NONE {
			fine++
			reaching[p.Agent] = true
			continue
		}
		failing[p.Agent] = true
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
		return mixed(failing, reaching, hopsBy, fine, len(paths))
	}
	silent := classes[vantagev1.Location_LOCATION_VANTAGE]
	delete(classes, vantagev1.Location_LOCATION_VANTAGE)
	if len(classes) == 0 {
		return vantagev1.Location_LOCATION_UNSPECIFIED, "", fmt.Sprintf("traces: none of %d paths got an answer from any hop (no location)", silent)
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

// mixed locates paths some of which reach their targets: VANTAGE when
// the failing ones are a strict minority of the vantages, none of which
// reaches any target, PATH_SPECIFIC otherwise.
func mixed(failing, reaching map[string]bool, hopsBy map[vantagev1.Location][]string, fine, total int) (vantagev1.Location, string, string) {
	agents := len(failing)
	for a := range reaching {
		if !failing[a] {
			agents++
		}
	}
	overlap := false
	for a := range failing {
		overlap = overlap || reaching[a]
	}
	if !overlap && 2*len(failing) < agents {
		return vantagev1.Location_LOCATION_VANTAGE, commonHop(hopsBy), fmt.Sprintf("traces: %d of %d vantages fail on every path while the others reach their targets (%d of %d paths fine)",
			len(failing), agents, fine, total)
	}
	return vantagev1.Location_LOCATION_PATH_SPECIFIC, commonHop(hopsBy), fmt.Sprintf("traces: %d of %d paths reach their targets, %d die on the way", fine, total, total-fine)
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
	p := PathEvidence{Agent: a.id, Target: e.targets[t].name, Reached: tr.reached, BaselineGap: -1, Stop: tr.stop}
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

// pathSig is the story a subject's traces last told and the fresh
// evidence around it: which upstream/border targets answered, and whether
// the failing host probes got "destination unreachable" back. Inside an
// UNSTABLE episode whose traces told it, a new down stretch with the same
// signature is the same fault repeating, so its transition may carry that
// location before traces. Outside an episode it is not evidence: probes
// alone cannot tell a cut inside the border from a withdrawal at the
// upstream (rate-limited unreachables look like silence), as the lab's
// scenario suite showed when a border cut's signature located the
// upstream blackout that followed it.
type pathSig struct {
	loc     vantagev1.Location
	hop     string
	routers string // '1' alive, '0' down, '-' no verdict, per upstream target
	unreach bool
	round   int64 // when traces last told it; -1 none
}

// provisional is the round's router evidence for locations without
// traces: UPSTREAM when every upstream/border target with a verdict is
// UNREACHABLE (the routers themselves are gone), LOCATING otherwise (an
// answering upstream says nothing about where the paths die: an upstream
// blackout leaves its routers answering), and the routers' signature.
type provisional struct {
	loc     vantagev1.Location
	routers string
}

// provisionalLocation is the provisional location of round n from the
// upstream and border targets' raw states.
func (e *Engine) provisionalLocation() provisional {
	upAlive, upDown := false, 0
	sig := make([]byte, len(e.upstreams))
	for i, t := range e.upstreams {
		sig[i] = '-'
		switch e.targets[t].raw {
		case vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_DEGRADED:
			upAlive, sig[i] = true, '1'
		case vantagev1.State_STATE_UNREACHABLE:
			upDown++
			sig[i] = '0'
		}
	}
	p := provisional{loc: vantagev1.Location_LOCATION_LOCATING, routers: string(sig)}
	if !upAlive && upDown > 0 {
		p.loc = vantagev1.Location_LOCATION_UPSTREAM
	}
	return p
}

// affectedTargets are a bad subject's down hosts (or the target itself).
func (e *Engine) affectedTargets(s *subject) []int {
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
	return affected
}

// unreachAnswers reports whether most failing probes of the affected
// targets this round got "destination unreachable" back (a router without
// a route) rather than silence.
func (e *Engine) unreachAnswers(healthy []*agent, affected []int) bool {
	unreach, failed := 0, 0
	for _, a := range healthy {
		for _, t := range affected {
			if f := a.view.flags[t]; f&(fSeen|fUp) == fSeen {
				failed++
				if f&fUnreach != 0 {
					unreach++
				}
			}
		}
	}
	return 2*unreach > failed
}

// locate sets s.location, s.lastHop and s.locNotes for round n.
func (e *Engine) locate(s *subject, n int64, healthy []*agent, prov provisional) {
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
	affected := e.affectedTargets(s)
	// Nothing gets through an UNREACHABLE subject, so a trace that reached
	// its target predates the outage (taken across a flap's edge). Such
	// mixed evidence leaves out those traces and the others of the round
	// before the outage, which may be as old; and it makes no path
	// signature (a later outage waits for its own traces).
	var paths []PathEvidence
	var rounds []int64
	stale := 0
	for _, a := range healthy {
		for _, t := range affected {
			tr := a.traces[t]
			if tr == nil || tr.round < s.badSince-1 {
				continue
			}
			pe := e.pathEvidence(a, t, tr)
			if s.raw == vantagev1.State_STATE_UNREACHABLE && pe.Reached {
				stale++
				continue
			}
			paths, rounds = append(paths, pe), append(rounds, tr.round)
		}
	}
	if stale > 0 {
		kept := paths[:0]
		for i, p := range paths {
			if rounds[i] >= s.badSince {
				kept = append(kept, p)
			}
		}
		s.locNotes = append(s.locNotes, fmt.Sprintf("%d trace(s) reached their targets, so predate an outage nothing gets through: left out, with the other %d from before round %d",
			stale, len(paths)-len(kept), s.badSince))
		paths = kept
	}
	unreach := e.unreachAnswers(healthy, affected)
	loc, hop, note := Classify(paths)
	if loc != vantagev1.Location_LOCATION_UNSPECIFIED {
		s.location, s.lastHop, s.locTraced = loc, hop, true
		if stale == 0 {
			s.sig = pathSig{loc: loc, hop: hop, routers: prov.routers, unreach: unreach, round: n}
		}
		s.locNotes = append(s.locNotes, fmt.Sprintf("location %s from %d traces since round %d: %s",
			strings.TrimPrefix(loc.String(), "LOCATION_"), len(paths), s.badSince-1, note))
		return
	}
	if note != "" {
		s.locNotes = append(s.locNotes, note)
	}
	e.locateWithoutTraces(s, n, prov, unreach)
}

// episodeLocation is where the traces of s's UNSTABLE episode (since its
// first flap) said its paths die, UNSPECIFIED when none did.
func (e *Engine) episodeLocation(s *subject) (vantagev1.Location, string) {
	if sig := s.sig; sig.loc != vantagev1.Location_LOCATION_UNSPECIFIED && sig.round >= s.stab.since.round {
		return sig.loc, sig.hop
	}
	return vantagev1.Location_LOCATION_UNSPECIFIED, ""
}

func (e *Engine) episodeLoc(s *subject) vantagev1.Location { l, _ := e.episodeLocation(s); return l }

// locateWithoutTraces sets a bad subject's location from this round's
// probes and its path signature, LOCATING when they do not support one.
func (e *Engine) locateWithoutTraces(s *subject, n int64, prov provisional, unreach bool) {
	sig := s.sig
	switch {
	case s.level == vantagev1.Level_LEVEL_TARGET && s.raw == vantagev1.State_STATE_DEGRADED:
		s.location = vantagev1.Location_LOCATION_PATH_SPECIFIC
		s.locNotes = append(s.locNotes, fmt.Sprintf("provisional location PATH_SPECIFIC: vantages disagree (%d groups see it up, %d down); awaiting traces", s.upG, s.downG))
	case s.level == vantagev1.Level_LEVEL_TARGET && (s.role == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || s.role == vantagev1.TargetRole_TARGET_ROLE_BORDER):
		s.location = vantagev1.Location_LOCATION_UPSTREAM
		s.locNotes = append(s.locNotes, "provisional location UPSTREAM: this upstream target does not answer; awaiting traces")
	case s.level == vantagev1.Level_LEVEL_TARGET && s.role == vantagev1.TargetRole_TARGET_ROLE_CONTROL:
	case s.level != vantagev1.Level_LEVEL_TARGET && e.placedByRouting(s, n):
	case prov.loc == vantagev1.Location_LOCATION_UPSTREAM:
		s.location = prov.loc
		s.locNotes = append(s.locNotes, "provisional location UPSTREAM: upstream targets are down too; awaiting traces")
	case s.state == vantagev1.State_STATE_UNSTABLE && sig.routers == prov.routers && sig.unreach == unreach &&
		e.episodeLoc(s) != vantagev1.Location_LOCATION_UNSPECIFIED && !mixedFor(sig.loc, s.raw):
		s.location, s.lastHop = sig.loc, sig.hop
		s.locNotes = append(s.locNotes, fmt.Sprintf("location %s from the path signature: traces in round %d of this unstable episode said so with the same routers answering and the same probe failures; awaiting fresh traces",
			strings.TrimPrefix(sig.loc.String(), "LOCATION_"), sig.round))
	default:
		s.location = vantagev1.Location_LOCATION_LOCATING
		s.locNotes = append(s.locNotes, "location LOCATING: awaiting traces (upstream targets answering do not say where the paths die)")
	}
}

// mixedFor: a path signature at loc cannot place an outage in state raw.
// PATH_SPECIFIC traces (some paths fine, or paths dying in different
// places) were taken across a flap's edge or describe a partial fault; an
// outage in which nothing gets through waits for its own traces.
func mixedFor(loc vantagev1.Location, raw vantagev1.State) bool {
	return loc == vantagev1.Location_LOCATION_PATH_SPECIFIC && raw == vantagev1.State_STATE_UNREACHABLE
}

// placedByRouting sets a network's or the scope's location from the BGP
// evidence (withdrawnAt), and reports whether it did.
func (e *Engine) placedByRouting(s *subject, n int64) bool {
	loc, addr := e.withdrawnAt(s, n)
	if addr == "" {
		return false
	}
	s.location, s.lastHop = loc, addr
	r := e.router(addr)
	what := "withdrew the paths through it"
	if loc == vantagev1.Location_LOCATION_TARGET_NETWORK {
		what = "the origin, withdrew its routes"
	}
	s.locNotes = append(s.locNotes, fmt.Sprintf("location %s from BGP: AS%d (%s) %s", strings.TrimPrefix(loc.String(), "LOCATION_"), r.GetAsn(), r.GetName(), what))
	return true
}
