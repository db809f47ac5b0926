package collector

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	bgppkt "github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/vantage-net/vantage/controller/bgp"
)

// from says who sent a BGP message and when it was received: the fields
// every Update built from the message shares.
type from struct {
	at     time.Time
	peer   netip.Addr
	peerAS uint32
	source string
}

func (f from) update(p netip.Prefix) bgp.Update {
	return bgp.Update{At: f.at, Peer: f.peer, PeerAS: f.peerAS, Prefix: p, Source: f.source}
}

// attrs is what an Update keeps of a path's attributes.
type attrs struct {
	asPath []uint32
	// nextHop is NEXT_HOP's (for the IPv4 NLRI field), mpNextHop
	// MP_REACH_NLRI's (for its own NLRI).
	nextHop, mpNextHop netip.Addr
	mpReach            []bgppkt.AddrPrefixInterface
	mpUnreach          []bgppkt.AddrPrefixInterface
}

// readAttrs picks out the AS path, the next hops and the MP NLRI.
//
// The AS path is flattened: AS_SEQUENCE members in order (the peer's AS
// first, the origin last). AS_SET members are dropped (an aggregate's set
// names no single origin; the origin is then the last AS of the sequence
// before the set), and so are AS_CONFED_* segments (a confederation's
// internal hops). On a 2-byte session, AS4_PATH replaces the AS_PATH's
// tail as RFC 6793 says, so AS_TRANS (23456) does not show as an origin.
func readAttrs(pas []bgppkt.PathAttributeInterface) attrs {
	var a attrs
	var as4 []uint32
	for _, pa := range pas {
		switch v := pa.(type) {
		case *bgppkt.PathAttributeAsPath:
			for _, seg := range v.Value {
				if seg.GetType() == bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ {
					a.asPath = append(a.asPath, seg.GetAS()...)
				}
			}
		case *bgppkt.PathAttributeAs4Path:
			for _, seg := range v.Value {
				if seg.Type == bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ {
					as4 = append(as4, seg.AS...)
				}
			}
		case *bgppkt.PathAttributeNextHop:
			a.nextHop = ipAddr(v.Value)
		case *bgppkt.PathAttributeMpReachNLRI:
			a.mpNextHop = ipAddr(v.Nexthop)
			a.mpReach = v.Value
		case *bgppkt.PathAttributeMpUnreachNLRI:
			a.mpUnreach = v.Value
		}
	}
	a.asPath = mergeAS4(a.asPath, as4)
	return a
}

// mergeAS4 is RFC 6793 4.2.3: with AS_TRANS in the 2-byte path and an
// AS4_PATH no longer than it, the path is the 2-byte path's head and the
// AS4_PATH.
func mergeAS4(path, as4 []uint32) []uint32 {
	if len(as4) == 0 || len(as4) > len(path) {
		return path
	}
	hasTrans := false
	for _, as := range path {
		hasTrans = hasTrans || as == asTrans
	}
	if !hasTrans {
		return path
	}
	out := append([]uint32(nil), path[:len(path)-len(as4)]...)
	return append(out, as4...)
}

// ipAddr is an address, zero for none or the unspecified one.
func ipAddr(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || a.Unmap().IsUnspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

// nlriPrefix is an IPv4 or IPv6 unicast NLRI's prefix; ok is false for
// other families (VPN, flowspec, EVPN…), which the collector ignores.
func nlriPrefix(n bgppkt.AddrPrefixInterface) (netip.Prefix, bool) {
	var d *bgppkt.IPAddrPrefixDefault
	switch v := n.(type) {
	case *bgppkt.IPAddrPrefix:
		d = &v.IPAddrPrefixDefault
	case *bgppkt.IPv6AddrPrefix:
		d = &v.IPAddrPrefixDefault
	default:
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(d.Prefix)
	if !ok {
		return netip.Prefix{}, false
	}
	if _, v6 := n.(*bgppkt.IPv6AddrPrefix); !v6 {
		a = a.Unmap()
	}
	p, err := a.Prefix(int(d.Length))
	if err != nil {
		return netip.Prefix{}, false
	}
	return p, true
}

// fromUpdate turns one BGP UPDATE into an Update per withdrawn prefix and
// per NLRI (the IPv4 fields and MP_REACH/MP_UNREACH_NLRI), in the order
// withdrawals first, as RFC 4271 processes them. Other message types and
// non-unicast families give nothing. The Updates are not validated yet.
func fromUpdate(m *bgppkt.BGPMessage, f from) []bgp.Update {
	if m == nil {
		return nil
	}
	body, ok := m.Body.(*bgppkt.BGPUpdate)
	if !ok {
		return nil
	}
	a := readAttrs(body.PathAttributes)
	var out []bgp.Update
	withdraw := func(n bgppkt.AddrPrefixInterface) {
		if p, ok := nlriPrefix(n); ok {
			u := f.update(p)
			u.Withdraw = true
			out = append(out, u)
		}
	}
	announce := func(n bgppkt.AddrPrefixInterface, nh netip.Addr) {
		if p, ok := nlriPrefix(n); ok {
			u := f.update(p)
			u.ASPath, u.NextHop = a.asPath, nh
			out = append(out, u)
		}
	}
	for _, n := range body.WithdrawnRoutes {
		withdraw(n)
	}
	for _, n := range a.mpUnreach {
		withdraw(n)
	}
	for _, n := range body.NLRI {
		announce(n, a.nextHop)
	}
	for _, n := range a.mpReach {
		announce(n, a.mpNextHop)
	}
	return out
}

// fromPath is one path (an NLRI with its attributes) as an Update.
func fromPath(n bgppkt.AddrPrefixInterface, pas []bgppkt.PathAttributeInterface, withdraw bool, f from) (bgp.Update, error) {
	p, ok := nlriPrefix(n)
	if !ok {
		return bgp.Update{}, fmt.Errorf("nlri %v: not IPv4 or IPv6 unicast", n)
	}
	u := f.update(p)
	u.Withdraw = withdraw
	if !withdraw {
		a := readAttrs(pas)
		u.ASPath, u.NextHop = a.asPath, a.nextHop
		if p.Addr().Is6() || len(a.mpReach) > 0 {
			u.NextHop = a.mpNextHop
		}
	}
	return u, nil
}

// safely runs a GoBGP parser, turning a panic on malformed bytes (some of
// its decoders index without checking lengths) into an error.
func safely(what string, parse func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: malformed (parser panicked: %v)", what, r)
		}
	}()
	return parse()
}
