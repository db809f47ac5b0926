package collector

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	bgppkt "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/packet/bmp"

	"github.com/vantage-net/vantage/controller/bgp"
)

// TestRealBMP: a GoBGP router (AS 64512, 127.0.0.3) peers over loopback
// with a GoBGP speaker (AS 64511, 127.0.0.2) and streams its pre-policy
// Adj-RIB-In by BMP to the collector: the sink sees the monitored peer
// up, its routes, a withdrawal and the peer down.
func TestRealBMP(t *testing.T) {
	rec := newRecorder()
	c := runCollector(t, Config{BMPListen: "127.0.0.1:0"}, rec)
	routerListen := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.3"), 0)
	router := newSpeaker(t, 64512, "127.0.0.3", &routerListen)
	router.peer(t, speakerAddr, speakerAS, netip.AddrPort{}, netip.Addr{})
	err := router.AddBmp(context.Background(), &api.AddBmpRequest{Address: c.BMPAddr().Addr().String(),
		Port: uint32(c.BMPAddr().Port()), Policy: api.AddBmpRequest_PRE, SysName: "test-router"})
	if err != nil {
		t.Fatal(err)
	}
	sp := newSpeaker(t, speakerAS, speakerID, nil)
	sp.peer(t, routerListen.Addr(), 64512, routerListen, speakerAddr)
	src := "bmp:127.0.0.1" // the router dials the station from 127.0.0.1

	up, _ := rec.waitEvent(t, "monitored peer up", func(e bgp.PeerEvent) bool { return e.Up })
	if up.Source != src || up.Peer != speakerAddr || up.PeerAS != speakerAS {
		t.Errorf("peer up %+v", up)
	}
	p4, p6 := path(t, pfx4, addedPath, speakerAddr), path(t, pfx6, addedPath, nh6)
	start := time.Now()
	sp.add(t, p4)
	sp.add(t, p6)
	a4, got4 := rec.waitUpdate(t, "IPv4 route", announced(src, pfx4))
	a6, got6 := rec.waitUpdate(t, "IPv6 route", announced(src, pfx6))
	t.Logf("AddPath at the speaker to the BMP route at the sink: IPv4 %s, IPv6 %s", got4.Sub(start), got6.Sub(start))
	checkRoute(t, a4, speakerAddr)
	checkRoute(t, a6, nh6)

	start = time.Now()
	sp.del(t, p4)
	w, gotW := rec.waitUpdate(t, "IPv4 withdrawal", withdrawn(src, pfx4))
	t.Logf("DeletePath at the speaker to the BMP withdrawal at the sink: %s", gotW.Sub(start))
	if w.Peer != speakerAddr {
		t.Errorf("withdrawal %+v", w)
	}

	start = time.Now()
	sp.stop()
	down, gotD := rec.waitEvent(t, "monitored peer down", func(e bgp.PeerEvent) bool { return !e.Up })
	t.Logf("speaker Stop to the BMP peer down at the sink: %s", gotD.Sub(start))
	if down.Source != src || down.Peer != speakerAddr {
		t.Errorf("peer down %+v", down)
	}
}

// bmpBytes serializes a BMP message GoBGP's way.
func bmpBytes(t *testing.T, m *bmp.BMPMessage) []byte {
	t.Helper()
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRealBMPStream writes BMP by hand on a loopback connection: peer up
// for an IPv6 peer, a route monitoring message with MP_REACH and a header
// timestamp, one with a zero timestamp, a post-policy copy (ignored) and
// an unparsable one (skipped); then the connection closes and the peer is
// down. A second connection with a bad version is dropped at once.
func TestRealBMPStream(t *testing.T) {
	rec := newRecorder()
	c := runCollector(t, Config{BMPListen: "127.0.0.1:0"}, rec)
	conn, err := net.Dial("tcp", c.BMPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer := "2001:db8::33"
	ph := bmp.NewBMPPeerHeader(bmp.BMP_PEER_TYPE_GLOBAL, 0, 0, peer, 4200000001, "192.0.2.33", 1700000000.25)
	open := bgppkt.NewBGPOpenMessage(64512, 90, "192.0.2.33", nil)
	upd := bgppkt.NewBGPUpdateMessage(nil, []bgppkt.PathAttributeInterface{
		bgppkt.NewPathAttributeOrigin(0),
		bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{4200000001, 64500})}),
		bgppkt.NewPathAttributeMpReachNLRI(peer, []bgppkt.AddrPrefixInterface{bgppkt.NewIPv6AddrPrefix(64, "2001:db8:18::")}),
	}, nil)
	wd := bgppkt.NewBGPUpdateMessage([]*bgppkt.IPAddrPrefix{bgppkt.NewIPAddrPrefix(24, "198.18.0.0")}, nil, nil)
	zero := *ph
	zero.Timestamp = 0
	post := *ph
	post.Flags |= bmp.BMP_PEER_FLAG_POST_POLICY
	bad := bmpBytes(t, bmp.NewBMPRouteMonitoring(*ph, wd))
	bad[len(bad)-1] = 0xff // the path attributes' length now overruns the message
	var stream []byte
	for _, m := range []*bmp.BMPMessage{
		bmp.NewBMPInitiation([]bmp.BMPInfoTLVInterface{bmp.NewBMPInfoTLVString(bmp.BMP_INIT_TLV_TYPE_SYS_NAME, "hand")}),
		bmp.NewBMPPeerUpNotification(*ph, "2001:db8::1", 179, 50000, open, open),
		bmp.NewBMPRouteMonitoring(post, upd),
		bmp.NewBMPRouteMonitoring(*ph, upd),
	} {
		stream = append(stream, bmpBytes(t, m)...)
	}
	stream = append(stream, bad...)
	stream = append(stream, bmpBytes(t, bmp.NewBMPRouteMonitoring(zero, wd))...)
	before := time.Now()
	if _, err := conn.Write(stream); err != nil {
		t.Fatal(err)
	}
	src := "bmp:127.0.0.1"
	a, _ := rec.waitUpdate(t, "IPv6 route", announced(src, pfx6))
	w, _ := rec.waitUpdate(t, "IPv4 withdrawal", withdrawn(src, pfx4))
	if want := time.Unix(1700000000, 250000000); !a.At.Equal(want) || a.NextHop != netip.MustParseAddr(peer) || a.Origin() != 64500 || a.PeerAS != 4200000001 {
		t.Errorf("route %+v, want at %s", a, want)
	}
	if w.At.Before(before) {
		t.Errorf("withdrawal with a zero header timestamp at %s, want now (after %s)", w.At, before)
	}
	rec.mu.Lock()
	if n := len(rec.updates); n != 2 {
		t.Errorf("%d updates, want 2 (the post-policy copy and the bad message skipped): %v", n, rec.updates)
	}
	rec.mu.Unlock()
	conn.Close()
	down, _ := rec.waitEvent(t, "peer down on close", func(e bgp.PeerEvent) bool { return !e.Up })
	if down.Peer != netip.MustParseAddr(peer) || down.Source != src {
		t.Errorf("down %+v", down)
	}

	bad2, err := net.Dial("tcp", c.BMPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer bad2.Close()
	if _, err := bad2.Write([]byte{2, 0, 0, 0, 6, 4}); err != nil {
		t.Fatal(err)
	}
	if err := bad2.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	if n, err := bad2.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes from the station, want the connection closed", n)
	}
}

