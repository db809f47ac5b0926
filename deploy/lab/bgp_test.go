package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests run real BIRDs (bird2) in real namespaces; besides what
// needLab wants they need bird and birdc. Every packet stays inside the
// lab's namespaces.

func needBGP(t *testing.T) {
	t.Helper()
	needLab(t)
	for _, tool := range []string{birdBin, birdcBin} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s on PATH (Debian package bird2; deploy/install-deps.sh bgp installs it)", tool)
		}
	}
}

// hasRoute reports whether node's BIRD has a route to prefix.
func hasRoute(t *testing.T, l *Lab, node, prefix string) bool {
	t.Helper()
	out, err := l.BirdShow(node, "route", "all")
	if err != nil {
		t.Fatalf("BirdShow %s: %v", node, err)
	}
	return slices.ContainsFunc(strings.Fields(out), func(f string) bool { return f == prefix })
}

// waitRoute waits until node's BIRD has (or has not) a route to prefix and
// returns how long that took.
func waitRoute(t *testing.T, l *Lab, node, prefix string, want bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !time.Now().After(start.Add(20 * time.Second)) {
		if hasRoute(t, l, node, prefix) == want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("route to %s at %s: still present=%v after 20s", prefix, node, !want)
	return 0
}

// waitPing pings until the reply matches want (bounded) and returns how
// long that took.
func waitPing(t *testing.T, l *Lab, node, addr string, want bool) time.Duration {
	t.Helper()
	start := time.Now()
	for range 20 {
		if _, ok := ping(t, l, node, addr); ok == want {
			return time.Since(start)
		}
	}
	t.Fatalf("ping %s from %s: reply never became %v", addr, node, want)
	return 0
}

// sessionsSince returns "since" of every BGP session of node, by name.
func sessionsSince(t *testing.T, l *Lab, node string) map[string]string {
	t.Helper()
	out, err := l.BirdShow(node, "protocols")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "BGP" && f[5] == "Established" {
			m[f[0]] = f[4]
		}
	}
	return m
}

func wantFault(t *testing.T, l *Lab, fault string, want bool) {
	t.Helper()
	fs, err := l.Faults(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(fs, fault) != want {
		t.Errorf("Faults() = %q: %q present=%v, want %v", fs, fault, !want, want)
	}
}

func TestRealLabBGP(t *testing.T) {
	needBGP(t)
	t.Cleanup(func() {
		if pids, err := birdPIDs("bg"); err != nil || len(pids) > 0 {
			t.Errorf("bird processes left after Down: %v (%v)", pids, err)
		}
	})
	l := upLab(t, "bg", Options{BGP: true})
	const host0, host2 = "198.18.0.10", "198.18.2.10"

	t.Run("sessions", func(t *testing.T) {
		for _, n := range l.topo.bgpRouters() {
			ps, err := l.bgpProtocols(context.Background(), n)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				if p.name == collectorSession {
					t.Logf("%s: collector session %s (nobody listens)", n, p.state)
					continue
				}
				if !p.established {
					t.Errorf("%s: %s is %s", n, p.name, p.state)
				}
			}
		}
	})
	t.Run("bgp-routes", func(t *testing.T) {
		missing, err := l.missingBirdRoutes("ix", l.announced())
		if err != nil || len(missing) > 0 {
			t.Errorf("ix kernel: missing BIRD routes %v (%v)", missing, err)
		}
		for _, a := range []string{host0, host2, "2001:db8:18:0::10", "2001:db8:18:3::13"} {
			wantPing(t, l, "vantage-a", a, true)
		}
		if err := l.Blackout("net0"); !errors.Is(err, ErrRoutingMode) {
			t.Errorf("Blackout in BGP mode: %v, want ErrRoutingMode", err)
		}
	})
	t.Run("collector", func(t *testing.T) { testCollectorConnects(t, l) })
	t.Run("upstream-withdraw", func(t *testing.T) { testUpstreamWithdraw(t, l) })
	t.Run("origin-withdraw", func(t *testing.T) { testOriginWithdraw(t, l) })
	t.Run("dataplane-down", func(t *testing.T) { testDataPlaneDown(t, l) })
	t.Run("flap", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
		defer cancel()
		if err := l.BGPFlap(ctx, time.Second, "upstream-b", "net3"); err != nil {
			t.Fatal(err)
		}
		t.Logf("flap ended; net3 back at ix after %v", waitRoute(t, l, "ix", "198.18.3.0/24", true))
		wantFault(t, l, "bgp-withdraw net3 at upstream-b", false)
	})
	t.Run("mrt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ix.mrt")
		if err := l.DumpMRT("ix", path); err != nil {
			t.Fatal(err)
		}
		sum := mrtFile(t, path)
		t.Logf("MRT dump of ix: %+v", sum)
		if sum.PeerTables < 1 || sum.RIB4 < 4 || sum.RIB6 < 4 {
			t.Errorf("MRT dump of ix = %+v, want a peer table and >= 4 RIB entries per family", sum)
		}
	})
	t.Run("open", func(t *testing.T) {
		o, err := Open(l.topo, Options{Prefix: "bg"})
		if err != nil {
			t.Fatal(err)
		}
		defer o.closeHandles()
		if !o.BGPMode() {
			t.Error("Open of a BGP lab: BGPMode() = false")
		}
	})
}

