package catalogue

import (
	"context"
	"sync"
	"time"

	"github.com/vantage-net/vantage/controller/campaign"
)

// vouchCache keeps the specs Vouches parsed, per campaign name and version,
// so a backlog of one paused campaign costs one parse.
type vouchCache struct {
	mu    sync.Mutex
	specs map[string]vouchEntry
}

type vouchEntry struct {
	version uint64
	spec    *campaign.Spec
	tasks   map[string]string // task id -> target
}

// Vouches reports whether a result of task taskID (for target, in campaign
// campaignName) may come from an agent with these labels although its
// current session was never assigned the task: the campaign is stored (any
// state: a paused campaign's results were produced while it ran), its
// vantage selection matches the labels, and its expansion has that task
// for that target. ingest asks this before it refuses a result as a gap.
func (cat *Catalogue) Vouches(ctx context.Context, campaignName, taskID, target string, labels map[string]string) bool {
	c, err := cat.st.GetCampaign(ctx, campaignName)
	if err != nil {
		return false // deleted (or the store failed: refuse, never guess)
	}
	cat.vouch.mu.Lock()
	defer cat.vouch.mu.Unlock()
	e, ok := cat.vouch.specs[campaignName]
	if !ok || e.version != c.Version {
		spec, err := SpecFor(c)
		if err != nil {
			return false
		}
		e = vouchEntry{version: c.Version, spec: spec, tasks: map[string]string{}}
		for _, t := range spec.Tasks(time.Time{}) {
			e.tasks[t.GetId()] = t.GetTarget()
		}
		if cat.vouch.specs == nil {
			cat.vouch.specs = map[string]vouchEntry{}
		}
		cat.vouch.specs[campaignName] = e
	}
	got, ok := e.tasks[taskID]
	return ok && got == target && e.spec.SelectsAgent(labels)
}
