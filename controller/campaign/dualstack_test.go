package campaign

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// targetLines renders targets as "addr network role".
func targetLines(ts []Target) []string {
	var out []string
	for _, tg := range ts {
		out = append(out, fmt.Sprintf("%s %s %s", tg.Addr, tg.Network, strings.TrimPrefix(tg.Role.String(), "TARGET_ROLE_")))
	}
	return out
}

// TestDualStackExpansion: a network with an IPv4 and an IPv6 prefix is one
// network whose targets are in both families: listed hosts first, then
// per_network addresses in each prefix without a listed host.
func TestDualStackExpansion(t *testing.T) {
	s := mustParse(t, readFile(t, filepath.Join("testdata", "good", "dual-stack.yaml")))
	if got := strings.Join(s.NetworkNames(), ","); got != "net0,net1,net2,net3,net4" {
		t.Errorf("NetworkNames = %s, want one name per dual-stack network", got)
	}
	want := []string{
		"198.18.0.10 net0 HOST", "2001:db8:18::10 net0 HOST",
		"2001:db8:18:1::a net1 HOST", "2001:db8:18:1::b net1 HOST", "198.18.1.10 net1 HOST", "198.18.1.11 net1 HOST",
		"2001:db8:18:2::10 net2 HOST", "198.18.2.10 net2 HOST", "198.18.2.11 net2 HOST",
		"198.18.3.10 net3 HOST", "198.18.3.11 net3 HOST",
		"2001:db8:18:4::a net4 HOST", "2001:db8:18:4::b net4 HOST",
		"192.0.2.1  CONTROL",
	}
	if got := targetLines(s.Targets()); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Targets\n got: %q\nwant: %q", got, want)
	}
	var nets []string
	for _, nw := range s.Networks() {
		nets = append(nets, fmt.Sprint(nw.Name, nw.Prefixes))
	}
	if got, want := strings.Join(nets, " "), "net0[198.18.0.0/24 2001:db8:18::/64] net1[2001:db8:18:1::/64 198.18.1.0/24] "+
		"net2[198.18.2.0/24 2001:db8:18:2::/64] net3[198.18.3.0/24] net4[2001:db8:18:4::/64]"; got != want {
		t.Errorf("Networks = %s, want %s", got, want)
	}
	// The proto's prefix is the first; prefixes lists them all.
	c := s.Proto()
	var prefixes, all []string
	for _, nw := range c.GetNetworks() {
		prefixes = append(prefixes, nw.GetName()+"="+nw.GetPrefix())
		all = append(all, nw.GetName()+"="+strings.Join(nw.GetPrefixes(), ","))
	}
	if got, want := strings.Join(prefixes, " "), "net0=198.18.0.0/24 net1=2001:db8:18:1::/64 net2=198.18.2.0/24 net3=198.18.3.0/24 net4=2001:db8:18:4::/64"; got != want {
		t.Errorf("proto networks %s, want %s", got, want)
	}
	if got, want := strings.Join(all, " "), "net0=198.18.0.0/24,2001:db8:18::/64 net1=2001:db8:18:1::/64,198.18.1.0/24 "+
		"net2=198.18.2.0/24,2001:db8:18:2::/64 net3=198.18.3.0/24 net4=2001:db8:18:4::/64"; got != want {
		t.Errorf("proto networks' prefixes %s, want %s", got, want)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("Validate after Parse: %v", err)
	}
}