// testCollectorConnects listens as the collector would (controller
// namespace, port 1179) and waits for a BIRD to connect.
func testCollectorConnects(t *testing.T, l *Lab) {
	ln, err := l.Listen("controller", "tcp", ":1179")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- "accept: " + err.Error()
			return
		}
		done <- c.RemoteAddr().String()
		_ = c.Close()
	}()
	select {
	case from := <-done:
		t.Logf("collector port: connection from %s", from)
		_, peers, ok := l.Collector()
		var want []string
		for _, p := range peers {
			want = append(want, p.Addr.String())
		}
		host, _, _ := strings.Cut(from, ":")
		if !ok || !slices.Contains(want, host) {
			t.Errorf("collector connection from %s, want one of the collector peers %v", from, want)
		}
		if len(want) != 4 || !peers[2].Monitor || peers[0].Monitor || !peers[1].Multihop || peers[0].Multihop {
			t.Errorf("collector peers %+v: want ix (direct), transit (multihop) and the two upstreams as monitors", peers)
		}
	case <-time.After(10 * time.Second):
		t.Error("no BIRD connected to the collector port within 10s")
	}
}

func testUpstreamWithdraw(t *testing.T, l *Lab) {
	before := sessionsSince(t, l, "transit")
	start := time.Now()
	if err := l.BGPWithdraw("upstream"); err != nil {
		t.Fatal(err)
	}
	call := time.Since(start)
	gone := waitRoute(t, l, "ix", "198.18.0.0/24", false)
	gone6 := waitRoute(t, l, "ix", "2001:db8:18::/64", false)
	waitRoute(t, l, "ix", "198.18.1.0/24", false)
	t.Logf("BGPWithdraw(upstream): call %v; net0 gone at ix after %v (v6 %v)", call, call+gone, call+gone6)
	out := wantPing(t, l, "vantage-a", host0Addr, false)
	if !strings.Contains(out, "From 198.51.100.1 icmp_seq=1 Destination Net Unreachable") {
		t.Errorf("ping net0 after BGPWithdraw: want net unreachable from ix:\n%s", out)
	}
	wantPing(t, l, "vantage-a", "198.18.2.10", true)
	if !hasRoute(t, l, "upstream", "198.18.0.0/24") {
		t.Error("upstream lost net0 itself: the border should still announce it")
	}
	wantFault(t, l, "bgp-withdraw net0 at upstream", true)
	if after := sessionsSince(t, l, "transit"); !mapsEqual(before, after) {
		t.Errorf("sessions at transit restarted: before %v, after %v", before, after)
	}
	start = time.Now()
	if err := l.BGPAnnounce("upstream"); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, l, "ix", "198.18.0.0/24", true)
	t.Logf("BGPAnnounce(upstream): net0 back at ix after %v, ping answered %v later", time.Since(start), waitPing(t, l, "vantage-a", host0Addr, true))
	wantFault(t, l, "bgp-withdraw net0 at upstream", false)
}

