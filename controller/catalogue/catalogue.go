// Package catalogue owns the controller's active campaigns: it loads them
// from the store (each spec with the targets its finished discovery found),
// answers who asks which campaigns run and with what spec (ingest's
// assignments, localisation, the operator API), vouches for results of
// campaigns an agent's session was not given, and tells its subscribers
// (the live verdict worker, ingest's reassignment) when the campaigns
// changed. It exists so that the campaign lifecycle has one owner: before
// it, the verdict worker, ingest, the API and discovery each read and parsed
// the stored campaigns their own way, and "campaigns changed" was written
// twice.
//
// The store is the truth; the catalogue is its parsed view, reloaded by
// Changed after every change (an apply, pause, resume or delete through the
// API, a discovery that finished) and at a controller start.
package catalogue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Entry is one ACTIVE campaign as the catalogue holds it.
type Entry struct {
	// Campaign is the stored record.
	Campaign store.Campaign
	// Spec is the parsed spec with its discovered targets (SpecFor).
	Spec *campaign.Spec
	// Key names what the spec was built from (Key): a new key is a new
	// campaign to whoever keeps state for it.
	Key string
}

// CampaignSource is where the catalogue reads the stored campaigns.
type CampaignSource interface {
	GetCampaign(ctx context.Context, name string) (store.Campaign, error)
	ListCampaigns(ctx context.Context) ([]store.Campaign, error)
}

// Options configures a Catalogue.
type Options struct {
	Store CampaignSource
	Log   *slog.Logger
}

// Catalogue is the set of ACTIVE campaigns; see the package comment.
type Catalogue struct {
	st  CampaignSource
	log *slog.Logger

	mu     sync.RWMutex // guards active
	active []Entry      // by name

	reloadMu sync.Mutex // serialises Reload, so an older read never replaces a newer one
	changeMu sync.Mutex // serialises Changed and guards subs
	subs     []func(context.Context) error

	vouch vouchCache // specs Vouches parsed (vouch.go)
}

// New returns an empty Catalogue; Reload loads it.
func New(opts Options) *Catalogue {
	cat := &Catalogue{st: opts.Store, log: opts.Log}
	if cat.log == nil {
		cat.log = slog.New(slog.DiscardHandler)
	}
	return cat
}

// Reload makes the catalogue match the store's ACTIVE campaigns. A campaign
// whose spec cannot be built (it no longer parses, or needs a discovery that
// has not finished: ErrNotDiscovered) is left out, and its error joined
// into the one returned.
func (cat *Catalogue) Reload(ctx context.Context) error {
	cat.reloadMu.Lock()
	defer cat.reloadMu.Unlock()
	all, err := cat.st.ListCampaigns(ctx)
	if err != nil {
		return fmt.Errorf("reload campaigns: %w", err)
	}
	var errs []error
	active := make([]Entry, 0, len(all))
	for _, sc := range all {
		if sc.State != vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE {
			continue
		}
		spec, err := SpecFor(sc)
		if err != nil {
			errs = append(errs, fmt.Errorf("campaign %s: %w", sc.Name, err))
			continue
		}
		active = append(active, Entry{Campaign: sc, Spec: spec, Key: Key(sc)})
	}
	sort.Slice(active, func(i, j int) bool { return active[i].Campaign.Name < active[j].Campaign.Name })
	cat.mu.Lock()
	cat.active = active
	cat.mu.Unlock()
	return errors.Join(errs...)
}

// Entries returns the ACTIVE campaigns, by name.
func (cat *Catalogue) Entries() []Entry {
	cat.mu.RLock()
	defer cat.mu.RUnlock()
	return cat.active
}

// Active returns the parsed specs of the ACTIVE campaigns, by name.
func (cat *Catalogue) Active() []*campaign.Spec {
	es := cat.Entries()
	out := make([]*campaign.Spec, len(es))
	for i, e := range es {
		out[i] = e.Spec
	}
	return out
}

// Spec returns the parsed spec of an ACTIVE campaign.
func (cat *Catalogue) Spec(name string) (*campaign.Spec, bool) {
	for _, e := range cat.Entries() {
		if e.Campaign.Name == name {
			return e.Spec, true
		}
	}
	return nil, false
}

// OnChange adds fn to what Changed runs after each reload, in the order
// added. fn must not call Changed.
func (cat *Catalogue) OnChange(fn func(ctx context.Context) error) {
	cat.changeMu.Lock()
	defer cat.changeMu.Unlock()
	cat.subs = append(cat.subs, fn)
}

// Changed is the one "campaigns changed" notification: it reloads the
// catalogue, then runs every OnChange subscriber. Callers have stored the
// change already, so failures are logged, not returned. Changes are
// handled one at a time.
func (cat *Catalogue) Changed(ctx context.Context) {
	cat.changeMu.Lock()
	defer cat.changeMu.Unlock()
	if err := cat.Reload(ctx); err != nil {
		cat.log.Warn("campaign reload failed", slog.Any("error", err))
	}
	for _, fn := range cat.subs {
		if err := fn(ctx); err != nil {
			cat.log.Warn("campaign reload failed", slog.Any("error", err))
		}
	}
}
