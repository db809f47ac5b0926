package probe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vantage-net/vantage/agent/probe/icmp"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// A three-namespace path built by the test itself:
//
//	vat-h (10.99.1.2) -- vat-r (10.99.1.1 | 10.99.2.1) -- vat-d (10.99.2.2)
//
// Every probe below is sent from inside vat-h, so packets only ever reach
// addresses in namespaces this test created.
var nsSetup = []string{
	"netns add vat-h", "netns add vat-r", "netns add vat-d",
	"link add vat-h0 netns vat-h type veth peer name vat-r0 netns vat-r",
	"link add vat-r1 netns vat-r type veth peer name vat-d0 netns vat-d",
	"-n vat-h addr add 10.99.1.2/24 dev vat-h0",
	"-n vat-r addr add 10.99.1.1/24 dev vat-r0",
	"-n vat-r addr add 10.99.2.1/24 dev vat-r1",
	"-n vat-d addr add 10.99.2.2/24 dev vat-d0",
	"-n vat-h link set lo up", "-n vat-r link set lo up", "-n vat-d link set lo up",
	"-n vat-h link set vat-h0 up", "-n vat-r link set vat-r0 up", "-n vat-r link set vat-r1 up", "-n vat-d link set vat-d0 up",
	"-n vat-h route add default via 10.99.1.1",
	"-n vat-d route add default via 10.99.2.1",
	"netns exec vat-r sysctl -qw net.ipv4.ip_forward=1",
	// No ICMP rate limit at the router: the traces exhaust its burst.
	"netns exec vat-r sysctl -qw net.ipv4.icmp_ratelimit=0",
	// 10.99.3.0/24 is "unreachable" through an nftables reject rather than a
	// missing route: the kernel's no-route errors have a host-wide rate
	// limit (net.ipv4.route.error_cost) the test cannot switch off.
	"-n vat-r route add 10.99.3.0/24 via 10.99.2.2",
	"netns exec vat-r nft add table inet vat",
	"netns exec vat-r nft add chain inet vat vatfwd { type filter hook forward priority 0 ; }",
	"netns exec vat-r nft add rule inet vat vatfwd ip daddr 10.99.3.0/24 reject with icmp type net-unreachable",
}

func ip(args string) error {
	out, err := exec.Command("ip", strings.Fields(args)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", args, err, out)
	}
	return nil
}

func nsCleanup() {
	for _, n := range []string{"vat-h", "vat-r", "vat-d"} {
		_ = ip("netns del " + n)
	}
}

// inNS runs f on a thread switched into the named namespace, so the sockets
// f opens live there.
func inNS(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("netns get: %v", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("netns %s: %v", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		t.Fatalf("setns %s: %v", name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("cannot return to the original netns: %v", err))
		}
	}()
	f()
}

