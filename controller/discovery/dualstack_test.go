package discovery

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vantage-net/vantage/controller/campaign"
)

// dual is a network with an IPv4 and an IPv6 prefix.
func dual(name, v4, v6 string) campaign.Network {
	return campaign.Network{Name: name, Prefixes: []netip.Prefix{netip.MustParsePrefix(v4), netip.MustParsePrefix(v6)}}
}

func addrStrings(as []netip.Addr) string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return strings.Join(out, " ")
}

// TestSweepAddrsDualStack: a sweep covers every prefix of a network, each
// refused or capped as on its own.
func TestSweepAddrsDualStack(t *testing.T) {
	got, err := SweepAddrs([]campaign.Network{dual("n0", "198.18.0.0/30", "2001:db8:18::/127"), nw("n1", "198.18.1.0/31")})
	if err != nil {
		t.Fatal(err)
	}
	if s, want := addrStrings(got), "198.18.0.1 198.18.0.2 2001:db8:18:: 2001:db8:18::1 198.18.1.0 198.18.1.1"; s != want {
		t.Errorf("SweepAddrs = %s, want %s", s, want)
	}
	_, err = SweepAddrs([]campaign.Network{dual("n0", "198.18.0.0/24", "2001:db8:18::/64")})
	if want := "discovery: invalid request: networks[0] n0 (2001:db8:18::/64): an IPv6 /64 cannot be swept; list its hosts"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	_, err = SweepAddrs([]campaign.Network{dual("n0", "10.0.0.0/16", "2001:db8:18::/120")})
	if want := "discovery: invalid request: networks[0] n0 (2001:db8:18::/120): the sweep would probe more than 65536 addresses"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestSelectHostsDualStack: a dual-stack network keeps per_network hosts
// of each family, so well-answering IPv4 hosts cannot crowd out its IPv6
// ones; trace hosts are picked per family too.
func TestSelectHostsDualStack(t *testing.T) {
	nets := []campaign.Network{dual("n0", "198.18.0.0/24", "2001:db8:18::/120")}
	var probes []Probe
	up := func(addr string, agents ...string) {
		for _, ag := range agents {
			probes = append(probes, Probe{Agent: ag, Target: netip.MustParseAddr(addr), Up: true})
		}
	}
	// The IPv4 hosts answer three vantages, the IPv6 ones fewer.
	up("198.18.0.10", "a", "b", "c")
	up("198.18.0.11", "a", "b", "c")
	up("198.18.0.12", "a", "b", "c")
	up("2001:db8:18::10", "a", "b")
	up("2001:db8:18::11", "a")
	kept, silent := SelectHosts(nets, probes, 2)
	var got []netip.Addr
	for _, h := range kept["n0"] {
		got = append(got, h.Addr)
	}
	if s, want := addrStrings(got), "198.18.0.10 198.18.0.11 2001:db8:18::10 2001:db8:18::11"; s != want || len(silent) != 0 {
		t.Errorf("kept %s silent %v, want %s and none silent", s, silent, want)
	}
	if s, want := addrStrings(PickTraceHosts(kept, nets, 1)), "198.18.0.10 2001:db8:18::10"; s != want {
		t.Errorf("PickTraceHosts = %s, want %s (one per family)", s, want)
	}
}

// TestRouterAddrsDualStack: each prefix's hosts' distance is its own, so
// an IPv6 border interface is found beside the IPv4 one.
func TestRouterAddrsDualStack(t *testing.T) {
	nets := []campaign.Network{dual("n0", "198.18.0.0/24", "2001:db8:18::/64")}
	p := func(a string, ttl uint32) Probe {
		return Probe{Agent: "a", Target: netip.MustParseAddr(a), Up: true, ReplyTTL: ttl}
	}
	// IPv4 hosts 4 hops away, three of them; IPv6 hosts 3 hops away,
	// the border's IPv6 address 2. Judged together, the IPv6 hosts
	// would be routers and the border's address not one.
	got := RouterAddrs(nets, []Probe{
		p("198.18.0.1", 61), p("198.18.0.10", 60), p("198.18.0.11", 60), p("198.18.0.12", 60),
		p("2001:db8:18::1", 62), p("2001:db8:18::10", 61), p("2001:db8:18::11", 61),
	})
	if s, want := addrStrings(got), "198.18.0.1 2001:db8:18::1"; s != want {
		t.Errorf("RouterAddrs = %s, want %s", s, want)
	}
	if !slices.IsSortedFunc(got, netip.Addr.Compare) {
		t.Errorf("not sorted: %v", got)
	}
}
