package probe

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/vantage-net/vantage/agent/probe/icmp"
	"github.com/vantage-net/vantage/agent/probe/internal/probetest"
	"github.com/vantage-net/vantage/agent/probe/rawsock"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Two namespaces built by the test (prefix "vai"):
//
//	vai-a (agent) 10.201.0.1 / 2001:db8:201::1  --veth--  vai-t (targets) 10.201.0.2 / 2001:db8:201::2
//
// In vai-t, AnyIP routes (`local ... dev lo`) make every address of
// 198.18.0.0/16 and 2001:db8:ff::/64 answer. 198.19.0.0/24 is routed to
// vai-t from vai-a but vai-t does not forward it: silent targets.
var vaiSetup = []string{
	"netns add vai-a", "netns add vai-t",
	"link add vai-a0 netns vai-a type veth peer name vai-t0 netns vai-t",
	"-n vai-a link set lo up", "-n vai-t link set lo up",
	"-n vai-a link set vai-a0 up", "-n vai-t link set vai-t0 up",
	"-n vai-a addr add 10.201.0.1/30 dev vai-a0", "-n vai-t addr add 10.201.0.2/30 dev vai-t0",
	"-n vai-a -6 addr add 2001:db8:201::1/64 dev vai-a0 nodad", "-n vai-t -6 addr add 2001:db8:201::2/64 dev vai-t0 nodad",
	"-n vai-t route add local 198.18.0.0/16 dev lo",
	"-n vai-t -6 route add local 2001:db8:ff::/64 dev lo",
	"-n vai-a route add 198.18.0.0/15 via 10.201.0.2",
	"-n vai-a -6 route add 2001:db8:ff::/64 via 2001:db8:201::2",
	"netns exec vai-t sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0 net.ipv4.icmp_msgs_per_sec=1000000",
}

func vaiNamespaces(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and raw sockets")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip) to build namespaces")
	}
	clean := func() {
		for _, n := range []string{"vai-a", "vai-t"} {
			_ = ip("netns del " + n)
		}
	}
	clean()
	t.Cleanup(clean)
	for _, c := range vaiSetup {
		if err := ip(c); err != nil {
			t.Fatalf("namespace setup: %v", err)
		}
	}
}

func feed(tasks []*vantagev1.Task) <-chan *vantagev1.Task {
	ch := make(chan *vantagev1.Task, len(tasks))
	for _, t := range tasks {
		ch <- t
	}
	close(ch)
	return ch
}

func icmpTasks(p netip.Prefix, timeout time.Duration) []*vantagev1.Task {
	var out []*vantagev1.Task
	for a := p.Masked().Addr(); p.Contains(a); a = a.Next() {
		out = append(out, &vantagev1.Task{Id: "vai/icmp/" + a.String(), Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: a.String(),
			Spec: &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{TimeoutMs: uint32(timeout.Milliseconds()), Retries: 1}}})
	}
	return out
}

