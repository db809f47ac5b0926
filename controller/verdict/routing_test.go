package verdict

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var withdrawnAt = time.Date(2014, 12, 22, 16, 15, 2, 0, time.UTC)

// route is a full-feed peer's route (partial: a monitor session's).
func bgpRoute(peerAS uint32, partial bool, path ...uint32) *vantagev1.BgpRoute {
	return &vantagev1.BgpRoute{PeerAs: peerAS, AsPath: path, OriginAs: path[len(path)-1], FullFeed: !partial}
}

// visible: 2 of 2 full-feed peers route prefix through upstream up.
func visible(prefix string, up uint32) *vantagev1.BgpPrefixState {
	return &vantagev1.BgpPrefixState{Prefix: prefix, Peers: 2, PeersWithRoute: 2, Visibility: 1, Visible: true,
		LastPath: []uint32{64511, 64510, up, 64500}, OriginAs: 64500,
		Routes: []*vantagev1.BgpRoute{bgpRoute(64511, false, 64511, 64510, up, 64500), bgpRoute(64510, false, 64510, up, 64500)}}
}

// withdrawn: 0 of 2 full-feed peers, last path through up; held lists
// partial peers that still have it.
func withdrawn(prefix string, up uint32, held ...*vantagev1.BgpRoute) *vantagev1.BgpPrefixState {
	return &vantagev1.BgpPrefixState{Prefix: prefix, Peers: 2, LastPath: []uint32{64511, 64510, up, 64500}, OriginAs: 64500,
		LastChange: timestamppb.New(withdrawnAt), Routes: held}
}

func TestRoutingFinding(t *testing.T) {
	net0, net1 := "198.18.0.0/24", "198.18.1.0/24"
	net2, net3 := "198.18.2.0/24", "198.18.3.0/24"
	for _, c := range []struct {
		name     string
		subject  []*vantagev1.BgpPrefixState
		others   []*vantagev1.BgpPrefixState // the campaign's other prefixes
		want     vantagev1.BgpFinding
		as       uint32
		summary0 string
	}{
		{"no session up", []*vantagev1.BgpPrefixState{{Prefix: net0}}, nil, vantagev1.BgpFinding_BGP_FINDING_NO_DATA, 0, "no BGP data"},
		{"announced", []*vantagev1.BgpPrefixState{visible(net0, 64501)}, nil, vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED, 0,
			"198.18.0.0/24 announced by 2 of 2 peers; path 64511 64510 64501 64500"},
		{"unstable", []*vantagev1.BgpPrefixState{func() *vantagev1.BgpPrefixState {
			s := visible(net0, 64501)
			s.UpdatesPerMinute, s.BaselinePerMinute = 20, 0.5
			return s
		}()}, nil, vantagev1.BgpFinding_BGP_FINDING_UNSTABLE, 0, "announced"},
		{"a busy but usual rate", []*vantagev1.BgpPrefixState{func() *vantagev1.BgpPrefixState {
			s := visible(net0, 64501)
			s.UpdatesPerMinute, s.BaselinePerMinute = 20, 10
			return s
		}()}, nil, vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED, 0, "announced"},
		{"an upstream still holds it", []*vantagev1.BgpPrefixState{withdrawn(net0, 64501, bgpRoute(64501, true, 64501, 64500))},
			nil, vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, 64501,
			"198.18.0.0/24 withdrawn by 2 of 2 peers at 16:15:02Z; last path 64511 64510 64501 64500; origin AS64500"},
		{"the origin still announces through another upstream", []*vantagev1.BgpPrefixState{withdrawn(net0, 64501), withdrawn(net1, 64501)},
			[]*vantagev1.BgpPrefixState{visible(net2, 64502), visible(net3, 64502)}, vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, 64501, "withdrawn"},
		{"the same upstream still carries the origin's others", []*vantagev1.BgpPrefixState{withdrawn(net0, 64501)},
			[]*vantagev1.BgpPrefixState{visible(net1, 64501), visible(net2, 64502)}, vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW, 0, "withdrawn"},
		{"all gone through two upstreams", []*vantagev1.BgpPrefixState{withdrawn(net0, 64501), withdrawn(net2, 64502)},
			nil, vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW, 0, "withdrawn"},
		{"both upstreams still hold theirs", []*vantagev1.BgpPrefixState{withdrawn(net0, 64501, bgpRoute(64501, true, 64501, 64500)),
			withdrawn(net2, 64502, bgpRoute(64502, true, 64502, 64500))}, nil, vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, 64501, "withdrawn"},
		{"all gone through one upstream (2014)", []*vantagev1.BgpPrefixState{withdrawn(net0, 64501), withdrawn(net1, 64501)},
			nil, vantagev1.BgpFinding_BGP_FINDING_ORIGIN_OR_SOLE_UPSTREAM, 64501, "withdrawn"},
	} {
		t.Run(c.name, func(t *testing.T) {
			all := append(append([]*vantagev1.BgpPrefixState(nil), c.subject...), c.others...)
			ev := RoutingFinding(c.subject, all)
			if ev.GetFinding() != c.want || ev.GetWithdrawingAs() != c.as || !strings.Contains(ev.GetSummary()[0], c.summary0) {
				t.Fatalf("finding %s AS%d, summary %q; want %s AS%d with %q", ev.GetFinding(), ev.GetWithdrawingAs(), ev.GetSummary(), c.want, c.as, c.summary0)
			}
			if c.name == "both upstreams still hold theirs" && ev.GetSummary()[2] != "AS64501 and AS64502 withdrew the paths through them, still holding the origin AS64500's routes" {
				t.Errorf("summary %q: want both upstreams named", ev.GetSummary())
			}
			if c.want == vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW && !ev.GetWithdrawnAt().AsTime().Equal(withdrawnAt) {
				t.Errorf("withdrawn at %v, want %v", ev.GetWithdrawnAt().AsTime(), withdrawnAt)
			}
		})
	}
	if RoutingFinding(nil, nil) != nil {
		t.Error("no prefixes: want no evidence")
	}
}

