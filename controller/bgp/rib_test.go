package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2014, 12, 22, 16, 0, 0, 0, time.UTC)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func announce(at time.Duration, peer string, p string, path ...uint32) Update {
	return Update{At: t0.Add(at), Peer: addr(peer), PeerAS: path[0], Prefix: pfx(p), ASPath: path,
		NextHop: addr(peer), Source: "bgp:" + peer}
}

func withdraw(at time.Duration, peer string, as uint32, p string) Update {
	return Update{At: t0.Add(at), Peer: addr(peer), PeerAS: as, Prefix: pfx(p), Withdraw: true, Source: "bgp:" + peer}
}

func up(at time.Duration, peer string, as uint32, isUp bool) PeerEvent {
	return PeerEvent{At: t0.Add(at), Peer: addr(peer), PeerAS: as, Source: "bgp:" + peer, Up: isUp, FullFeed: true}
}

func newTestRIB() *RIB {
	r := NewRIB(Options{})
	r.SetMonitored(map[netip.Prefix]Monitor{pfx("198.18.0.0/24"): {"kp", "net0"}, pfx("198.18.2.0/24"): {"kp", "net2"}})
	return r
}

// The story of a withdrawal: 3 peers announce, 2 withdraw (33%: not
// visible), one re-announces (67%: visible again).
func TestVisibilityFollowsWithdrawals(t *testing.T) {
	r := newTestRIB()
	peers := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}
	for i, p := range peers {
		r.PeerState(up(0, p, uint32(64510+i), true))
		r.Update(announce(time.Second, p, "198.18.0.0/24", uint32(64510+i), 64501, 64500))
	}
	r.Update(withdraw(10*time.Second, peers[0], 64510, "198.18.0.0/24"))
	r.Update(withdraw(11*time.Second, peers[1], 64511, "198.18.0.0/24"))
	r.Update(announce(20*time.Second, peers[1], "198.18.0.0/24", 64511, 64502, 64500))

	for _, c := range []struct {
		at      time.Duration
		with    uint32
		visible bool
		change  time.Duration // 0: none
		path    []uint32
	}{
		{5 * time.Second, 3, true, time.Second, []uint32{64510, 64501, 64500}},
		{10 * time.Second, 2, true, time.Second, nil},
		{15 * time.Second, 1, false, 11 * time.Second, nil},
		{25 * time.Second, 2, true, 20 * time.Second, []uint32{64511, 64502, 64500}},
	} {
		s := r.StateAt(pfx("198.18.0.0/24"), t0.Add(c.at))
		if s.GetPeers() != 3 || s.GetPeersWithRoute() != c.with || s.GetVisible() != c.visible {
			t.Errorf("at %v: %d of %d peers, visible %v; want %d of 3, %v", c.at, s.GetPeersWithRoute(), s.GetPeers(), s.GetVisible(), c.with, c.visible)
		}
		if got := s.GetLastChange().AsTime(); !got.Equal(t0.Add(c.change)) {
			t.Errorf("at %v: last change %v, want %v", c.at, got.Sub(t0), c.change)
		}
		if c.path != nil && !equal(s.GetLastPath(), c.path) {
			t.Errorf("at %v: last path %v, want %v", c.at, s.GetLastPath(), c.path)
		}
		if s.GetOriginAs() != 64500 || s.GetNetwork() != "net0" {
			t.Errorf("at %v: origin %d network %q", c.at, s.GetOriginAs(), s.GetNetwork())
		}
	}
}

// A peer whose session goes down leaves the denominator and loses its
// routes; when it comes back, it must announce again.
func TestPeerDownDropsRoutes(t *testing.T) {
	r := newTestRIB()
	r.PeerState(up(0, "192.0.2.1", 64510, true))
	r.PeerState(up(0, "192.0.2.2", 64511, true))
	r.Update(announce(time.Second, "192.0.2.1", "198.18.0.0/24", 64510, 64500))
	r.Update(announce(time.Second, "192.0.2.2", "198.18.0.0/24", 64511, 64500))
	r.PeerState(up(5*time.Second, "192.0.2.1", 64510, false))
	s := r.StateAt(pfx("198.18.0.0/24"), t0.Add(6*time.Second))
	if s.GetPeers() != 1 || s.GetPeersWithRoute() != 1 || !s.GetVisible() {
		t.Errorf("after a peer went down: %d of %d", s.GetPeersWithRoute(), s.GetPeers())
	}
	r.PeerState(up(8*time.Second, "192.0.2.1", 64510, true))
	if s := r.StateAt(pfx("198.18.0.0/24"), t0.Add(9*time.Second)); s.GetPeers() != 1 || s.GetPeersWithRoute() != 1 {
		t.Errorf("back up, table not sent yet: %d of %d, want 1 of 1", s.GetPeersWithRoute(), s.GetPeers())
	}
	settled := 8*time.Second + 2*time.Minute
	if s := r.StateAt(pfx("198.18.0.0/24"), t0.Add(settled)); s.GetPeers() != 2 || s.GetPeersWithRoute() != 1 {
		t.Errorf("back up, not re-announced after the settle time: %d of %d, want 1 of 2", s.GetPeersWithRoute(), s.GetPeers())
	}
	r.PeerState(up(settled+time.Second, "192.0.2.2", 64511, false))
	r.PeerState(up(settled+time.Second, "192.0.2.1", 64510, false))
	if s := r.StateAt(pfx("198.18.0.0/24"), t0.Add(settled+2*time.Second)); s.GetPeers() != 0 || s.GetVisible() || s.GetVisibility() != 0 {
		t.Errorf("no session up: %d peers, visible %v", s.GetPeers(), s.GetVisible())
	}
}

