package verdict

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Routing is the BGP view the engine joins to its verdicts (the
// controller's bgp.RIB, or on replay one rebuilt from stored updates).
// States returns the state of each prefix at t, in order, from what was
// recorded at or before t, so that a replay of the same updates gives the
// same evidence.
type Routing interface {
	States(prefixes []netip.Prefix, t time.Time) []*vantagev1.BgpPrefixState
}

// Thresholds of the routing findings.
const (
	// RoutingUnstableRate and RoutingUnstableFactor: a subject's prefixes
	// are unstable when their update rate is at least this many per
	// minute and this many times their baseline (Dyn's "steady beat of
	// routing instability": a quiet prefix sees a few updates an hour).
	RoutingUnstableRate   = 6.0
	RoutingUnstableFactor = 4.0
	// RoutingRateWindow is the window the rates are over (the bgp.RIB's
	// default RateWindow). A subject must have been REACHABLE this long
	// for BGP alone to make it UNSTABLE.
	RoutingRateWindow = time.Minute
)

// RoutingFinding says what the routing shows of a subject whose prefixes
// are in subject; all is every monitored prefix of the campaign (the
// origin's other prefixes tell an upstream's withdrawal from the
// origin's). The rules, in order:
//   - no full-feed peer has a session up: NO_DATA;
//   - every prefix visible: UNSTABLE if their update rate is high,
//     ANNOUNCED otherwise;
//   - a withdrawn prefix is still held by a partial peer (a monitor
//     session with a router on its last path): that AS stopped exporting
//     it: UPSTREAM_WITHDREW, naming it;
//   - the origin's other prefixes stay visible through other upstream
//     ASes than the withdrawn ones' (their last paths' AS next to the
//     origin): UPSTREAM_WITHDREW; through the same: the origin withdrew
//     these (ORIGIN_WITHDREW);
//   - nothing of the origin stays visible: through two or more upstream
//     ASes at once, ORIGIN_WITHDREW (the origin is what they share);
//     through one, ORIGIN_OR_SOLE_UPSTREAM (BGP alone cannot tell which).
//
// It returns nil when the subject has no prefixes.
func RoutingFinding(subject, all []*vantagev1.BgpPrefixState) *vantagev1.BgpEvidence {
	if len(subject) == 0 {
		return nil
	}
	ev := &vantagev1.BgpEvidence{Prefixes: subject}
	var gone []*vantagev1.BgpPrefixState
	peers := uint32(0)
	for _, s := range subject {
		peers = max(peers, s.GetPeers())
		if s.GetPeers() > 0 && !s.GetVisible() {
			gone = append(gone, s)
		}
		if ev.OriginAs == 0 {
			ev.OriginAs = s.GetOriginAs()
		}
	}
	switch {
	case peers == 0:
		ev.Finding = vantagev1.BgpFinding_BGP_FINDING_NO_DATA
		ev.Summary = []string{"no BGP data: no full-feed peer has a session up"}
		return ev
	case len(gone) == 0:
		return announced(ev, subject)
	}
	for _, s := range gone {
		ev.Summary = append(ev.Summary, describeWithdrawn(s))
		if w := s.GetLastChange(); w != nil && (ev.WithdrawnAt == nil || w.AsTime().After(ev.WithdrawnAt.AsTime())) {
			ev.WithdrawnAt = w
		}
	}
	ev.OriginAs = gone[0].GetOriginAs()
	ev.Finding, ev.WithdrawingAs = withdrawal(gone, all, ev.OriginAs)
	ev.Summary = append(ev.Summary, findingWords(ev, holders(gone)))
	return ev
}

// announced: every prefix of the subject is visible.
func announced(ev *vantagev1.BgpEvidence, subject []*vantagev1.BgpPrefixState) *vantagev1.BgpEvidence {
	ev.Finding = vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED
	for _, s := range subject {
		ev.Summary = append(ev.Summary, fmt.Sprintf("%s announced by %d of %d peers; path %s", s.GetPrefix(),
			s.GetPeersWithRoute(), s.GetPeers(), pathWords(s.GetLastPath())))
		if line := instability(s); line != "" {
			ev.Finding = vantagev1.BgpFinding_BGP_FINDING_UNSTABLE
			ev.Summary = append(ev.Summary, line)
		}
	}
	return ev
}

// instability describes s's update rate when it is far above its
// baseline, and is "" otherwise.
func instability(s *vantagev1.BgpPrefixState) string {
	rate, base := s.GetUpdatesPerMinute(), s.GetBaselinePerMinute()
	if rate < RoutingUnstableRate || rate < RoutingUnstableFactor*base {
		return ""
	}
	return fmt.Sprintf("%s: %.0f updates a minute against a baseline of %.1f: routing instability", s.GetPrefix(), rate, base)
}

// Instability lists the prefixes of ev whose update rate is far above
// their baseline, in words, whatever their visibility: a prefix that
// flaps is withdrawn half the time.
func Instability(ev *vantagev1.BgpEvidence) []string {
	var out []string
	for _, s := range ev.GetPrefixes() {
		if line := instability(s); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// withdrawal applies the rules to the withdrawn prefixes gone of origin.
func withdrawal(gone, all []*vantagev1.BgpPrefixState, origin uint32) (vantagev1.BgpFinding, uint32) {
	if as := smallest(holders(gone)); as != 0 {
		return vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, as
	}
	withdrawn := map[uint32]bool{}
	for _, s := range gone {
		if as := pathUpstream(s.GetLastPath()); as != 0 {
			withdrawn[as] = true
		}
	}
	carrying := map[uint32]bool{} // upstream ASes still carrying the origin's other prefixes
	for _, s := range all {
		if !s.GetVisible() || s.GetOriginAs() != origin {
			continue
		}
		for _, r := range s.GetRoutes() {
			if as := pathUpstream(r.GetAsPath()); as != 0 && r.GetFullFeed() {
				carrying[as] = true
			}
		}
	}
	first := smallest(withdrawn)
	switch {
	case len(carrying) == 0 && len(withdrawn) == 1:
		return vantagev1.BgpFinding_BGP_FINDING_ORIGIN_OR_SOLE_UPSTREAM, first
	case len(carrying) == 0:
		return vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW, 0
	}
	for as := range withdrawn {
		if carrying[as] {
			return vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW, 0
		}
	}
	if first == 0 {
		return vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW, 0 // the origin peers the collector itself
	}
	return vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, first
}

// holders are the ASes of partial peers that still have a route to a
// withdrawn prefix, learned from its origin (they stopped exporting it).
func holders(gone []*vantagev1.BgpPrefixState) map[uint32]bool {
	held := map[uint32]bool{}
	for _, s := range gone {
		for _, r := range s.GetRoutes() {
			if !r.GetFullFeed() && len(r.GetAsPath()) > 0 && r.GetAsPath()[0] == r.GetPeerAs() && r.GetOriginAs() == s.GetOriginAs() {
				held[r.GetPeerAs()] = true
			}
		}
	}
	return held
}

// pathUpstream is the AS next to the origin on a path (0 for a path of one
// AS or none).
func pathUpstream(path []uint32) uint32 {
	if len(path) < 2 {
		return 0
	}
	return path[len(path)-2]
}

func smallest(set map[uint32]bool) uint32 {
	var out uint32
	for as := range set {
		if out == 0 || as < out {
			out = as
		}
	}
	return out
}

func describeWithdrawn(s *vantagev1.BgpPrefixState) string {
	at := "at an unknown time"
	if lc := s.GetLastChange(); lc != nil {
		at = "at " + lc.AsTime().UTC().Format("15:04:05Z")
	}
	return fmt.Sprintf("%s withdrawn by %d of %d peers %s; last path %s; origin AS%d", s.GetPrefix(),
		s.GetPeers()-s.GetPeersWithRoute(), s.GetPeers(), at, pathWords(s.GetLastPath()), s.GetOriginAs())
}

func findingWords(ev *vantagev1.BgpEvidence, held map[uint32]bool) string {
	switch ev.GetFinding() {
	case vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW:
		if len(held) > 1 {
			return fmt.Sprintf("%s withdrew the paths through them, still holding the origin AS%d's routes", asList(held), ev.GetOriginAs())
		}
		if len(held) == 1 {
			return fmt.Sprintf("AS%d withdrew the paths through it, still holding the origin AS%d's routes", ev.GetWithdrawingAs(), ev.GetOriginAs())
		}
		return fmt.Sprintf("AS%d withdrew the paths through it; the origin AS%d still announces through others", ev.GetWithdrawingAs(), ev.GetOriginAs())
	case vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW:
		return fmt.Sprintf("the origin AS%d withdrew them", ev.GetOriginAs())
	case vantagev1.BgpFinding_BGP_FINDING_ORIGIN_OR_SOLE_UPSTREAM:
		return fmt.Sprintf("everything of AS%d went, all of it through AS%d: the origin or its sole upstream withdrew", ev.GetOriginAs(), ev.GetWithdrawingAs())
	}
	return ""
}

// asList is "AS64501 and AS64502" (sorted).
func asList(set map[uint32]bool) string {
	var as []int
	for a := range set {
		as = append(as, int(a))
	}
	sort.Ints(as)
	w := make([]string, len(as))
	for i, a := range as {
		w[i] = "AS" + strconv.Itoa(a)
	}
	if len(w) <= 1 {
		return strings.Join(w, "")
	}
	return strings.Join(w[:len(w)-1], ", ") + " and " + w[len(w)-1]
}

func pathWords(path []uint32) string {
	if len(path) == 0 {
		return "(none)"
	}
	w := make([]string, len(path))
	for i, as := range path {
		w[i] = strconv.FormatUint(uint64(as), 10)
	}
	return strings.Join(w, " ")
}

// roundRouting is one round's prefix states of every network, fetched
// from Config.Routing once, when the first subject needs them.
type roundRouting struct {
	round     int64
	all       []*vantagev1.BgpPrefixState
	byNetwork map[string][]*vantagev1.BgpPrefixState
}

// routingEvidence is s's BGP evidence at round n's end: a network's
// prefixes, or for the scope every network's; nil without a BGP view or
// prefixes.
func (e *Engine) routingEvidence(s *subject, n int64) *vantagev1.BgpEvidence {
	if e.cfg.Routing == nil || len(e.cfg.Prefixes) == 0 {
		return nil
	}
	if e.routing == nil || e.routing.round != n {
		e.routing = e.fetchRouting(n)
	}
	subject := e.routing.all
	if s != e.scope {
		subject = e.routing.byNetwork[s.name]
	}
	return RoutingFinding(subject, e.routing.all)
}

func (e *Engine) fetchRouting(n int64) *roundRouting {
	var prefixes []netip.Prefix
	var owner []string
	for _, name := range e.cfg.Networks {
		for _, p := range e.cfg.Prefixes[name] {
			prefixes, owner = append(prefixes, p), append(owner, name)
		}
	}
	at := time.Unix(0, e.start+(n+1)*e.roundLen)
	rr := &roundRouting{round: n, all: e.cfg.Routing.States(prefixes, at), byNetwork: map[string][]*vantagev1.BgpPrefixState{}}
	for i, st := range rr.all {
		if i < len(owner) {
			rr.byNetwork[owner[i]] = append(rr.byNetwork[owner[i]], st)
		}
	}
	return rr
}

// withdrawnAt is where the routing places s's outage at round n's end:
// an upstream AS withdrew the paths through it (UPSTREAM, at the campaign
// upstream with that asn:), or the origin withdrew its routes
// (TARGET_NETWORK, at the campaign border with the origin's asn:); ""
// when it places nothing a campaign router names.
func (e *Engine) withdrawnAt(s *subject, n int64) (vantagev1.Location, string) {
	if len(e.cfg.RouterASNs) == 0 {
		return vantagev1.Location_LOCATION_UNSPECIFIED, ""
	}
	ev := e.routingEvidence(s, n)
	role, as, loc := vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, ev.GetWithdrawingAs(), vantagev1.Location_LOCATION_UPSTREAM
	switch ev.GetFinding() {
	case vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW:
	case vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW:
		role, as, loc = vantagev1.TargetRole_TARGET_ROLE_BORDER, ev.GetOriginAs(), vantagev1.Location_LOCATION_TARGET_NETWORK
	default:
		return vantagev1.Location_LOCATION_UNSPECIFIED, ""
	}
	for _, ti := range e.upstreams {
		t := e.cfg.Targets[ti]
		if t.Role == role && t.Name != "" && e.cfg.RouterASNs[t.Name] == as {
			return loc, t.Addr
		}
	}
	return vantagev1.Location_LOCATION_UNSPECIFIED, ""
}
