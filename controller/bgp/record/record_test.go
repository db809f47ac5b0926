package record

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var (
	net0  = netip.MustParsePrefix("198.18.0.0/24")
	net1  = netip.MustParsePrefix("198.18.1.0/24")
	cover = netip.MustParsePrefix("198.18.0.0/16")
	peers = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}
)

func monitor(rib *bgp.RIB) {
	rib.SetMonitored(map[netip.Prefix]bgp.Monitor{net0: {Campaign: "kp", Network: "net0"}, net1: {Campaign: "kp", Network: "net1"}})
}

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func announce(peer int, p netip.Prefix, sec int, path ...uint32) bgp.Update {
	return bgp.Update{At: at(sec), Peer: peers[peer], PeerAS: path[0], Prefix: p, ASPath: path, NextHop: peers[peer],
		Source: "bgp:" + peers[peer].String()}
}

func withdraw(peer int, p netip.Prefix, sec int) bgp.Update {
	return bgp.Update{At: at(sec), Peer: peers[peer], PeerAS: 64501 + uint32(peer), Prefix: p, Withdraw: true,
		Source: "bgp:" + peers[peer].String()}
}

func session(peer int, sec int, up bool) bgp.PeerEvent {
	return bgp.PeerEvent{At: at(sec), Peer: peers[peer], PeerAS: 64501 + uint32(peer), Source: "bgp:" + peers[peer].String(),
		Up: up, FullFeed: true}
}

// feed is a morning of routing: three peers announce both networks, an
// unrelated prefix comes and goes, net0 is withdrawn by two peers, one
// session drops and comes back, net0 is announced again.
func feed(s bgp.Sink) {
	for i := range peers {
		s.PeerState(session(i, 0, true))
	}
	for i := range peers { // in time order, as a collector delivers
		s.Update(announce(i, net0, 10+i, 64501+uint32(i), 64500))
	}
	for i := range peers {
		s.Update(announce(i, net1, 20+i, 64501+uint32(i), 64500))
	}
	s.Update(announce(0, cover, 25, 64501, 64499))
	s.Update(announce(0, netip.MustParsePrefix("203.0.113.0/24"), 30, 64501, 64496)) // not monitored
	s.Update(withdraw(0, net0, 100))
	s.Update(withdraw(1, net0, 101))
	s.PeerState(session(2, 150, false))
	s.PeerState(session(2, 200, true))
	s.Update(announce(2, net1, 201, 64503, 64500))
	s.Update(announce(0, net0, 300, 64501, 64510, 64500))
	s.Update(announce(1, net0, 301, 64502, 64500))
}

var instants = []int{5, 15, 26, 100, 102, 160, 205, 302, 400}

func sameStates(t *testing.T, want, got *bgp.RIB, until int) {
	t.Helper()
	for _, sec := range instants {
		if sec > until {
			continue
		}
		ws, gs := want.States([]netip.Prefix{net0, net1}, at(sec)), got.States([]netip.Prefix{net0, net1}, at(sec))
		for i := range ws {
			if !proto.Equal(ws[i], gs[i]) {
				t.Errorf("at +%ds, %s:\nrecorded %v\nloaded   %v", sec, ws[i].GetPrefix(), ws[i], gs[i])
			}
		}
	}
}

// TestRecordThenLoad: what the recorder wrote, loaded into a fresh RIB,
// gives the recorded RIB's states at every instant.
func TestRecordThenLoad(t *testing.T) {
	db := fixture.Store(t)
	live := bgp.NewRIB(bgp.Options{})
	monitor(live)
	r := New(Options{Store: db, RIB: live, FlushItems: 4, FlushEvery: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	feed(r)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.Updates != 12 || st.Skipped != 1 || st.PeerEvents != 5 || st.Dropped != 0 {
		t.Errorf("stats = %+v; want 12 updates, 1 skipped, 5 peer events, none dropped", st)
	}
	fresh := bgp.NewRIB(bgp.Options{})
	monitor(fresh)
	if err := Load(context.Background(), db, fresh, time.Time{}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	sameStates(t, live, fresh, 1<<30)
	if lp, fp := live.Peers(at(400)), fresh.Peers(at(400)); len(lp) != len(fp) {
		t.Errorf("peers: recorded %d, loaded %d", len(lp), len(fp))
	}

	// A restart loads from later on: the routes announced before it are
	// still there, and visibility agrees from then on.
	restarted := bgp.NewRIB(bgp.Options{})
	monitor(restarted)
	if err := Load(context.Background(), db, restarted, at(160), time.Time{}); err != nil {
		t.Fatal(err)
	}
	for _, sec := range []int{160, 205, 302, 400} {
		ws, gs := live.States([]netip.Prefix{net0, net1}, at(sec)), restarted.States([]netip.Prefix{net0, net1}, at(sec))
		for i := range ws {
			if ws[i].GetPeersWithRoute() != gs[i].GetPeersWithRoute() || ws[i].GetPeers() != gs[i].GetPeers() {
				t.Errorf("restart at +%ds, %s: routes %d/%d, want %d/%d", sec, ws[i].GetPrefix(),
					gs[i].GetPeersWithRoute(), gs[i].GetPeers(), ws[i].GetPeersWithRoute(), ws[i].GetPeers())
			}
		}
	}
}

// TestLoadWindow: a window [from, to] loads only its updates.
func TestLoadWindow(t *testing.T) {
	db := fixture.Store(t)
	live := bgp.NewRIB(bgp.Options{})
	monitor(live)
	r := New(Options{Store: db, RIB: live})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	feed(r)
	cancel()
	<-done
	rib := bgp.NewRIB(bgp.Options{})
	monitor(rib)
	if err := Load(context.Background(), db, rib, time.Time{}, at(26)); err != nil {
		t.Fatal(err)
	}
	if got := rib.Latest(); !got.Equal(at(25)) {
		t.Errorf("latest loaded = %v, want +25s", got)
	}
	sameStates(t, live, rib, 26)
}

// failing is a store that refuses every write after the first n.
type failing struct {
	mu    sync.Mutex
	n     int
	wrote int
}

func (f *failing) AddBGP(_ context.Context, us []*vantagev1.BgpUpdate, es []store.BGPPeerEvent, _ store.AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return errors.New("disk full")
	}
	f.n--
	f.wrote += len(us) + len(es)
	return nil
}

// TestOverflow: a full queue drops, never blocks; a failed write counts
// its items as dropped; both are logged.
func TestOverflow(t *testing.T) {
	rib := bgp.NewRIB(bgp.Options{})
	monitor(rib)
	st := &failing{n: 1}
	log := fixture.Log(t)
	r := New(Options{Store: st, RIB: rib, Queue: 3, FlushItems: 2, FlushEvery: time.Hour, Log: log})
	for i := range 5 { // no Run yet: 3 queue, 2 drop
		r.Update(announce(0, net0, i, 64501, 64500))
	}
	if d := r.Stats().Dropped; d != 2 {
		t.Fatalf("dropped = %d, want 2", d)
	}
	if got := rib.StateAt(net0, at(10)).GetPeersWithRoute(); got != 1 {
		t.Errorf("the RIB has %d routes, want 1: every update is applied, queued or not", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	cancel()
	<-done
	s := r.Stats()
	// The first batch of 2 is written, the last one (1) refused.
	if s.Updates != 2 || s.WriteFailures != 1 || s.Dropped != 3 || st.wrote != 2 {
		t.Errorf("stats = %+v, wrote %d; want 2 updates, 1 failure, 3 dropped, 2 written", s, st.wrote)
	}
}
