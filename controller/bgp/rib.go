package bgp

import (
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"
)

// VisibleShare is IODA's rule: a prefix is visible when over this share
// of the full-feed peers with a session up have a route to it.
const VisibleShare = 0.5

// Options bound what a RIB keeps. Zero values take the defaults.
type Options struct {
	// Retain: how far back the history (updates, peer events, visibility
	// changes) is kept in memory; the store keeps it longer. Default 6 h.
	// A peer's latest route is kept however old it is.
	Retain time.Duration
	// RateWindow: the update rate is over this window. Default 1 min.
	// BaselineWindow: the baseline is the rate over this long before it.
	// Default 1 h.
	RateWindow, BaselineWindow time.Duration
	// MaxEntries: the most history entries kept per prefix and peer; the
	// oldest go first (a flapping or hostile peer cannot grow it without
	// bound). Default 10,000.
	MaxEntries int
	// TableSettle: a full-feed peer whose session has just come up counts
	// towards a prefix's visibility from its first update of that prefix
	// (or a covering one), or once this long has passed with none (a peer
	// that does not carry it at all). A session still sending its table
	// would otherwise pull prefixes under the 50% line for a moment, at
	// instants that depend on the order of the table. Default 2 min.
	TableSettle time.Duration
}

func (o Options) withDefaults() Options {
	if o.Retain <= 0 {
		o.Retain = 6 * time.Hour
	}
	if o.RateWindow <= 0 {
		o.RateWindow = time.Minute
	}
	if o.BaselineWindow <= 0 {
		o.BaselineWindow = time.Hour
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 10000
	}
	if o.TableSettle <= 0 {
		o.TableSettle = 2 * time.Minute
	}
	return o
}

// Monitor says which campaign and network monitor a prefix.
type Monitor struct {
	Campaign, Network string
}

// peerKey names a routing view: the same address can be a peer of the
// collector and a peer a BMP router monitors.
type peerKey struct {
	source string
	addr   netip.Addr
}

// peer is one routing view's session history.
type peer struct {
	key      peerKey
	as       uint32
	fullFeed bool
	events   []PeerEvent // time order
	// settled[i]: visibility was rechecked at events[i].At+TableSettle,
	// when the session (an Up event) began to count for every prefix.
	settled []bool
	updates uint64
}

// upAt: the peer's session was up at t, and since when.
func (p *peer) upAt(t time.Time) (bool, time.Time) {
	i := sort.Search(len(p.events), func(i int) bool { return p.events[i].At.After(t) }) - 1
	if i < 0 {
		return false, time.Time{}
	}
	e := p.events[i]
	return e.Up, e.At
}

// addEvent appends a session event.
func (p *peer) addEvent(e PeerEvent) {
	p.events = append(p.events, e)
	p.settled = append(p.settled, false)
}

// entry is one update of one prefix by one peer.
type entry struct {
	at       time.Time
	withdraw bool
	path     []uint32
	nextHop  netip.Addr
}

// prefixHist is everything kept of one prefix.
type prefixHist struct {
	prefix netip.Prefix
	byPeer map[peerKey][]entry // time order
}

// visChange is a monitored prefix's visibility crossing the 50% line.
type visChange struct {
	at      time.Time
	visible bool
}

// RIB is the routing view of the monitored prefixes. It is safe for
// concurrent use; Update and PeerState implement Sink.
type RIB struct {
	opts Options

	mu        sync.RWMutex
	monitored map[netip.Prefix]Monitor
	peers     map[peerKey]*peer
	prefixes  map[netip.Prefix]*prefixHist
	vis       map[netip.Prefix][]visChange // monitored prefixes only
	latest    time.Time
	applied   int
	watch     watchers
}

// NewRIB returns an empty view monitoring nothing (SetMonitored).
func NewRIB(opts Options) *RIB {
	return &RIB{opts: opts.withDefaults(), monitored: map[netip.Prefix]Monitor{},
		peers: map[peerKey]*peer{}, prefixes: map[netip.Prefix]*prefixHist{}, vis: map[netip.Prefix][]visChange{}}
}

