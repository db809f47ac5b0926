package campaign

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func prefixes(bs []RIRBlock) []string {
	var out []string
	for _, b := range bs {
		for _, p := range b.Prefixes {
			out = append(out, p.String())
		}
	}
	return out
}

func TestParseRIRGood(t *testing.T) {
	cases := []struct {
		file, country string
		want          []string
	}{
		// 192 addresses from 192.0.2.0 are a /25 and a /26.
		{"delegated-plain.txt", "KP", []string{"198.18.0.0/22", "192.0.2.0/25", "192.0.2.128/26", "2001:db8:18::/48"}},
		{"delegated-plain.txt", "JP", []string{"203.0.113.0/24", "2001:db8:99::/48"}},
		// available, reserved and asn rows are skipped.
		{"delegated-extended.txt", "KP", []string{"198.51.100.0/25", "198.51.100.128/26", "2001:db8:18::/48"}},
		{"delegated-extended.txt", "JP", []string{"192.0.2.0/24"}},
		{"delegated-extended.txt", "FR", nil},
	}
	for _, c := range cases {
		t.Run(c.file+"/"+c.country, func(t *testing.T) {
			bs, err := ParseRIR(readFile(t, filepath.Join("testdata/rir", c.file)), c.country)
			if err != nil {
				t.Fatal(err)
			}
			if got := prefixes(bs); !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

// TestParseRIRBad pairs every broken fixture with its exact error.
func TestParseRIRBad(t *testing.T) {
	cases := []struct{ file, want string }{
		{"bad-value.txt", `line 2: field value: "lots" is not a positive integer`},
		{"bad-start.txt", `line 3: field start: "198.18.300.0" is not an IPv4 address`},
		{"bad-fields.txt", `line 1: has 5 fields, want at least 7 (registry|cc|type|start|value|date|status)`},
		{"bad-status.txt", `line 1: field status: "stolen" must be allocated, assigned, available or reserved`},
		{"bad-v6-length.txt", `line 1: field value: 129 is not an IPv6 prefix length (0-128)`},
		{"bad-v6-start.txt", `line 1: field start: 2001:db8:18::1 has bits set beyond the /48 of value`},
		{"bad-type.txt", `line 1: field type: "ipv5" must be asn, ipv4 or ipv6`},
		{"bad-cc.txt", `line 1: field cc: "kp" is not a two-letter upper-case country code`},
		{"bad-overflow.txt", `line 1: field value: 1024 addresses from 255.255.255.0 run past 255.255.255.255`},
		{"bad-date.txt", `line 1: field date: "2009-11-04" is not YYYYMMDD`},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.file] = true
		t.Run(c.file, func(t *testing.T) {
			_, err := ParseRIR(readFile(t, filepath.Join("testdata/rir", c.file)), "KP")
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrRIR) {
				t.Errorf("%v does not wrap ErrRIR", err)
			}
			if err.Error() != c.want {
				t.Errorf("got  %s\nwant %s", err, c.want)
			}
		})
	}
	all, _ := filepath.Glob("testdata/rir/bad-*")
	for _, f := range all {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no test case", f)
		}
	}
}

func TestSplitV4(t *testing.T) {
	cases := []struct {
		start string
		n     uint64
		want  []string
	}{
		{"198.18.0.0", 256, []string{"198.18.0.0/24"}},
		{"198.18.0.0", 768, []string{"198.18.0.0/23", "198.18.2.0/24"}},
		{"198.18.1.0", 512, []string{"198.18.1.0/24", "198.18.2.0/24"}},
		{"198.18.0.5", 3, []string{"198.18.0.5/32", "198.18.0.6/31"}},
		{"0.0.0.0", 1 << 32, []string{"0.0.0.0/0"}},
	}
	for _, c := range cases {
		t.Run(c.start, func(t *testing.T) {
			var got []string
			for _, p := range splitV4(v4(netip.MustParseAddr(c.start)), c.n) {
				got = append(got, p.String())
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

const rirCampaign = `name: kp-rir
scope: {country: KP}
targets:
  rir: {file: %FILE%}
  hosts: {per_network: 2}
probes:
  - icmp: {}
schedule: {round: 10s}
`

func TestExpandRIR(t *testing.T) {
	read := func(p string) ([]byte, error) { return os.ReadFile(filepath.Join("testdata/rir", p)) }
	spec := strings.Replace(rirCampaign, "%FILE%", "delegated-extended.txt", 1)
	out, expanded, err := ExpandRIR([]byte(spec), read)
	if err != nil {
		t.Fatal(err)
	}
	if !expanded {
		t.Fatal("expanded = false")
	}
	s, err := Parse(out)
	if err != nil {
		t.Fatalf("expanded file does not parse: %v\n%s", err, out)
	}
	want := []string{"rir-198-51-100-0-25", "rir-198-51-100-128-26", "rir-2001-db8-18---48"}
	if got := s.NetworkNames(); !slices.Equal(got, want) {
		t.Errorf("networks %v, want %v\n%s", got, want, out)
	}
	if n := len(s.Targets()); n != 6 {
		t.Errorf("%d targets, want 6 (2 per network)", n)
	}
	if !strings.Contains(string(out), "expanded from delegated-extended.txt") {
		t.Errorf("no provenance comment:\n%s", out)
	}

	t.Run("unchanged without rir", func(t *testing.T) {
		in := readFile(t, "testdata/good/minimal.yaml")
		out, expanded, err := ExpandRIR(in, read)
		if err != nil || expanded || string(out) != string(in) {
			t.Errorf("expanded=%v err=%v", expanded, err)
		}
	})
	bad := []struct{ name, spec, want string }{
		{"broken line", strings.Replace(rirCampaign, "%FILE%", "bad-value.txt", 1),
			`targets.rir.file: bad-value.txt: line 2: field value: "lots" is not a positive integer`},
		{"missing file", strings.Replace(rirCampaign, "%FILE%", "nope.txt", 1),
			"targets.rir.file: open testdata/rir/nope.txt: no such file or directory"},
		{"no blocks", strings.Replace(strings.Replace(rirCampaign, "%FILE%", "delegated-extended.txt", 1), "KP}", "FR}", 1),
			"targets.rir: delegated-extended.txt has no allocated or assigned ipv4/ipv6 block for country FR; the campaign would have no targets"},
		{"unknown field", strings.Replace(rirCampaign, "{file: %FILE%}", "{path: x}", 1),
			"targets.rir.path: unknown field (known fields: file, country)"},
		{"no file", strings.Replace(rirCampaign, "{file: %FILE%}", "{country: KP}", 1),
			"targets.rir.file: required: the path of a delegated-stats file"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ExpandRIR([]byte(c.spec), read)
			if err == nil || err.Error() != c.want {
				t.Errorf("got  %v\nwant %s", err, c.want)
			}
		})
	}
	t.Run("controller refuses an unexpanded rir", func(t *testing.T) {
		_, err := Parse([]byte(spec))
		if err == nil || !strings.HasPrefix(err.Error(), "targets.rir: must be expanded before the campaign reaches the controller") {
			t.Errorf("got %v", err)
		}
	})
}

func TestCheckQuorum(t *testing.T) {
	base := "name: q\nscope: {country: KP}\ntargets:\n  networks: [{name: n, prefix: 198.18.0.0/24, hosts: [198.18.0.10]}]\n" +
		"  upstreams: [198.51.100.42]\n  borders: [198.51.100.50]\nprobes: [{icmp: {}}]\nschedule: {round: 10s}\n"
	vps := map[string]string{"role": "vps"}
	other := map[string]string{"role": "lab"}
	provA := map[string]string{"role": "vps", "provider": "a"}
	provB := map[string]string{"role": "vps", "provider": "b"}
	cases := []struct {
		name, vantages, label string
		agents                []map[string]string
		want                  string
	}{
		{"enough", "vantages: {select: {role: vps}, quorum: 2}\n", "provider", []map[string]string{vps, vps, other}, ""},
		{"too few matching", "vantages: {select: {role: vps}, quorum: 3}\n", "provider", []map[string]string{vps, vps, other},
			"vantages.quorum: 3 is more than the 2 enrolled active agent(s) matching vantages.select {role=vps}; every verdict would be UNKNOWN"},
		{"no agents", "vantages: {quorum: 1}\n", "provider", nil,
			"vantages.quorum: 1 is more than the 0 enrolled active agent(s) matching any agent; every verdict would be UNKNOWN"},
		{"distinct providers", "vantages: {quorum: 2}\n", "provider", []map[string]string{provA, provB}, ""},
		{"one provider twice", "vantages: {quorum: 3}\n", "provider", []map[string]string{provA, provA, other},
			"vantages.quorum: 3 is more than the 2 distinct \"provider\" group(s) among the 3 enrolled active agent(s) matching any agent (the quorum counts agents sharing a provider once); every verdict would be UNKNOWN"},
		{"every agent its own group", "vantages: {quorum: 3}\n", "-", []map[string]string{provA, provA, other}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Parse([]byte(base + c.vantages))
			if err != nil {
				t.Fatal(err)
			}
			err = s.CheckQuorum(c.agents, c.label)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != c.want || !errors.Is(err, ErrInvalid) {
				t.Errorf("got  %v\nwant %s", err, c.want)
			}
		})
	}
	t.Run("borders get role BORDER", func(t *testing.T) {
		s, err := Parse([]byte(base))
		if err != nil {
			t.Fatal(err)
		}
		ts := s.Targets()
		if last := ts[len(ts)-1]; last.Addr.String() != "198.51.100.50" || last.Role.String() != "TARGET_ROLE_BORDER" {
			t.Errorf("last target %+v", last)
		}
	})
}

// TestRIRExample pins what deploy/examples/country-rir.yaml expands to.
func TestRIRExample(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "examples")
	out, expanded, err := ExpandRIR(readFile(t, filepath.Join(dir, "country-rir.yaml")), func(p string) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, p))
	})
	if err != nil || !expanded {
		t.Fatalf("expanded=%v err=%v", expanded, err)
	}
	s := mustParse(t, out)
	if got, want := s.NetworkNames(), []string{"rir-198-18-0-0-24", "rir-198-18-1-0-24", "rir-198-18-2-0-23"}; !slices.Equal(got, want) {
		t.Errorf("networks %v, want %v", got, want)
	}
	if n := len(s.Targets()); n != 3*4+2 {
		t.Errorf("%d targets, want 14", n)
	}
}
