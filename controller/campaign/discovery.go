package campaign

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// MaxSweep is the most addresses a campaign's discovery sweep may probe in
// all (a /16's worth).
const MaxSweep = 1 << 16

// Defaults of the discovery probes when the campaign has no probe of that
// kind to lend its settings.
const (
	defaultSweepTimeout = time.Second
	defaultDiscoverTTL  = 16
	// pendingRouters is what the budget check assumes upstreams: auto
	// will add (an upstream and a border); WithTargets checks the real
	// number.
	pendingRouters = 2
)

// sweepSize is how many addresses a sweep of p probes (every address but
// an IPv4 prefix's network and broadcast addresses, up to /30).
func sweepSize(path string, p netip.Prefix) (int, error) {
	host := p.Addr().BitLen() - p.Bits()
	if host > 16 {
		return 0, fieldErr(path, "%s is too large to sweep for targets.hosts.discover (more than %d addresses); list its hosts", p, MaxSweep)
	}
	n := 1 << host
	if p.Addr().Is4() && host >= 2 {
		n -= 2
	}
	return n, nil
}

// Network is one target network: its name and its prefixes, at most one
// IPv4 and one IPv6, in file order.
type Network struct {
	Name     string
	Prefixes []netip.Prefix
}

// Contains reports whether a is inside one of the network's prefixes.
func (n Network) Contains(a netip.Addr) bool {
	return slices.ContainsFunc(n.Prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
}

// DiscoverHosts reports targets.hosts.discover.
func (s *Spec) DiscoverHosts() bool { return s.targets.discover }

// UpstreamsAuto reports targets.upstreams: auto.
func (s *Spec) UpstreamsAuto() bool { return s.targets.upstreamsAuto }

// NeedsDiscovery reports whether the controller must discover targets
// before the campaign can run: hosts, upstreams, or both.
func (s *Spec) NeedsDiscovery() bool { return s.targets.discover || s.targets.upstreamsAuto }

// Discovered reports whether the spec carries discovered targets
// (WithTargets).
func (s *Spec) Discovered() bool { return s.discovered }

// PerNetwork is targets.hosts.per_network (0 when unset).
func (s *Spec) PerNetwork() int { return int(s.targets.perNetwork) }

// Networks lists the target networks in file order.
func (s *Spec) Networks() []Network {
	out := make([]Network, len(s.targets.networks))
	for i, nw := range s.targets.networks {
		out[i] = Network{Name: nw.name, Prefixes: slices.Clone(nw.prefixes)}
	}
	return out
}

// SweepNetworks lists the networks a discovery sweep covers, each with the
// prefixes to sweep: with targets.hosts.discover, every prefix without a
// listed host inside it (a dual-stack network may list its IPv6 hosts and
// have its IPv4 prefix swept); otherwise none.
func (s *Spec) SweepNetworks() []Network {
	if !s.targets.discover {
		return nil
	}
	var out []Network
	for _, nw := range s.targets.networks {
		var ps []netip.Prefix
		for _, p := range nw.prefixes {
			if nw.hostsIn(p) == 0 {
				ps = append(ps, p)
			}
		}
		if len(ps) > 0 {
			out = append(out, Network{Name: nw.name, Prefixes: ps})
		}
	}
	return out
}

// SweepProbe is the ICMP echo timeout and retries of the sweep: the
// campaign's icmp probe's, or 1s and no retry.
func (s *Spec) SweepProbe() (timeout time.Duration, retries int) {
	for _, p := range s.probes {
		if p.icmp != nil {
			return p.icmp.timeout, int(p.icmp.retries)
		}
	}
	return defaultSweepTimeout, 0
}

// DiscoveryTraceTTL is the max_ttl of upstream discovery traces: the
// campaign's trace probe's, or 16.
func (s *Spec) DiscoveryTraceTTL() int {
	for _, p := range s.probes {
		if p.trace != nil {
			return int(p.trace.maxTTL)
		}
	}
	return defaultDiscoverTTL
}

// AgentPPS is budget.agent_pps.
func (s *Spec) AgentPPS() float64 { return s.budget.agentPPS }

// pendingTargets is how many targets discovery may still add, for the
// budget check before it has run.
func (s *Spec) pendingTargets() int {
	if s.discovered {
		return 0
	}
	n := 0
	for _, nw := range s.SweepNetworks() {
		n += len(nw.Prefixes) * int(s.targets.perNetwork)
	}
	if s.targets.upstreamsAuto {
		n += pendingRouters
	}
	return n
}

// WithTargets returns a copy of the spec whose targets are the listed ones
// plus what discovery found: hosts (role HOST, Network naming a swept
// network one of whose swept prefixes holds the address) and, with
// upstreams: auto, routers (role UPSTREAM or BORDER, no network, named by
// RouterName so the name survives re-discovery). An address already
// listed keeps its listed role. The copy's budget is checked against the
// real number of targets. Targets keep the documented order: hosts network
// by network, then upstreams, borders and controls.
func (s *Spec) WithTargets(found []Target) (*Spec, error) {
	swept := map[string]Network{}
	for _, nw := range s.SweepNetworks() {
		swept[nw.Name] = nw
	}
	listed := map[netip.Addr]bool{}
	for _, t := range s.expanded {
		listed[t.Addr] = true
	}
	hosts := map[string][]Target{}
	var routers [2][]Target // UPSTREAM, BORDER
	seen := map[netip.Addr]bool{}
	for i, t := range found {
		path := fmt.Sprintf("discovered[%d]", i)
		if !t.Addr.IsValid() {
			return nil, fieldErr(path, "invalid address")
		}
		if listed[t.Addr] || seen[t.Addr] {
			continue
		}
		seen[t.Addr] = true
		switch t.Role {
		case vantagev1.TargetRole_TARGET_ROLE_HOST:
			nw, ok := swept[t.Network]
			if !ok || !nw.Contains(t.Addr) {
				return nil, fieldErr(path, "host %s is not inside a swept network (network %q)", t.Addr, t.Network)
			}
			hosts[t.Network] = append(hosts[t.Network], t)
		case vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, vantagev1.TargetRole_TARGET_ROLE_BORDER:
			if !s.targets.upstreamsAuto {
				return nil, fieldErr(path, "router %s found, but targets.upstreams is not auto", t.Addr)
			}
			t.Network, t.Name = "", RouterName(t.Role, t.Addr)
			i := 0
			if t.Role == vantagev1.TargetRole_TARGET_ROLE_BORDER {
				i = 1
			}
			routers[i] = append(routers[i], t)
		default:
			return nil, fieldErr(path, "role %s cannot be discovered", t.Role)
		}
	}
	out := make([]Target, 0, len(s.expanded)+len(found))
	byNet := map[string][]Target{}
	var tail [3][]Target // upstreams, borders, controls
	for _, t := range s.expanded {
		switch t.Role {
		case vantagev1.TargetRole_TARGET_ROLE_HOST:
			byNet[t.Network] = append(byNet[t.Network], t)
		case vantagev1.TargetRole_TARGET_ROLE_UPSTREAM:
			tail[0] = append(tail[0], t)
		case vantagev1.TargetRole_TARGET_ROLE_BORDER:
			tail[1] = append(tail[1], t)
		default:
			tail[2] = append(tail[2], t)
		}
	}
	for _, nw := range s.targets.networks {
		out = append(out, byNet[nw.name]...)
		out = append(out, hosts[nw.name]...)
	}
	out = append(append(out, tail[0]...), routers[0]...)
	out = append(append(out, tail[1]...), routers[1]...)
	out = append(out, tail[2]...)
	if len(out) > MaxTargets {
		return nil, fieldErr("targets", "expands to %d targets with the discovered ones, more than the limit of %d", len(out), MaxTargets)
	}
	c := *s
	c.expanded = slices.Clip(out)
	c.discovered = true
	if err := c.validateBudget(c.expanded); err != nil {
		return nil, err
	}
	return &c, nil
}