// SetMonitored replaces the monitored prefixes (the campaigns' networks).
// History of prefixes no longer related to any of them is dropped.
func (r *RIB) SetMonitored(m map[netip.Prefix]Monitor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.monitored = make(map[netip.Prefix]Monitor, len(m))
	for p, mon := range m {
		r.monitored[p.Masked()] = mon
	}
	for p := range r.prefixes {
		if !r.relatedLocked(p) {
			delete(r.prefixes, p)
		}
	}
	for p := range r.vis {
		if _, ok := r.monitored[p]; !ok {
			delete(r.vis, p)
		}
	}
}

// Monitored is the monitored prefixes, sorted.
func (r *RIB) Monitored() []netip.Prefix {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]netip.Prefix, 0, len(r.monitored))
	for p := range r.monitored {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

// Relevant: an update for p is kept (p is monitored, covers a monitored
// prefix or is more specific than one).
func (r *RIB) Relevant(p netip.Prefix) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.relatedLocked(p)
}

func (r *RIB) relatedLocked(p netip.Prefix) bool {
	for m := range r.monitored {
		if m.Overlaps(p) {
			return true
		}
	}
	return false
}

// PeerState records a session change. Going down drops the peer's routes.
func (r *RIB) PeerState(e PeerEvent) {
	e.At = e.At.Round(0) // wall clock only: see Apply
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.peerLocked(peerKey{e.Source, e.Peer}, e.PeerAS)
	p.fullFeed = e.FullFeed
	if n := len(p.events); n > 0 && p.events[n-1].Up == e.Up {
		return
	}
	r.settleLocked(e.At)
	p.addEvent(e)
	r.noteLocked(e.At)
	r.recheckAllLocked(e.At)
}

// peerLocked returns the peer, creating it (full-feed, no session event
// yet: Apply marks a peer first seen in an update up since then) if it is
// new.
func (r *RIB) peerLocked(k peerKey, as uint32) *peer {
	p := r.peers[k]
	if p == nil {
		p = &peer{key: k, as: as, fullFeed: true}
		r.peers[k] = p
		return p
	}
	if as != 0 {
		p.as = as
	}
	return p
}

// Update records an announcement or withdrawal (Apply, without its
// answer). Updates for prefixes unrelated to any monitored prefix, and
// invalid ones, are dropped.
func (r *RIB) Update(u Update) { r.Apply(u) }

// Apply is Update reporting whether u was kept.
func (r *RIB) Apply(u Update) bool {
	if u.Validate() != nil {
		return false
	}
	// Compare wall clocks only: a time from time.Now carries a monotonic
	// reading, one from the store or a file does not, and Go compares two
	// times by their monotonic readings when both have one, so the same
	// instant could fall on either side of a window's edge.
	u.At = u.At.Round(0)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.relatedLocked(u.Prefix) {
		return false
	}
	k := peerKey{u.Source, u.Peer}
	p := r.peerLocked(k, u.PeerAS)
	if len(p.events) == 0 {
		p.addEvent(PeerEvent{At: u.At, Peer: u.Peer, PeerAS: u.PeerAS, Source: u.Source, Up: true, FullFeed: p.fullFeed})
	}
	r.settleLocked(u.At)
	p.updates++
	h := r.prefixes[u.Prefix]
	if h == nil {
		h = &prefixHist{prefix: u.Prefix, byPeer: map[peerKey][]entry{}}
		r.prefixes[u.Prefix] = h
	}
	e := entry{at: u.At, withdraw: u.Withdraw}
	if !u.Withdraw {
		e.path, e.nextHop = slices.Clone(u.ASPath), u.NextHop
	}
	h.byPeer[k] = insertEntry(h.byPeer[k], e, r.opts.MaxEntries)
	r.noteLocked(u.At)
	r.recheckLocked(u.Prefix, u.At)
	r.watch.send(u)
	return true
}

