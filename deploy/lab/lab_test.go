package lab

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests build real namespaces, so they need root (or CAP_SYS_ADMIN
// and CAP_NET_ADMIN) plus ip, nft, ping and traceroute. Every packet they
// send stays inside namespaces they create.

func needLab(t *testing.T) {
	t.Helper()
	if err := checkCaps(); err != nil {
		t.Skip("needs root (or CAP_SYS_ADMIN+CAP_NET_ADMIN) to create network namespaces: ", err)
	}
	for _, need := range []struct{ tool, pkg string }{
		{"ip", "iproute2"}, {"nft", "nftables"}, {"ping", "iputils-ping"}, {"traceroute", "traceroute"},
		{"bash", "bash"}, {"timeout", "coreutils"}, {"sysctl", "procps"},
	} {
		if _, err := exec.LookPath(need.tool); err != nil {
			t.Skipf("needs %s on PATH (Debian package %s; make deps installs it)", need.tool, need.pkg)
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func upLab(t *testing.T, prefix string, opts Options) *Lab {
	t.Helper()
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	opts.Prefix = prefix
	opts.Logger = testLogger(t)
	start := time.Now()
	l, err := Up(context.Background(), topo, opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("Up took %v", time.Since(start))
	t.Cleanup(func() {
		start := time.Now()
		if err := l.Down(); err != nil {
			t.Errorf("Down: %v", err)
		}
		t.Logf("Down took %v", time.Since(start))
		if left := namespacesWithPrefix(t, prefix); len(left) > 0 {
			t.Errorf("namespaces left after Down: %v", left)
		}
	})
	return l
}

func namespacesWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	es, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// ping sends one echo request from node and returns its output and whether
// a reply came back.
func ping(t *testing.T, l *Lab, node, addr string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := l.Command(ctx, node, "ping", "-n", "-c1", "-W1", addr).CombinedOutput()
	return string(out), err == nil
}

func wantPing(t *testing.T, l *Lab, node, addr string, want bool) string {
	t.Helper()
	out, ok := ping(t, l, node, addr)
	if ok != want {
		t.Errorf("ping %s from %s: reply=%v, want %v\n%s", addr, node, ok, want, out)
	}
	return out
}

// tcpBanner connects from node to addr:80 with bash's /dev/tcp and returns
// the banner.
func tcpBanner(t *testing.T, l *Lab, node, addr string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := l.Command(ctx, node, "timeout", "2", "bash", "-c",
		`exec 3<>/dev/tcp/`+addr+`/80 && head -n1 <&3`).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// dialFrom opens a TCP connection from inside node's namespace.
func dialFrom(l *Lab, node, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := l.Dial(ctx, node, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func traceHops(t *testing.T, l *Lab, node, addr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := l.Command(ctx, node, "traceroute", "-n", "-I", "-q", "1", "-w", "1", "-m", "10", addr).CombinedOutput()
	if err != nil {
		t.Fatalf("traceroute %s: %v\n%s", addr, err, out)
	}
	var hops []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] == "traceroute" {
			continue
		}
		hops = append(hops, f[1])
	}
	return hops
}

func TestRealLab(t *testing.T) {
	needLab(t)
	l := upLab(t, "vlt1", Options{})
	const (
		host0 = "198.18.0.10"
		host1 = "198.18.1.10"
		host3 = "198.18.3.13"
	)

	t.Run("addresses", func(t *testing.T) {
		if got := l.Addr("controller"); got != netip.MustParseAddr("198.51.100.34") {
			t.Errorf("Addr(controller) = %v", got)
		}
		if got := l.Vantages(); !slices.Equal(got, []string{"vantage-a", "vantage-b", "vantage-c"}) {
			t.Errorf("Vantages() = %v", got)
		}
		if got := l.Namespace("ix"); got != "vlt1-ix" {
			t.Errorf("Namespace(ix) = %q", got)
		}
	})

	t.Run("sysctls", func(t *testing.T) {
		for _, tc := range []struct{ node, key, want string }{
			{"ix", "net.ipv4.ip_forward", "1"},
			{"border", "net.ipv6.conf.all.forwarding", "1"},
			{"vantage-a", "net.ipv4.ip_forward", "0"},
			{"upstream", "net.ipv4.icmp_ratelimit", "0"},
			{"upstream", "net.ipv6.icmp.ratelimit", "0"},
			{"transit", "net.ipv4.conf.vlt1-3b.rp_filter", "0"},
			{"net0", "net.ipv6.conf.vlt1-7b.accept_dad", "0"},
		} {
			if got := sysctl(t, l, tc.node, tc.key); got != tc.want {
				t.Errorf("%s %s = %q, want %q", tc.node, tc.key, got, tc.want)
			}
		}
	})

	t.Run("ping", func(t *testing.T) {
		for _, tc := range []struct{ node, addr string }{
			{"vantage-a", host0},
			{"vantage-a", host3},
			{"vantage-b", "198.18.2.12"},
			{"vantage-c", "198.51.100.42"}, // upstream
			{"vantage-c", "198.51.100.50"}, // border
			{"vantage-a", "198.51.100.34"}, // controller
			{"vantage-a", "2001:db8:18:0::10"},
			{"vantage-c", "2001:db8:18:3::13"},
			{"vantage-b", "2001:db8:5::34"},
		} {
			t.Run(tc.node+"->"+tc.addr, func(t *testing.T) { wantPing(t, l, tc.node, tc.addr, true) })
		}
	})

	t.Run("traceroute", func(t *testing.T) {
		for _, tc := range []struct {
			addr string
			want []string
		}{
			// net3 prefers the second upstream (multi-homed topology)
			{host3, []string{"198.51.100.1", "198.51.100.26", "198.51.100.58", "198.51.100.50", host3}},
			{"2001:db8:18:1::11", []string{"2001:db8:1::1", "2001:db8:4::26", "2001:db8:6::42", "2001:db8:7::50", "2001:db8:18:1::11"}},
		} {
			t.Run(tc.addr, func(t *testing.T) {
				if got := traceHops(t, l, "vantage-a", tc.addr); !slices.Equal(got, tc.want) {
					t.Errorf("hops = %v, want %v", got, tc.want)
				}
			})
		}
	})

	t.Run("tcp", func(t *testing.T) {
		for _, tc := range []struct{ addr, want string }{
			{host1, "vantage-lab net1"},
			{"198.18.3.11", "vantage-lab net3"},
			{"2001:db8:18:2::10", "vantage-lab net2"},
		} {
			t.Run(tc.addr, func(t *testing.T) {
				if got, err := tcpBanner(t, l, "vantage-a", tc.addr); err != nil || got != tc.want {
					t.Errorf("banner %q, err %v; want %q", got, err, tc.want)
				}
			})
		}
		if err := dialFrom(l, "vantage-c", "[2001:db8:18:2::13]:80"); err != nil {
			t.Errorf("Dial: %v", err)
		}
	})

	t.Run("blackout", func(t *testing.T) {
		if err := l.Blackout("net0"); err != nil {
			t.Fatal(err)
		}
		out := wantPing(t, l, "vantage-a", host0, false)
		if !strings.Contains(out, "From 198.51.100.1 icmp_seq=1 Destination Net Unreachable") {
			t.Errorf("want an explicit net unreachable from ix, got\n%s", out)
		}
		out = wantPing(t, l, "vantage-a", "2001:db8:18:0::10", false)
		if !strings.Contains(out, "From 2001:db8:1::1 icmp_seq=1 Destination unreachable: No route") {
			t.Errorf("want an explicit no-route from ix, got\n%s", out)
		}
		wantPing(t, l, "vantage-a", host1, true)
		faults, err := l.Faults(context.Background())
		if err != nil || !slices.Contains(faults, "blackout net0") {
			t.Errorf("Faults() = %v, %v; want blackout net0", faults, err)
		}
		if err := l.Restore("net0"); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "vantage-a", host0, true)
		wantPing(t, l, "vantage-a", "2001:db8:18:0::10", true)

		// Everything down, then a partial restoration.
		if err := l.Blackout(); err != nil {
			t.Fatal(err)
		}
		if err := l.Blackout(); err != nil {
			t.Fatalf("second Blackout must be idempotent: %v", err)
		}
		if err := l.Restore("net1", "net2"); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "vantage-b", host0, false)
		wantPing(t, l, "vantage-b", host1, true)
		wantPing(t, l, "vantage-b", "198.18.2.10", true)
		wantPing(t, l, "vantage-b", host3, false)
		if err := l.Restore(); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "vantage-b", host3, true)
		if err := l.Blackout("nope"); !errors.Is(err, ErrUnknownNode) {
			t.Errorf("Blackout(nope) = %v, want ErrUnknownNode", err)
		}
	})

	t.Run("loss", func(t *testing.T) {
		if err := l.Loss("upstream", 100); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "vantage-a", host0, false)
		wantPing(t, l, "vantage-a", "2001:db8:18:0::10", false)
		wantPing(t, l, "vantage-a", "198.51.100.50", true) // not in the target space
		if err := l.Loss("upstream", 0); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "vantage-a", host0, true)
		if err := l.Loss("upstream", 101); err == nil {
			t.Error("Loss 101% accepted")
		}
		if err := l.Loss("vantage-a", 10); !errors.Is(err, ErrUnknownNode) {
			t.Errorf("Loss on a vantage = %v, want ErrUnknownNode", err)
		}
	})

	t.Run("isolate", func(t *testing.T) {
		ln, err := l.Listen("controller", "tcp", "198.51.100.34:7443")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go acceptAll(ln)
		if err := l.Isolate("vantage-b"); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "vantage-b", host0, false)
		wantPing(t, l, "vantage-b", "2001:db8:18:0::10", false)
		if err := dialFrom(l, "vantage-b", "198.51.100.34:7443"); err != nil {
			t.Errorf("isolated vantage must still reach the controller: %v", err)
		}
		wantPing(t, l, "vantage-a", host0, true)
		if err := l.Unisolate("vantage-b"); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "vantage-b", host0, true)

		if err := l.CutUplink("vantage-b"); err != nil {
			t.Fatal(err)
		}
		if err := dialFrom(l, "vantage-b", "198.51.100.34:7443"); err == nil {
			t.Error("vantage-b reached the controller through a cut uplink")
		}
		wantPing(t, l, "vantage-b", "2001:db8:5::34", false)
		wantPing(t, l, "vantage-b", host0, true)
		if err := dialFrom(l, "vantage-a", "198.51.100.34:7443"); err != nil {
			t.Errorf("vantage-a lost the controller: %v", err)
		}
		if err := l.RestoreUplink("vantage-b"); err != nil {
			t.Fatal(err)
		}
		if err := dialFrom(l, "vantage-b", "198.51.100.34:7443"); err != nil {
			t.Errorf("after RestoreUplink: %v", err)
		}
	})

	t.Run("filter-icmp", func(t *testing.T) {
		if err := l.FilterICMP("border"); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "vantage-a", host1, false)
		wantPing(t, l, "vantage-a", "2001:db8:18:1::10", false)
		if got, err := tcpBanner(t, l, "vantage-a", host1); err != nil || got != "vantage-lab net1" {
			t.Errorf("TCP through the ICMP filter: %q, %v", got, err)
		}
		if err := l.UnfilterICMP("border"); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "vantage-a", host1, true)
	})

	t.Run("flap", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Flap(ctx, 300*time.Millisecond, "net2") }()
		time.Sleep(100 * time.Millisecond) // inside the first blackout half
		wantPing(t, l, "vantage-c", "198.18.2.10", false)
		time.Sleep(400 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Flap: %v", err)
		}
		wantPing(t, l, "vantage-c", "198.18.2.10", true)
		if faults, err := l.Faults(context.Background()); err != nil || len(faults) != 0 {
			t.Errorf("faults left after the tests: %v, %v", faults, err)
		}
	})
}

