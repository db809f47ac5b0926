package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadTopologyErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want string
	}{
		{"bad_unknown_field.yaml", "invalid topology: yaml: unmarshal errors:\n  line 4: field colour not found in type lab.Node"},
		{"bad_bad_role.yaml", `invalid topology: nodes[2].role: "switch" must be one of vantage, router, controller, network`},
		{"bad_bad_name.yaml", `invalid topology: nodes[2].name: "R1" must be 1-40 chars of [a-z0-9-], starting with a letter or digit`},
		{"bad_duplicate_node.yaml", `invalid topology: nodes[2].name: "v" defined twice`},
		{"bad_hosts_on_router.yaml", `invalid topology: nodes[2].hosts: only nodes with role network have hosts`},
		{"bad_bad_host.yaml", `invalid topology: nodes[3].hosts[0]: "192.0.2.300/24" is not an address/length: netip.ParsePrefix("192.0.2.300/24"): ParseAddr("192.0.2.300"): IPv4 field has value >255`},
		{"bad_bad_via.yaml", `invalid topology: nodes[0].routes[0].via: "ten" is not an IP address`},
		{"bad_bad_to.yaml", `invalid topology: nodes[1].routes[0].to: "somewhere" is neither "default" nor a prefix`},
		{"bad_to_host_bits.yaml", `invalid topology: nodes[1].routes[0].to: "10.5.0.1/16" has host bits set (want 10.5.0.0/16)`},
		{"bad_family_mismatch.yaml", `invalid topology: nodes[1].routes[0]: to 10.5.0.0/16 and via 2001:db8::1 are different address families`},
		{"bad_no_controller.yaml", `invalid topology: nodes: want exactly one node with role controller, have 0`},
		{"bad_unknown_link_node.yaml", `invalid topology: links[1].b: unknown node "ctrl"`},
		{"bad_self_link.yaml", `invalid topology: links[1]: a and b are both "c"`},
		{"bad_bad_link_addr.yaml", `invalid topology: links[0].b_addrs[0]: "10.0.0.2" is not an address/length: netip.ParsePrefix("10.0.0.2"): no '/'`},
		{"bad_network_two_links.yaml", `invalid topology: nodes[3]: network "n" must have exactly one link, has 2`},
		{"bad_unlinked_node.yaml", `invalid topology: nodes[3]: node "lonely" has no links`},
		{"bad_edge_unknown.yaml", `invalid topology: faults.edge: unknown node "x"`},
		{"bad_edge_not_router.yaml", `invalid topology: faults.edge: "v" has role vantage, want router`},
		{"bad_vantage_off_edge.yaml", `invalid topology: faults.edge: vantage "v" is not linked to edge "r"`},
		{"bad_no_target_space.yaml", `invalid topology: faults.target_space: at least one prefix is required`},
		{"bad_target_host_bits.yaml", `invalid topology: faults.target_space[0]: 192.0.2.1/24 has host bits set (want 192.0.2.0/24)`},
		{"bad_from_prefix.yaml", `invalid topology: nodes[1].routes[0].from: "ten/8" is not a prefix`},
		{"bad_from_host_bits.yaml", `invalid topology: nodes[1].routes[0].from: "10.0.0.1/8" has host bits set (want 10.0.0.0/8)`},
		{"bad_from_family.yaml", `invalid topology: nodes[1].routes[0]: from 2001:db8::/32 and via 10.0.1.1 are different address families`},
		{"bad_two_documents.yaml", `invalid topology: more than one YAML document`},
		{"bad_empty.yaml", `invalid topology: empty document`},
		// AnyIP prefixes on networks.
		{"bad_anyip_on_router.yaml", `invalid topology: nodes[3].anyip: only nodes with role network answer on AnyIP prefixes`},
		{"bad_anyip_host_bits.yaml", `invalid topology: nodes[4].anyip[0]: 198.19.0.1/16 has host bits set (want 198.19.0.0/16)`},
		{"bad_anyip_overlap.yaml", `invalid topology: nodes[4].anyip[0]: 192.0.0.0/8 overlaps 192.0.2.1/24 of node "b"`},
		{"bad_anyip_overlap_anyip.yaml", `invalid topology: nodes[4].anyip[0]: 198.19.0.0/16 overlaps AnyIP prefix 198.19.128.0/17 of node "n"`},
		{"bad_anyip_no_host.yaml", `invalid topology: nodes[4].anyip[1]: network "n" has no IPv6 host to route 2001:db8:ffff::/112 to`},
		{"bad_anyip_bad_prefix.yaml", `invalid topology: nodes[4].anyip[0]: "198.19.0.0/66" is not an address/length: netip.ParsePrefix("198.19.0.0/66"): prefix length out of range`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			_, err := LoadTopology(path)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrTopology) {
				t.Errorf("error %v does not wrap ErrTopology", err)
			}
			if got, want := err.Error(), path+": "+tc.want; got != want {
				t.Errorf("error\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func TestLoadTopologyMissingFile(t *testing.T) {
	if _, err := LoadTopology(filepath.Join(t.TempDir(), "nope.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

func TestMinimalTopology(t *testing.T) {
	topo, err := LoadTopology("testdata/good_minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := offlineLab(t, topo, "x")
	if got := l.Hosts("n"); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("192.0.2.10")}) {
		t.Errorf("Hosts(n) = %v", got)
	}
	if got := topo.networkPrefixes("n"); !slices.Equal(got, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}) {
		t.Errorf("networkPrefixes(n) = %v", got)
	}
}

// TestDefaultTopologyPlan pins the fixed address plan others depend on.
func TestDefaultTopologyPlan(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	l := offlineLab(t, topo, DefaultPrefix)
	addr := netip.MustParseAddr
	for _, tc := range []struct {
		node   string
		v4, v6 netip.Addr
	}{
		{"vantage-a", addr("198.51.100.2"), addr("2001:db8:1::2")},
		{"vantage-b", addr("198.51.100.10"), addr("2001:db8:2::10")},
		{"vantage-c", addr("198.51.100.18"), addr("2001:db8:3::18")},
		{"ix", addr("198.51.100.1"), addr("2001:db8:1::1")},
		{"transit", addr("198.51.100.26"), addr("2001:db8:4::26")},
		{"controller", addr("198.51.100.34"), addr("2001:db8:5::34")},
		{"upstream", addr("198.51.100.42"), addr("2001:db8:6::42")},
		{"border", addr("198.51.100.50"), addr("2001:db8:7::50")},
		{"upstream-b", addr("198.51.100.58"), addr("2001:db8:12::58")},
		{"net2", addr("198.18.2.10"), addr("2001:db8:18:2::10")},
		{"nope", netip.Addr{}, netip.Addr{}},
	} {
		t.Run(tc.node, func(t *testing.T) {
			if got := l.Addr(tc.node); got != tc.v4 {
				t.Errorf("Addr = %v, want %v", got, tc.v4)
			}
			if got := l.Addr6(tc.node); got != tc.v6 {
				t.Errorf("Addr6 = %v, want %v", got, tc.v6)
			}
		})
	}
	if got, want := l.Networks(), []string{"net0", "net1", "net2", "net3"}; !slices.Equal(got, want) {
		t.Errorf("Networks() = %v", got)
	}
	if got, want := l.Vantages(), []string{"vantage-a", "vantage-b", "vantage-c"}; !slices.Equal(got, want) {
		t.Errorf("Vantages() = %v", got)
	}
	var hosts []string
	for _, a := range l.Hosts("net3") {
		hosts = append(hosts, a.String())
	}
	if got := strings.Join(hosts, " "); got != "198.18.3.10 198.18.3.11 198.18.3.12 198.18.3.13" {
		t.Errorf("Hosts(net3) = %s", got)
	}
	if got := l.Hosts6("net0"); len(got) != 4 || got[0] != addr("2001:db8:18::10") {
		t.Errorf("Hosts6(net0) = %v", got)
	}
	if l.Hosts("ix") != nil {
		t.Error("Hosts(ix) should be nil")
	}
	if got := l.Namespace("border"); got != "vl-border" {
		t.Errorf("Namespace(border) = %q", got)
	}
	// Blackout of net1 withdraws exactly the three transit-chain routes per family.
	n := 0
	for _, name := range topo.order {
		for _, r := range topo.byName[name].routes {
			if slices.Contains(topo.networkPrefixes("net1"), r.dst) {
				n++
			}
		}
	}
	if n != 6 {
		t.Errorf("routes to net1 = %d, want 6 (ix, transit, upstream x v4, v6)", n)
	}
	if got, want := l.Routers(), []string{"ix", "transit", "upstream", "upstream-b", "border"}; !slices.Equal(got, want) {
		t.Errorf("Routers() = %v, want %v", got, want)
	}
}

// TestDefaultTopologyMultiHomed pins the second upstream: appended links
// (nothing before them moved), per-prefix routes at transit, each upstream
// routing only its networks, and the border's source routes back.
func TestDefaultTopologyMultiHomed(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	for _, lk := range topo.Links {
		links = append(links, lk.A+"-"+lk.B)
	}
	want := []string{"ix-vantage-a", "ix-vantage-b", "ix-vantage-c", "ix-transit", "ix-controller", "transit-upstream",
		"upstream-border", "border-net0", "border-net1", "border-net2", "border-net3", "transit-upstream-b", "upstream-b-border"}
	if !slices.Equal(links, want) {
		t.Errorf("links %v\nwant %v", links, want)
	}
	describe := func(node string) []string {
		var out []string
		for _, r := range topo.byName[node].routes {
			s := r.dst.String() + " via " + r.via.String()
			if r.src.IsValid() {
				s += fmt.Sprintf(" from %s table %d", r.src, r.table)
			}
			out = append(out, s)
		}
		return out
	}
	for _, tc := range []struct {
		node string
		want []string
	}{
		{"transit", []string{"198.18.0.0/24 via 198.51.100.42", "198.18.2.0/24 via 198.51.100.58", "2001:db8:18:3::/64 via 2001:db8:12::58"}},
		{"upstream", []string{"198.18.1.0/24 via 198.51.100.50", "2001:db8:18:1::/64 via 2001:db8:7::50"}},
		{"upstream-b", []string{"198.18.3.0/24 via 198.51.100.66", "2001:db8:18:2::/64 via 2001:db8:13::66", "0.0.0.0/0 via 198.51.100.57"}},
		{"border", []string{"0.0.0.0/0 via 198.51.100.49", "0.0.0.0/0 via 198.51.100.65 from 198.18.2.0/24 table 100",
			"0.0.0.0/0 via 198.51.100.65 from 198.18.3.0/24 table 101", "::/0 via 2001:db8:13::65 from 2001:db8:18:3::/64 table 103"}},
	} {
		got := describe(tc.node)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%s routes %q lack %q", tc.node, got, w)
			}
		}
	}
	for _, tc := range []struct{ node, net string }{{"upstream", "net2"}, {"upstream", "net3"}, {"upstream-b", "net0"}, {"upstream-b", "net1"}} {
		for _, r := range topo.byName[tc.node].routes {
			if slices.Contains(topo.networkPrefixes(tc.net), r.dst) {
				t.Errorf("%s routes %s (%s), which the other upstream carries", tc.node, tc.net, r.dst)
			}
		}
	}
	rules := sourceRules(topo.byName["border"])
	var got []string
	for _, r := range rules {
		got = append(got, fmt.Sprintf("%d: from %v lookup %d suppress %d", r.Priority, r.Src, r.Table, r.SuppressPrefixlen))
	}
	wantRules := []string{"999: from <nil> lookup 254 suppress 0", "1000: from 198.18.2.0/24 lookup 100 suppress -1",
		"1001: from 198.18.3.0/24 lookup 101 suppress -1", "999: from <nil> lookup 254 suppress 0",
		"1002: from 2001:db8:18:2::/64 lookup 102 suppress -1", "1003: from 2001:db8:18:3::/64 lookup 103 suppress -1"}
	if !slices.Equal(got, wantRules) {
		t.Errorf("border rules %q\nwant %q", got, wantRules)
	}
	if rules := sourceRules(topo.byName["transit"]); len(rules) != 0 {
		t.Errorf("transit has %d rules, want none", len(rules))
	}
}

func TestOptionsPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"", true}, {"vl", true}, {"vlt1", true}, {"abcdefghij", true},
		{"abcdefghijk", false}, {"1vl", false}, {"v-l", false}, {"VL", false},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			_, err := Options{Prefix: tc.prefix}.normalize()
			if (err == nil) != tc.ok {
				t.Errorf("normalize(%q) err = %v, want ok=%v", tc.prefix, err, tc.ok)
			}
		})
	}
}

