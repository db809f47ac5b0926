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

// routerCampaign is a minimal campaign whose targets section ends with the
// given upstreams/borders lines.
func routerCampaign(lines string) []byte {
	return []byte(`name: r
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefix: 198.18.0.0/24, hosts: [198.18.0.10]}
` + lines + `probes:
  - icmp: {}
schedule: {round: 5s}
`)
}

// routerTargets renders the UPSTREAM and BORDER targets as "addr ROLE name".
func routerTargets(ts []Target) []string {
	var out []string
	for _, t := range ts {
		if t.Role == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || t.Role == vantagev1.TargetRole_TARGET_ROLE_BORDER {
			out = append(out, fmt.Sprintf("%s %s %s", t.Addr, strings.TrimPrefix(t.Role.String(), "TARGET_ROLE_"), t.Name))
		}
	}
	return out
}

// TestNamedRouters: the named form {name, addrs} names every address of an
// upstream (or border); a bare address gets RouterName; both reach
// CampaignTarget.name.
func TestNamedRouters(t *testing.T) {
	cases := []struct {
		name, lines string
		want        []string
	}{
		{"named upstreams and border", "  upstreams: [{name: unicom, addrs: [198.51.100.42, 198.51.100.43]}, {name: rostelecom, addrs: [198.51.100.46]}]\n" +
			"  borders: [{name: ryugyong, addrs: [198.51.100.50]}]\n",
			[]string{"198.51.100.42 UPSTREAM unicom", "198.51.100.43 UPSTREAM unicom", "198.51.100.46 UPSTREAM rostelecom", "198.51.100.50 BORDER ryugyong"}},
		{"bare addresses get generated names", "  upstreams: [198.51.100.42, '2001:db8:1::1']\n  borders: [198.51.100.50]\n",
			[]string{"198.51.100.42 UPSTREAM upstream-198-51-100-42", "2001:db8:1::1 UPSTREAM upstream-2001-db8-1--1", "198.51.100.50 BORDER border-198-51-100-50"}},
		{"the forms mix", "  upstreams: [198.51.100.42, {name: unicom, addrs: [198.51.100.46]}]\n",
			[]string{"198.51.100.42 UPSTREAM upstream-198-51-100-42", "198.51.100.46 UPSTREAM unicom"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := mustParse(t, routerCampaign(tc.lines))
			if got := routerTargets(s.Targets()); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("routers\n got: %q\nwant: %q", got, tc.want)
			}
			var proto []string
			for _, pt := range s.Proto().GetTargets() {
				if pt.GetName() != "" {
					proto = append(proto, pt.GetAddress()+" "+strings.TrimPrefix(pt.GetRole().String(), "TARGET_ROLE_")+" "+pt.GetName())
				}
			}
			if strings.Join(proto, "|") != strings.Join(tc.want, "|") {
				t.Errorf("CampaignTarget names\n got: %q\nwant: %q", proto, tc.want)
			}
			for _, pt := range s.Proto().GetTargets() {
				if pt.GetRole() == vantagev1.TargetRole_TARGET_ROLE_HOST && pt.GetName() != "" {
					t.Errorf("host %s has a router name %q", pt.GetAddress(), pt.GetName())
				}
			}
		})
	}
}

// TestNamedRoutersBad: every mistake in the named form is an error naming
// the field.
func TestNamedRoutersBad(t *testing.T) {
	cases := []struct{ name, lines, want string }{
		{"no name", "  upstreams: [{addrs: [198.51.100.42]}]\n", "targets.upstreams[0].name: required in the named form {name, addrs}"},
		{"bad name", "  upstreams: [{name: China_Unicom, addrs: [198.51.100.42]}]\n", `targets.upstreams[0].name: "China_Unicom" must match [a-z0-9][a-z0-9-]{0,62}`},
		{"no addrs", "  upstreams: [{name: unicom}]\n", "targets.upstreams[0].addrs: needs at least one address"},
		{"empty addrs", "  upstreams: [{name: unicom, addrs: []}]\n", "targets.upstreams[0].addrs: needs at least one address"},
		{"bad address", "  upstreams: [{name: unicom, addrs: [198.51.100.420]}]\n", `targets.upstreams[0].addrs[0]: "198.51.100.420" is not a valid IP address`},
		{"bad bare address", "  borders: [198.51.100.500]\n", `targets.borders[0]: "198.51.100.500" is not a valid IP address`},
		{"unknown field", "  upstreams: [{name: unicom, addrs: [198.51.100.42], as: 4837}]\n", "targets.upstreams[0].as: unknown field (known fields: name, addrs, asn)"},
		{"asn zero", "  upstreams: [{name: unicom, addrs: [198.51.100.42], asn: 0}]\n", "targets.upstreams[0].asn: 0 is out of range [1, 4294967294]"},
		{"asn not a number", "  upstreams: [{name: unicom, addrs: [198.51.100.42], asn: AS4837}]\n", "targets.upstreams[0].asn: expected an integer, got a string"},
		{"a list in the list", "  upstreams: [[198.51.100.42]]\n", "targets.upstreams[0]: expected an IP address or {name, addrs[, asn]}, got a list"},
		{"name used twice", "  upstreams: [{name: unicom, addrs: [198.51.100.42]}]\n  borders: [{name: unicom, addrs: [198.51.100.50]}]\n",
			`targets.borders[0].name: "unicom" is already used by targets.upstreams[0]`},
		{"address twice", "  upstreams: [{name: unicom, addrs: [198.51.100.42]}, {name: cnc, addrs: [198.51.100.42]}]\n",
			"targets.upstreams[1].addrs[0]: 198.51.100.42 is already a target (targets.upstreams[0].addrs[0])"},
		{"not a list", "  upstreams: unicom\n", `targets.upstreams: expected a list of addresses or {name, addrs}, or "auto", got a string`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(routerCampaign(tc.lines))
			if err == nil || err.Error() != tc.want || !errors.Is(err, ErrInvalid) {
				t.Errorf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// TestDiscoveredRouterNames: WithTargets names discovered routers with
// RouterName (whatever name discovery passed), and a router already listed
// keeps its listed name.
func TestDiscoveredRouterNames(t *testing.T) {
	s := mustParse(t, readFile(t, filepath.Join("testdata", "good", "discover.yaml")))
	up, border := vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, vantagev1.TargetRole_TARGET_ROLE_BORDER
	found := []Target{
		{Addr: netip.MustParseAddr("198.51.100.50"), Role: border, Name: "whatever"},
		{Addr: netip.MustParseAddr("198.51.100.42"), Role: up},
	}
	d, err := s.WithTargets(found)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.42 UPSTREAM upstream-198-51-100-42", "198.51.100.50 BORDER border-198-51-100-50"}
	if got := routerTargets(d.Targets()); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("discovered routers\n got: %q\nwant: %q", got, want)
	}
	// Re-discovery in the other order, with one more router: same names.
	found = append([]Target{{Addr: netip.MustParseAddr("198.51.100.46"), Role: up}}, found[1], found[0])
	d2, err := s.WithTargets(found)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"198.51.100.46 UPSTREAM upstream-198-51-100-46", "198.51.100.42 UPSTREAM upstream-198-51-100-42", "198.51.100.50 BORDER border-198-51-100-50"}
	if got := routerTargets(d2.Targets()); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("re-discovered routers\n got: %q\nwant: %q", got, want)
	}
}
