package campaign

import (
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// routerSpec is one upstream or border router of targets.upstreams or
// targets.borders: a bare address (name "": generated, RouterName), or the
// named form {name: unicom, addrs: [...]} whose addresses share the name.
type routerSpec struct {
	name  string
	addrs []netip.Addr
	// named: the entry is the named form (its paths are .addrs[j]).
	named bool
	// asn: the router's AS (0 unknown): locations name it, and BGP
	// evidence that an AS withdrew places the fault at its router.
	asn int64
}

// maxRouterAddrs bounds addrs of one named router.
const maxRouterAddrs = 64

// decodeRouters decodes targets.upstreams or targets.borders: a list whose
// entries are addresses or {name, addrs} mappings.
func decodeRouters(path string, n *yaml.Node, out *[]routerSpec) error {
	return decodeSequence(path, n, MaxTargets, func(p string, _ int, v *yaml.Node) error {
		switch v.Kind {
		case yaml.MappingNode:
		case yaml.ScalarNode:
			a, err := parseAddr(p, v)
			if err != nil {
				return err
			}
			*out = append(*out, routerSpec{addrs: []netip.Addr{a}})
			return nil
		default:
			return fieldErr(p, "expected an IP address or {name, addrs[, asn]}, got %s", kindName(v))
		}
		r := routerSpec{named: true}
		err := decodeMapping(p, v, []field{
			{"name", func(p string, v *yaml.Node) error { return decodeString(p, v, &r.name) }},
			{"addrs", func(p string, v *yaml.Node) error { return decodeAddrList(p, v, maxRouterAddrs, &r.addrs) }},
			{"asn", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, 4294967294, &r.asn) }},
		})
		if err != nil {
			return err
		}
		switch {
		case r.name == "":
			return fieldErr(join(p, "name"), "required in the named form {name, addrs}")
		case !nameRE.MatchString(r.name):
			return fieldErr(join(p, "name"), "%q must match [a-z0-9][a-z0-9-]{0,62}", r.name)
		case len(r.addrs) == 0:
			return fieldErr(join(p, "addrs"), "needs at least one address")
		}
		*out = append(*out, r)
		return nil
	})
}

// RouterASNs maps the named upstreams' and borders' names to the AS
// numbers the campaign gives them (asn:); routers without one are left
// out.
func (s *Spec) RouterASNs() map[string]uint32 {
	out := map[string]uint32{}
	for _, rs := range [][]routerSpec{s.targets.upstreams, s.targets.borders} {
		for _, r := range rs {
			if r.named && r.asn > 0 {
				out[r.name] = uint32(r.asn)
			}
		}
	}
	return out
}

// routerCount is how many targets routers expand to.
func routerCount(rs []routerSpec) int {
	n := 0
	for _, r := range rs {
		n += len(r.addrs)
	}
	return n
}

// checkRouterNames refuses a name given to two entries of targets.upstreams
// and targets.borders: a name identifies one router (or one upstream with
// several addresses) in verdicts.
func (s *Spec) checkRouterNames() error {
	seen := map[string]string{}
	for _, sec := range []struct {
		path string
		rs   []routerSpec
	}{{"targets.upstreams", s.targets.upstreams}, {"targets.borders", s.targets.borders}} {
		for i, r := range sec.rs {
			if !r.named {
				continue
			}
			p := index(sec.path, i)
			if prev, dup := seen[r.name]; dup {
				return fieldErr(join(p, "name"), "%q is already used by %s", r.name, prev)
			}
			seen[r.name] = p
		}
	}
	return nil
}

// addRouters adds the listed upstreams, then the borders, each with its
// name: the campaign's, or RouterName's.
func (s *Spec) addRouters(l *targetList) error {
	if err := s.checkRouterNames(); err != nil {
		return err
	}
	for _, sec := range []struct {
		path string
		rs   []routerSpec
		role vantagev1.TargetRole
	}{
		{"targets.upstreams", s.targets.upstreams, vantagev1.TargetRole_TARGET_ROLE_UPSTREAM},
		{"targets.borders", s.targets.borders, vantagev1.TargetRole_TARGET_ROLE_BORDER},
	} {
		for i, r := range sec.rs {
			p := index(sec.path, i)
			for j, a := range r.addrs {
				ap, name := p, r.name
				if r.named {
					ap = index(join(p, "addrs"), j)
				} else {
					name = RouterName(sec.role, a)
				}
				if err := l.addNamed(ap, a, "", name, sec.role); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// RouterName is the generated name of an UPSTREAM or BORDER router the
// campaign does not name: the role's word and the address with '.' and ':'
// as '-' ("upstream-198-51-100-42", "border-2001-db8--1").
//
// It is derived from the address alone, not from the order in which
// discovery found the routers: traces find routers in a different order
// from run to run, and a new router found by a later discovery would shift
// every index-based name after it, so the same router would change names
// (and an operator's alert on "upstream-2" would silently follow another
// router). The address is what the probes and traces identify a router by,
// so the name is stable across re-discovery by construction, readable, and
// a valid campaign name (at most 9+39 characters of [a-z0-9-]).
func RouterName(role vantagev1.TargetRole, a netip.Addr) string {
	word := "router"
	switch role {
	case vantagev1.TargetRole_TARGET_ROLE_UPSTREAM:
		word = "upstream"
	case vantagev1.TargetRole_TARGET_ROLE_BORDER:
		word = "border"
	}
	return word + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(a.Unmap().String())
}
