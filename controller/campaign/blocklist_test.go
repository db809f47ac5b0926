package campaign

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func limitsSpec(t *testing.T, prefix, extra string) *Spec {
	t.Helper()
	y := "name: lim\nscope: {country: KP}\ntargets:\n  networks:\n    - {name: n0, prefix: " + prefix + "}\n  hosts: {per_network: 1}\n" + extra +
		"probes:\n  - icmp: {}\nschedule: {round: 10s}\n"
	s, err := Parse([]byte(y))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func TestLimitsCheck(t *testing.T) {
	block := []netip.Prefix{netip.MustParsePrefix("8.8.8.0/24")}
	optOut := []netip.Prefix{netip.MustParsePrefix("9.9.0.0/16")}
	tests := []struct {
		name   string
		prefix string
		extra  string
		limits Limits
		want   string // "" = accepted
	}{
		{"private refused", "10.0.0.0/8", "", Limits{}, "targets.networks[0].prefix: 10.0.0.0/8 overlaps the special-purpose range 10.0.0.0/8"},
		{"loopback refused", "127.0.0.0/8", "", Limits{}, "127.0.0.0/8 (loopback"},
		{"covering prefix refused", "8.0.0.0/7", "", Limits{Blocklist: block}, "overlaps 8.8.8.0/24 on the controller's blocklist"},
		{"blocklisted refused", "8.8.8.0/25", "", Limits{Blocklist: block}, "targets.networks[0].prefix: 8.8.8.0/25 overlaps 8.8.8.0/24 on the controller's blocklist"},
		{"opt-out refused", "9.9.9.0/24", "", Limits{OptOut: optOut}, "opted out"},
		{"v6 documentation refused", "2001:db8::/64", "", Limits{}, "2001:db8::/32"},
		{"upstream in private space refused", "1.2.3.0/24", "  upstreams: [192.168.1.1]\n", Limits{}, "targets: 192.168.1.1: 192.168.1.1/32 overlaps the special-purpose range 192.168.0.0/16"},
		{"public accepted", "1.2.3.0/24", "", Limits{Blocklist: block, OptOut: optOut}, ""},
		{"lab range allowed by flag", "198.18.0.0/24", "", Limits{AllowSpecial: true}, ""},
		{"lab flag does not lift the blocklist", "198.18.0.0/24", "", Limits{AllowSpecial: true, Blocklist: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}, "blocklist"},
		{"per-target rate capped", "1.2.3.0/24", "budget: {per_target_pps: 5}\n", Limits{MaxPerTargetPPS: 2}, "budget.per_target_pps: 5 is above the controller's cap of 2"},
		{"agent rate capped", "1.2.3.0/24", "budget: {agent_pps: 5000}\n", Limits{MaxAgentPPS: 1000}, "budget.agent_pps: 5000 is above the controller's cap of 1000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.limits.Check(limitsSpec(t, tc.prefix, tc.extra))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Check: %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v, want it to contain %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Check: %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestLoadPrefixFile(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string
		err        string
	}{
		{"prefixes and addresses", "# blocklist\n8.8.8.0/24\n\n 1.1.1.1 # one host\n2001:4860::/32\n::ffff:9.9.9.0/120\n",
			[]string{"8.8.8.0/24", "1.1.1.1/32", "2001:4860::/32", "9.9.9.0/24"}, ""},
		{"unmasked prefix is masked", "8.8.8.8/24\n", []string{"8.8.8.0/24"}, ""},
		{"garbage names its line", "8.8.8.0/24\nnot-a-prefix\n", nil, "f:2: \"not-a-prefix\" is not a CIDR prefix or an IP address"},
		{"bad length", "1.2.3.0/33\n", nil, "f:1:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(path, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadPrefixFile(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), strings.Replace(tc.err, "f:", path+":", 1)) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].String() != tc.want[i] {
					t.Errorf("[%d] = %s, want %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func FuzzParsePrefixes(f *testing.F) {
	f.Add([]byte("8.8.8.0/24\n1.1.1.1 # x\n::ffff:1.2.3.4/128\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := ParsePrefixes("f", b)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() {
				t.Fatalf("invalid prefix %v from %q", p, b)
			}
		}
	})
}