const host0Addr = "198.18.0.10"

func testOriginWithdraw(t *testing.T, l *Lab) {
	start := time.Now()
	if err := l.OriginWithdraw("net0", "net2"); err != nil {
		t.Fatal(err)
	}
	d0 := waitRoute(t, l, "upstream", "198.18.0.0/24", false)
	d2 := waitRoute(t, l, "upstream-b", "198.18.2.0/24", false)
	dix := waitRoute(t, l, "ix", "198.18.0.0/24", false)
	t.Logf("OriginWithdraw(net0, net2): gone at upstream %v, at upstream-b %v, at ix %v (after the call %v)", d0, d2, dix, time.Since(start))
	for _, n := range []string{"upstream", "upstream-b", "transit"} {
		if hasRoute(t, l, n, "198.18.0.0/24") || hasRoute(t, l, n, "198.18.2.0/24") {
			t.Errorf("%s still has net0 or net2", n)
		}
	}
	if !hasRoute(t, l, "ix", "198.18.1.0/24") {
		t.Error("ix lost net1, which was not withdrawn")
	}
	wantPing(t, l, "vantage-a", host0Addr, false)
	wantFault(t, l, "origin-withdraw net2 at border", true)
	if err := l.OriginAnnounce(); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, l, "ix", "198.18.2.0/24", true)
	waitPing(t, l, "vantage-a", host0Addr, true)
	wantFault(t, l, "origin-withdraw net2 at border", false)
}

func testDataPlaneDown(t *testing.T, l *Lab) {
	before := sessionsSince(t, l, "upstream")
	if err := l.DataPlaneDown("border"); err != nil {
		t.Fatal(err)
	}
	wantFault(t, l, "dataplane-down border", true)
	wantPing(t, l, "vantage-a", host0Addr, false)
	wantPing(t, l, "vantage-a", "2001:db8:18:0::10", false)
	wantPing(t, l, "vantage-a", "198.51.100.50", false) // the border itself
	// Past the hold time the sessions must still be up and the routes there.
	time.Sleep(time.Duration(bgpHoldTime+2) * time.Second)
	if after := sessionsSince(t, l, "upstream"); !mapsEqual(before, after) {
		t.Errorf("sessions at upstream changed with the data plane down: before %v, after %v", before, after)
	}
	for _, p := range []string{"198.18.0.0/24", "2001:db8:18::/64", "198.18.3.0/24"} {
		if !hasRoute(t, l, "ix", p) {
			t.Errorf("ix lost %s with only the border's data plane down", p)
		}
	}
	wantPing(t, l, "vantage-a", host0Addr, false)
	t.Logf("data plane down at the border for %ds: routes kept at ix, pings lost", bgpHoldTime+2)
	if err := l.DataPlaneUp("border"); err != nil {
		t.Fatal(err)
	}
	waitPing(t, l, "vantage-a", host0Addr, true)
	wantFault(t, l, "dataplane-down border", false)
}

// mapsEqual: the same sessions, each established at the same time give
// or take 50 ms (BIRD prints a session's "since" from its monotonic clock
// converted at display time, so it moves by a millisecond between two
// reads; a restart moves it by the whole test so far).
func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			return false
		}
		ta, ea := time.Parse("15:04:05.000", v)
		tb, eb := time.Parse("15:04:05.000", w)
		if ea != nil || eb != nil {
			if v != w {
				return false
			}
			continue
		}
		if d := ta.Sub(tb); d > 50*time.Millisecond || d < -50*time.Millisecond {
			return false
		}
	}
	return true
}

func mrtFile(t *testing.T, path string) MRTSummary {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := CheckMRT(b)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
