package campaign

import (
	"context"
	"errors"
	"fmt"
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
		limits *Limits
		want   string // "" = accepted
	}{
		{"private refused", "10.0.0.0/8", "", &Limits{}, "targets.networks[0].prefix: 10.0.0.0/8 overlaps the special-purpose range 10.0.0.0/8"},
		{"loopback refused", "127.0.0.0/8", "", &Limits{}, "127.0.0.0/8 (loopback"},
		{"covering prefix refused", "8.0.0.0/7", "", &Limits{Blocklist: block}, "overlaps 8.8.8.0/24 on the controller's blocklist"},
		{"blocklisted refused", "8.8.8.0/25", "", &Limits{Blocklist: block}, "targets.networks[0].prefix: 8.8.8.0/25 overlaps 8.8.8.0/24 on the controller's blocklist"},
		{"opt-out refused", "9.9.9.0/24", "", &Limits{OptOut: optOut}, "opted out"},
		{"v6 documentation refused", "2001:db8::/64", "", &Limits{}, "2001:db8::/32"},
		{"upstream in private space refused", "1.2.3.0/24", "  upstreams: [192.168.1.1]\n", &Limits{}, "targets: 192.168.1.1: 192.168.1.1/32 overlaps the special-purpose range 192.168.0.0/16"},
		{"public accepted", "1.2.3.0/24", "", &Limits{Blocklist: block, OptOut: optOut}, ""},
		{"lab range allowed by flag", "198.18.0.0/24", "", &Limits{AllowSpecial: true}, ""},
		{"lab flag does not lift the blocklist", "198.18.0.0/24", "", &Limits{AllowSpecial: true, Blocklist: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}}, "blocklist"},
		{"per-target rate capped", "1.2.3.0/24", "budget: {per_target_pps: 5}\n", &Limits{MaxPerTargetPPS: 2}, "budget.per_target_pps: 5 is above the controller's cap of 2"},
		{"agent rate capped", "1.2.3.0/24", "budget: {agent_pps: 5000}\n", &Limits{MaxAgentPPS: 1000}, "budget.agent_pps: 5000 is above the controller's cap of 1000"},
		// Ranges the controller's own table lacked before the shared one.
		{"AS112-v4 refused", "192.31.196.0/24", "", &Limits{}, "192.31.196.0/24 (AS112-v4 (RFC 7535))"},
		{"AMT refused", "192.52.193.0/24", "", &Limits{}, "192.52.193.0/24 (AMT (RFC 7450))"},
		{"AS112 direct delegation refused", "192.175.48.0/24", "", &Limits{}, "192.175.48.0/24 (direct delegation AS112 service (RFC 7534))"},
		{"limited broadcast named", "1.2.3.0/24", "  upstreams: [255.255.255.255]\n", &Limits{}, "255.255.255.255/32 (limited broadcast (RFC 919))"},
		{"SRv6 SIDs refused", "5f00::/64", "", &Limits{}, "5f00::/16 (segment routing SIDs (RFC 9602))"},
		{"site local refused", "fec0::/64", "", &Limits{}, "fec0::/10 (site local, deprecated (RFC 3879))"},
		{"AS112 v6 refused", "2620:4f:8000::/64", "", &Limits{}, "2620:4f:8000::/48 (direct delegation AS112 service (RFC 7534))"},
		// IPv6 forms that embed IPv4.
		{"NAT64 of a private host refused", "1.2.3.0/24", "  upstreams: [\"64:ff9b::a00:1\"]\n", &Limits{},
			"targets: 64:ff9b::a00:1: 64:ff9b::a00:1/128 embeds 10.0.0.1/32 (NAT64 well-known prefix (RFC 6052) 64:ff9b::/96), which overlaps the special-purpose range 10.0.0.0/8 (private use (RFC 1918))"},
		{"NAT64 of the metadata address refused", "64:ff9b::a9fe:a900/120", "", &Limits{},
			"targets.networks[0].prefix: 64:ff9b::a9fe:a900/120 embeds 169.254.169.0/24 (NAT64 well-known prefix (RFC 6052) 64:ff9b::/96), which overlaps the special-purpose range 169.254.0.0/16"},
		{"NAT64 of a public network accepted", "64:ff9b::808:800/120", "", &Limits{}, ""},
		{"NAT64 of a blocklisted network refused", "64:ff9b::808:800/120", "", &Limits{Blocklist: block},
			"64:ff9b::808:800/120 embeds 8.8.8.0/24 (NAT64 well-known prefix (RFC 6052) 64:ff9b::/96), which overlaps 8.8.8.0/24 on the controller's blocklist"},
		{"NAT64 of an opted-out network refused", "64:ff9b::909:900/120", "", &Limits{OptOut: optOut}, "opted out"},
		{"IPv4-compatible refused whole", `"::808:800/120"`, "", &Limits{}, "::808:800/120 overlaps the special-purpose range ::/96 (IPv4-compatible, deprecated (RFC 4291)), a form refused whole"},
		{"IPv4-translated refused whole", `"::ffff:0:808:800/120"`, "", &Limits{}, "::ffff:0:0:0/96 (IPv4-translated (RFC 2765)), a form refused whole"},
		{"6to4 refused whole", "2002:808:808::/48", "", &Limits{}, "2002::/16 (6to4 (RFC 3056)), a form refused whole; it embeds 8.8.8.8/32"},
		{"Teredo refused whole", "2001:0:4136:e378::/64", "", &Limits{}, "2001::/32 (Teredo (RFC 4380)), a form refused whole"},
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

