// Package bgpwords says a verdict's BGP evidence in a few words, the one
// spelling the CLI's timeline and the demo's both print, so a journalist
// quoting one reads the same words in the other.
package bgpwords

import (
	"fmt"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Finding is the routing finding with the share of the subject's prefixes
// it touches: "AS64501 withdrew 2/4", "announced 4/4", "origin AS64500
// withdrew 4/4", "AS64500 or AS64501 withdrew 2/2" (the origin or its sole
// upstream), "unstable", "no data"; "-" without evidence.
func Finding(b *vantagev1.BgpEvidence) string {
	if b == nil {
		return "-"
	}
	gone, total := 0, len(b.GetPrefixes())
	for _, p := range b.GetPrefixes() {
		if !p.GetVisible() {
			gone++
		}
	}
	switch b.GetFinding() {
	case vantagev1.BgpFinding_BGP_FINDING_NO_DATA:
		return "no data"
	case vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED:
		return fmt.Sprintf("announced %d/%d", total-gone, total)
	case vantagev1.BgpFinding_BGP_FINDING_UNSTABLE:
		return "unstable"
	case vantagev1.BgpFinding_BGP_FINDING_UPSTREAM_WITHDREW:
		return fmt.Sprintf("AS%d withdrew %d/%d", b.GetWithdrawingAs(), gone, total)
	case vantagev1.BgpFinding_BGP_FINDING_ORIGIN_WITHDREW:
		return fmt.Sprintf("origin AS%d withdrew %d/%d", b.GetOriginAs(), gone, total)
	case vantagev1.BgpFinding_BGP_FINDING_ORIGIN_OR_SOLE_UPSTREAM:
		return fmt.Sprintf("AS%d or AS%d withdrew %d/%d", b.GetOriginAs(), b.GetWithdrawingAs(), gone, total)
	}
	return "-"
}
