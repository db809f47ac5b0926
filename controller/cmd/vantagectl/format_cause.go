package main

import (
	"fmt"
	"strings"

	"github.com/vantage-net/vantage/internal/bgpwords"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// locationCell is a location with the name of the router it names:
// "upstream (unicom)"; the address when the router has no name.
func locationCell(l vantagev1.Location, hop *vantagev1.Router) string {
	s := locationName(l)
	switch {
	case hop == nil:
	case hop.GetName() != "":
		s += " (" + hop.GetName() + ")"
	case hop.GetAddress() != "":
		s += " (" + hop.GetAddress() + ")"
	}
	return s
}

// causeCell is "upstream 0.90", or "-" without a cause.
func causeCell(c *vantagev1.CauseFinding) string {
	if c.GetCause() == vantagev1.Cause_CAUSE_UNSPECIFIED {
		return "-"
	}
	name := lowerName(c.GetCause().String(), "CAUSE_")
	if c.GetCause() == vantagev1.Cause_CAUSE_UNDETERMINED {
		return name
	}
	return fmt.Sprintf("%s %.2f", name, c.GetConfidence())
}

// routerText is "upstream unicom 198.51.100.42 AS64501" (role, name,
// address, AS; what is known of them).
func routerText(r *vantagev1.Router) string {
	var parts []string
	if r.GetRole() != vantagev1.TargetRole_TARGET_ROLE_UNSPECIFIED {
		parts = append(parts, lowerName(r.GetRole().String(), "TARGET_ROLE_"))
	}
	if r.GetName() != "" {
		parts = append(parts, r.GetName())
	}
	parts = append(parts, r.GetAddress())
	if r.GetAsn() != 0 {
		parts = append(parts, fmt.Sprintf("AS%d", r.GetAsn()))
	}
	return strings.Join(parts, " ")
}

// explainBGP adds explain's rows for the routing evidence: the finding,
// then each prefix's visibility and path.
func explainBGP(kv *table, b *vantagev1.BgpEvidence) {
	if b == nil {
		return
	}
	kv.row("bgp:", bgpwords.Finding(b))
	for _, line := range b.GetSummary() {
		kv.row(" ", "- "+line)
	}
}

// upstreamText is one upstream view in words.
func upstreamText(u *vantagev1.UpstreamView) string {
	state := "carries traffic"
	if u.GetDead() {
		state = "paths die"
	}
	list := func(xs []string) string {
		if len(xs) == 0 {
			return "-"
		}
		return strings.Join(xs, ",")
	}
	return fmt.Sprintf("%s (%s): %s; up %s, down %s", u.GetName(), strings.Join(u.GetAddresses(), ","), state,
		list(u.GetNetworksUp()), list(u.GetNetworksDown()))
}

// explainCause adds explain's rows for the router, the upstreams and the
// cause with its evidence (nothing when the verdict has none).
func explainCause(kv *table, v *vantagev1.Verdict) {
	if h := v.GetLocationHop(); h != nil {
		kv.row("router:", routerText(h))
	}
	for i, u := range v.GetUpstreams() {
		label := " "
		if i == 0 {
			label = "upstreams:"
		}
		kv.row(label, upstreamText(u))
	}
	c := v.GetCause()
	if c.GetCause() == vantagev1.Cause_CAUSE_UNSPECIFIED {
		return
	}
	cause := lowerName(c.GetCause().String(), "CAUSE_")
	if c.GetCause() != vantagev1.Cause_CAUSE_UNDETERMINED {
		cause += fmt.Sprintf(" (confidence %.2f)", c.GetConfidence())
	}
	kv.row("cause:", cause)
	for i, e := range c.GetEvidence() {
		label := " "
		if i == 0 {
			label = "evidence:"
		}
		kv.row(label, "- "+e)
	}
	explainBGP(kv, c.GetBgp())
}
