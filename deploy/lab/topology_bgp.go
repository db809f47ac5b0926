package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// DefaultBGPCollectorPort is where the collector listens unless the
// topology or Options say otherwise: not 179, so it needs no privilege and
// never meets a BIRD's own listener.
const DefaultBGPCollectorPort = 1179

// BGPConfig is the topology's AS plan (section "bgp"), used in BGP mode
// (Options.BGP). Every link between two routers that both have an AS is an
// eBGP session, one per address family, on the link addresses.
type BGPConfig struct {
	// AS maps router names to their AS numbers.
	AS map[string]uint32 `yaml:"as"`
	// Collector is the route collector in the controller namespace.
	Collector BGPCollectorConfig `yaml:"collector"`
	// Origin is the router that originates the networks' prefixes.
	Origin BGPOrigin `yaml:"origin"`
}

// BGPCollectorConfig is the collector: it listens passively on Port of the
// controller's address; the Peers (routers with an AS) connect to it, with
// IPv4 and IPv6 channels, and export their full tables to it.
type BGPCollectorConfig struct {
	AS    uint32   `yaml:"as"`
	Port  int      `yaml:"port"`
	Peers []string `yaml:"peers"`
}

// BGPOrigin says which router originates the networks and to which of its
// BGP neighbours it announces each: Announce maps a neighbour to networks
// linked to the origin.
type BGPOrigin struct {
	Router   string              `yaml:"router"`
	Announce map[string][]string `yaml:"announce"`
}

// bgpSession is one eBGP session of a router: one address family on one
// link.
type bgpSession struct {
	peer          string
	local, remote netip.Addr
	localAS       uint32
	remoteAS      uint32
}

// validateBGP checks the bgp section (if any) against the nodes and links.
func (t *Topology) validateBGP() error {
	b := t.BGP
	if b == nil {
		return nil
	}
	if len(b.AS) == 0 {
		return errors.New("bgp.as: at least one router needs an AS")
	}
	owner := map[uint32]string{}
	for _, name := range sortedKeys(b.AS) {
		f := "bgp.as." + name
		n, ok := t.byName[name]
		if !ok {
			return fmt.Errorf("%s: unknown node %q", f, name)
		}
		if n.role != RoleRouter {
			return fmt.Errorf("%s: %q has role %s, want router", f, name, n.role)
		}
		if err := checkASN(f, b.AS[name]); err != nil {
			return err
		}
		if other, dup := owner[b.AS[name]]; dup {
			return fmt.Errorf("%s: AS %d is also %s's", f, b.AS[name], other)
		}
		if _, ok := n.firstAddr(true); !ok {
			return fmt.Errorf("%s: %q has no IPv4 address for its router id", f, name)
		}
		owner[b.AS[name]] = name
	}
	if err := t.validateCollector(owner); err != nil {
		return err
	}
	return t.validateOrigin()
}

func checkASN(f string, asn uint32) error {
	if asn == 0 || asn == 23456 || asn == 4294967295 {
		return fmt.Errorf("%s: AS %d is reserved", f, asn)
	}
	return nil
}

func (t *Topology) validateCollector(owner map[uint32]string) error {
	c := &t.BGP.Collector
	if err := checkASN("bgp.collector.as", c.AS); err != nil {
		return err
	}
	if other, dup := owner[c.AS]; dup {
		return fmt.Errorf("bgp.collector.as: AS %d is also %s's", c.AS, other)
	}
	if c.Port == 0 {
		c.Port = DefaultBGPCollectorPort
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("bgp.collector.port: %d is not a TCP port", c.Port)
	}
	for i, p := range c.Peers {
		if _, ok := t.BGP.AS[p]; !ok {
			return fmt.Errorf("bgp.collector.peers[%d]: %q has no AS in bgp.as", i, p)
		}
		if slices.Index(c.Peers, p) != i {
			return fmt.Errorf("bgp.collector.peers[%d]: %q listed twice", i, p)
		}
	}
	return nil
}

func (t *Topology) validateOrigin() error {
	o := t.BGP.Origin
	if _, ok := t.BGP.AS[o.Router]; !ok {
		return fmt.Errorf("bgp.origin.router: %q has no AS in bgp.as", o.Router)
	}
	if len(o.Announce) == 0 {
		return errors.New("bgp.origin.announce: at least one neighbour must get a network")
	}
	neighbours := t.bgpNeighbours(o.Router)
	for _, peer := range sortedKeys(o.Announce) {
		f := "bgp.origin.announce." + peer
		if !slices.Contains(neighbours, peer) {
			return fmt.Errorf("%s: %q is not a BGP neighbour of %s (have %s)", f, peer, o.Router, strings.Join(neighbours, ", "))
		}
		for i, n := range o.Announce[peer] {
			info, ok := t.byName[n]
			if !ok || info.role != RoleNetwork || info.ifaces[0].peer != o.Router {
				return fmt.Errorf("%s[%d]: %q is not a network linked to %s", f, i, n, o.Router)
			}
		}
	}
	return nil
}

// bgpNeighbours returns the routers with an AS linked to router, in link
// order.
func (t *Topology) bgpNeighbours(router string) []string {
	var out []string
	for _, f := range t.byName[router].ifaces {
		if _, ok := t.BGP.AS[f.peer]; ok && !slices.Contains(out, f.peer) {
			out = append(out, f.peer)
		}
	}
	return out
}

// bgpSessions returns the router's sessions to its BGP neighbours: one per
// link and address family both ends have.
func (t *Topology) bgpSessions(router string) []bgpSession {
	var out []bgpSession
	for _, f := range t.byName[router].ifaces {
		remoteAS, ok := t.BGP.AS[f.peer]
		if !ok {
			continue
		}
		far := t.byName[f.peer]
		for _, la := range f.addrs {
			for _, pf := range far.ifaces {
				if pf.link != f.link {
					continue
				}
				for _, ra := range pf.addrs {
					if ra.Addr().Is4() == la.Addr().Is4() {
						out = append(out, bgpSession{f.peer, la.Addr(), ra.Addr(), t.BGP.AS[router], remoteAS})
					}
				}
			}
		}
	}
	return out
}

// bgpRouters returns the routers with an AS, in topology order.
func (t *Topology) bgpRouters() []string {
	var out []string
	for _, n := range t.order {
		if _, ok := t.BGP.AS[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// isNetworkPrefix reports whether p is a prefix of some network.
func (t *Topology) isNetworkPrefix(p netip.Prefix) bool {
	for _, n := range t.names(RoleNetwork) {
		if slices.Contains(t.networkPrefixes(n), p) {
			return true
		}
	}
	return false
}

// firstAddr returns the node's first address of a family.
func (n *nodeInfo) firstAddr(v4 bool) (netip.Addr, bool) {
	for _, p := range n.addrs {
		if p.Addr().Is4() == v4 {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