// The cause rules read the routing evidence.
func TestCauseWithBGP(t *testing.T) {
	bgp := func(f vantagev1.BgpFinding, as uint32) func(*CauseEvidence) {
		return func(ev *CauseEvidence) {
			ev.BGP = &vantagev1.BgpEvidence{Finding: f, WithdrawingAs: as, OriginAs: 64500, Summary: []string{"198.18.0.0/24 withdrawn"}}
		}
	}
	silentBorder := func(f func(*CauseEvidence)) func(*CauseEvidence) {
		return func(ev *CauseEvidence) { f(ev); ev.BordersUp = 0 }
	}
	runCauses(t, []causeCase{
		{"the origin withdrew", outage(locTransit, bgp(vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW, 0)), causeSelf, "the origin AS64500 withdrew"},
		{"an upstream withdrew", outage(locTransit, bgp(vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, 64501)), causeUpstream, "AS64501 withdrew the paths"},
		{"an upstream withdrew, loss rising too", outage(locUpstream, func(ev *CauseEvidence) {
			bgp(vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, 64501)(ev)
			ev.Quality = rise(4, 3, 3, 3)
		}), causeUpstream, "AS64501"},
		{"origin or sole upstream, traces silent on it", outage(locTransit, bgp(vantagev1.BgpFinding_BGP_FINDING_ORIGIN_OR_SOLE_UPSTREAM, 64501)), causeUndetermined, "origin or its sole upstream"},
		{"origin or sole upstream, traces at the upstream", outage(locUpstream, bgp(vantagev1.BgpFinding_BGP_FINDING_ORIGIN_OR_SOLE_UPSTREAM, 64501)), causeUpstream, "upstream"},
		{"announced, border silent, abrupt", outage(locTransit, silentBorder(bgp(vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED, 0))), causeFailure, "routes stay announced"},
		{"announced, loss and RTT rising at the upstream", outage(locUpstream, func(ev *CauseEvidence) {
			bgp(vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED, 0)(ev)
			ev.Quality = rise(4, 3, 3, 3)
		}), causeAttack, "attack or congestion"},
	})
	f := Cause(outage(locTransit, bgp(vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, 64501)))
	if f.GetBgp().GetWithdrawingAs() != 64501 || !strings.Contains(strings.Join(f.GetEvidence(), "; "), "BGP: 198.18.0.0/24 withdrawn") {
		t.Errorf("the finding carries no BGP evidence: %v / %q", f.GetBgp(), f.GetEvidence())
	}
}
