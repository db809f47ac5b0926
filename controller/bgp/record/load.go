package record

import (
	"context"
	"fmt"
	"time"

	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// loadPage is how many updates Load reads per store call.
const loadPage = 1000

// Source is what Load reads (store.BGPStore's reads).
type Source interface {
	BGPUpdates(ctx context.Context, q store.BGPQuery) ([]*vantagev1.BgpUpdate, error)
	BGPPeerEvents(ctx context.Context, from, to time.Time, limit int) ([]store.BGPPeerEvent, error)
	BGPLatestBefore(ctx context.Context, t time.Time) ([]*vantagev1.BgpUpdate, []store.BGPPeerEvent, error)
}

// Load applies to rib the stored updates and peer events in [from, to]
// (zero: unbounded), in time order, a peer event before an update of the
// same instant: the order a source delivers them in, so the same updates
// give the same RIB as when they were recorded. With from set, the state
// before it comes first (each peer's latest session event and latest
// update per prefix): a route announced days before from and never since
// is still a route at from. What happened before from is otherwise not
// replayed, so the update rates and the last visibility change start at
// from.
//
// Set rib's monitored prefixes first: updates of other prefixes are not
// kept. A stored row that no longer parses is skipped; Load goes on and
// returns an error saying how many were, along with the first.
func Load(ctx context.Context, st Source, rib *bgp.RIB, from, to time.Time) error {
	l := loader{rib: rib}
	if !from.IsZero() {
		us, es, err := st.BGPLatestBefore(ctx, from)
		if err != nil {
			return fmt.Errorf("load bgp: %w", err)
		}
		l.events = es
		l.apply(us)
		l.rest()
	}
	es, err := st.BGPPeerEvents(ctx, from, to, 0)
	if err != nil {
		return fmt.Errorf("load bgp: %w", err)
	}
	l.events = es
	q := store.BGPQuery{From: from, To: to, Limit: loadPage}
	for {
		page, err := st.BGPUpdates(ctx, q)
		if err != nil {
			return fmt.Errorf("load bgp: %w", err)
		}
		l.apply(page)
		if len(page) < loadPage {
			break
		}
		last := page[len(page)-1]
		q.AfterAt, q.AfterID = last.GetAt().AsTime(), last.GetId()
	}
	l.rest()
	if l.skipped > 0 {
		return fmt.Errorf("load bgp: %d stored rows skipped, the first: %w", l.skipped, l.first)
	}
	return nil
}

// loader merges updates with the peer events not applied yet.
type loader struct {
	rib     *bgp.RIB
	events  []store.BGPPeerEvent
	skipped int
	first   error
}

func (l *loader) apply(us []*vantagev1.BgpUpdate) {
	for _, p := range us {
		u, err := bgp.FromProto(p)
		if err != nil {
			l.skip(fmt.Errorf("update %d: %w", p.GetId(), err))
			continue
		}
		l.eventsUntil(u.At)
		l.rib.Apply(u)
	}
}

// eventsUntil applies the events at or before t.
func (l *loader) eventsUntil(t time.Time) {
	i := 0
	for ; i < len(l.events) && !l.events[i].At.After(t); i++ {
		l.event(l.events[i])
	}
	l.events = l.events[i:]
}

// rest applies the events left.
func (l *loader) rest() {
	for _, e := range l.events {
		l.event(e)
	}
	l.events = nil
}

func (l *loader) event(se store.BGPPeerEvent) {
	e, err := FromStored(se)
	if err != nil {
		l.skip(err)
		return
	}
	l.rib.PeerState(e)
}

func (l *loader) skip(err error) {
	if l.skipped == 0 {
		l.first = err
	}
	l.skipped++
}
