package live

import (
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestDualStackNetworkCountsOnce: a network with an IPv4 and an IPv6
// prefix reaches the verdict engine as one network whose targets are in
// both families, so the scope counts it once; written as twins (n0 and
// n0v6), as campaigns had to before, it counted twice, and its IPv6 half
// going dark read as a network of the country lost.
func TestDualStackNetworkCountsOnce(t *testing.T) {
	const tail = "  hosts: {per_network: 2}\nprobes: [{icmp: {}}]\nschedule: {round: 10s, start: " + startYAML + "}\nvantages: {quorum: 2}\n"
	dual := "name: dual\nscope: {country: KP}\ntargets:\n  networks:\n" +
		"    - {name: net0, prefixes: [198.18.0.0/24, \"2001:db8:18::/64\"]}\n" +
		"    - {name: net1, prefix: 198.18.1.0/24}\n" + tail
	twins := "name: dual\nscope: {country: KP}\ntargets:\n  networks:\n" +
		"    - {name: net0, prefix: 198.18.0.0/24}\n    - {name: net0v6, prefix: \"2001:db8:18::/64\"}\n" +
		"    - {name: net1, prefix: 198.18.1.0/24}\n" + tail
	cases := []struct {
		name, spec      string
		total, up       uint32 // the scope's networks
		down            string
		netTotal, netUp uint32 // net0's targets
		netState        vantagev1.State
	}{
		{"dual-stack", dual, 2, 2, "", 4, 2, vantagev1.State_STATE_DEGRADED},
		{"twins", twins, 3, 2, "net0v6", 2, 2, vantagev1.State_STATE_REACHABLE},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ConfigFor(fixture.Spec(t, tc.spec), 0, 0)
			e, err := verdict.NewEngine(cfg)
			if err != nil {
				t.Fatal(err)
			}
			// Every target answers for 3 rounds, then the IPv6 hosts go
			// dark for long enough that every belief is firm.
			for n := int64(0); n < 20; n++ {
				feedDual(e, cfg, n, n >= 3)
				e.Evaluate(start.Add(time.Duration(n+1)*cfg.Round + cfg.Grace))
			}
			v, ok := e.Verdict("dual/scope/KP")
			if !ok {
				t.Fatal("no scope verdict")
			}
			t.Logf("%s: scope %s, %d of %d networks up, down [%s]", tc.name, v.GetState(), v.GetUp(), v.GetTotal(), strings.Join(v.GetDownChildren(), ","))
			if v.GetTotal() != tc.total || v.GetUp() != tc.up || strings.Join(v.GetDownChildren(), ",") != tc.down {
				t.Errorf("scope %d of %d networks up, down [%s]; want %d of %d, down [%s]", v.GetUp(), v.GetTotal(),
					strings.Join(v.GetDownChildren(), ","), tc.up, tc.total, tc.down)
			}
			nv, ok := e.Verdict("dual/network/net0")
			if !ok {
				t.Fatal("no verdict of net0")
			}
			if nv.GetTotal() != tc.netTotal || nv.GetUp() != tc.netUp || nv.GetState() != tc.netState {
				t.Errorf("net0 %s %d of %d targets up; want %s %d of %d", nv.GetState(), nv.GetUp(), nv.GetTotal(), tc.netState, tc.netUp, tc.netTotal)
			}
		})
	}
}

// feedDual sends round n's ICMP results of three agents: every target
// replies, except IPv6 ones when v6Down.
func feedDual(e *verdict.Engine, cfg verdict.Config, n int64, v6Down bool) {
	for ai, ag := range []string{"agt-a", "agt-b", "agt-c"} {
		for ti, tg := range cfg.Targets {
			out, att := vantagev1.Outcome_OUTCOME_REPLY, uint32(1)
			if v6Down && strings.Contains(tg.Addr, ":") {
				out, att = vantagev1.Outcome_OUTCOME_TIMEOUT, 1
			}
			at := start.Add(time.Duration(n)*cfg.Round + time.Duration(ai*100+ti*10)*time.Millisecond)
			e.Observe(verdict.Observation{Agent: ag, Target: tg.Addr, Round: n, SentAt: at, Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO,
				Outcome: out, RTT: time.Millisecond, Attempts: att})
		}
	}
}
