package discovery

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vantage-net/vantage/controller/campaign"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func nw(name, p string) campaign.Network {
	return campaign.Network{Name: name, Prefixes: []netip.Prefix{netip.MustParsePrefix(p)}}
}

func TestSweepAddrs(t *testing.T) {
	cases := []struct {
		name      string
		nets      []campaign.Network
		n         int
		first     string
		last      string
		wantError string
	}{
		{"one /24 skips network and broadcast", []campaign.Network{nw("a", "198.18.0.0/24")}, 254, "198.18.0.1", "198.18.0.254", ""},
		{"a /31 keeps both", []campaign.Network{nw("a", "198.18.0.0/31")}, 2, "198.18.0.0", "198.18.0.1", ""},
		{"a /32", []campaign.Network{nw("a", "198.18.0.7/32")}, 1, "198.18.0.7", "198.18.0.7", ""},
		{"two networks", []campaign.Network{nw("a", "198.18.0.0/30"), nw("b", "198.18.1.0/30")}, 4, "198.18.0.1", "198.18.1.2", ""},
		{"small IPv6", []campaign.Network{nw("v6", "2001:db8::/126")}, 4, "2001:db8::", "2001:db8::3", ""},
		{"IPv6 /64 refused", []campaign.Network{nw("v6", "2001:db8::/64")}, 0, "", "",
			"discovery: invalid request: networks[0] v6 (2001:db8::/64): an IPv6 /64 cannot be swept; list its hosts"},
		{"too big", []campaign.Network{nw("big", "10.0.0.0/15")}, 0, "", "",
			"discovery: invalid request: networks[0] big (10.0.0.0/15): the sweep would probe more than 65536 addresses"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := SweepAddrs(c.nets)
			if c.wantError != "" {
				if err == nil || err.Error() != c.wantError || !errors.Is(err, ErrInvalid) {
					t.Fatalf("got %v, want %s", err, c.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.n || got[0].String() != c.first || got[len(got)-1].String() != c.last {
				t.Errorf("got %d addrs %v..%v, want %d %s..%s", len(got), got[0], got[len(got)-1], c.n, c.first, c.last)
			}
		})
	}
}

func TestBatches(t *testing.T) {
	addrs, _ := SweepAddrs([]campaign.Network{nw("a", "198.18.0.0/24")})
	tasks := SweepTasks("kp", addrs, 1000, 1, nil)
	if tasks[0].GetId() != "kp/icmp/198.18.0.1" || tasks[0].GetIcmp().GetRetries() != 1 {
		t.Errorf("task %v", tasks[0])
	}
	// 100 pps x 2s = 200 packets per round, 2 per address: 100 addresses.
	bs := Batches(tasks, 1, 100, 2)
	if len(bs) != 3 || len(bs[0]) != 100 || len(bs[2]) != 54 {
		t.Errorf("batches %d: %d..%d", len(bs), len(bs[0]), len(bs[len(bs)-1]))
	}
}

func TestSelectHosts(t *testing.T) {
	nets := []campaign.Network{nw("net0", "198.18.0.0/24"), nw("net1", "198.18.1.0/24"), nw("dark", "198.18.2.0/24")}
	a := netip.MustParseAddr
	var probes []Probe
	add := func(agent, addr string, up ...bool) {
		for _, u := range up {
			probes = append(probes, Probe{Agent: agent, Target: a(addr), Up: u})
		}
	}
	// .10 answers everyone always; .11 answers all three but loses one;
	// .12 answers only vantage a; .13 never; .14 answers two always.
	for _, ag := range []string{"a", "b", "c"} {
		add(ag, "198.18.0.10", true, true)
		add(ag, "198.18.0.13", false, false)
		add(ag, "198.18.2.10", false)
	}
	add("a", "198.18.0.11", true, false)
	add("b", "198.18.0.11", true, true)
	add("c", "198.18.0.11", true, true)
	add("a", "198.18.0.12", true, true)
	add("a", "198.18.0.14", true, true)
	add("b", "198.18.0.14", true, true)
	add("a", "198.18.1.50", true)
	add("a", "203.0.113.1", true) // outside every network: ignored

	kept, silent := SelectHosts(nets, probes, 3)
	var got []string
	for _, h := range kept["net0"] {
		got = append(got, h.Addr.String())
	}
	if want := []string{"198.18.0.10", "198.18.0.11", "198.18.0.14"}; !slices.Equal(got, want) {
		t.Errorf("net0 kept %v, want %v", got, want)
	}
	if len(kept["net1"]) != 1 || kept["net1"][0].Vantages != 1 {
		t.Errorf("net1 kept %v", kept["net1"])
	}
	if !slices.Equal(silent, []string{"dark"}) {
		t.Errorf("silent %v, want [dark]", silent)
	}
	if h := kept["net0"][1]; h.Vantages != 3 || h.Sent != 6 || h.Answered != 5 {
		t.Errorf(".11 score %+v", h)
	}
	if d := Describe(kept, silent); d != "4 hosts in 2 networks; no host answered in [dark]" {
		t.Errorf("describe: %s", d)
	}
	// A single /24 with a couple of hosts is enough (no IODA-style minimum).
	kept, _ = SelectHosts(nets[:1], probes, 8)
	if len(kept["net0"]) != 4 {
		t.Errorf("per_network 8 on 4 answering hosts kept %d", len(kept["net0"]))
	}
}

func hops(addrs ...string) []*vantagev1.Hop {
	var out []*vantagev1.Hop
	for i, a := range addrs {
		out = append(out, &vantagev1.Hop{Ttl: uint32(i + 1), Addr: a})
	}
	return out
}

func TestUpstreams(t *testing.T) {
	lab := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")}
	cases := []struct {
		name   string
		traces [][]*vantagev1.Hop
		want   []string // "role addr traces"
	}{
		{"the lab path from three vantages", [][]*vantagev1.Hop{
			hops("198.51.100.1", "198.51.100.26", "198.51.100.42", "198.51.100.50", "198.18.0.10"),
			hops("198.51.100.9", "198.51.100.26", "198.51.100.42", "198.51.100.50", "198.18.1.10"),
			hops("198.51.100.17", "198.51.100.26", "198.51.100.42", "198.51.100.50", "198.18.2.10"),
		}, []string{"UPSTREAM 198.51.100.42 3", "BORDER 198.51.100.50 3"}},
		{"a silent hop before the prefix labels nothing", [][]*vantagev1.Hop{
			hops("198.51.100.1", "198.51.100.26", "198.51.100.42", "", "198.18.0.10"),
		}, nil},
		{"a silent hop before the border labels only the border", [][]*vantagev1.Hop{
			hops("198.51.100.1", "198.51.100.26", "", "198.51.100.50", "198.18.0.10"),
		}, []string{"BORDER 198.51.100.50 1"}},
		{"a trace that never entered says nothing", [][]*vantagev1.Hop{
			hops("198.51.100.1", "198.51.100.26", "198.51.100.42", "", ""),
		}, nil},
		{"the first hop inside counts, not the destination", [][]*vantagev1.Hop{
			hops("198.51.100.1", "198.51.100.42", "198.51.100.50", "198.18.0.1", "198.18.0.10"),
		}, []string{"UPSTREAM 198.51.100.42 1", "BORDER 198.51.100.50 1"}},
		{"two borders (multi-homed), majority label wins", [][]*vantagev1.Hop{
			hops("198.51.100.1", "198.51.100.42", "198.51.100.50", "198.18.0.10"),
			hops("198.51.100.9", "198.51.100.42", "198.51.100.58", "198.18.1.10"),
			hops("198.51.100.17", "198.51.100.42", "198.51.100.58", "198.18.1.11"),
		}, []string{"UPSTREAM 198.51.100.42 3", "BORDER 198.51.100.58 2", "BORDER 198.51.100.50 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Each trace from a vantage of its own group; quorum 1.
			var traces []Trace
			for i, h := range c.traces {
				traces = append(traces, Trace{Group: fmt.Sprintf("label:p%d", i), Hops: h})
			}
			kept, _ := Upstreams(lab, traces, 1)
			if got := routerStrings(kept); !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

func routerStrings(rs []Router) []string {
	var out []string
	for _, r := range rs {
		role := map[vantagev1.TargetRole]string{vantagev1.TargetRole_TARGET_ROLE_UPSTREAM: "UPSTREAM", vantagev1.TargetRole_TARGET_ROLE_BORDER: "BORDER"}[r.Role]
		out = append(out, fmt.Sprintf("%s %s %d", role, r.Addr, r.Traces))
	}
	return out
}

// TestUpstreamsNeedAgreement: a router is labelled only when traces from
// at least need quorum groups saw it in that role. One lying agent (its
// traces claim 203.0.113.66 and .77 sit just before the prefixes, on
// every host it traced) labels nothing, whatever its number of traces; two
// vantages of one provider are one group; a campaign of quorum 1 trusts
// one group.
func TestUpstreamsNeedAgreement(t *testing.T) {
	lab := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")}
	honest := func(group, first, dst string) Trace {
		return Trace{Group: group, Hops: hops(first, "198.51.100.26", "198.51.100.42", "198.51.100.50", dst)}
	}
	liar := func(dst string) Trace {
		return Trace{Group: "label:evil", Hops: hops("198.51.100.17", "203.0.113.66", "203.0.113.77", dst)}
	}
	var lies []Trace
	for _, dst := range []string{"198.18.0.10", "198.18.0.11", "198.18.1.10", "198.18.1.11", "198.18.2.10", "198.18.3.10"} {
		lies = append(lies, liar(dst))
	}
	cases := []struct {
		name        string
		traces      []Trace
		need        int
		want, ghost []string
	}{
		{"two honest providers and a liar", append([]Trace{honest("label:a", "198.51.100.1", "198.18.0.10"), honest("label:b", "198.51.100.9", "198.18.1.10")}, lies...), 2,
			[]string{"UPSTREAM 198.51.100.42 2", "BORDER 198.51.100.50 2"}, []string{"UPSTREAM 203.0.113.66 6", "BORDER 203.0.113.77 6"}},
		{"the liar alone", lies, 2, nil, []string{"UPSTREAM 203.0.113.66 6", "BORDER 203.0.113.77 6"}},
		{"one provider, two vantages", []Trace{honest("label:a", "198.51.100.1", "198.18.0.10"), honest("label:a", "198.51.100.9", "198.18.1.10")}, 2,
			nil, []string{"UPSTREAM 198.51.100.42 2", "BORDER 198.51.100.50 2"}},
		{"the liar relabels a real router, outvoted", []Trace{honest("label:a", "198.51.100.1", "198.18.0.10"), honest("label:b", "198.51.100.9", "198.18.1.10"),
			{Group: "label:evil", Hops: hops("198.51.100.17", "198.51.100.50", "198.51.100.42", "198.18.2.10")}}, 2,
			[]string{"UPSTREAM 198.51.100.42 2", "BORDER 198.51.100.50 2"}, nil},
		{"quorum 1 trusts one group", lies[:1], 1, []string{"UPSTREAM 203.0.113.66 1", "BORDER 203.0.113.77 1"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kept, ignored := Upstreams(lab, c.traces, c.need)
			if got := routerStrings(kept); !slices.Equal(got, c.want) {
				t.Errorf("kept %v, want %v", got, c.want)
			}
			if got := routerStrings(ignored); !slices.Equal(got, c.ghost) {
				t.Errorf("ignored %v, want %v", got, c.ghost)
			}
		})
	}
}

func TestQuorumGroup(t *testing.T) {
	for _, c := range []struct {
		labels      map[string]string
		label, want string
	}{
		{map[string]string{"provider": "lab-a"}, "provider", "label:lab-a"},
		{map[string]string{"role": "vps"}, "provider", "agent:agt-1"},
		{map[string]string{"provider": "lab-a"}, "-", "agent:agt-1"},
		{map[string]string{"provider": ""}, "provider", "agent:agt-1"},
	} {
		if got := QuorumGroup("agt-1", c.labels, c.label); got != c.want {
			t.Errorf("QuorumGroup(%v, %q) = %q, want %q", c.labels, c.label, got, c.want)
		}
	}
}

func TestRouterAddrs(t *testing.T) {
	nets := []campaign.Network{nw("net0", "198.18.0.0/24"), nw("net1", "198.18.1.0/24")}
	p := func(a string, ttl uint32) Probe {
		return Probe{Agent: "a", Target: netip.MustParseAddr(a), Up: true, ReplyTTL: ttl}
	}
	cases := []struct {
		name   string
		probes []Probe
		want   string
	}{
		// The lab: hosts 4 hops away (TTL 60), the border's .1 three (61).
		{"border interface", []Probe{p("198.18.0.1", 61), p("198.18.0.10", 60), p("198.18.0.11", 60), p("198.18.1.1", 61), p("198.18.1.10", 60)},
			"198.18.0.1 198.18.1.1"},
		{"host behind an internal router stays", []Probe{p("198.18.0.10", 60), p("198.18.0.11", 60), p("198.18.0.200", 59)}, ""},
		{"windows hosts (initial 128)", []Probe{p("198.18.0.1", 61), p("198.18.0.10", 124), p("198.18.0.11", 124)}, "198.18.0.1"},
		{"no TTL: nothing", []Probe{p("198.18.0.1", 0), p("198.18.0.10", 0)}, ""},
		{"silent probes ignored", []Probe{{Agent: "a", Target: netip.MustParseAddr("198.18.0.1"), ReplyTTL: 61}, p("198.18.0.10", 60)}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, a := range RouterAddrs(nets, tc.probes) {
				got = append(got, a.String())
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Errorf("RouterAddrs = %q, want %q", s, tc.want)
			}
		})
	}
}

// TestRouterNamesStable: a discovered router's name depends on its role and
// address only, so a second discovery that sees the routers in another
// order, with more traces for one of them and a router the first did not
// find, names the routers both found exactly as the first did.
func TestRouterNamesStable(t *testing.T) {
	lab := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")}
	first := []Trace{
		{Group: "label:p0", Hops: hops("198.51.100.1", "198.51.100.42", "198.51.100.50", "198.18.0.10")},
		{Group: "label:p1", Hops: hops("198.51.100.9", "198.51.100.42", "198.51.100.50", "198.18.1.10")},
	}
	second := []Trace{ // a new upstream .46 (multi-homed), the old ones in another order
		{Group: "label:p2", Hops: hops("198.51.100.17", "198.51.100.46", "198.51.100.58", "198.18.2.10")},
		{Group: "label:p3", Hops: hops("198.51.100.25", "198.51.100.46", "198.51.100.58", "198.18.2.11")},
		{Group: "label:p4", Hops: hops("198.51.100.26", "198.51.100.46", "198.51.100.58", "198.18.2.12")},
		{Group: "label:p1", Hops: hops("198.51.100.9", "198.51.100.42", "198.51.100.50", "198.18.1.10")},
		{Group: "label:p0", Hops: hops("198.51.100.1", "198.51.100.42", "198.51.100.50", "198.18.0.10")},
	}
	names := func(rs []Router) map[string]string {
		m := map[string]string{}
		for _, r := range rs {
			if _, dup := m[r.Addr.String()]; dup {
				t.Fatalf("router %s listed twice", r.Addr)
			}
			m[r.Addr.String()] = r.Name
		}
		return m
	}
	a, _ := Upstreams(lab, first, 1)
	b, _ := Upstreams(lab, second, 1)
	na, nb := names(a), names(b)
	want := map[string]string{"198.51.100.42": "upstream-198-51-100-42", "198.51.100.50": "border-198-51-100-50"}
	for addr, name := range want {
		if na[addr] != name || nb[addr] != name {
			t.Errorf("%s named %q by the first discovery and %q by the second, want %q both times", addr, na[addr], nb[addr], name)
		}
	}
	if nb["198.51.100.46"] != "upstream-198-51-100-46" || nb["198.51.100.58"] != "border-198-51-100-58" {
		t.Errorf("new routers named %q and %q", nb["198.51.100.46"], nb["198.51.100.58"])
	}
	seen := map[string]bool{}
	for _, n := range nb {
		if seen[n] {
			t.Errorf("name %q given twice in %v", n, nb)
		}
		seen[n] = true
	}
	// The order the second discovery lists routers in changed (the new
	// upstream has more traces): an index-based name would have moved.
	if b[0].Addr == a[0].Addr {
		t.Logf("order unchanged (%s first); names checked anyway", a[0].Addr)
	}
}
