package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/bgp"
)

// TestSeenRouting: a view that never had a peer gives the engines no
// prefix states (no "no BGP data" in every cause); once a peer was seen,
// sessions down are evidence and the states come through.
func TestSeenRouting(t *testing.T) {
	rib := bgp.NewRIB(bgp.Options{})
	p := netip.MustParsePrefix("198.18.0.0/24")
	rib.SetMonitored(map[netip.Prefix]bgp.Monitor{p: {Campaign: "kp", Network: "net0"}})
	r := seenRouting{rib}
	now := time.Now()
	if got := r.States([]netip.Prefix{p}, now); got != nil {
		t.Errorf("no peer ever: states %v, want none", got)
	}
	peer := bgp.PeerEvent{At: now.Add(-time.Minute), Peer: netip.MustParseAddr("192.0.2.1"), PeerAS: 64511, Source: "bgp:192.0.2.1", Up: true, FullFeed: true}
	rib.PeerState(peer)
	peer.At, peer.Up = now.Add(-time.Second), false
	rib.PeerState(peer)
	got := r.States([]netip.Prefix{p}, now)
	if len(got) != 1 || got[0].GetPeers() != 0 {
		t.Errorf("a peer seen, now down: states %v, want one with no peer up", got)
	}
}