// TestRealBMPConnCap: connections beyond BMPMaxConns are closed at once;
// the ones within it stay open.
func TestRealBMPConnCap(t *testing.T) {
	c := runCollector(t, Config{BMPListen: "127.0.0.1:0", BMPMaxConns: 2}, newRecorder())
	var conns []net.Conn
	for range 3 {
		conn, err := net.Dial("tcp", c.BMPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	closed := func(conn net.Conn, wait time.Duration) bool {
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		_, err := conn.Read(make([]byte, 1))
		ne, timeout := err.(net.Error)
		return err != nil && !(timeout && ne.Timeout())
	}
	if !closed(conns[2], waitLimit) {
		t.Error("the third connection was not closed")
	}
	for i := range 2 {
		if closed(conns[i], 200*time.Millisecond) {
			t.Errorf("connection %d closed, want it open", i)
		}
	}
}

// FuzzBMPMessage feeds one framed message to the station's handler: it
// must not panic, and whatever reaches the sink must be valid.
func FuzzBMPMessage(f *testing.F) {
	ph := bmp.NewBMPPeerHeader(bmp.BMP_PEER_TYPE_GLOBAL, 0, 0, "192.0.2.33", 64511, "192.0.2.33", 1700000000)
	open := bgppkt.NewBGPOpenMessage(64511, 90, "192.0.2.33", nil)
	upd := bgppkt.NewBGPUpdateMessage([]*bgppkt.IPAddrPrefix{bgppkt.NewIPAddrPrefix(24, "198.18.0.0")}, []bgppkt.PathAttributeInterface{
		bgppkt.NewPathAttributeOrigin(0),
		bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{64511, 64500})}),
		bgppkt.NewPathAttributeMpReachNLRI("2001:db8::33", []bgppkt.AddrPrefixInterface{bgppkt.NewIPv6AddrPrefix(64, "2001:db8:18::")}),
	}, nil)
	for _, m := range []*bmp.BMPMessage{
		bmp.NewBMPPeerUpNotification(*ph, "192.0.2.1", 179, 50000, open, open),
		bmp.NewBMPRouteMonitoring(*ph, upd),
		bmp.NewBMPPeerDownNotification(*ph, bmp.BMP_PEER_DOWN_REASON_REMOTE_NO_NOTIFICATION, nil, nil),
		bmp.NewBMPTermination(nil),
	} {
		b, err := m.Serialize()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < bmp.BMP_HEADER_SIZE {
			return // readBMP never hands these on
		}
		sink := &validatingSink{t: t}
		c, err := New(Config{BMPListen: "127.0.0.1:0"}, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := &bmpRouter{c: c, source: "bmp:fuzz", up: map[netip.Addr]bgp.PeerEvent{}}
		r.handle(data, c.log)
		r.allDown()
	})
}

type validatingSink struct{ t *testing.T }

func (s *validatingSink) Update(u bgp.Update) {
	if err := u.Validate(); err != nil {
		s.t.Fatalf("invalid update reached the sink: %v", err)
	}
}

func (s *validatingSink) PeerState(e bgp.PeerEvent) {
	if !e.Peer.IsValid() || e.At.IsZero() {
		s.t.Fatalf("bad peer event %+v", e)
	}
}