func TestRealNamespacePath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and raw sockets")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip) to build namespaces")
	}
	nsCleanup()
	t.Cleanup(nsCleanup)
	for _, c := range nsSetup {
		if err := ip(c); err != nil {
			t.Fatalf("namespace setup: %v", err)
		}
	}
	// The registry opens its shared raw sockets where it is built: in vat-h.
	var r *Registry
	inNS(t, "vat-h", func() { r = NewRegistry(slog.New(slog.NewTextHandler(io.Discard, nil)), nil) })
	t.Cleanup(func() { _ = r.Close() })
	trace := func(target string) *vantagev1.Task {
		return &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: target,
			Spec: &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{Paris: true, MaxTtl: 6, GapLimit: 3, TimeoutMs: 500}}}
	}
	tests := []struct {
		name  string
		task  *vantagev1.Task
		want  vantagev1.Outcome
		check func(t *testing.T, res *vantagev1.ProbeResult)
	}{
		{"trace two hops", trace("10.99.2.2"), vantagev1.Outcome_OUTCOME_REPLY, func(t *testing.T, res *vantagev1.ProbeResult) {
			hops := res.GetHops()
			if len(hops) != 2 || hops[0].GetAddr() != "10.99.1.1" || hops[0].GetIcmpType() != 11 || hops[1].GetAddr() != "10.99.2.2" {
				t.Fatalf("hops = %v, want router 10.99.1.1 (time exceeded) then 10.99.2.2", hops)
			}
			if hops[0].GetQuotedTtl() == 0 || hops[0].GetReplyTtl() != 64 || hops[1].GetReplyTtl() != 63 {
				t.Fatalf("hop ttls = %v", hops)
			}
		}},
		{"trace into unrouted space", trace("10.99.3.5"), vantagev1.Outcome_OUTCOME_UNREACHABLE, func(t *testing.T, res *vantagev1.ProbeResult) {
			hops := res.GetHops()
			if res.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE || res.GetReplyFrom() != "10.99.1.1" || len(hops) != 2 {
				t.Fatalf("stop %v from %q hops %v, want UNREACHABLE from the router at ttl 2", res.GetStopReason(), res.GetReplyFrom(), hops)
			}
			if hops[0].GetIcmpType() != 11 || hops[1].GetIcmpType() != 3 || hops[1].GetIcmpCode() != 0 || res.GetUnreachableCode() != 0 {
				t.Fatalf("hops %v, want time exceeded then net unreachable", hops)
			}
		}},
		{"icmp through the router", &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: "10.99.2.2"},
			vantagev1.Outcome_OUTCOME_REPLY, func(t *testing.T, res *vantagev1.ProbeResult) {
				if res.GetReplyTtl() != 63 {
					t.Fatalf("reply_ttl = %d, want 63 (one router)", res.GetReplyTtl())
				}
			}},
		{"icmp to a silent host retries", &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: "10.99.2.9",
			Spec: &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{Retries: 2, TimeoutMs: 300}}},
			vantagev1.Outcome_OUTCOME_TIMEOUT, func(t *testing.T, res *vantagev1.ProbeResult) {
				if res.GetAttempts() != 3 {
					t.Fatalf("attempts = %d, want 3 (1 + 2 adaptive retries)", res.GetAttempts())
				}
			}},
		{"tcp to unrouted space", &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Target: "10.99.3.5",
			Spec: &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: 80, TimeoutMs: 2000}}},
			vantagev1.Outcome_OUTCOME_UNREACHABLE, nil},
		{"tcp to a silent host times out", &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Target: "10.99.2.9",
			Spec: &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: 80, TimeoutMs: 300}}},
			vantagev1.Outcome_OUTCOME_TIMEOUT, nil},
		{"tcp closed port through the router", &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Target: "10.99.2.2",
			Spec: &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: 9, TimeoutMs: 2000}}},
			vantagev1.Outcome_OUTCOME_TCP_RST, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var res *vantagev1.ProbeResult
			inNS(t, "vat-h", func() { res = r.Probe(context.Background(), tc.task) })
			if res.GetOutcome() != tc.want {
				t.Fatalf("outcome = %v (error %q, hops %v, ignored %d), want %v", res.GetOutcome(), res.GetError(), res.GetHops(), r.PacketsIgnored(), tc.want)
			}
			if tc.check != nil {
				tc.check(t, res)
			}
		})
	}
	t.Run("icmp over a datagram socket", func(t *testing.T) {
		var res *vantagev1.ProbeResult
		inNS(t, "vat-h", func() {
			// Datagram ICMP sockets allowed for every group, in vat-h only
			// (/proc/sys/net follows the calling thread's namespace).
			if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0o644); err != nil {
				t.Fatalf("ping_group_range in vat-h: %v", err)
			}
			res = icmp.New(icmp.Support{Dgram4: true}, nil).Probe(context.Background(),
				&vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: "10.99.2.2"})
		})
		if res.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY || res.GetEngine() != icmp.EngineUDP {
			t.Fatalf("outcome/engine = %v/%q (error %q), want REPLY/%q", res.GetOutcome(), res.GetEngine(), res.GetError(), icmp.EngineUDP)
		}
	})
}
