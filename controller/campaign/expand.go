package campaign

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// expandTargets checks the target section and returns hosts, upstreams and
// controls in file order: the networks are checked and counted first, so
// nothing is allocated for an expansion over the limit.
func (s *Spec) expandTargets() ([]Target, error) {
	total, err := s.checkNetworks()
	if err != nil {
		return nil, err
	}
	l := newTargetList(total)
	if err := s.addHosts(l); err != nil {
		return nil, err
	}
	if err := s.addRouters(l); err != nil {
		return nil, err
	}
	if err := s.addControls(l); err != nil {
		return nil, err
	}
	return l.out, nil
}

// checkNetworks checks the networks' names, prefixes and the size of the
// expansion, and returns how many targets the section expands to.
func (s *Spec) checkNetworks() (int, error) {
	t := &s.targets
	if t.discover && t.perNetwork == 0 {
		return 0, fieldErr("targets.hosts.per_network", "required with targets.hosts.discover: how many answering hosts to keep per network")
	}
	if len(t.networks) == 0 {
		return 0, fieldErr("targets.networks", "needs at least one network")
	}
	names := map[string]int{}
	c := &expansionCount{total: routerCount(t.upstreams) + routerCount(t.borders) + len(t.controls)}
	for i, nw := range t.networks {
		path := index("targets.networks", i)
		if err := checkNetwork(path, nw); err != nil {
			return 0, err
		}
		if j, dup := names[nw.name]; dup {
			return 0, fieldErr(join(path, "name"), "%q is already used by targets.networks[%d]", nw.name, j)
		}
		names[nw.name] = i
		c.total += len(nw.hosts)
		for k, p := range nw.prefixes {
			if err := s.countPrefix(c, path, nw, k, p); err != nil {
				return 0, err
			}
		}
	}
	if c.total > MaxTargets {
		return 0, fieldErr("targets", "expands to %d targets, more than the limit of %d", c.total, MaxTargets)
	}
	if err := checkOverlaps(t.networks); err != nil {
		return 0, err
	}
	return c.total, nil
}

// expansionCount is what checkNetworks has counted so far: targets, and
// addresses the discovery sweep probes.
type expansionCount struct {
	total, swept int
}

// checkNetwork checks one network on its own: its name, its prefixes (at
// least one, at most one per family) and that every listed host is inside
// one of them.
func checkNetwork(path string, nw networkSpec) error {
	switch {
	case nw.name == "":
		return fieldErr(join(path, "name"), "required")
	case !nameRE.MatchString(nw.name):
		return fieldErr(join(path, "name"), "%q must match [a-z0-9][a-z0-9-]{0,62}", nw.name)
	case len(nw.prefixes) == 0:
		return fieldErr(join(path, "prefix"), "required (or prefixes: a dual-stack network's IPv4 and IPv6 prefixes)")
	}
	for k, p := range nw.prefixes {
		for j, q := range nw.prefixes[:k] {
			if p.Addr().Is4() == q.Addr().Is4() {
				return fieldErr(nw.prefixPath(path, k), "%s is a second %s prefix (%s is %s); a network has at most one IPv4 and one IPv6 prefix: make another network",
					p, family(p), nw.prefixPath(path, j), q)
			}
		}
	}
	for j, h := range nw.hosts {
		if !nw.contains(h) {
			return fieldErr(index(join(path, "hosts"), j), "%s is not inside %s", h, describePrefixes(nw.prefixes))
		}
	}
	return nil
}

