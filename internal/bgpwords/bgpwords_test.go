package bgpwords

import (
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestFinding(t *testing.T) {
	gone := &vantagev1.BgpPrefixState{Prefix: "198.18.0.0/24", Peers: 2}
	up := &vantagev1.BgpPrefixState{Prefix: "198.18.2.0/24", Peers: 2, PeersWithRoute: 2, Visible: true}
	for _, c := range []struct {
		ev   *vantagev1.BgpEvidence
		want string
	}{
		{nil, "-"},
		{&vantagev1.BgpEvidence{Finding: vantagev1.BgpFinding_BGP_FINDING_NO_DATA}, "no data"},
		{&vantagev1.BgpEvidence{Finding: vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED, Prefixes: []*vantagev1.BgpPrefixState{up}}, "announced 1/1"},
		{&vantagev1.BgpEvidence{Finding: vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW, WithdrawingAs: 64501,
			Prefixes: []*vantagev1.BgpPrefixState{gone, up}}, "AS64501 withdrew 1/2"},
		{&vantagev1.BgpEvidence{Finding: vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW, OriginAs: 64500,
			Prefixes: []*vantagev1.BgpPrefixState{gone}}, "origin AS64500 withdrew 1/1"},
		{&vantagev1.BgpEvidence{Finding: vantagev1.BgpFinding_BGP_FINDING_ORIGIN_OR_SOLE_UPSTREAM, OriginAs: 64500, WithdrawingAs: 64501,
			Prefixes: []*vantagev1.BgpPrefixState{gone}}, "AS64500 or AS64501 withdrew 1/1"},
	} {
		if got := Finding(c.ev); got != c.want {
			t.Errorf("Finding(%v) = %q, want %q", c.ev.GetFinding(), got, c.want)
		}
	}
}