// offlineLab is a Lab over a topology without namespaces, for the
// accessors.
func offlineLab(t *testing.T, topo *Topology, prefix string) *Lab {
	t.Helper()
	o, err := Options{Prefix: prefix}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	return newLab(topo, o)
}

// FuzzParseTopology checks that no input makes the decoder or validator
// panic: topology files are input like any other.
func FuzzParseTopology(f *testing.F) {
	f.Add(defaultTopology)
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		topo, err := ParseTopology(b)
		if err != nil {
			return
		}
		l := offlineLab(t, topo, "f")
		for _, n := range l.Networks() {
			_ = l.Hosts(n)
			_ = topo.networkPrefixes(n)
		}
		for _, v := range l.Vantages() {
			_, _, _ = l.vantageIface(v)
		}
	})
}

// TestAnyIPRoutes checks that an AnyIP prefix is routed along the network's
// own path: like the network's prefix where a router has a route for it, via
// the network's first host at the router it hangs off.
func TestAnyIPRoutes(t *testing.T) {
	topo, err := LoadTopology("testdata/good_anyip.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := offlineLab(t, topo, "x")
	if got, want := l.AnyIP("n"), []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16"), netip.MustParsePrefix("2001:db8:ffff::/112")}; !slices.Equal(got, want) {
		t.Errorf("AnyIP(n) = %v, want %v", got, want)
	}
	if got := l.AnyIP("r"); len(got) != 0 {
		t.Errorf("AnyIP(r) = %v, want none", got)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"198.19.0.0/16", []string{"r 198.19.0.0/16 via 10.0.2.2", "b 198.19.0.0/16 via 192.0.2.10"}},
		{"2001:db8:ffff::/112", []string{"r 2001:db8:ffff::/112 via 2001:db8:2::2", "b 2001:db8:ffff::/112 via 2001:db8:18::10"}},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			var got []string
			for _, nr := range topo.anyIPRoutes("n", netip.MustParsePrefix(tc.prefix)) {
				got = append(got, nr.node+" "+nr.r.dst.String()+" via "+nr.r.via.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("routes\n got: %q\nwant: %q", got, tc.want)
			}
		})
	}
}
