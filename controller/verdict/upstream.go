package verdict

import (
	"fmt"
	"slices"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// This file names the routers of a location and, for a multi-homed scope,
// says through which upstream each network's paths go and whose paths die
// (Verdict.location_hop, Verdict.upstreams). It reads the traces the
// engine keeps (locate.go) and the vantages' views; it changes nothing.

// isRouter reports whether role is UPSTREAM or BORDER.
func isRouter(r vantagev1.TargetRole) bool {
	return r == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || r == vantagev1.TargetRole_TARGET_ROLE_BORDER
}

// router is addr as a vantagev1.Router: with its campaign role and name
// when it is a campaign target, bare otherwise.
func (e *Engine) router(addr string) *vantagev1.Router {
	r := &vantagev1.Router{Address: addr}
	if ti, ok := e.targetIdx[addr]; ok && isRouter(e.targets[ti].role) {
		r.Role, r.Name = e.targets[ti].role, e.cfg.Targets[ti].Name
		r.Asn = e.cfg.RouterASNs[r.Name]
	}
	return r
}

// upstreamName is the name an UPSTREAM target's paths are grouped by: its
// campaign name, or its address when it has none.
func (e *Engine) upstreamName(ti int) string {
	if n := e.cfg.Targets[ti].Name; n != "" {
		return n
	}
	return e.targets[ti].name
}

// upstreamOn is the first UPSTREAM target on a path, -1 for none.
func (e *Engine) upstreamOn(hops []Hop) int {
	for _, h := range hops {
		if ti, ok := e.targetIdx[h.Addr]; ok && e.targets[ti].role == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM {
			return ti
		}
	}
	return -1
}

// crossed is the UPSTREAM target a vantage's path toward a target goes
// through: on the latest trace if it got that far, else on the last path
// that did (the baseline: a path that dies before the upstream was meant
// to cross it); -1 when no trace says.
func (e *Engine) crossed(tr *trace) int {
	if u := e.upstreamOn(tr.hops); u >= 0 {
		return u
	}
	return e.upstreamOn(tr.baseline)
}

// deadPaths lists the healthy vantages' fresh traces toward s's affected
// targets that did not reach them (the paths locate classified).
func (e *Engine) deadPaths(s *subject) []*trace {
	var out []*trace
	for _, a := range e.sortedAgents() {
		if a.status != stHealthy {
			continue
		}
		for _, t := range e.hostsOf(s) {
			tr := a.traces[t]
			if tr == nil || tr.reached || tr.round < s.badSince-1 || e.targets[t].raw == vantagev1.State_STATE_REACHABLE {
				continue
			}
			out = append(out, tr)
		}
	}
	return out
}

// hostsOf lists the targets s is about: itself, a network's hosts, or every
// host of the scope.
func (e *Engine) hostsOf(s *subject) []int {
	switch s.level {
	case vantagev1.Level_LEVEL_TARGET:
		return []int{s.target}
	case vantagev1.Level_LEVEL_NETWORK:
		return s.children
	}
	var out []int
	for _, ni := range s.children {
		out = append(out, e.networks[ni].children...)
	}
	return out
}

// locationHop is the router s's location names, nil when it names none:
//   - UPSTREAM: the upstream the dead paths were to cross (the first
//     UPSTREAM target on each one's latest or baseline path, the most
//     common), or the last responsive hop when it is a campaign router, or
//     the campaign's only upstream;
//   - TARGET_NETWORK: the deepest campaign router the dead paths still
//     reached (the border, if they got that far);
//   - PATH_SPECIFIC: the upstream whose paths all die, when exactly one
//     does (views), else the last responsive hop;
//   - TRANSIT and VANTAGE: the last responsive hop, if any.
func (e *Engine) locationHop(s *subject, views []*vantagev1.UpstreamView) *vantagev1.Router {
	var hop string
	switch s.location {
	case vantagev1.Location_LOCATION_UPSTREAM:
		hop = e.upstreamHop(s)
	case vantagev1.Location_LOCATION_TARGET_NETWORK:
		hop = e.deepestRouter(s)
	case vantagev1.Location_LOCATION_PATH_SPECIFIC:
		var dead []*vantagev1.UpstreamView
		for _, v := range views {
			if v.GetDead() {
				dead = append(dead, v)
			}
		}
		if len(dead) == 1 && len(dead[0].GetAddresses()) > 0 {
			hop = dead[0].GetAddresses()[0]
		}
	case vantagev1.Location_LOCATION_TRANSIT, vantagev1.Location_LOCATION_VANTAGE:
	default:
		return nil
	}
	if hop == "" {
		hop = s.lastHop
	}
	if hop == "" {
		return nil
	}
	return e.router(hop)
}

// upstreamHop: see locationHop (UPSTREAM).
func (e *Engine) upstreamHop(s *subject) string {
	var ups []string
	for _, tr := range e.deadPaths(s) {
		if u := e.crossed(tr); u >= 0 {
			ups = append(ups, e.targets[u].name)
		}
	}
	if u := mostCommon(ups); u != "" {
		return u
	}
	if ti, ok := e.targetIdx[s.lastHop]; ok && isRouter(e.targets[ti].role) {
		return s.lastHop
	}
	names := map[string]bool{}
	only := ""
	for _, u := range e.upstreams {
		if e.targets[u].role == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM {
			names[e.upstreamName(u)], only = true, e.targets[u].name
		}
	}
	if len(names) == 1 {
		return only
	}
	return ""
}

// deepestRouter: see locationHop (TARGET_NETWORK).
func (e *Engine) deepestRouter(s *subject) string {
	var found []string
	for _, tr := range e.deadPaths(s) {
		best, bestRole := "", vantagev1.TargetRole_TARGET_ROLE_UNSPECIFIED
		for _, h := range tr.hops {
			ti, ok := e.targetIdx[h.Addr]
			if !ok || !isRouter(e.targets[ti].role) {
				continue
			}
			if r := e.targets[ti].role; best == "" || r == vantagev1.TargetRole_TARGET_ROLE_BORDER || bestRole != vantagev1.TargetRole_TARGET_ROLE_BORDER {
				best, bestRole = h.Addr, r
			}
		}
		if best != "" {
			found = append(found, best)
		}
	}
	return mostCommon(found)
}

// upstreamPaths is what one upstream's paths show for one subject.
type upstreamPaths struct {
	name     string
	addrs    []string
	up, down map[string]bool // networks with a path through it that a vantage sees up / down
	paths    int
}

// upstreamViews lists, per upstream of the campaign, the networks of s
// whose paths go through it and which of them still answer: a path is one
// healthy vantage's latest trace toward one host of s, its upstream the one
// it crossed (crossed), up or down as that vantage sees the host now. An
// upstream is dead when some network's paths through it are down and none
// is up. Upstreams no path crosses are left out; nil when no path crosses
// any. Order: the campaign's.
func (e *Engine) upstreamViews(s *subject) []*vantagev1.UpstreamView {
	byName := map[string]*upstreamPaths{}
	var order []*upstreamPaths
	for _, u := range e.upstreams {
		if e.targets[u].role != vantagev1.TargetRole_TARGET_ROLE_UPSTREAM {
			continue
		}
		n := e.upstreamName(u)
		p := byName[n]
		if p == nil {
			p = &upstreamPaths{name: n, up: map[string]bool{}, down: map[string]bool{}}
			byName[n] = p
			order = append(order, p)
		}
		p.addrs = append(p.addrs, e.targets[u].name)
	}
	if len(order) == 0 {
		return nil
	}
	seen := false
	for _, a := range e.sortedAgents() {
		if a.status != stHealthy {
			continue
		}
		for _, t := range e.hostsOf(s) {
			tr := a.traces[t]
			if tr == nil {
				continue
			}
			u := e.crossed(tr)
			if u < 0 {
				continue
			}
			p := byName[e.upstreamName(u)]
			nw := e.targets[t].network
			switch e.view(a, t) {
			case viewUp:
				p.up[nw], p.paths, seen = true, p.paths+1, true
			case viewDown:
				p.down[nw], p.paths, seen = true, p.paths+1, true
			}
		}
	}
	if !seen {
		return nil
	}
	var out []*vantagev1.UpstreamView
	for _, p := range order {
		if p.paths == 0 {
			continue
		}
		v := &vantagev1.UpstreamView{Name: p.name, Addresses: p.addrs}
		for nw := range p.up {
			v.NetworksUp = append(v.NetworksUp, nw)
		}
		for nw := range p.down {
			if !p.up[nw] {
				v.NetworksDown = append(v.NetworksDown, nw)
			}
		}
		slices.Sort(v.NetworksUp)
		slices.Sort(v.NetworksDown)
		v.Dead = len(v.NetworksUp) == 0 && len(v.NetworksDown) > 0
		out = append(out, v)
	}
	return out
}

// upstreamAnswers reports whether an upstream (by name) has an address
// that answers (REACHABLE or DEGRADED).
func (e *Engine) upstreamAnswers(name string) bool {
	for _, u := range e.upstreams {
		if e.targets[u].role == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM && e.upstreamName(u) == name {
			if r := e.targets[u].raw; r == vantagev1.State_STATE_REACHABLE || r == vantagev1.State_STATE_DEGRADED {
				return true
			}
		}
	}
	return false
}

// describeViews is the upstream views in words, for notes and evidence.
func describeViews(views []*vantagev1.UpstreamView) []string {
	var out []string
	for _, v := range views {
		what := "carries"
		if v.GetDead() {
			what = "paths die:"
		}
		out = append(out, fmt.Sprintf("upstream %s %s %d network(s) up %v, %d down %v", v.GetName(), what,
			len(v.GetNetworksUp()), v.GetNetworksUp(), len(v.GetNetworksDown()), v.GetNetworksDown()))
	}
	return out
}
