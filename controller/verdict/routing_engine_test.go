package verdict

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/bgp"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The lab's routing: two full-feed peers (the IX, AS64511, and the
// transit, AS64510) and monitor sessions with both upstreams (unicom
// AS64501 carries net0 and net1, rostelecom AS64502 net2 and net3), all
// originated by AS64500.
var (
	ixPeer      = bgp.PeerEvent{Peer: netip.MustParseAddr("198.51.100.33"), PeerAS: 64511, Source: "bgp:ix", Up: true, FullFeed: true}
	transitPeer = bgp.PeerEvent{Peer: netip.MustParseAddr("198.51.100.26"), PeerAS: 64510, Source: "bgp:transit", Up: true, FullFeed: true}
	unicomPeer  = bgp.PeerEvent{Peer: netip.MustParseAddr(unicom), PeerAS: 64501, Source: "bgp:unicom", Up: true}
	rostelPeer  = bgp.PeerEvent{Peer: netip.MustParseAddr(rostelecom), PeerAS: 64502, Source: "bgp:rostelecom", Up: true}
)

func netPrefix(n int) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/24", n)) }

func carrier(n int) uint32 {
	if n >= 2 {
		return 64502
	}
	return 64501
}

// routedLab is a RIB with every network announced at t0 and the config
// that reads it.
func routedLab() (*bgp.RIB, Config) {
	cfg := namedConfig(true)
	cfg.Prefixes = map[string][]netip.Prefix{}
	rib := bgp.NewRIB(bgp.Options{})
	mon := map[netip.Prefix]bgp.Monitor{}
	for n := range 4 {
		name := fmt.Sprintf("net%d", n)
		cfg.Prefixes[name] = []netip.Prefix{netPrefix(n)}
		mon[netPrefix(n)] = bgp.Monitor{Campaign: cfg.Campaign, Network: name}
	}
	rib.SetMonitored(mon)
	for _, p := range []bgp.PeerEvent{ixPeer, transitPeer, unicomPeer, rostelPeer} {
		p.At = t0
		rib.PeerState(p)
	}
	for n := range 4 {
		up := carrier(n)
		announceAt(rib, t0, ixPeer, netPrefix(n), 64511, 64510, up, 64500)
		announceAt(rib, t0, transitPeer, netPrefix(n), 64510, up, 64500)
		if up == 64501 {
			announceAt(rib, t0, unicomPeer, netPrefix(n), 64501, 64500)
		} else {
			announceAt(rib, t0, rostelPeer, netPrefix(n), 64502, 64500)
		}
	}
	cfg.Routing = rib
	cfg.RouterASNs = map[string]uint32{"unicom": 64501, "rostelecom": 64502, "ryugyong": 64500}
	return rib, cfg
}

func announceAt(rib *bgp.RIB, at time.Time, p bgp.PeerEvent, prefix netip.Prefix, path ...uint32) {
	rib.Update(bgp.Update{At: at, Peer: p.Peer, PeerAS: p.PeerAS, Prefix: prefix, ASPath: path, Source: p.Source})
}

func withdrawAt(rib *bgp.RIB, at time.Time, p bgp.PeerEvent, prefix netip.Prefix) {
	rib.Update(bgp.Update{At: at, Peer: p.Peer, PeerAS: p.PeerAS, Prefix: prefix, Withdraw: true, Source: p.Source})
}

// TestEngineJoinsBGP: the engine reads the routing at each round's end;
// the withdrawals in the outage round decide the cause before any trace
// comes, and the finding carries the BGP evidence.
func TestEngineJoinsBGP(t *testing.T) {
	mid := t0.Add(time.Duration(outageRound)*round + round/3)
	for _, c := range []struct {
		name      string
		nets      []string // hosts that stop answering
		routers   []string // routers that stop answering
		routing   func(rib *bgp.RIB)
		wantState vantagev1.State
		wantCause vantagev1.Cause
		wantBGP   vantagev1.BgpFinding
		wantAS    uint32
		wantLoc   vantagev1.Location
		wantHop   string
	}{
		{"unicom withdraws net0 and net1", []string{"net0", "net1"}, nil, func(rib *bgp.RIB) {
			for n := range 2 {
				withdrawAt(rib, mid, ixPeer, netPrefix(n))
				withdrawAt(rib, mid, transitPeer, netPrefix(n))
			}
		}, degraded, causeUpstream, vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, 64501, locUpstream, unicom + " UPSTREAM unicom AS64501"},
		{"the origin withdraws everything", allNets, nil, func(rib *bgp.RIB) {
			for n := range 4 {
				for _, p := range []bgp.PeerEvent{ixPeer, transitPeer, unicomPeer, rostelPeer} {
					withdrawAt(rib, mid, p, netPrefix(n))
				}
			}
		}, unreachable, causeSelf, vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW, 0, locTarget, borderA + " BORDER ryugyong AS64500"},
		{"the border drops packets, routes stay", allNets, []string{borderA}, func(*bgp.RIB) {},
			unreachable, causeFailure, vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED, 0, vantagev1.Location_LOCATION_LOCATING, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			rib, cfg := routedLab()
			e := warmed(t, cfg, agents3)
			c.routing(rib)
			w := outageWorld(c.nets, c.routers...)
			scope := transitionsOf(flat(run(t, e, cfg, steps(outageRound, outageRound+2, agents3, w))), scopeID)
			t.Logf("scope transitions: %s", describeCauses(scope))
			if len(scope) == 0 || scope[0].GetTo() != c.wantState {
				t.Fatalf("scope transitions %s, want the first to %s", describeCauses(scope), c.wantState)
			}
			v := mustVerdict(t, e, scopeID)
			f := v.GetCause()
			if f.GetCause() != c.wantCause || f.GetBgp().GetFinding() != c.wantBGP || f.GetBgp().GetWithdrawingAs() != c.wantAS {
				t.Fatalf("cause %s, BGP %s AS%d; want %s, %s AS%d (evidence %q)", f.GetCause(), f.GetBgp().GetFinding(),
					f.GetBgp().GetWithdrawingAs(), c.wantCause, c.wantBGP, c.wantAS, f.GetEvidence())
			}
			if hop := routerString(v.GetLocationHop()); v.GetLocation() != c.wantLoc || hop != c.wantHop {
				t.Errorf("location %s hop %q; want %s %q (BGP places an upstream's withdrawal before any trace)", v.GetLocation(), hop, c.wantLoc, c.wantHop)
			}
			if first := scope[0].GetCause(); first.GetCause() != c.wantCause {
				t.Errorf("the first transition's cause %s, want %s at once (BGP needs no traces)", first.GetCause(), c.wantCause)
			}
		})
	}
}