// A session that has just come up counts towards a prefix's visibility
// from its first update of it, not before: a peer still sending its table must not pull the
// prefix under the line. One that never sends anything counts once the
// settle time has passed, and the change log has that instant.
func TestSessionCountsFromItsTable(t *testing.T) {
	r := newTestRIB()
	m := pfx("198.18.0.0/24")
	r.PeerState(up(0, "192.0.2.1", 64510, true))
	r.Update(announce(time.Second, "192.0.2.1", "198.18.0.0/24", 64510, 64500))
	r.PeerState(up(2*time.Second, "192.0.2.2", 64511, true))
	if s := r.StateAt(m, t0.Add(3*time.Second)); s.GetPeers() != 1 || !s.GetVisible() {
		t.Errorf("second session up, nothing sent: %d of %d visible %v, want 1 of 1 visible", s.GetPeersWithRoute(), s.GetPeers(), s.GetVisible())
	}
	// Its table begins with another prefix (the lab's CI run: the IX's
	// first update was of another network, and a partial peer's update in
	// between made a crossing the MRT replay, without that peer, did not).
	r.Update(announce(3*time.Second, "192.0.2.2", "198.18.2.0/24", 64511, 64500))
	r.Update(announce(3500*time.Millisecond, "192.0.2.1", "198.18.0.0/24", 64510, 64500)) // a recheck in between
	if s := r.StateAt(m, t0.Add(3700*time.Millisecond)); s.GetPeers() != 1 || !s.GetVisible() {
		t.Errorf("second peer's table under way (another prefix first): %d of %d visible %v, want 1 of 1 visible", s.GetPeersWithRoute(), s.GetPeers(), s.GetVisible())
	}
	r.Update(announce(4*time.Second, "192.0.2.2", "198.18.0.0/24", 64511, 64500))
	s := r.StateAt(m, t0.Add(5*time.Second))
	if s.GetPeers() != 2 || s.GetPeersWithRoute() != 2 || !s.GetLastChange().AsTime().Equal(t0.Add(time.Second)) {
		t.Errorf("second peer's table: %d of %d, last change %v, want 2 of 2 and no change since +1s", s.GetPeersWithRoute(), s.GetPeers(), s.GetLastChange().AsTime())
	}
	// A third and a fourth peer come up and never carry the prefix: from
	// the settle time on they count, and 2 of 4 is not visible.
	r.PeerState(up(10*time.Second, "192.0.2.3", 64512, true))
	r.PeerState(up(10*time.Second, "192.0.2.4", 64513, true))
	settle := 10*time.Second + 2*time.Minute
	if s := r.StateAt(m, t0.Add(settle-time.Second)); !s.GetVisible() || s.GetPeers() != 2 {
		t.Errorf("before the settle time: %d of %d visible %v", s.GetPeersWithRoute(), s.GetPeers(), s.GetVisible())
	}
	r.Update(announce(settle+time.Minute, "192.0.2.1", "198.18.2.0/24", 64510, 64500)) // any later update: the log catches up
	s = r.StateAt(m, t0.Add(settle+time.Minute))
	if s.GetVisible() || s.GetPeers() != 4 || !s.GetLastChange().AsTime().Equal(t0.Add(settle)) {
		t.Errorf("after the settle time: %d of %d visible %v last change %v, want 2 of 4, not visible, changed at +%v",
			s.GetPeersWithRoute(), s.GetPeers(), s.GetVisible(), s.GetLastChange().AsTime(), settle)
	}
}

// A covering prefix carries the traffic of a withdrawn more specific one;
// unrelated prefixes are not kept.
func TestCoveringAndUnrelated(t *testing.T) {
	r := newTestRIB()
	r.PeerState(up(0, "192.0.2.1", 64510, true))
	if r.Apply(announce(time.Second, "192.0.2.1", "203.0.113.0/24", 64510, 64999)) {
		t.Error("an unrelated prefix was kept")
	}
	r.Update(announce(time.Second, "192.0.2.1", "198.18.0.0/16", 64510, 64400))
	r.Update(announce(time.Second, "192.0.2.1", "198.18.0.0/24", 64510, 64500))
	r.Update(withdraw(2*time.Second, "192.0.2.1", 64510, "198.18.0.0/24"))
	s := r.StateAt(pfx("198.18.0.0/24"), t0.Add(3*time.Second))
	if !s.GetVisible() || len(s.GetRoutes()) != 1 || s.GetRoutes()[0].GetPrefix() != "198.18.0.0/16" {
		t.Errorf("covering route: visible %v routes %v", s.GetVisible(), s.GetRoutes())
	}
	if !equal(s.GetLastPath(), []uint32{64510, 64500}) {
		t.Errorf("last path %v: want the /24's own last path", s.GetLastPath())
	}
}

