package catalogue

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/store"
)

// ErrNotDiscovered: the campaign needs discovery (targets.hosts.discover,
// upstreams: auto) and none has finished for its version.
var ErrNotDiscovered = errors.New("discovery has not finished for this campaign version")

// SpecFor parses a stored campaign and, when it needs discovery, adds the
// targets its finished discovery found (campaign.Spec.WithTargets), so the
// verdict engine, the assignments, localisation, the operator API and
// replay all see one target set. Without a finished discovery of the
// current version it returns the spec with its listed targets only and an
// error wrapping ErrNotDiscovered.
func SpecFor(c store.Campaign) (*campaign.Spec, error) {
	spec, err := campaign.Parse([]byte(c.SpecYAML))
	if err != nil {
		return nil, fmt.Errorf("parse stored spec: %w", err)
	}
	if !spec.NeedsDiscovery() {
		return spec, nil
	}
	if !c.Discovery.Done(c.Version) {
		return spec, fmt.Errorf("campaign %s version %d: %w", c.Name, c.Version, ErrNotDiscovered)
	}
	found := make([]campaign.Target, 0, len(c.Discovery.Targets))
	for i, t := range c.Discovery.Targets {
		a, err := netip.ParseAddr(t.GetAddress())
		if err != nil {
			return spec, fmt.Errorf("stored discovered target %d: %w", i, err)
		}
		found = append(found, campaign.Target{Addr: a, Network: t.GetNetwork(), Role: t.GetRole()})
	}
	with, err := spec.WithTargets(found)
	if err != nil {
		return spec, fmt.Errorf("stored discovered targets: %w", err)
	}
	return with, nil
}

// Key identifies what a campaign's spec was built from: the campaign
// version and, for discovered campaigns, when its discovery finished (a
// re-run of discovery for the same version gives new targets).
func Key(c store.Campaign) string {
	k := strconv.FormatUint(c.Version, 10)
	if c.Discovery != nil && c.Discovery.Version == c.Version && c.Discovery.Status.GetFinishedAt() != nil {
		k += "/" + c.Discovery.Status.GetFinishedAt().AsTime().Format(time.RFC3339Nano)
	}
	return k
}
