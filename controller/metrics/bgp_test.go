package metrics

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/bgp/record"
)

type fakeRecorder struct{ s record.Stats }

func (f fakeRecorder) Stats() record.Stats { return f.s }

// TestBGPMetrics feeds a RIB directly: two peers, one withdraws net0 and
// its session drops.
func TestBGPMetrics(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	net0, net1 := netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("198.18.1.0/24")
	rib := bgp.NewRIB(bgp.Options{})
	rib.SetMonitored(map[netip.Prefix]bgp.Monitor{net0: {Campaign: "kp", Network: "net0"}, net1: {Campaign: "kp", Network: "net1"}})
	peer := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	upd := func(i int, p netip.Prefix, at time.Duration, withdraw bool) {
		u := bgp.Update{At: t0.Add(at), Peer: peer(i), PeerAS: 64500 + uint32(i), Prefix: p, Withdraw: withdraw}
		if !withdraw {
			u.ASPath = []uint32{64500 + uint32(i), 64500}
		}
		rib.Update(u)
	}
	for i := 1; i <= 3; i++ {
		upd(i, net0, time.Duration(i)*time.Second, false)
		upd(i, net1, time.Duration(i)*time.Second, false)
	}
	upd(1, net0, 40*time.Minute, true)
	upd(2, net0, 60*time.Minute+30*time.Second, true)
	rib.PeerState(bgp.PeerEvent{At: t0.Add(61 * time.Minute), Peer: peer(3), PeerAS: 64503, Up: false, FullFeed: true})
	m := New(Config{BGP: rib, BGPRecorder: fakeRecorder{record.Stats{Updates: 8, Dropped: 2}},
		Now: func() time.Time { return t0.Add(61 * time.Minute) }})
	const want = `
# HELP vantage_bgp_baseline_updates_per_minute The monitored prefix's own baseline: its BGP updates per minute per full-feed peer over the hour before the last minute.
# TYPE vantage_bgp_baseline_updates_per_minute gauge
vantage_bgp_baseline_updates_per_minute{campaign="kp",network="net0",prefix="198.18.0.0/24"} 0.03333333333333333
vantage_bgp_baseline_updates_per_minute{campaign="kp",network="net1",prefix="198.18.1.0/24"} 0.025
# HELP vantage_bgp_peers BGP routing views (collector peers, BMP-monitored peers, MRT peers) by session state: established or down.
# TYPE vantage_bgp_peers gauge
vantage_bgp_peers{state="down"} 1
vantage_bgp_peers{state="established"} 2
# HELP vantage_bgp_updates_dropped_total BGP updates and peer events kept in the routing view but not stored (the recorder's queue was full, or the store refused the batch).
# TYPE vantage_bgp_updates_dropped_total counter
vantage_bgp_updates_dropped_total 2
# HELP vantage_bgp_updates_per_minute BGP updates (announcements and withdrawals) of the monitored prefix and its more specifics per minute per full-feed peer, over the last minute.
# TYPE vantage_bgp_updates_per_minute gauge
vantage_bgp_updates_per_minute{campaign="kp",network="net0",prefix="198.18.0.0/24"} 0.5
vantage_bgp_updates_per_minute{campaign="kp",network="net1",prefix="198.18.1.0/24"} 0
# HELP vantage_bgp_updates_recorded_total BGP updates of monitored prefixes written to the store since the controller started.
# TYPE vantage_bgp_updates_recorded_total counter
vantage_bgp_updates_recorded_total 8
# HELP vantage_bgp_visibility Share (0..1) of the full-feed BGP peers with a session up that have a route to the monitored prefix (or a covering one); visible above 0.5 (IODA's rule), 0 with no peer.
# TYPE vantage_bgp_visibility gauge
vantage_bgp_visibility{campaign="kp",network="net0",prefix="198.18.0.0/24"} 0
vantage_bgp_visibility{campaign="kp",network="net1",prefix="198.18.1.0/24"} 1
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "vantage_bgp_visibility", "vantage_bgp_updates_per_minute",
		"vantage_bgp_baseline_updates_per_minute", "vantage_bgp_peers", "vantage_bgp_updates_recorded_total",
		"vantage_bgp_updates_dropped_total"); err != nil {
		t.Fatal(err)
	}
}