// The rate counts the last minute's updates; the baseline the hour before.
func TestUpdateRate(t *testing.T) {
	r := newTestRIB()
	r.PeerState(up(0, "192.0.2.1", 64510, true))
	for i := range 60 { // one an minute for an hour
		r.Update(announce(time.Duration(i)*time.Minute, "192.0.2.1", "198.18.2.0/24", 64510, 64502, 64500))
	}
	for i := range 30 { // then 30 in a minute
		at := time.Hour + time.Duration(i)*2*time.Second
		if i%2 == 0 {
			r.Update(withdraw(at, "192.0.2.1", 64510, "198.18.2.0/24"))
		} else {
			r.Update(announce(at, "192.0.2.1", "198.18.2.0/24", 64510, 64502, 64500))
		}
	}
	s := r.StateAt(pfx("198.18.2.0/24"), t0.Add(time.Hour+time.Minute-time.Second))
	if s.GetUpdatesPerMinute() != 30 || s.GetBaselinePerMinute() < 0.9 || s.GetBaselinePerMinute() > 1.1 {
		t.Errorf("rate %v/min baseline %v/min; want 30 and 1", s.GetUpdatesPerMinute(), s.GetBaselinePerMinute())
	}
}

func TestValidate(t *testing.T) {
	ok := announce(0, "192.0.2.1", "198.18.0.0/24", 64510, 64500)
	for _, c := range []struct {
		name string
		mod  func(*Update)
		want string
	}{
		{"ok", func(*Update) {}, ""},
		{"no time", func(u *Update) { u.At = time.Time{} }, "at: missing"},
		{"host bits", func(u *Update) { u.Prefix = netip.PrefixFrom(addr("198.18.0.1"), 24) }, "prefix: 198.18.0.1/24 has host bits set"},
		{"long path", func(u *Update) { u.ASPath = make([]uint32, MaxASPath+1) }, "as_path: 65 ASes"},
		{"empty eBGP path", func(u *Update) { u.ASPath = nil }, "as_path: empty"},
	} {
		u := ok
		c.mod(&u)
		err := u.Validate()
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := FromProto(ok.Proto()); err != nil {
		t.Errorf("round trip: %v", err)
	}
}

func equal(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A partial peer (a monitor session) is not counted in visibility, but its
// routes are listed; the last path is the full-feed peers'.
func TestPartialPeer(t *testing.T) {
	r := newTestRIB()
	r.PeerState(up(0, "192.0.2.1", 64510, true))
	mon := up(0, "198.51.100.42", 64501, true)
	mon.FullFeed = false
	r.PeerState(mon)
	r.Update(announce(time.Second, "192.0.2.1", "198.18.0.0/24", 64510, 64501, 64500))
	r.Update(announce(2*time.Second, "198.51.100.42", "198.18.0.0/24", 64501, 64500))
	r.Update(withdraw(3*time.Second, "192.0.2.1", 64510, "198.18.0.0/24"))
	s := r.StateAt(pfx("198.18.0.0/24"), t0.Add(4*time.Second))
	if s.GetPeers() != 1 || s.GetPeersWithRoute() != 0 || s.GetVisible() || len(s.GetRoutes()) != 1 || s.GetRoutes()[0].GetFullFeed() {
		t.Errorf("state %v: want 0 of 1 full-feed peers and the monitor's route listed", s)
	}
	if !equal(s.GetLastPath(), []uint32{64510, 64501, 64500}) {
		t.Errorf("last path %v: want the full-feed peer's", s.GetLastPath())
	}
}

// An update stamped before the last visibility change (a late source)
// keeps the change log in time order: last_change does not move back.
func TestLateUpdateKeepsChangeOrder(t *testing.T) {
	r := newTestRIB()
	r.PeerState(up(0, "192.0.2.1", 64510, true))
	r.Update(announce(time.Second, "192.0.2.1", "198.18.0.0/24", 64510, 64500))
	r.Update(withdraw(5*time.Second, "192.0.2.1", 64510, "198.18.0.0/24"))
	r.Update(announce(time.Second, "192.0.2.1", "198.18.2.0/24", 64510, 64500))   // late, another prefix
	r.Update(announce(2*time.Second, "192.0.2.1", "198.18.0.0/16", 64510, 64499)) // late, covering
	s := r.StateAt(pfx("198.18.0.0/24"), t0.Add(6*time.Second))
	if got := s.GetLastChange().AsTime(); got.Before(t0.Add(5 * time.Second)) {
		t.Errorf("last change %v: moved back before the withdrawal at +5s", got.Sub(t0))
	}
}