func sysctl(t *testing.T, l *Lab, node, key string) string {
	t.Helper()
	out, err := l.Command(context.Background(), node, "sysctl", "-n", key).CombinedOutput()
	if err != nil {
		t.Fatalf("sysctl %s in %s: %v: %s", key, node, err, out)
	}
	return strings.TrimSpace(string(out))
}

func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
	}
}

// TestRealLabCrashRecovery leaves a lab behind as a crashed process would,
// then checks that Open attaches to it, that Up with the same prefix
// replaces it and that Down removes everything.
func TestRealLabCrashRecovery(t *testing.T) {
	needLab(t)
	const prefix = "vlt2"
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	crashed, err := Up(context.Background(), topo, Options{Prefix: prefix, NoServices: true, ICMPRateLimit: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got := sysctl(t, crashed, "ix", "net.ipv4.icmp_ratelimit"); got != "1000" {
		t.Errorf("with ICMPRateLimit, icmp_ratelimit = %q, want the kernel default 1000", got)
	}
	crashed.closeHandles() // "crash": no Down
	t.Cleanup(func() { _ = Cleanup(prefix) })

	saved, err := SavedTopology(prefix)
	if err != nil {
		t.Fatal(err)
	}
	opened, err := Open(saved, Options{Prefix: prefix})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := opened.Blackout("net3"); err != nil {
		t.Fatal(err)
	}
	wantPing(t, opened, "vantage-a", "198.18.3.10", false)
	faults, err := opened.Faults(context.Background())
	if err != nil || !slices.Equal(faults, []string{"blackout net3"}) {
		t.Errorf("Faults() = %v, %v", faults, err)
	}

	l := upLab(t, prefix, Options{})
	wantPing(t, l, "vantage-a", "198.18.3.10", true) // a fresh lab, no blackout
	if got, err := tcpBanner(t, l, "vantage-b", "198.18.0.12"); err != nil || got != "vantage-lab net0" {
		t.Errorf("tcp after re-Up: %q, %v", got, err)
	}
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if err := l.Down(); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if left := namespacesWithPrefix(t, prefix); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	if _, err := Open(topo, Options{Prefix: prefix}); !errors.Is(err, ErrNotUp) {
		t.Errorf("Open after Down = %v, want ErrNotUp", err)
	}
	if err := l.Blackout("net0"); !errors.Is(err, ErrNotUp) {
		t.Errorf("Blackout after Down = %v, want ErrNotUp", err)
	}
}

// TestRealLabUpFailureCleansUp builds a topology the kernel rejects (a
// gateway on no link) and checks that Up leaves nothing behind.
func TestRealLabUpFailureCleansUp(t *testing.T) {
	needLab(t)
	const prefix = "vlt4"
	topo, err := LoadTopology("testdata/unroutable_gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Cleanup(prefix) })
	_, err = Up(context.Background(), topo, Options{Prefix: prefix})
	if err == nil || !strings.Contains(err.Error(), "node c: route 0.0.0.0/0 via 10.99.0.1") {
		t.Fatalf("Up = %v, want the route error", err)
	}
	if left := namespacesWithPrefix(t, prefix); len(left) > 0 {
		t.Errorf("namespaces left after a failed Up: %v", left)
	}
	if _, err := SavedTopology(prefix); !errors.Is(err, ErrNotUp) {
		t.Errorf("state left after a failed Up: %v", err)
	}
}

// TestRealLabCustomTopology builds a small IPv4-only topology from a file,
// to check that nothing depends on the default plan.
func TestRealLabCustomTopology(t *testing.T) {
	needLab(t)
	topo, err := LoadTopology("testdata/good_minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Up(context.Background(), topo, Options{Prefix: "vlt5"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Error(err)
		}
	})
	wantPing(t, l, "v", "192.0.2.10", true)
	if got, err := tcpBanner(t, l, "v", "192.0.2.10"); err != nil || got != "vantage-lab n" {
		t.Errorf("banner %q, %v", got, err)
	}
	if err := l.Isolate("v"); err != nil {
		t.Fatal(err)
	}
	wantPing(t, l, "v", "192.0.2.10", false)
	wantPing(t, l, "v", "10.0.1.2", true) // the controller
	if err := l.Unisolate("v"); err != nil {
		t.Fatal(err)
	}
	// The edge is directly connected to n: no route to withdraw.
	if err := l.Blackout("n"); err == nil || !strings.Contains(err.Error(), "nothing to withdraw") {
		t.Errorf("Blackout(n) = %v, want nothing to withdraw", err)
	}
	wantPing(t, l, "v", "192.0.2.10", true) // and nothing was touched
}

// TestRealLabAnyIP builds good_anyip.yaml and checks that arbitrary
// addresses of the AnyIP prefixes answer ICMP echo (IPv4 and IPv6) and TCP
// from inside the network, that a traceroute reaches them through the
// routers, and that AddAnyIP does the same on a running lab.
func TestRealLabAnyIP(t *testing.T) {
	needLab(t)
	topo, err := LoadTopology("testdata/good_anyip.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Up(context.Background(), topo, Options{Prefix: "vbt1", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Error(err)
		}
	})
	for _, addr := range []string{"198.19.0.0", "198.19.0.1", "198.19.123.45", "198.19.255.255", "2001:db8:ffff::1", "2001:db8:ffff::beef"} {
		t.Run("ping "+addr, func(t *testing.T) { wantPing(t, l, "v", addr, true) })
	}
	t.Run("tcp", func(t *testing.T) {
		if got, err := tcpBanner(t, l, "v", "198.19.77.3"); err != nil || got != "vantage-lab n" {
			t.Errorf("banner %q, %v", got, err)
		}
	})
	t.Run("traceroute", func(t *testing.T) {
		if got, want := traceHops(t, l, "v", "198.19.200.9"), []string{"10.0.0.1", "10.0.2.2", "198.19.200.9"}; !slices.Equal(got, want) {
			t.Errorf("hops %v, want %v", got, want)
		}
	})
	t.Run("outside", func(t *testing.T) { wantPing(t, l, "v", "198.20.0.1", false) })
	t.Run("Run", func(t *testing.T) {
		if err := l.Run("v", exec.Command("ping", "-n", "-c1", "-W1", "198.19.9.9")); err != nil {
			t.Errorf("ping run in v: %v", err)
		}
		if err := l.Run("v", exec.Command("ping", "-n", "-c1", "-W1", "198.20.9.9")); err == nil {
			t.Error("ping of an unrouted address run in v: no error")
		}
	})
	t.Run("Uplink", func(t *testing.T) {
		ifc, mac, err := l.Uplink("v")
		if err != nil {
			t.Fatal(err)
		}
		out, err := l.Command(context.Background(), "r", "cat", "/sys/class/net/vbt1-0a/address").Output()
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(out)); ifc != "vbt1-0b" || mac != want {
			t.Errorf("Uplink(v) = %s, %s; want vbt1-0b, %s", ifc, mac, want)
		}
		if _, _, err := l.Uplink("r"); err == nil {
			t.Error("Uplink(r) of a router with three links: no error")
		}
	})
	t.Run("AddAnyIP", func(t *testing.T) {
		if err := l.AddAnyIP("n", netip.MustParsePrefix("198.20.0.0/24")); err != nil {
			t.Fatal(err)
		}
		wantPing(t, l, "v", "198.20.0.1", true)
		if err := l.AddAnyIP("n", netip.MustParsePrefix("192.0.2.0/25")); err == nil || !strings.Contains(err.Error(), "overlaps") {
			t.Errorf("AddAnyIP over the network's own prefix = %v, want an overlap error", err)
		}
		if err := l.AddAnyIP("r", netip.MustParsePrefix("198.21.0.0/24")); !errors.Is(err, ErrUnknownNode) {
			t.Errorf("AddAnyIP on a router = %v, want ErrUnknownNode", err)
		}
	})
}
