package collector

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/vantage-net/vantage/controller/bgp"
)

// TestRealEBGP runs a passive eBGP session over loopback between the
// collector and a GoBGP speaker (AS 64511, router-id 127.0.0.2, dialling
// from 127.0.0.2): announcements reach the sink with the path, next hop
// and origin, a delete reaches it as a withdrawal, and the speaker
// stopping is a PeerEvent down. The collector sends the speaker nothing.
func TestRealEBGP(t *testing.T) {
	rec := newRecorder()
	c := runCollector(t, Config{
		LocalAS: 64496, RouterID: netip.MustParseAddr("127.0.0.1"), BGPListen: "127.0.0.1:0",
		Peers: []PeerConfig{{Addr: speakerAddr, AS: speakerAS, FullFeed: true, Description: "test speaker"}},
	}, rec)
	if !c.BGPAddr().IsValid() || c.BGPAddr().Port() == 0 {
		t.Fatalf("BGPAddr %s", c.BGPAddr())
	}
	sp := newSpeaker(t, speakerAS, speakerID, nil)
	sp.peer(t, c.BGPAddr().Addr(), 64496, c.BGPAddr(), speakerAddr)
	src := "bgp:" + speakerAddr.String()

	up, _ := rec.waitEvent(t, "peer up", func(e bgp.PeerEvent) bool { return e.Up })
	if up.Source != src || up.Peer != speakerAddr || up.PeerAS != speakerAS || !up.FullFeed {
		t.Errorf("peer up %+v", up)
	}

	p4, p6 := path(t, pfx4, addedPath, speakerAddr), path(t, pfx6, addedPath, nh6)
	start := time.Now()
	sp.add(t, p4)
	sp.add(t, p6)
	a4, got4 := rec.waitUpdate(t, "IPv4 announcement", announced(src, pfx4))
	a6, got6 := rec.waitUpdate(t, "IPv6 announcement", announced(src, pfx6))
	t.Logf("AddPath to the sink's announcement: IPv4 %s, IPv6 %s", got4.Sub(start), got6.Sub(start))
	checkRoute(t, a4, speakerAddr)
	checkRoute(t, a6, nh6)
	if a4.At.Before(start.Add(-time.Second)) || a4.At.After(got4) {
		t.Errorf("announcement at %s, not between the add (%s) and the sink (%s)", a4.At, start, got4)
	}
	checkNothingSent(t, sp, c.BGPAddr().Addr())

	start = time.Now()
	sp.del(t, p4)
	w, gotW := rec.waitUpdate(t, "IPv4 withdrawal", withdrawn(src, pfx4))
	t.Logf("DeletePath to the sink's withdrawal: %s", gotW.Sub(start))
	if w.Peer != speakerAddr || w.PeerAS != speakerAS || len(w.ASPath) != 0 {
		t.Errorf("withdrawal %+v", w)
	}

	start = time.Now()
	sp.stop()
	down, gotD := rec.waitEvent(t, "peer down", func(e bgp.PeerEvent) bool { return !e.Up })
	t.Logf("speaker Stop to the sink's PeerEvent down: %s", gotD.Sub(start))
	if down.Source != src || down.Peer != speakerAddr || !down.FullFeed {
		t.Errorf("peer down %+v", down)
	}
}

// checkNothingSent: the speaker's Adj-RIB-In from the collector is empty,
// in both families (the collector re-announced none of the routes).
func checkNothingSent(t *testing.T, sp *gobgpSpeaker, collector netip.Addr) {
	t.Helper()
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		n := 0
		err := sp.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: collector.String(),
			Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}}, func(*api.Destination) { n++ })
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("the collector announced %d %s destinations", n, afi)
		}
	}
}

// TestRealRunStops: after Run returns, nothing the collector started runs
// but GoBGP's Serve loop, which v3.37.0 cannot stop (see speaker). The
// collector has a session up and a BMP connection open when it stops.
func TestRealRunStops(t *testing.T) {
	before := goroutines()
	rec := newRecorder()
	c, err := New(Config{LocalAS: 64496, RouterID: netip.MustParseAddr("127.0.0.1"), BGPListen: "127.0.0.1:0", BMPListen: "127.0.0.1:0",
		Peers: []PeerConfig{{Addr: speakerAddr, AS: speakerAS}}}, rec, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready()
	sp := newSpeaker(t, speakerAS, speakerID, nil)
	sp.peer(t, c.BGPAddr().Addr(), 64496, c.BGPAddr(), speakerAddr)
	rec.waitEvent(t, "peer up", func(e bgp.PeerEvent) bool { return e.Up })
	conn, err := net.Dial("tcp", c.BMPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec.waitEvent(t, "peer down on stop", func(e bgp.PeerEvent) bool { return !e.Up })
	sp.stop()
	var left []string
	for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		left = left[:0]
		for id, stack := range goroutines() {
			if _, old := before[id]; !old && !strings.Contains(stack, "(*BgpServer).Serve") && !strings.Contains(stack, "TestRealRunStops") {
				left = append(left, stack)
			}
		}
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("%d goroutines left after Run:\n%s", len(left), strings.Join(left, "\n\n"))
}

// goroutines is every goroutine's stack by its id line.
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	out := map[string]string{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		id, _, _ := strings.Cut(g, " [")
		out[id] = g
	}
	return out
}