func TestRealVaiSweep(t *testing.T) {
	vaiNamespaces(t)
	var r *Registry
	inNS(t, "vai-a", func() { r = NewRegistryWith(nil, Options{Rate: 0}) })
	t.Cleanup(func() { _ = r.Close() })
	for _, tc := range []struct {
		name   string
		prefix string
	}{
		{"ipv4 /24", "198.18.0.0/24"},
		{"ipv6 /120", "2001:db8:ff::/120"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, engine, err := r.Sweeper(vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO)
			if err != nil || engine != icmp.EngineBulk {
				t.Fatalf("Sweeper = %q, %v; want %s", engine, err, icmp.EngineBulk)
			}
			tasks := icmpTasks(netip.MustParsePrefix(tc.prefix), time.Second)
			got := map[string]*vantagev1.ProbeResult{}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := b.Run(ctx, feed(tasks), func(res *vantagev1.ProbeResult) { got[res.GetTarget()] = res }); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(got) != len(tasks) {
				t.Fatalf("%d results for %d tasks", len(got), len(tasks))
			}
			for _, task := range tasks {
				res := got[task.GetTarget()]
				if res.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY || res.GetReplyFrom() != task.GetTarget() || res.GetEngine() != icmp.EngineBulk {
					t.Fatalf("result %v, want REPLY from %s", res, task.GetTarget())
				}
			}
		})
	}
	t.Run("tcp syn", func(t *testing.T) {
		var ln net.Listener
		inNS(t, "vai-t", func() {
			var err error
			if ln, err = net.Listen("tcp", ":8080"); err != nil {
				t.Fatalf("listen in vai-t: %v", err)
			}
		})
		probetest.Serve(t, ln)
		b, engine, err := r.Sweeper(vantagev1.ProbeKind_PROBE_KIND_TCP)
		if err != nil || engine != EngineTCPSyn {
			t.Fatalf("Sweeper = %q, %v; want %s", engine, err, EngineTCPSyn)
		}
		var tasks []*vantagev1.Task
		want := map[string]vantagev1.Outcome{}
		for _, target := range []string{"198.18.1.1", "198.18.1.2", "2001:db8:ff::7"} {
			for port, o := range map[uint32]vantagev1.Outcome{8080: vantagev1.Outcome_OUTCOME_TCP_SYNACK, 9: vantagev1.Outcome_OUTCOME_TCP_RST} {
				tasks = append(tasks, &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Target: target,
					Spec: &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: port, Mode: vantagev1.TcpMode_TCP_MODE_SYN, TimeoutMs: 1000}}})
				want[netip.AddrPortFrom(netip.MustParseAddr(target), uint16(port)).String()] = o
			}
		}
		n := 0
		if err := b.Run(context.Background(), feed(tasks), func(res *vantagev1.ProbeResult) {
			n++
			key := netip.AddrPortFrom(netip.MustParseAddr(res.GetTarget()), uint16(res.GetPort())).String()
			if res.GetOutcome() != want[key] || res.GetReplyFrom() != res.GetTarget() {
				t.Errorf("%s: %v, want %v", key, res, want[key])
			}
		}); err != nil || n != len(tasks) {
			t.Fatalf("Run: %v, %d results for %d tasks", err, n, len(tasks))
		}
	})
	t.Run("unreachables classified", func(t *testing.T) {
		if _, err := exec.LookPath("nft"); err != nil {
			t.Skip("needs nftables (nft) to make the target namespace reject")
		}
		for _, c := range []string{
			"netns exec vai-t nft add table inet vai",
			"netns exec vai-t nft add chain inet vai in { type filter hook input priority 0 ; }",
			"netns exec vai-t nft add rule inet vai in meta nfproto ipv4 tcp dport 7 reject with icmp type admin-prohibited",
			"netns exec vai-t nft add rule inet vai in meta nfproto ipv6 tcp dport 7 reject with icmpv6 type admin-prohibited",
			"netns exec vai-t nft add rule inet vai in ip daddr 198.18.9.9 icmp type echo-request reject with icmp type host-unreachable",
		} {
			if err := ip(c); err != nil {
				t.Fatalf("nft: %v", err)
			}
		}
		tcpTask := func(target string) *vantagev1.Task {
			return &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Target: target,
				Spec: &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: 7, Mode: vantagev1.TcpMode_TCP_MODE_SYN, TimeoutMs: 1000}}}
		}
		for _, tc := range []struct {
			task *vantagev1.Task
			code uint32
		}{
			{tcpTask("198.18.2.1"), 13},    // communication administratively prohibited
			{tcpTask("2001:db8:ff::9"), 1}, // ICMPv6 administratively prohibited
			{icmpTasks(netip.MustParsePrefix("198.18.9.9/32"), time.Second)[0], 1},
		} {
			res := r.Probe(context.Background(), tc.task)
			if res.GetOutcome() != vantagev1.Outcome_OUTCOME_UNREACHABLE || res.GetUnreachableCode() != tc.code || res.GetReplyFrom() == "" {
				t.Errorf("%s %s: %v, want UNREACHABLE code %d with its source", tc.task.GetKind(), tc.task.GetTarget(), res, tc.code)
			}
		}
	})
	t.Run("portable path", func(t *testing.T) {
		var pr *Registry
		inNS(t, "vai-a", func() {
			if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0o644); err != nil {
				t.Fatalf("ping_group_range in vai-a: %v", err)
			}
			pr = NewRegistryWith(nil, Options{Unprivileged: true})
		})
		defer pr.Close()
		if got := pr.Capabilities().GetEngines(); got[0] != "icmp="+EngineICMPPortable {
			t.Fatalf("engines = %v, want icmp=%s first", got, EngineICMPPortable)
		}
		var res []*vantagev1.ProbeResult
		// pro-bing opens its sockets per probe, in the calling thread's
		// namespace: probe from inside vai-a, through the registry.
		inNS(t, "vai-a", func() {
			for _, task := range icmpTasks(netip.MustParsePrefix("198.18.3.0/30"), time.Second) {
				res = append(res, pr.Probe(context.Background(), task))
			}
		})
		if len(res) != 4 {
			t.Fatalf("%d results, want 4", len(res))
		}
		for _, r := range res {
			if r.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY || r.GetEngine() != EngineICMPPortable {
				t.Fatalf("result %v, want REPLY by %s", r, EngineICMPPortable)
			}
		}
	})
}

