package verdict

import (
	"net/netip"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Routing is the BGP view the engine joins to its verdicts (the
// controller's bgp.RIB, or on replay one rebuilt from stored updates).
// States returns the state of each prefix at t, in order, from what was
// recorded at or before t, so that a replay of the same updates gives the
// same evidence.
type Routing interface {
	States(prefixes []netip.Prefix, t time.Time) []*vantagev1.BgpPrefixState
}
