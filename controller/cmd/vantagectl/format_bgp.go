package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var bgpUpdateHeader = []string{"TIME", "PEER", "AS", "A/W", "PREFIX", "PATH"}

func (p printer) bgpUpdateFields(u *vantagev1.BgpUpdate) []string {
	kind := "A"
	if u.GetWithdraw() {
		kind = "W"
	}
	return []string{p.clock(u.GetAt()), u.GetPeer(), asn(u.GetPeerAs()), kind, u.GetPrefix(), asPath(u.GetAsPath())}
}

func asn(as uint32) string {
	if as == 0 {
		return "-"
	}
	return "AS" + strconv.FormatUint(uint64(as), 10)
}

func asPath(path []uint32) string {
	parts := make([]string, len(path))
	for i, as := range path {
		parts[i] = strconv.FormatUint(uint64(as), 10)
	}
	return strings.Join(parts, " ")
}

// bgpStatus renders `bgp status`: the peers, then the prefixes.
func (p printer) bgpStatus(w io.Writer, r *vantagev1.GetBgpStatusResponse) error {
	if len(r.GetPeers()) == 0 {
		if _, err := fmt.Fprintln(w, "No BGP peers."); err != nil {
			return err
		}
	} else {
		t := newTable(w, "PEER", "AS", "SOURCE", "STATE", "FULL-FEED", "SINCE", "UPDATES")
		for _, pr := range r.GetPeers() {
			t.row(pr.GetAddress(), asn(pr.GetAs()), pr.GetSource(), pr.GetState(), yesNo(pr.GetFullFeed()), p.ago(pr.GetSince()),
				strconv.FormatUint(pr.GetUpdates(), 10))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	return campaignTable(w, "No monitored prefixes.", r.GetPrefixes(), (*vantagev1.BgpPrefixState).GetCampaign,
		[]string{"PREFIX", "NETWORK", "VISIBILITY", "VISIBLE", "ORIGIN", "LAST-PATH", "UPDATES/MIN", "LAST-CHANGE"}, p.bgpPrefixFields)
}

func (p printer) bgpPrefixFields(s *vantagev1.BgpPrefixState) []string {
	vis := fmt.Sprintf("%d/%d %.0f%%", s.GetPeersWithRoute(), s.GetPeers(), 100*s.GetVisibility())
	rate := fmt.Sprintf("%.1f vs %.1f", s.GetUpdatesPerMinute(), s.GetBaselinePerMinute())
	change := "-"
	if valid(s.GetLastChange()) {
		change = p.ago(s.GetLastChange())
	}
	return []string{s.GetPrefix(), s.GetNetwork(), vis, yesNo(s.GetVisible()), asn(s.GetOriginAs()), asPath(s.GetLastPath()), rate, change}
}