// TestLimitsCheckContext: a cancelled check returns the context's error
// instead of finishing a big campaign.
func TestLimitsCheckContext(t *testing.T) {
	s := bigSpec(t, 4000)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := &Limits{Blocklist: []netip.Prefix{netip.MustParsePrefix("9.0.0.0/8")}}
	if err := l.CheckContext(ctx, s); !errors.Is(err, context.Canceled) {
		t.Fatalf("CheckContext(cancelled) = %v, want context.Canceled", err)
	}
	if err := l.CheckContext(context.Background(), s); err != nil {
		t.Fatalf("CheckContext = %v", err)
	}
}

// TestLimitsListReplaced: replacing Blocklist after a Check takes effect.
func TestLimitsListReplaced(t *testing.T) {
	s := limitsSpec(t, "8.8.8.0/24", "")
	l := &Limits{}
	if err := l.Check(s); err != nil {
		t.Fatal(err)
	}
	l.Blocklist = []netip.Prefix{netip.MustParsePrefix("8.8.0.0/16")}
	if err := l.Check(s); err == nil || !strings.Contains(err.Error(), "8.8.0.0/16 on the controller's blocklist") {
		t.Fatalf("Check after the blocklist was replaced = %v", err)
	}
}

// bigSpec is a campaign of n IPv4 targets in 1.0.0.0/16.
func bigSpec(t testing.TB, n int) *Spec {
	t.Helper()
	y := fmt.Sprintf("name: big\nscope: {country: KP}\ntargets:\n  networks:\n    - {name: n0, prefix: 1.0.0.0/16}\n  hosts: {per_network: %d}\n"+
		"probes:\n  - icmp: {}\nschedule: {round: 60s}\nbudget: {agent_pps: 100000}\n", n)
	s, err := Parse([]byte(y))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

// BenchmarkLimitsCheck: 65,000 targets against a blocklist of 100,000
// prefixes (none of them matching) and the special-purpose table.
func BenchmarkLimitsCheck(b *testing.B) {
	s := bigSpec(b, 65000)
	block := make([]netip.Prefix, 100000)
	for i := range block {
		block[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(2 + i>>16%200), byte(i >> 8), byte(i), 0}), 24)
	}
	l := &Limits{Blocklist: block}
	b.ResetTimer()
	for range b.N {
		if err := l.Check(s); err != nil {
			b.Fatal(err)
		}
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