// countPrefix counts the targets prefix k (p) of the network at path
// expands to: its listed hosts (counted by the caller), else the hosts
// discovery keeps, else per_network addresses from HostOffset.
func (s *Spec) countPrefix(c *expansionCount, path string, nw networkSpec, k int, p netip.Prefix) error {
	t := &s.targets
	if nw.hostsIn(p) > 0 {
		return nil
	}
	field := nw.prefixPath(path, k)
	if t.discover {
		n, err := sweepSize(field, p)
		if err != nil {
			return err
		}
		if c.swept += n; c.swept > MaxSweep {
			return fieldErr(field, "the discovery sweep would probe %d addresses up to here, more than %d; list hosts for the largest networks",
				c.swept, MaxSweep)
		}
		c.total += int(t.perNetwork)
		return nil
	}
	if t.perNetwork == 0 {
		if len(nw.hosts) == 0 {
			return fieldErr("targets.hosts.per_network", "required because %s lists no hosts", path)
		}
		return fieldErr("targets.hosts.per_network", "required because %s lists no host inside %s %s", path, field, p)
	}
	if err := checkExpansion(field, p, t.perNetwork); err != nil {
		return err
	}
	c.total += int(t.perNetwork)
	return nil
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// describePrefixes is "prefix P" or "prefix P or Q", for messages.
func describePrefixes(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return "prefix " + strings.Join(parts, " or ")
}

// targetList collects expanded targets in order and refuses an address
// twice, naming the field that listed it first.
type targetList struct {
	out   []Target
	where map[netip.Addr]string
}

func newTargetList(n int) *targetList {
	return &targetList{out: make([]Target, 0, n), where: make(map[netip.Addr]string, n)}
}

func (l *targetList) add(path string, a netip.Addr, network string, role vantagev1.TargetRole) error {
	return l.addNamed(path, a, network, "", role)
}

// addNamed adds a target with a router name.
func (l *targetList) addNamed(path string, a netip.Addr, network, name string, role vantagev1.TargetRole) error {
	if prev, dup := l.where[a]; dup {
		return fieldErr(path, "%s is already a target (%s)", a, prev)
	}
	l.where[a] = path
	l.out = append(l.out, Target{Addr: a, Network: network, Role: role, Name: name})
	return nil
}

// addHosts adds every network's hosts: the listed ones, then per_network
// addresses from HostOffset in each prefix without a listed host; a swept
// prefix's come later (WithTargets).
func (s *Spec) addHosts(l *targetList) error {
	t := &s.targets
	for i, nw := range t.networks {
		path := index("targets.networks", i)
		for j, h := range nw.hosts {
			if err := l.add(index(join(path, "hosts"), j), h, nw.name, vantagev1.TargetRole_TARGET_ROLE_HOST); err != nil {
				return err
			}
		}
		for k, p := range nw.prefixes {
			if t.discover || nw.hostsIn(p) > 0 {
				continue // listed, or hosts come from the sweep (WithTargets)
			}
			a := offset(p.Addr(), HostOffset)
			for range t.perNetwork {
				if err := l.add(nw.prefixPath(path, k), a, nw.name, vantagev1.TargetRole_TARGET_ROLE_HOST); err != nil {
					return err
				}
				a = a.Next()
			}
		}
	}
	return nil
}

// addControls adds the controls, each outside every network.
func (s *Spec) addControls(l *targetList) error {
	t := &s.targets
	for i, a := range t.controls {
		path := index("targets.controls", i)
		for j, nw := range t.networks {
			for _, p := range nw.prefixes {
				if p.Contains(a) {
					return fieldErr(path, "%s is inside targets.networks[%d] (%s); controls must be outside the scope", a, j, p)
				}
			}
		}
		if err := l.add(path, a, "", vantagev1.TargetRole_TARGET_ROLE_CONTROL); err != nil {
			return err
		}
	}
	return nil
}

// checkExpansion makes sure perNetwork addresses from HostOffset fit in p
// (for IPv4, below the broadcast address).
func checkExpansion(path string, p netip.Prefix, perNetwork int64) error {
	hostBits := p.Addr().BitLen() - p.Bits()
	need := uint64(HostOffset) + uint64(perNetwork) // offsets HostOffset..need-1
	if p.Addr().Is4() {
		need++ // the broadcast address
	}
	if hostBits < 63 && need > uint64(1)<<hostBits {
		return fieldErr(path, "%s is too small for targets.hosts.per_network %d starting at offset %d; list hosts explicitly",
			p, perNetwork, HostOffset)
	}
	return nil
}

// checkOverlaps reports the first pair of overlapping prefixes, over
// every prefix of every network. Two CIDR prefixes overlap only if one
// contains the other, so after sorting by address (then shorter prefix
// first), checking neighbours is enough. Prefixes of different families
// never overlap, so a network's own two cannot.
func checkOverlaps(nets []networkSpec) error {
	type ref struct{ net, k int }
	var order []ref
	for i, nw := range nets {
		for k := range nw.prefixes {
			order = append(order, ref{i, k})
		}
	}
	prefix := func(r ref) netip.Prefix { return nets[r.net].prefixes[r.k] }
	field := func(r ref) string { return nets[r.net].prefixPath(index("targets.networks", r.net), r.k) }
	before := func(a, b ref) int { return cmp.Or(a.net-b.net, a.k-b.k) }
	slices.SortFunc(order, func(a, b ref) int {
		pa, pb := prefix(a), prefix(b)
		return cmp.Or(pa.Addr().Compare(pb.Addr()), pa.Bits()-pb.Bits(), before(a, b))
	})
	for k := 1; k < len(order); k++ {
		i, j := order[k-1], order[k]
		if prefix(i).Overlaps(prefix(j)) {
			if before(i, j) > 0 {
				i, j = j, i
			}
			return fieldErr(field(j), "%s overlaps %s %s", prefix(j), field(i), prefix(i))
		}
	}
	return nil
}

// offset returns a + n; callers make sure it stays inside a's prefix.
func offset(a netip.Addr, n uint64) netip.Addr {
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	sum, carry := bits.Add64(lo, n, 0)
	binary.BigEndian.PutUint64(b[:8], hi+carry)
	binary.BigEndian.PutUint64(b[8:], sum)
	out := netip.AddrFrom16(b)
	if a.Is4() {
		return out.Unmap()
	}
	return out
}
