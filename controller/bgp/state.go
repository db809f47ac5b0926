package bgp

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// route is one peer's route at an instant.
type route struct {
	peer   *peer
	prefix netip.Prefix
	e      entry
}

// routesLocked counts, at t, the full-feed peers with a session up that
// count for m (they have sent an update of m, or of a prefix covering it,
// since the session came up, or TableSettle has passed) and those with a
// route to m (to m itself, or else to the most specific prefix covering
// it: traffic follows a covering route), and returns the routes of every
// peer up (partial ones too).
func (r *RIB) routesLocked(m netip.Prefix, t time.Time) (peers, with int, routes []route) {
	for _, p := range r.sortedPeersLocked() {
		up, since := p.upAt(t)
		if !up {
			continue
		}
		rt, ok, heard := r.bestLocked(p, m, t, since)
		counts := p.fullFeed && (heard || !t.Before(since.Add(r.opts.TableSettle)))
		if counts {
			peers++
		}
		if ok {
			if counts {
				with++
			}
			routes = append(routes, rt)
		}
	}
	return peers, with, routes
}

// bestLocked is p's route at t to m or its most specific covering prefix,
// announced after the session came up at since; heard: p has sent an
// update (announcement or withdrawal) of m or a covering prefix since.
func (r *RIB) bestLocked(p *peer, m netip.Prefix, t, since time.Time) (best route, found, heard bool) {
	for q, h := range r.prefixes {
		if q.Bits() > m.Bits() || !q.Contains(m.Addr()) {
			continue
		}
		es := h.byPeer[p.key]
		i := sort.Search(len(es), func(i int) bool { return es[i].at.After(t) })
		if i == 0 {
			continue
		}
		e := es[i-1]
		if e.at.Before(since) {
			continue
		}
		heard = true
		if e.withdraw || (found && q.Bits() <= best.prefix.Bits()) {
			continue
		}
		best, found = route{peer: p, prefix: q, e: e}, true
	}
	return best, found, heard
}

func (r *RIB) sortedPeersLocked() []*peer {
	ps := make([]*peer, 0, len(r.peers))
	for _, p := range r.peers {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *peer) int {
		if c := strings.Compare(a.key.source, b.key.source); c != 0 {
			return c
		}
		return a.key.addr.Compare(b.key.addr)
	})
	return ps
}

// StateAt is the state of prefix m at t, from what was recorded at or
// before t. m need not be monitored (then campaign and network are empty,
// and last_change is not known).
func (r *RIB) StateAt(m netip.Prefix, t time.Time) *vantagev1.BgpPrefixState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.stateLocked(m.Masked(), t.Round(0))
}

// States is StateAt for each prefix, in order: the engine's Routing.
func (r *RIB) States(prefixes []netip.Prefix, t time.Time) []*vantagev1.BgpPrefixState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*vantagev1.BgpPrefixState, len(prefixes))
	t = t.Round(0)
	for i, p := range prefixes {
		out[i] = r.stateLocked(p.Masked(), t)
	}
	return out
}

// AllStates is the state at t of every monitored prefix, sorted, those of
// campaign only if it is not empty.
func (r *RIB) AllStates(campaign string, t time.Time) []*vantagev1.BgpPrefixState {
	var out []*vantagev1.BgpPrefixState
	t = t.Round(0)
	for _, p := range r.Monitored() {
		r.mu.RLock()
		mon := r.monitored[p]
		if campaign == "" || mon.Campaign == campaign {
			out = append(out, r.stateLocked(p, t))
		}
		r.mu.RUnlock()
	}
	return out
}

func (r *RIB) stateLocked(m netip.Prefix, t time.Time) *vantagev1.BgpPrefixState {
	mon := r.monitored[m]
	s := &vantagev1.BgpPrefixState{Prefix: m.String(), Campaign: mon.Campaign, Network: mon.Network, At: timestamppb.New(t)}
	peers, with, routes := r.routesLocked(m, t)
	s.Peers, s.PeersWithRoute = uint32(peers), uint32(with)
	if peers > 0 {
		s.Visibility = float64(with) / float64(peers)
		s.Visible = s.Visibility > VisibleShare
	}
	for _, rt := range routes {
		br := &vantagev1.BgpRoute{Peer: rt.peer.key.addr.String(), PeerAs: rt.peer.as, Prefix: rt.prefix.String(),
			AsPath: slices.Clone(rt.e.path), Since: timestamppb.New(rt.e.at), Source: rt.peer.key.source,
			FullFeed: rt.peer.fullFeed}
		if n := len(rt.e.path); n > 0 {
			br.OriginAs = rt.e.path[n-1]
		}
		if rt.e.nextHop.IsValid() {
			br.NextHop = rt.e.nextHop.String()
		}
		s.Routes = append(s.Routes, br)
	}
	path, last := r.lastPathLocked(m, t)
	s.LastPath = path
	if n := len(path); n > 0 {
		s.OriginAs = path[n-1]
	}
	if !last.IsZero() {
		s.LastUpdate = timestamppb.New(last)
	}
	cs := r.vis[m]
	if i := sort.Search(len(cs), func(i int) bool { return cs[i].at.After(t) }); i > 0 {
		s.LastChange = timestamppb.New(cs[i-1].at)
	}
	s.UpdatesPerMinute, s.BaselinePerMinute = r.rateLocked(m, t, peers)
	return s
}

