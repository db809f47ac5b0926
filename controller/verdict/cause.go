package verdict

import (
	"fmt"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The cause rules: which of the four questions asked of North Korea's
// outage in December 2014 (did it switch itself off, did its upstream,
// did its routers fail, was it an attack?) the evidence of one DEGRADED or
// UNREACHABLE episode supports. Cause is pure: it reads a CauseEvidence
// and nothing else, so every rule has a table test (cause_test.go).

// Thresholds of the cause rules.
const (
	// CauseHistoryRounds is how many rounds before an episode's onset tell
	// an abrupt loss (none of them DEGRADED) from a gradual one.
	CauseHistoryRounds = 3
	// causeMinKnown: at least this many of those rounds must have a
	// verdict, or abruptness is not known.
	causeMinKnown = 2
	// CauseMaxEscalation: an abrupt loss reaches its state within this
	// many rounds of the episode's first bad round (the fault's own partial
	// first round, and one more for silence, weaker evidence than an
	// explicit unreachable, to convince the beliefs); a slower one is a
	// decline, not a failure.
	CauseMaxEscalation = 2
	// CauseRisingRounds and CauseRisingVantages: loss and RTT rose
	// together at >= CauseRisingVantages vantages (and at least half of
	// those with data) in >= CauseRisingRounds rounds, before or during
	// the outage, for ATTACK_OR_CONGESTION.
	CauseRisingRounds   = 3
	CauseRisingVantages = 2
)

// QualityRound is one round of the quality trend toward a subject (its
// hosts and its border), from the loss and RTT series (quality*.go).
type QualityRound struct {
	Round int64
	// Vantages had a quality sample this round; LossUp and RTTUp of them
	// saw loss, and RTT, above the subject's own baseline.
	Vantages, LossUp, RTTUp int
}

// UpstreamState is one upstream's part in an episode: whether its paths
// die (UpstreamView.dead) and whether its own addresses still answer.
type UpstreamState struct {
	Name    string
	Dead    bool
	Answers bool
}

// CauseEvidence is everything the cause rules read about one episode.
type CauseEvidence struct {
	// State is the subject's raw state (DEGRADED or UNREACHABLE).
	State vantagev1.State
	// Location is where the paths die; Traced: placed by this round's or
	// the last round's traces, not provisional.
	Location vantagev1.Location
	Traced   bool
	// Hop is the router the location names (nil for none).
	Hop *vantagev1.Router
	// UpstreamsUp of Upstreams UPSTREAM targets answer (REACHABLE or
	// DEGRADED); BordersUp of Borders BORDER targets. A target without a
	// verdict counts in neither.
	UpstreamsUp, Upstreams int
	BordersUp, Borders     int
	// Views: per upstream, from the traces (multi-homed scopes).
	Views []UpstreamState
	// Onset is the episode's first round (DEGRADED or UNREACHABLE since);
	// of the CauseHistoryRounds rounds before it, Known had a verdict and
	// Degraded were DEGRADED (the subject or a border). Escalation is how
	// many rounds after Onset the current state began (0: the episode
	// began in it; DEGRADED then UNREACHABLE two rounds later: 2).
	Onset           int64
	Escalation      int64
	Known, Degraded int
	// Quality is the loss/RTT trend from CauseHistoryRounds before the
	// onset to now (nil until the quality series are wired: qualityTrend).
	Quality []QualityRound
	// BGP is what the routing shows of the subject's prefixes at the
	// round's end (RoutingFinding); nil without a BGP view.
	BGP *vantagev1.BgpEvidence
}

// rising counts the rounds in which loss and RTT rose together at enough
// vantages.
func (ev CauseEvidence) rising() int {
	n := 0
	for _, q := range ev.Quality {
		both := min(q.LossUp, q.RTTUp)
		if both >= CauseRisingVantages && 2*both >= q.Vantages {
			n++
		}
	}
	return n
}

// deadUpstreams names the upstreams whose paths die while the upstream
// itself answers, and counts those still carrying networks.
func (ev CauseEvidence) deadUpstreams() (dead []string, live int) {
	for _, v := range ev.Views {
		switch {
		case v.Dead && v.Answers:
			dead = append(dead, v.Name)
		case !v.Dead:
			live++
		}
	}
	return dead, live
}

// upstreamPattern: paths die at or just before an upstream that answers,
// while the country's border (if the campaign has one) answers too.
func (ev CauseEvidence) upstreamPattern() bool {
	if !ev.Traced || ev.UpstreamsUp == 0 || (ev.Borders > 0 && ev.BordersUp == 0) {
		return false
	}
	switch ev.Location {
	case vantagev1.Location_LOCATION_UPSTREAM:
		return true
	case vantagev1.Location_LOCATION_PATH_SPECIFIC:
		dead, live := ev.deadUpstreams()
		return len(dead) > 0 && live > 0
	}
	return false
}

// Cause applies the rules, in this order, and returns the finding with
// its evidence in words:
//   - BGP (RoutingFinding) says the origin withdrew: SELF; an upstream AS
//     withdrew the paths through it: UPSTREAM; the origin or its sole
//     upstream withdrew everything, and the traces do not place the fault
//     at an upstream: UNDETERMINED, saying so;
//   - loss and RTT rose together (rising >= CauseRisingRounds) and the
//     paths die at an answering upstream: UNDETERMINED (congestion at the
//     upstream or its withdrawal; the evidence does not separate them),
//     unless BGP says the routes stay announced;
//   - loss and RTT rose together: ATTACK_OR_CONGESTION;
//   - traces place the fault at an upstream (UPSTREAM, or PATH_SPECIFIC
//     with one upstream's paths dead and another's alive), an upstream
//     answers, and the border answers (or the campaign has none): UPSTREAM;
//   - traces place it inside the country (TARGET_NETWORK) and a border
//     answers: SELF;
//   - every border target is silent, the location is not VANTAGE, and the
//     rounds before the onset were known and none DEGRADED: FAILURE (more
//     confident when BGP says the routes stay announced); with
//     degradation before, or too little history: UNDETERMINED;
//   - anything else: UNDETERMINED, saying what is missing.
func Cause(ev CauseEvidence) *vantagev1.CauseFinding {
	f := &vantagev1.CauseFinding{Cause: vantagev1.Cause_CAUSE_UNDETERMINED, Evidence: ev.describe(), Bgp: ev.BGP}
	why := func(c vantagev1.Cause, conf float64, reason string) *vantagev1.CauseFinding {
		f.Cause, f.Confidence = c, conf
		f.Evidence = append(f.Evidence, reason)
		return f
	}
	rising := ev.rising()
	bordersSilent := ev.Borders > 0 && ev.BordersUp == 0
	switch {
	case ev.bgpIs(vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW):
		return why(vantagev1.Cause_CAUSE_SELF, 0.9, fmt.Sprintf("self: the origin AS%d withdrew its routes", ev.BGP.GetOriginAs()))
	case ev.bgpIs(vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW):
		return why(vantagev1.Cause_CAUSE_UPSTREAM, 0.9, fmt.Sprintf("upstream: AS%d withdrew the paths through it, while the origin AS%d still announces", ev.BGP.GetWithdrawingAs(), ev.BGP.GetOriginAs()))
	case ev.bgpIs(vantagev1.BgpFinding_BGP_FINDING_ORIGIN_OR_SOLE_UPSTREAM) && !ev.upstreamPattern():
		return why(vantagev1.Cause_CAUSE_UNDETERMINED, 0, fmt.Sprintf("undetermined: every route of AS%d went, all through AS%d: the origin or its sole upstream withdrew them, and the traces do not say which", ev.BGP.GetOriginAs(), ev.BGP.GetWithdrawingAs()))
	case rising >= CauseRisingRounds && ev.upstreamPattern() && !ev.bgpIs(vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED):
		return why(vantagev1.Cause_CAUSE_UNDETERMINED, 0, "undetermined: loss and RTT rose together, yet the paths die at an upstream that answers: congestion at the upstream or its withdrawal")
	case rising >= CauseRisingRounds:
		return why(vantagev1.Cause_CAUSE_ATTACK_OR_CONGESTION, min(0.6+0.05*float64(rising-CauseRisingRounds), 0.8),
			fmt.Sprintf("attack or congestion: loss and RTT rose together at %d+ vantages in %d rounds", CauseRisingVantages, rising))
	case ev.upstreamPattern():
		conf := 0.9
		if ev.Borders == 0 {
			conf = 0.7 // no border target to confirm the country's side is alive
		}
		return why(vantagev1.Cause_CAUSE_UPSTREAM, conf, "upstream: the paths die at an upstream that itself answers; the country's side is unreachable through it")
	case ev.Traced && ev.Location == vantagev1.Location_LOCATION_TARGET_NETWORK && ev.BordersUp > 0:
		return why(vantagev1.Cause_CAUSE_SELF, 0.85, "self: the country's border answers, the hosts inside do not")
	case bordersSilent && ev.Location != vantagev1.Location_LOCATION_VANTAGE:
		switch {
		case ev.Known < causeMinKnown:
			return why(vantagev1.Cause_CAUSE_UNDETERMINED, 0, fmt.Sprintf("undetermined: the border is silent, but only %d of the %d rounds before the onset have a verdict: abruptness unknown", ev.Known, CauseHistoryRounds))
		case ev.Degraded > 0:
			return why(vantagev1.Cause_CAUSE_UNDETERMINED, 0, "undetermined: the border is silent after a degradation (not the abrupt loss of a failure), and no joint loss/RTT rise says attack")
		case ev.Escalation > CauseMaxEscalation:
			return why(vantagev1.Cause_CAUSE_UNDETERMINED, 0, fmt.Sprintf("undetermined: the border went silent %d rounds into the episode (a decline, not the abrupt loss of a failure), and no joint loss/RTT rise says attack", ev.Escalation))
		}
		conf := 0.8
		if !ev.Traced {
			conf = 0.65
		}
		if ev.bgpIs(vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED) {
			return why(vantagev1.Cause_CAUSE_FAILURE, conf+0.1, "failure: an abrupt loss, no degradation before it, the border itself stopped answering, and its routes stay announced: the data plane died, not the routing")
		}
		return why(vantagev1.Cause_CAUSE_FAILURE, conf, "failure: an abrupt loss, no degradation before it, and the border itself stopped answering")
	}
	return why(vantagev1.Cause_CAUSE_UNDETERMINED, 0, "undetermined: "+ev.missing())
}

// bgpIs: the routing evidence's finding is f.
func (ev CauseEvidence) bgpIs(f vantagev1.BgpFinding) bool {
	return ev.BGP != nil && ev.BGP.GetFinding() == f
}

// missing says why no rule applied.
func (ev CauseEvidence) missing() string {
	switch {
	case !ev.Traced && ev.Borders == 0:
		return "no traces place the outage yet, and the campaign has no border target"
	case !ev.Traced:
		return "no traces place the outage yet, and the border answers"
	case ev.Location == vantagev1.Location_LOCATION_TARGET_NETWORK && ev.Borders == 0:
		return "the paths die past the upstream, but the campaign has no border target to tell SELF from FAILURE"
	case ev.Location == vantagev1.Location_LOCATION_UPSTREAM && ev.UpstreamsUp == 0:
		return "the paths die at the upstream, and the upstream is silent too"
	case ev.Location == vantagev1.Location_LOCATION_PATH_SPECIFIC:
		return "some paths die and others do not, and no one upstream's paths all die"
	case ev.Location == vantagev1.Location_LOCATION_VANTAGE:
		return "only vantages' own paths fail"
	}
	return fmt.Sprintf("location %s does not separate the causes", strings.TrimPrefix(ev.Location.String(), "LOCATION_"))
}

// describe is the evidence in words, whatever the finding.
func (ev CauseEvidence) describe() []string {
	loc := strings.TrimPrefix(ev.Location.String(), "LOCATION_")
	how := "provisional, no fresh traces"
	if ev.Traced {
		how = "from traces"
	}
	out := []string{fmt.Sprintf("location %s (%s)", loc, how)}
	if h := ev.Hop; h != nil {
		out = append(out, "paths die at "+routerWords(h))
	}
	out = append(out, fmt.Sprintf("upstream targets answering: %d of %d", ev.UpstreamsUp, ev.Upstreams))
	if ev.Borders > 0 {
		out = append(out, fmt.Sprintf("border targets answering: %d of %d", ev.BordersUp, ev.Borders))
	} else {
		out = append(out, "no border target in the campaign")
	}
	for _, v := range ev.Views {
		switch {
		case v.Dead && v.Answers:
			out = append(out, fmt.Sprintf("upstream %s answers, but the paths through it die", v.Name))
		case v.Dead:
			out = append(out, fmt.Sprintf("upstream %s is silent and the paths through it die", v.Name))
		default:
			out = append(out, fmt.Sprintf("upstream %s still carries networks", v.Name))
		}
	}
	out = append(out, fmt.Sprintf("before the onset (round %d): %d of %d rounds known, %d DEGRADED", ev.Onset, ev.Known, CauseHistoryRounds, ev.Degraded))
	if ev.Escalation > 0 {
		out = append(out, fmt.Sprintf("the episode reached %s %d round(s) after its onset", strings.TrimPrefix(ev.State.String(), "STATE_"), ev.Escalation))
	}
	if ev.BGP != nil {
		for _, line := range ev.BGP.GetSummary() {
			out = append(out, "BGP: "+line)
		}
	}
	if ev.Quality == nil {
		out = append(out, "no loss/RTT series")
	} else {
		out = append(out, fmt.Sprintf("loss and RTT rose together in %d of %d rounds", ev.rising(), len(ev.Quality)))
	}
	return out
}

// routerWords is "upstream unicom (198.51.100.42)", or the bare address.
func routerWords(r *vantagev1.Router) string {
	role := strings.ToLower(strings.TrimPrefix(r.GetRole().String(), "TARGET_ROLE_"))
	switch {
	case r.GetRole() == vantagev1.TargetRole_TARGET_ROLE_UNSPECIFIED:
		return r.GetAddress()
	case r.GetName() != "":
		return fmt.Sprintf("%s %s (%s)", role, r.GetName(), r.GetAddress())
	}
	return role + " " + r.GetAddress()
}
