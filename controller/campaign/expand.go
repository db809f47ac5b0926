package campaign

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"

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
	total := routerCount(t.upstreams) + routerCount(t.borders) + len(t.controls)
	swept := 0
	for i, nw := range t.networks {
		path := index("targets.networks", i)
		switch {
		case nw.name == "":
			return 0, fieldErr(join(path, "name"), "required")
		case !nameRE.MatchString(nw.name):
			return 0, fieldErr(join(path, "name"), "%q must match [a-z0-9][a-z0-9-]{0,62}", nw.name)
		case !nw.prefix.IsValid():
			return 0, fieldErr(join(path, "prefix"), "required")
		}
		if j, dup := names[nw.name]; dup {
			return 0, fieldErr(join(path, "name"), "%q is already used by targets.networks[%d]", nw.name, j)
		}
		names[nw.name] = i
		if len(nw.hosts) > 0 {
			total += len(nw.hosts)
			continue
		}
		if t.discover {
			n, err := sweepSize(join(path, "prefix"), nw.prefix)
			if err != nil {
				return 0, err
			}
			if swept += n; swept > MaxSweep {
				return 0, fieldErr(join(path, "prefix"), "the discovery sweep would probe %d addresses up to here, more than %d; list hosts for the largest networks",
					swept, MaxSweep)
			}
			total += int(t.perNetwork)
			continue
		}
		if t.perNetwork == 0 {
			return 0, fieldErr("targets.hosts.per_network", "required because %s lists no hosts", path)
		}
		if err := checkExpansion(join(path, "prefix"), nw.prefix, t.perNetwork); err != nil {
			return 0, err
		}
		total += int(t.perNetwork)
	}
	if total > MaxTargets {
		return 0, fieldErr("targets", "expands to %d targets, more than the limit of %d", total, MaxTargets)
	}
	if err := checkOverlaps(t.networks); err != nil {
		return 0, err
	}
	return total, nil
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

// addHosts adds every network's hosts: the listed ones, or per_network
// addresses from HostOffset; a swept network's come later (WithTargets).
func (s *Spec) addHosts(l *targetList) error {
	t := &s.targets
	for i, nw := range t.networks {
		path := index("targets.networks", i)
		if len(nw.hosts) == 0 && t.discover {
			continue // hosts come from the sweep (WithTargets)
		}
		if len(nw.hosts) == 0 {
			a := offset(nw.prefix.Addr(), HostOffset)
			for range t.perNetwork {
				if err := l.add(join(path, "prefix"), a, nw.name, vantagev1.TargetRole_TARGET_ROLE_HOST); err != nil {
					return err
				}
				a = a.Next()
			}
			continue
		}
		for j, h := range nw.hosts {
			hp := index(join(path, "hosts"), j)
			if !nw.prefix.Contains(h) {
				return fieldErr(hp, "%s is not inside prefix %s", h, nw.prefix)
			}
			if err := l.add(hp, h, nw.name, vantagev1.TargetRole_TARGET_ROLE_HOST); err != nil {
				return err
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
			if nw.prefix.Contains(a) {
				return fieldErr(path, "%s is inside targets.networks[%d] (%s); controls must be outside the scope", a, j, nw.prefix)
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

// checkOverlaps reports the first pair of overlapping prefixes. Two CIDR
// prefixes overlap only if one contains the other, so after sorting by
// address (then shorter prefix first), checking neighbours is enough.
func checkOverlaps(nets []networkSpec) error {
	order := make([]int, len(nets))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		pa, pb := nets[a].prefix, nets[b].prefix
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c
		}
		if c := pa.Bits() - pb.Bits(); c != 0 {
			return c
		}
		return a - b
	})
	for k := 1; k < len(order); k++ {
		i, j := order[k-1], order[k]
		if nets[i].prefix.Overlaps(nets[j].prefix) {
			i, j = min(i, j), max(i, j)
			return fieldErr(index("targets.networks", j)+".prefix", "%s overlaps targets.networks[%d].prefix %s",
				nets[j].prefix, i, nets[i].prefix)
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