// insertEntry adds e in time order (sources deliver in order; an MRT
// import may not), keeping at most max.
func insertEntry(es []entry, e entry, max int) []entry {
	i := sort.Search(len(es), func(i int) bool { return es[i].at.After(e.at) })
	es = slices.Insert(es, i, e)
	if len(es) > max {
		es = slices.Delete(es, 0, len(es)-max)
	}
	return es
}

// noteLocked advances the latest time seen and prunes now and then.
func (r *RIB) noteLocked(t time.Time) {
	if t.After(r.latest) {
		r.latest = t
	}
	r.applied++
	if r.applied%1024 == 0 {
		r.pruneLocked(r.latest.Add(-r.opts.Retain))
	}
}

// recheckLocked records a visibility change of the monitored prefixes p
// touches (p itself, or those it covers).
func (r *RIB) recheckLocked(p netip.Prefix, at time.Time) {
	for m := range r.monitored {
		if p.Bits() <= m.Bits() && p.Contains(m.Addr()) {
			r.recheckOneLocked(m, at)
		}
	}
}

// settleLocked rechecks visibility at each instant before now when a
// session began to count for the prefixes it had said nothing of
// (TableSettle after it came up), in time order, so that the change log
// has the crossing at the instant it happened rather than at the next
// update. Only a peer's latest event can be pending: an earlier session
// ended before it would have counted, or was settled when the next event
// came.
func (r *RIB) settleLocked(now time.Time) {
	for {
		var next *peer
		var nextAt time.Time
		for _, p := range r.peers {
			i := len(p.events) - 1
			if i < 0 || !p.events[i].Up || p.settled[i] || !p.fullFeed {
				continue
			}
			if at := p.events[i].At.Add(r.opts.TableSettle); !at.After(now) && (next == nil || at.Before(nextAt)) {
				next, nextAt = p, at
			}
		}
		if next == nil {
			return
		}
		next.settled[len(next.events)-1] = true
		r.recheckAllLocked(nextAt)
	}
}

func (r *RIB) recheckAllLocked(at time.Time) {
	for m := range r.monitored {
		r.recheckOneLocked(m, at)
	}
}

func (r *RIB) recheckOneLocked(m netip.Prefix, at time.Time) {
	cs := r.vis[m]
	if n := len(cs); n > 0 && at.Before(cs[n-1].at) {
		// A late update (an MRT import out of order, a source's clock):
		// the log stays in time order, so judge it at the last change.
		at = cs[n-1].at
	}
	peers, with, _ := r.routesLocked(m, at)
	visible := peers > 0 && float64(with) > VisibleShare*float64(peers)
	if n := len(cs); n > 0 && cs[n-1].visible == visible {
		return
	}
	if len(cs) == 0 && !visible && with == 0 && peers == 0 {
		return // never seen: no change to record
	}
	r.vis[m] = append(cs, visChange{at: at, visible: visible})
}

// pruneLocked drops history before cutoff, keeping each peer's latest
// entry per prefix and each peer's latest session event.
func (r *RIB) pruneLocked(cutoff time.Time) {
	for _, h := range r.prefixes {
		for k, es := range h.byPeer {
			i := sort.Search(len(es), func(i int) bool { return !es[i].at.Before(cutoff) })
			if i >= len(es) {
				i = len(es) - 1
			}
			h.byPeer[k] = slices.Delete(es, 0, max(i, 0))
		}
	}
	for _, p := range r.peers {
		i := sort.Search(len(p.events), func(i int) bool { return !p.events[i].At.Before(cutoff) })
		if i >= len(p.events) {
			i = len(p.events) - 1
		}
		p.events = slices.Delete(p.events, 0, max(i, 0))
		p.settled = slices.Delete(p.settled, 0, max(i, 0))
	}
	for m, cs := range r.vis {
		i := sort.Search(len(cs), func(i int) bool { return !cs[i].at.Before(cutoff) })
		if i >= len(cs) {
			i = len(cs) - 1
		}
		r.vis[m] = slices.Delete(cs, 0, max(i, 0))
	}
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