// TestRealVaiSpoofedReply forges echo replies from the target namespace
// for a probe in flight: one with a wrong cookie (rejected as spoofed) and,
// after the timeout, one for the expired probe (rejected as late).
func TestRealVaiSpoofedReply(t *testing.T) {
	vaiNamespaces(t)
	var b *icmp.Bulk
	inNS(t, "vai-a", func() {
		var err error
		if b, err = icmp.NewBulk(icmp.BulkConfig{}); err != nil {
			t.Fatalf("NewBulk: %v", err)
		}
	})
	defer b.Close()
	base, _ := b.IDs()
	const silent = "198.19.0.1" // routed to vai-t, which drops it
	forge := func(cookie uint64) {
		t.Helper()
		msg := make([]byte, 24)
		msg[0] = 0                                // echo reply
		binary.BigEndian.PutUint16(msg[4:], base) // slot 0: the engine's first probe
		binary.BigEndian.PutUint64(msg[8:], cookie)
		binary.BigEndian.PutUint16(msg[2:], rawsock.Checksum(0, msg))
		inNS(t, "vai-t", func() {
			pc, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
			if err != nil {
				t.Fatalf("raw socket in vai-t: %v", err)
			}
			defer pc.Close()
			rc, err := ipv4.NewRawConn(pc)
			if err != nil {
				t.Fatalf("raw conn: %v", err)
			}
			h := &ipv4.Header{Version: 4, Len: 20, TotalLen: 20 + len(msg), TTL: 64, Protocol: 1,
				Src: net.ParseIP(silent), Dst: net.ParseIP("10.201.0.1")}
			if err := rc.WriteTo(h, msg, nil); err != nil {
				t.Fatalf("forge: %v", err)
			}
		})
	}
	done := make(chan *vantagev1.ProbeResult, 1)
	go func() {
		done <- b.Probe(context.Background(), &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: silent,
			Spec: &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{TimeoutMs: 1500}}})
	}()
	waitFor(t, func() bool { return b.Stats().Sent == 1 })
	forge(0xdeadbeef) // wrong cookie
	waitFor(t, func() bool { return b.Stats().Spoofed == 1 })
	res := <-done
	if res.GetOutcome() != vantagev1.Outcome_OUTCOME_TIMEOUT {
		t.Fatalf("result %v, want TIMEOUT: the forged reply must not count", res)
	}
	forge(0xdeadbeef) // the slot is free now: a late (stale) reply
	waitFor(t, func() bool { return b.Stats().Late == 1 })
	if got := b.PacketsIgnored(); got != 2 {
		t.Fatalf("PacketsIgnored = %d, want 2 (%+v)", got, b.Stats())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