// lastPathLocked is the latest AS path a full-feed peer announced at or
// before t for m (or, if m itself never was, a covering prefix), the
// partial peers' only when no full-feed peer ever announced one (the path
// the world saw, not a monitor session's), and the time of m's latest
// update of any kind.
func (r *RIB) lastPathLocked(m netip.Prefix, t time.Time) ([]uint32, time.Time) {
	var full, partial []*peer
	for _, p := range r.sortedPeersLocked() { // ties go to the first peer, in a fixed order
		if p.fullFeed {
			full = append(full, p)
		} else {
			partial = append(partial, p)
		}
	}
	path, last := r.lastPathOfLocked(m, t, full)
	pPath, pLast := r.lastPathOfLocked(m, t, partial)
	if path == nil {
		path = pPath
	}
	if pLast.After(last) {
		last = pLast
	}
	return path, last
}

// lastPathOfLocked is lastPathLocked over the given peers.
func (r *RIB) lastPathOfLocked(m netip.Prefix, t time.Time, peers []*peer) ([]uint32, time.Time) {
	var path []uint32
	var pathAt, last time.Time
	pathBits := -1
	for q, h := range r.prefixes {
		if q.Bits() > m.Bits() || !q.Contains(m.Addr()) {
			continue
		}
		for _, p := range peers {
			es := h.byPeer[p.key]
			i := sort.Search(len(es), func(i int) bool { return es[i].at.After(t) })
			for j := i - 1; j >= 0; j-- {
				e := es[j]
				if q == m && e.at.After(last) {
					last = e.at
				}
				if e.withdraw {
					continue
				}
				better := q.Bits() > pathBits || (q.Bits() == pathBits && e.at.After(pathAt))
				if better {
					path, pathAt, pathBits = e.path, e.at, q.Bits()
				}
				break
			}
		}
	}
	return slices.Clone(path), last
}

// rateLocked: updates per minute per full-feed peer (with a session up
// at t) of m and its more specific prefixes, over the RateWindow before t
// and over the BaselineWindow before that. Per peer, so that one event
// (a withdrawal every peer passes on, sessions coming up) is one update,
// however many peers the collector has; churn is one peer's route
// changing again and again.
func (r *RIB) rateLocked(m netip.Prefix, t time.Time, peers int) (rate, baseline float64) {
	if peers == 0 {
		return 0, 0
	}
	win, base := r.opts.RateWindow, r.opts.BaselineWindow
	var recent, older int
	for q, h := range r.prefixes {
		if q.Bits() < m.Bits() || !m.Contains(q.Addr()) {
			continue
		}
		for k, es := range h.byPeer {
			if p := r.peers[k]; p == nil || !p.fullFeed {
				continue
			}
			recent += countIn(es, t.Add(-win), t)
			older += countIn(es, t.Add(-win-base), t.Add(-win))
		}
	}
	n := float64(peers)
	return float64(recent) / n / win.Minutes(), float64(older) / n / base.Minutes()
}

// countIn counts the entries in (from, to].
func countIn(es []entry, from, to time.Time) int {
	i := sort.Search(len(es), func(i int) bool { return es[i].at.After(from) })
	j := sort.Search(len(es), func(i int) bool { return es[i].at.After(to) })
	return j - i
}

// Peers is every routing view, sorted, with its state at t.
func (r *RIB) Peers(t time.Time) []*vantagev1.BgpPeer {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*vantagev1.BgpPeer
	t = t.Round(0)
	for _, p := range r.sortedPeersLocked() {
		up, since := p.upAt(t)
		state := "down"
		if up {
			state = "established"
		}
		bp := &vantagev1.BgpPeer{Address: p.key.addr.String(), As: p.as, Source: p.key.source, State: state,
			FullFeed: p.fullFeed, Updates: p.updates}
		if !since.IsZero() {
			bp.Since = timestamppb.New(since)
		}
		out = append(out, bp)
	}
	return out
}

// Latest is the time of the newest update or session event recorded.
func (r *RIB) Latest() time.Time {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.latest
}