// TestRoutingInstability: net2 flaps in BGP (announced and withdrawn by
// the transit every 2 s, so it stays visible through the IX) while every
// probe answers: the scope and net2 are UNSTABLE at once, and calm again
// once the update rate falls back.
func TestRoutingInstability(t *testing.T) {
	rib, cfg := routedLab()
	e := warmed(t, cfg, agents3)
	start := t0.Add(time.Duration(outageRound) * round)
	for i := range 30 {
		at := start.Add(time.Duration(i) * 2 * time.Second)
		if i%2 == 0 {
			withdrawAt(rib, at, transitPeer, netPrefix(2))
		} else {
			announceAt(rib, at, transitPeer, netPrefix(2), 64510, 64502, 64500)
		}
	}
	byRound := run(t, e, cfg, steps(outageRound, outageRound+60, agents3, allUp))
	for _, id := range []string{scopeID, "country/network/net2", "country/network/net0"} {
		trs := transitionsOf(flat(byRound), id)
		t.Logf("%s: %s", id, describeCauses(trs))
		if id == "country/network/net0" {
			if len(trs) != 0 {
				t.Errorf("net0 never flapped, got %s", describeCauses(trs))
			}
			continue
		}
		// 6 updates a minute per full-feed peer (RoutingUnstableRate),
		// with one of the two flapping, take 12 of its updates: 24 s,
		// round 8 of the flapping.
		if len(trs) != 2 || trs[0].GetTo() != vantagev1.State_STATE_UNSTABLE || trs[0].GetRound() > outageRound+8 ||
			trs[1].GetTo() != vantagev1.State_STATE_REACHABLE {
			t.Fatalf("%s: %s; want UNSTABLE by round %d, then REACHABLE", id, describeCauses(trs), outageRound+8)
		}
		if notes := strings.Join(trs[0].GetNotes(), "; "); !strings.Contains(notes, "BGP shows routing instability") {
			t.Errorf("%s: the UNSTABLE transition's notes %q do not name the BGP instability", id, notes)
		}
		// The rate is over a minute: calm once the flapping (60 s) is a
		// minute old, plus the engine's calm rounds.
		if calm := trs[1].GetRound() - outageRound; calm < 20 || calm > 60 {
			t.Errorf("%s: calm after %d rounds", id, calm)
		}
	}
}

// TestRecoveryIsNotInstability: net2's routes flap while it is down (the
// probes time out), then they settle and it answers again: it is
// REACHABLE, not UNSTABLE, although the minute's update rate still counts
// the flapping.
func TestRecoveryIsNotInstability(t *testing.T) {
	rib, cfg := routedLab()
	e := warmed(t, cfg, agents3)
	start := t0.Add(time.Duration(outageRound) * round)
	for i := range 16 {
		at := start.Add(time.Duration(i) * 2 * time.Second)
		for _, p := range []bgp.PeerEvent{ixPeer, transitPeer} {
			if i%2 == 0 {
				withdrawAt(rib, at, p, netPrefix(2))
			} else {
				announceAt(rib, at, p, netPrefix(2), p.PeerAS, 64502, 64500)
			}
		}
	}
	byRound := run(t, e, cfg, steps(outageRound, outageRound+10, agents3, netsDown("net2")))
	for n, trs := range run(t, e, cfg, steps(outageRound+11, outageRound+25, agents3, allUp)) {
		byRound[n] = trs
	}
	trs := transitionsOf(flat(byRound), "country/network/net2")
	t.Logf("net2: %s", describeCauses(trs))
	if len(trs) == 0 || trs[len(trs)-1].GetTo() != vantagev1.State_STATE_REACHABLE {
		t.Fatalf("net2: %s; want it REACHABLE at the end", describeCauses(trs))
	}
	for _, tr := range trs {
		if tr.GetTo() == vantagev1.State_STATE_UNSTABLE && tr.GetRound() > outageRound+10 {
			t.Errorf("net2 UNSTABLE in round %d, after its recovery: the outage's updates read as instability", tr.GetRound())
		}
	}
}