// TestDualStackDiscovery: discovery sweeps every prefix of a network that
// has no listed host inside it, and a discovered host may be in either
// family of its network.
func TestDualStackDiscovery(t *testing.T) {
	s := mustParse(t, readFile(t, filepath.Join("testdata", "good", "discover-dual.yaml")))
	var swept []string
	for _, nw := range s.SweepNetworks() {
		swept = append(swept, fmt.Sprint(nw.Name, nw.Prefixes))
	}
	if got, want := strings.Join(swept, " "), "net0[198.18.0.0/24 2001:db8:18::/120] net1[198.18.1.0/24]"; got != want {
		t.Errorf("SweepNetworks = %s, want %s", got, want)
	}
	tg := func(a, nw string) Target {
		return Target{Addr: netip.MustParseAddr(a), Network: nw, Role: vantagev1.TargetRole_TARGET_ROLE_HOST}
	}
	d, err := s.WithTargets([]Target{tg("2001:db8:18::5", "net0"), tg("198.18.1.7", "net1"), tg("198.18.0.9", "net0")})
	if err != nil {
		t.Fatal(err)
	}
	want := "2001:db8:18::5 net0 HOST|198.18.0.9 net0 HOST|2001:db8:18:1::10 net1 HOST|198.18.1.7 net1 HOST"
	if got := strings.Join(targetLines(d.Targets()), "|"); got != want {
		t.Errorf("targets\n got: %s\nwant: %s", got, want)
	}
	// net1's IPv6 prefix lists its hosts: it is not swept.
	_, err = s.WithTargets([]Target{tg("2001:db8:18:1::11", "net1")})
	if want := `discovered[0]: host 2001:db8:18:1::11 is not inside a swept network (network "net1")`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestDualStackLimits: the special-purpose ranges, the blocklist and the
// opt-out list apply to a network's IPv6 prefix as to its IPv4 one, and
// the error names the prefix's field.
func TestDualStackLimits(t *testing.T) {
	spec := func(v6 string) *Spec {
		t.Helper()
		return mustParse(t, []byte("name: lim\nscope: {country: KP}\ntargets:\n  networks:\n"+
			"    - {name: n0, prefixes: [1.2.3.0/24, \""+v6+"\"], hosts: [1.2.3.4]}\n  hosts: {per_network: 1}\n"+
			"probes:\n  - icmp: {}\nschedule: {round: 10s}\n"))
	}
	block := []netip.Prefix{netip.MustParsePrefix("2a00:1450::/32")}
	cases := []struct {
		name   string
		v6     string
		limits *Limits
		want   string
	}{
		{"documentation v6 refused", "2001:db8::/64", &Limits{},
			"targets.networks[0].prefixes[1]: 2001:db8::/64 overlaps the special-purpose range 2001:db8::/32 (documentation (RFC 3849)); " +
				"refused unless the controller runs with --allow-special-ranges (lab only)"},
		{"blocklisted v6 refused", "2a00:1450:4001::/64", &Limits{Blocklist: block},
			"targets.networks[0].prefixes[1]: 2a00:1450:4001::/64 overlaps 2a00:1450::/32 on the controller's blocklist"},
		{"opted-out v6 refused", "2a00:1450:4001::/64", &Limits{OptOut: block},
			"targets.networks[0].prefixes[1]: 2a00:1450:4001::/64 overlaps 2a00:1450::/32, whose operator opted out of probing"},
		{"public v6 accepted", "2a00:1450:4001::/64", &Limits{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.limits.Check(spec(tc.v6))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check: %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Check: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// TestDualStackExample pins deploy/examples/dual-stack.yaml: the lab's four
// networks, each one network with two hosts of each family.
func TestDualStackExample(t *testing.T) {
	s := mustParse(t, readFile(t, filepath.Join("..", "..", "deploy", "examples", "dual-stack.yaml")))
	if got := strings.Join(s.NetworkNames(), ","); got != "net0,net1,net2,net3" {
		t.Errorf("NetworkNames = %s", got)
	}
	families := map[string][2]int{}
	for _, tg := range s.Targets() {
		if tg.Role != vantagev1.TargetRole_TARGET_ROLE_HOST {
			continue
		}
		f := families[tg.Network]
		if tg.Addr.Is4() {
			f[0]++
		} else {
			f[1]++
		}
		families[tg.Network] = f
	}
	if got := fmt.Sprint(families); got != "map[net0:[2 2] net1:[2 2] net2:[2 2] net3:[2 2]]" {
		t.Errorf("hosts per network and family (v4 v6) = %s", got)
	}
	if n := len(s.Targets()); n != 20 {
		t.Errorf("%d targets, want 16 hosts + 4 routers", n)
	}
}
