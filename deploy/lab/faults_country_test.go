package lab

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestRealLabCountry checks the multi-homed default topology and the faults
// of each cause on a real lab: the kernel state each fault leaves, and what
// pings and traceroutes from the vantages see. Every packet goes to an
// address inside the lab's namespaces.
func TestRealLabCountry(t *testing.T) {
	needLab(t)
	l := upLab(t, "vlt6", Options{})
	t.Run("multi-homed paths", func(t *testing.T) { testMultiHomed(t, l) })
	t.Run("cut inside the border", func(t *testing.T) { testCutInside(t, l) })
	t.Run("withdrawal at one upstream", func(t *testing.T) { testWithdraw(t, l) })
	t.Run("border down", func(t *testing.T) { testBorderDown(t, l) })
	t.Run("rising loss", func(t *testing.T) { testStepLoss(t, l) })
	if faults, err := l.Faults(context.Background()); err != nil || len(faults) != 0 {
		t.Errorf("faults left after the tests: %v, %v", faults, err)
	}
}

// lastHop is the last responsive hop of a traceroute ("" if none).
func lastHop(hops []string) string {
	for i := len(hops) - 1; i >= 0; i-- {
		if hops[i] != "*" {
			return hops[i]
		}
	}
	return ""
}

func testMultiHomed(t *testing.T, l *Lab) {
	for _, tc := range []struct {
		node, addr string
		want       []string
	}{
		// forward: net0/net1 through upstream, net2/net3 through upstream-b.
		// In IPv4 the border answers as .50 (its main default route) on both
		// paths; in IPv6 as the address it received the probe on.
		{"vantage-a", "198.18.0.10", []string{"198.51.100.1", "198.51.100.26", "198.51.100.42", "198.51.100.50", "198.18.0.10"}},
		{"vantage-b", "198.18.2.11", []string{"198.51.100.9", "198.51.100.26", "198.51.100.58", "198.51.100.50", "198.18.2.11"}},
		{"vantage-c", "2001:db8:18:3::12", []string{"2001:db8:3::17", "2001:db8:4::26", "2001:db8:12::58", "2001:db8:13::66", "2001:db8:18:3::12"}},
		// return: from the networks, each hop answers from its interface
		// towards the network, so the hops name the return path.
		{"net0", "198.51.100.2", []string{"198.18.0.1", "198.51.100.49", "198.51.100.41", "198.51.100.25", "198.51.100.2"}},
		{"net2", "198.51.100.2", []string{"198.18.2.1", "198.51.100.65", "198.51.100.57", "198.51.100.25", "198.51.100.2"}},
		{"net3", "2001:db8:2::10", []string{"2001:db8:18:3::1", "2001:db8:13::65", "2001:db8:12::57", "2001:db8:4::25", "2001:db8:2::10"}},
	} {
		t.Run(tc.node+"->"+tc.addr, func(t *testing.T) {
			if got := traceHops(t, l, tc.node, tc.addr); !slices.Equal(got, tc.want) {
				t.Errorf("hops %v\nwant %v", got, tc.want)
			}
		})
	}
	// The border's source routes in the kernel.
	err := l.withNetlink("border", func(h *netlink.Handle) error {
		rules, err := h.RuleList(netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var got []string
		for _, r := range rules {
			if r.Priority >= suppressMainPriority && r.Priority < 32766 {
				got = append(got, fmt.Sprintf("%d from %v table %d", r.Priority, r.Src, r.Table))
			}
		}
		if want := []string{"999 from <nil> table 254", "1000 from 198.18.2.0/24 table 100", "1001 from 198.18.3.0/24 table 101"}; !slices.Equal(got, want) {
			t.Errorf("border IPv4 rules %q, want %q", got, want)
		}
		rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 100}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err
		}
		if len(rs) != 1 || rs[0].Gw.String() != "198.51.100.65" {
			t.Errorf("border table 100: %v, want one default via 198.51.100.65", rs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func linkFlags(t *testing.T, l *Lab, node, ifname string) (adminUp bool, oper netlink.LinkOperState) {
	t.Helper()
	err := l.withNetlink(node, func(h *netlink.Handle) error {
		lk, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		adminUp, oper = lk.Attrs().Flags&net.FlagUp != 0, lk.Attrs().OperState
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return adminUp, oper
}

func testCutInside(t *testing.T, l *Lab) {
	if err := l.CutInside("net1"); err != nil {
		t.Fatal(err)
	}
	// net1's link is links[8]: border side a, network side b.
	if up, _ := linkFlags(t, l, "net1", "vlt6-8b"); up {
		t.Error("net1's end of its link is still up")
	}
	if up, oper := linkFlags(t, l, "border", "vlt6-8a"); !up || oper == netlink.OperUp {
		t.Errorf("border's end: admin up %v, oper %v; want up without carrier", up, oper)
	}
	for _, v := range l.Vantages() {
		wantPing(t, l, v, "198.51.100.50", true) // the border answers
		wantPing(t, l, v, "198.18.1.1", true)    // even on the cut link's address
		wantPing(t, l, v, "2001:db8:18:1::1", true)
		wantPing(t, l, v, "198.18.1.10", false) // the hosts behind it do not
		wantPing(t, l, v, "2001:db8:18:1::11", false)
		wantPing(t, l, v, "198.18.0.10", true) // nor does the cut spread
	}
	hops := traceHops(t, l, "vantage-a", "198.18.1.12")
	if got := lastHop(hops); got != "198.51.100.50" {
		t.Errorf("traceroute to a cut host: last responsive hop %q, want the border 198.51.100.50 (hops %v)", got, hops)
	}
	t.Logf("traceroute vantage-a -> 198.18.1.12 with net1 cut inside: %v", hops)
	if faults, err := l.Faults(context.Background()); err != nil || !slices.Equal(faults, []string{"cut-inside net1"}) {
		t.Errorf("Faults() = %q, %v; want cut-inside net1", faults, err)
	}
	if err := l.RepairInside("net1"); err != nil {
		t.Fatal(err)
	}
	wantPing(t, l, "vantage-a", "198.18.1.10", true)
	wantPing(t, l, "vantage-b", "2001:db8:18:1::11", true)
	if got, err := tcpBanner(t, l, "vantage-c", "198.18.1.13"); err != nil || got != "vantage-lab net1" {
		t.Errorf("TCP after the repair: %q, %v", got, err)
	}
}

func testWithdraw(t *testing.T, l *Lab) {
	if err := l.Withdraw("upstream-b", WithdrawUnreachable); err != nil {
		t.Fatal(err)
	}
	assertRouteType(t, l, "upstream-b", "198.18.2.0/24", unix.RTN_THROW)
	assertRouteType(t, l, "upstream-b", "2001:db8:18:3::/64", unix.RTN_THROW)
	out := wantPing(t, l, "vantage-a", "198.18.2.10", false)
	if !strings.Contains(out, "From 198.51.100.58 icmp_seq=1 Destination Net Unreachable") {
		t.Errorf("want net unreachable from upstream-b, got\n%s", out)
	}
	out = wantPing(t, l, "vantage-b", "2001:db8:18:3::10", false)
	if !strings.Contains(out, "From 2001:db8:12::58 icmp_seq=1 Destination unreachable: No route") {
		t.Errorf("want no route from upstream-b, got\n%s", out)
	}
	for _, v := range l.Vantages() {
		wantPing(t, l, v, "198.51.100.58", true) // the upstream itself answers
		wantPing(t, l, v, "198.18.0.11", true)   // the other upstream's networks answer
		wantPing(t, l, v, "2001:db8:18:1::12", true)
		wantPing(t, l, v, "198.51.100.50", true) // and so does the border
	}
	hops := traceHops(t, l, "vantage-c", "198.18.3.13")
	if got := lastHop(hops); got != "198.51.100.58" || len(hops) != 3 {
		t.Errorf("traceroute through a withdrawn upstream: %v, want it to end at upstream-b 198.51.100.58 (hop 3)", hops)
	}
	t.Logf("traceroute vantage-c -> 198.18.3.13, upstream-b withdrawn: %v", hops)

	// Silent: the same withdrawal, without an answer.
	if err := l.Withdraw("upstream-b", WithdrawSilent, "net3"); err != nil {
		t.Fatal(err)
	}
	assertRouteType(t, l, "upstream-b", "198.18.3.0/24", unix.RTN_UNICAST) // routed, then dropped
	if set := chainRules(t, l, "upstream-b", chainSilent); !strings.Contains(set, "ip daddr @silent4 drop") {
		t.Errorf("silent chain:\n%s", set)
	}
	out = wantPing(t, l, "vantage-a", "198.18.3.10", false)
	if strings.Contains(out, "From ") {
		t.Errorf("a silent withdrawal answered:\n%s", out)
	}
	hops = traceHops(t, l, "vantage-a", "198.18.3.11")
	if got := lastHop(hops); got != "198.51.100.58" || len(hops) < 4 || hops[3] != "*" {
		t.Errorf("traceroute through a silent upstream: last responsive hop %q, want 198.51.100.58 (hops %v)", got, hops)
	}
	t.Logf("traceroute vantage-a -> 198.18.3.11, upstream-b silent: %v", hops)
	faults, err := l.Faults(context.Background())
	if want := []string{"withdraw net2 at upstream-b (unreachable)", "withdraw net3 at upstream-b (silent)"}; err != nil || !slices.Equal(faults, want) {
		t.Errorf("Faults() = %q, %v; want %q", faults, err, want)
	}
	if err := l.Withdraw("upstream", WithdrawUnreachable, "net2"); err == nil || !strings.Contains(err.Error(), "no route to network net2") {
		t.Errorf("Withdraw of a network the upstream does not carry = %v", err)
	}
	if err := l.Withdraw("ix", WithdrawUnreachable); err == nil {
		t.Error("Withdraw at the edge accepted")
	}
	if err := l.Reannounce("upstream-b"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"198.18.2.10", "198.18.3.10", "2001:db8:18:3::10"} {
		wantPing(t, l, "vantage-a", a, true)
	}
}

func assertRouteType(t *testing.T, l *Lab, node, dst string, typ int) {
	t.Helper()
	err := l.withNetlink(node, func(h *netlink.Handle) error {
		_, n, err := net.ParseCIDR(dst)
		if err != nil {
			return err
		}
		rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Dst: n}, netlink.RT_FILTER_DST)
		if err != nil {
			return err
		}
		if len(rs) != 1 || rs[0].Type != typ {
			t.Errorf("%s routes to %s: %v, want one of type %d", node, dst, rs, typ)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testBorderDown(t *testing.T, l *Lab) {
	if err := l.BorderDown("border"); err != nil {
		t.Fatal(err)
	}
	// links[6] upstream-border and links[12] upstream-b-border: border is b.
	for _, ifn := range []string{"vlt6-6b", "vlt6-12b"} {
		if up, _ := linkFlags(t, l, "border", ifn); up {
			t.Errorf("border's %s still up", ifn)
		}
	}
	if up, oper := linkFlags(t, l, "upstream-b", "vlt6-12a"); !up || oper == netlink.OperUp {
		t.Errorf("upstream-b's end: admin up %v, oper %v; want up without carrier", up, oper)
	}
	for _, v := range l.Vantages() {
		for _, a := range []string{"198.51.100.50", "198.51.100.66", "2001:db8:7::50", "198.18.0.1", "198.18.2.10"} {
			wantPing(t, l, v, a, false)
		}
		wantPing(t, l, v, "198.51.100.42", true) // the upstreams answer
		wantPing(t, l, v, "198.51.100.58", true)
	}
	wantPing(t, l, "upstream-b", "198.51.100.66", false) // even next door
	for _, tc := range []struct{ dst, last string }{{"198.18.0.10", "198.51.100.42"}, {"198.18.2.10", "198.51.100.58"}} {
		hops := traceHops(t, l, "vantage-a", tc.dst)
		if got := lastHop(hops); got != tc.last {
			t.Errorf("traceroute to %s with the border down: last responsive hop %q, want %s (hops %v)", tc.dst, got, tc.last, hops)
		}
		t.Logf("traceroute vantage-a -> %s, border down: %v", tc.dst, hops)
	}
	if faults, err := l.Faults(context.Background()); err != nil || !slices.Equal(faults, []string{"border-down border"}) {
		t.Errorf("Faults() = %q, %v; want border-down border", faults, err)
	}
	if err := l.BorderDown("net0"); err == nil {
		t.Error("BorderDown of a network accepted")
	}
	if err := l.BorderUp("border"); err != nil {
		t.Fatal(err)
	}
	wantPing(t, l, "vantage-b", "198.51.100.50", true)
	wantPing(t, l, "vantage-b", "2001:db8:13::66", true)
	// Both directions are back as before, source routes included.
	if got, want := traceHops(t, l, "net2", "198.51.100.2"), []string{"198.18.2.1", "198.51.100.65", "198.51.100.57", "198.51.100.25", "198.51.100.2"}; !slices.Equal(got, want) {
		t.Errorf("return path from net2 after BorderUp: %v, want %v", got, want)
	}
	if got, want := traceHops(t, l, "net1", "2001:db8:1::2"), []string{"2001:db8:18:1::1", "2001:db8:7::49", "2001:db8:6::41", "2001:db8:4::25", "2001:db8:1::2"}; !slices.Equal(got, want) {
		t.Errorf("return path from net1 after BorderUp: %v, want %v", got, want)
	}
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received.*time (\d+)ms`)

// burst sends n echo requests 5 ms apart from node and returns how many
// were answered and how long it took.
func burst(t *testing.T, l *Lab, node, addr string, n int) (received int, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := l.Command(ctx, node, "ping", "-n", "-q", "-c", strconv.Itoa(n), "-i", "0.005", "-W", "1", addr).CombinedOutput()
	m := pingSummary.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("ping summary not found:\n%s", out)
	}
	sent, _ := strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	ms, _ := strconv.Atoi(m[3])
	if sent != n {
		t.Fatalf("ping sent %d of %d:\n%s", sent, n, out)
	}
	return received, time.Duration(ms) * time.Millisecond
}

func chainRules(t *testing.T, l *Lab, node, chain string) string {
	t.Helper()
	out, err := l.Command(context.Background(), node, "nft", "list", "chain", "inet", "vantage_lab", chain).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list chain %s: %v\n%s", chain, err, out)
	}
	return string(out)
}

func testStepLoss(t *testing.T, l *Lab) {
	const n = 300
	lossPct := func(dst string) int {
		got, _ := burst(t, l, "vantage-a", dst, n)
		return 100 * (n - got) / n
	}
	var measured []int
	for _, tc := range []struct{ pct, lo, hi int }{{0, 0, 2}, {20, 8, 35}, {60, 45, 75}} {
		if err := l.StepLoss("border", LossStep{Pct: tc.pct}); err != nil {
			t.Fatal(err)
		}
		rules := chainRules(t, l, "border", chainStep)
		want := 2 // one rule per family, the previous step gone
		if tc.pct == 0 {
			want = 0
		}
		if strings.Count(rules, "drop") != want || strings.Count(rules, fmt.Sprintf("numgen random mod 100 < %d drop", tc.pct)) != want {
			t.Errorf("step %d%%: chain is\n%s", tc.pct, rules)
		}
		got := lossPct("198.18.2.12")
		got6 := lossPct("2001:db8:18:0::13")
		measured = append(measured, got, got6)
		t.Logf("step %d%% at the border: measured %d%% (IPv4), %d%% (IPv6) of %d echo requests", tc.pct, got, got6, n)
		for _, g := range []int{got, got6} {
			if g < tc.lo || g > tc.hi {
				t.Errorf("step %d%%: measured loss %d%%, want %d-%d%%", tc.pct, g, tc.lo, tc.hi)
			}
		}
	}
	for fam := range 2 {
		if a, b, c := measured[fam], measured[2+fam], measured[4+fam]; a >= b || b >= c {
			t.Errorf("loss did not rise with the steps: %d%%, %d%%, %d%%", a, b, c)
		}
	}
	// A capacity: what exceeds 40 packets/s is dropped, and replaces the
	// random step in one go.
	const rate = 40
	if err := l.StepLoss("border", LossStep{Rate: rate}); err != nil {
		t.Fatal(err)
	}
	rules := chainRules(t, l, "border", chainStep)
	if strings.Contains(rules, "numgen") || strings.Count(rules, "limit rate over 40/second burst 40 packets drop") != 2 {
		t.Errorf("rate step: chain is\n%s", rules)
	}
	got, took := burst(t, l, "vantage-b", "198.18.1.10", n)
	bound := rate + int(float64(rate)*(took.Seconds()+1))
	t.Logf("rate step %d/s at the border: %d of %d answered in %v (bound %d)", rate, got, n, took, bound)
	if got == 0 || got > bound {
		t.Errorf("rate step %d/s: %d of %d answered in %v, want 1-%d", rate, got, n, took, bound)
	}
	if err := l.StepLoss("border", LossStep{}); err != nil {
		t.Fatal(err)
	}
	if rules := chainRules(t, l, "border", chainStep); strings.Contains(rules, "drop") {
		t.Errorf("zero step left rules:\n%s", rules)
	}
	if err := l.StepLoss("border", LossStep{Pct: 101}); err == nil {
		t.Error("101% accepted")
	}
	if err := l.StepLoss("vantage-a", LossStep{Pct: 10}); err == nil {
		t.Error("StepLoss on a vantage accepted")
	}

	// RampLoss steps up on its own and removes the step when done.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.RampLoss(ctx, "border", 300*time.Millisecond, LossStep{Pct: 10}, LossStep{Pct: 30}) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(chainRules(t, l, "border", chainStep), "< 30 drop") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if rules := chainRules(t, l, "border", chainStep); !strings.Contains(rules, "< 30 drop") || strings.Contains(rules, "< 10 drop") {
		t.Errorf("ramp did not reach its last step alone:\n%s", rules)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RampLoss: %v", err)
	}
	if rules := chainRules(t, l, "border", chainStep); strings.Contains(rules, "drop") {
		t.Errorf("ramp left rules:\n%s", rules)
	}
}
