package web

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/export"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Campaign view windows: the default, and the most one request may ask
// (a link can say any range in between).
const (
	DefaultWindow = 6 * time.Hour
	MaxWindow     = 31 * 24 * time.Hour
)

// campaignViewJSON is the campaign page's data, aggregated: state bands
// per scope and network, the quality series per vantage of a few networks,
// the BGP view and the episodes. Targets are never in it (a country has tens
// of thousands); the page asks for them by network, paged.
type campaignViewJSON struct {
	Campaign string                `json:"campaign"`
	From     time.Time             `json:"from"`
	To       time.Time             `json:"to"`
	Scope    map[string][]bandJSON `json:"scope"`
	Networks map[string][]bandJSON `json:"networks"`
	// NetworkNames is every network of the campaign, by name (Networks
	// has those with a transition in the window).
	NetworkNames []string `json:"network_names"`
	// Series is the quality of the SeriesNetworks only: at most
	// MaxViewSeriesNetworks, those that left REACHABLE in the window
	// first, then by name. SeriesLeftOut are the others, by name; the
	// page gets one's at /api/campaigns/NAME/series?network=.
	Series         []seriesJSON    `json:"series"`
	SeriesNetworks []string        `json:"series_networks"`
	SeriesLeftOut  []string        `json:"series_left_out"`
	BGP            []bgpPrefixJSON `json:"bgp"`
	Episodes       []episodeJSON   `json:"episodes"`
}

// MaxViewSeriesNetworks is the most networks whose quality series the
// campaign view ships. One network seen from 3 vantages over 6 hours of
// 1-minute rounds is 1,080 points; a country of 256 networks would be
// 276,480, and the API's newest 5,000 across all networks are the last
// 6 rounds.
const MaxViewSeriesNetworks = 12

// seriesJSON is one network's quality seen from one vantage, as columns
// (uPlot's shape): round starts in Unix seconds, loss 0..1, RTT p50 ms.
//
// Loss is null for a round in which no probe counted: the quality series
// counts only targets some vantage got an answer from, so in a blackout
// there is nothing to count, and 0 would read as "no loss". The state
// bands say what happened then.
type seriesJSON struct {
	Network   string     `json:"network"`
	Agent     string     `json:"agent"`
	AgentName string     `json:"agent_name,omitempty"`
	T         []int64    `json:"t"`
	Loss      []*float64 `json:"loss"`
	RTT       []float64  `json:"rtt_p50_ms"`
}

type bgpPrefixJSON struct {
	Prefix           string   `json:"prefix"`
	Network          string   `json:"network"`
	Visibility       float64  `json:"visibility"`
	Peers            uint32   `json:"peers"`
	PeersWithRoute   uint32   `json:"peers_with_route"`
	UpdatesPerMinute float64  `json:"updates_per_minute"`
	Baseline         float64  `json:"baseline_per_minute"`
	LastPath         []uint32 `json:"last_path,omitempty"`
}

// episodeJSON is one departure of the scope from REACHABLE and its
// return (To nil while it lasts), with its worst state and the last
// location, upstream and cause the verdicts gave it.
type episodeJSON struct {
	ID         string     `json:"id"` // "<first transition id>": the episode page's key
	From       time.Time  `json:"from"`
	FromEarly  time.Time  `json:"from_earliest"`
	To         *time.Time `json:"to,omitempty"`
	Worst      string     `json:"worst"`
	Location   string     `json:"location"`
	Upstream   string     `json:"upstream,omitempty"`
	UpstreamAS uint32     `json:"upstream_as,omitempty"`
	Cause      string     `json:"cause,omitempty"`
	Confidence float64    `json:"confidence,omitempty"`
}

// window reads from and to (RFC 3339) from the query: to defaults to now,
// from to DefaultWindow before it.
func (s *Server) window(r *http.Request) (from, to time.Time, err error) {
	to = s.cfg.Now().UTC()
	if v := r.URL.Query().Get("to"); v != "" {
		if to, err = time.Parse(time.RFC3339, v); err != nil {
			return from, to, fmt.Errorf("to: %q is not an RFC 3339 time", v)
		}
	}
	from = to.Add(-DefaultWindow)
	if v := r.URL.Query().Get("from"); v != "" {
		if from, err = time.Parse(time.RFC3339, v); err != nil {
			return from, to, fmt.Errorf("from: %q is not an RFC 3339 time", v)
		}
	}
	switch {
	case !from.Before(to):
		return from, to, fmt.Errorf("from: %s is not before to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	case to.Sub(from) > MaxWindow:
		return from, to, fmt.Errorf("from: the window is %s, at most %s", to.Sub(from), MaxWindow)
	}
	return from, to, nil
}

// windowOf is window, answering 400 when it is bad.
func (s *Server) windowOf(w http.ResponseWriter, r *http.Request) (from, to time.Time, ok bool) {
	from, to, err := s.window(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return from, to, false
	}
	return from, to, true
}

func (s *Server) campaignView(w http.ResponseWriter, r *http.Request) {
	from, to, ok := s.windowOf(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel()
	out := campaignViewJSON{Campaign: name, From: from, To: to, Scope: map[string][]bandJSON{}, Networks: map[string][]bandJSON{},
		Series: []seriesJSON{}, BGP: []bgpPrefixJSON{}, Episodes: []episodeJSON{}}
	for _, lv := range []struct {
		level vantagev1.Level
		into  map[string][]bandJSON
	}{{vantagev1.Level_LEVEL_SCOPE, out.Scope}, {vantagev1.Level_LEVEL_NETWORK, out.Networks}} {
		tl, err := s.cfg.Operator.GetTimeline(ctx, &vantagev1.GetTimelineRequest{Campaign: name, Level: lv.level,
			From: timestamppb.New(from), To: timestamppb.New(to)})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for subject, ts := range bySubject(tl.GetTransitions()) {
			lv.into[subject] = bands(ts, from)
			if lv.level == vantagev1.Level_LEVEL_SCOPE {
				out.Episodes = append(out.Episodes, episodes(ts)...)
			}
		}
	}
	nets, err := s.networkVerdicts(ctx, name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	names := map[string]bool{}
	for _, v := range nets {
		names[v.GetSubject()] = true
	}
	for n := range out.Networks { // a campaign not running has no verdicts
		names[n] = true
	}
	out.NetworkNames = append([]string{}, slices.Sorted(maps.Keys(names))...)
	out.SeriesNetworks, out.SeriesLeftOut = seriesNetworks(out.NetworkNames, out.Networks, MaxViewSeriesNetworks)
	agents, err := s.agentNames(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, n := range out.SeriesNetworks {
		sr, err := s.cfg.Operator.GetSeries(ctx, &vantagev1.GetSeriesRequest{Campaign: name, Network: n,
			From: timestamppb.New(from), To: timestamppb.New(to)})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out.Series = append(out.Series, columns(sr.GetPoints(), agents)...)
	}
	bs, err := s.cfg.Operator.GetBgpStatus(ctx, &vantagev1.GetBgpStatusRequest{Campaign: name})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, p := range bs.GetPrefixes() {
		out.BGP = append(out.BGP, bgpPrefixJSON{Prefix: p.GetPrefix(), Network: p.GetNetwork(), Visibility: p.GetVisibility(),
			Peers: p.GetPeers(), PeersWithRoute: p.GetPeersWithRoute(), UpdatesPerMinute: p.GetUpdatesPerMinute(),
			Baseline: p.GetBaselinePerMinute(), LastPath: p.GetLastPath()})
	}
	writeJSON(w, out)
}

// networkVerdicts is the campaign's network verdicts (none when it is not
// running).
func (s *Server) networkVerdicts(ctx context.Context, name string) ([]*vantagev1.Verdict, error) {
	vs, err := s.cfg.Operator.GetVerdicts(ctx, &vantagev1.GetVerdictsRequest{Campaign: name, Level: vantagev1.Level_LEVEL_NETWORK})
	if err != nil {
		return nil, err
	}
	return vs.GetVerdicts(), nil
}

// seriesNetworks picks, of names (sorted), at most most whose series the
// view ships: those whose bands left REACHABLE in the window, earliest
// first, then the others, by name. left are the rest, by name.
func seriesNetworks(names []string, bands map[string][]bandJSON, most int) (picked, left []string) {
	leftAt := map[string]time.Time{}
	for _, n := range names {
		for _, b := range bands[n] {
			if b.State != stateName(vantagev1.State_STATE_REACHABLE) {
				leftAt[n] = b.From
				break
			}
		}
	}
	order := slices.Clone(names)
	slices.SortStableFunc(order, func(a, b string) int {
		ta, oka := leftAt[a]
		tb, okb := leftAt[b]
		switch {
		case oka && okb:
			return ta.Compare(tb)
		case oka:
			return -1
		case okb:
			return 1
		}
		return 0 // names is sorted: by name
	})
	picked, left = []string{}, []string{} // JSON arrays, never null
	picked = append(picked, order[:min(most, len(order))]...)
	for _, n := range names {
		if !slices.Contains(picked, n) {
			left = append(left, n)
		}
	}
	return picked, left
}

// seriesView is GET /api/campaigns/NAME/series?network=N&from=&to=: one
// network's quality series over the window, per vantage, for a network
// the campaign view left out.
func (s *Server) seriesView(w http.ResponseWriter, r *http.Request) {
	from, to, ok := s.windowOf(w, r)
	if !ok {
		return
	}
	name, network := r.PathValue("name"), r.URL.Query().Get("network")
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel()
	nets, ok := s.networkOf(ctx, w, r, name, network)
	if !ok {
		return
	}
	// A campaign not running has no verdicts to check against, and its
	// stored series are still worth seeing.
	if len(nets) > 0 && !slices.ContainsFunc(nets, func(v *vantagev1.Verdict) bool { return v.GetSubject() == network }) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("network: %q is not a network of campaign %q", network, name))
		return
	}
	sr, err := s.cfg.Operator.GetSeries(ctx, &vantagev1.GetSeriesRequest{Campaign: name, Network: network,
		From: timestamppb.New(from), To: timestamppb.New(to)})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	agents, err := s.agentNames(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, struct {
		Campaign string       `json:"campaign"`
		Network  string       `json:"network"`
		From     time.Time    `json:"from"`
		To       time.Time    `json:"to"`
		Series   []seriesJSON `json:"series"`
	}{name, network, from, to, columns(sr.GetPoints(), agents)})
}

// columns groups quality points (any order) by network and vantage, in
// round order.
func columns(ps []*vantagev1.QualityPoint, names map[string]string) []seriesJSON {
	idx := map[[2]string]int{}
	var out []seriesJSON
	for _, p := range ps {
		k := [2]string{p.GetNetwork(), p.GetAgentId()}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, seriesJSON{Network: k[0], Agent: k[1], AgentName: names[k[1]]})
		}
		sj := &out[i]
		sj.T = append(sj.T, p.GetRoundStart().AsTime().Unix())
		var loss *float64
		if p.GetProbes() > 0 {
			l := p.GetLoss()
			loss = &l
		}
		sj.Loss = append(sj.Loss, loss)
		sj.RTT = append(sj.RTT, p.GetRttP50Ms())
	}
	for i := range out {
		sortColumns(&out[i])
	}
	if out == nil {
		out = []seriesJSON{}
	}
	return out
}

// sortColumns orders a series by time (the API returns rounds in order;
// this keeps the page right if it does not).
func sortColumns(sj *seriesJSON) {
	for i := 1; i < len(sj.T); i++ {
		for j := i; j > 0 && sj.T[j] < sj.T[j-1]; j-- {
			sj.T[j], sj.T[j-1] = sj.T[j-1], sj.T[j]
			sj.Loss[j], sj.Loss[j-1] = sj.Loss[j-1], sj.Loss[j]
			sj.RTT[j], sj.RTT[j-1] = sj.RTT[j-1], sj.RTT[j]
		}
	}
}

// episodes cuts one subject's transitions (oldest first) into episodes,
// as an export does (export.Episodes): each starts when it becomes
// DEGRADED, UNSTABLE or UNREACHABLE and ends when it is REACHABLE again.
// UNKNOWN (too few vantages) starts none, and inside an episode it
// neither ends it nor makes it worse.
func episodes(ts []*vantagev1.Transition) []episodeJSON {
	var out []episodeJSON
	for _, ep := range export.Episodes(ts) {
		e := episodeJSON{ID: fmt.Sprint(ep.GetFirstTransitionId()), From: ep.GetStartLatest().AsTime(),
			FromEarly: ep.GetStartEarliest().AsTime(), Worst: stateName(ep.GetState())}
		if ep.GetEndLatest() != nil {
			end := ep.GetEndLatest().AsTime()
			e.To = &end
		}
		if l := ep.GetLocation(); l != vantagev1.Location_LOCATION_UNSPECIFIED {
			e.Location = strings.TrimPrefix(l.String(), "LOCATION_")
		}
		if h := ep.GetUpstream(); h.GetAddress() != "" {
			e.Upstream, e.UpstreamAS = h.GetName(), h.GetAsn()
			if e.Upstream == "" {
				e.Upstream = h.GetAddress()
			}
		}
		if c := ep.GetCause(); c.GetCause() != vantagev1.Cause_CAUSE_UNSPECIFIED {
			e.Cause, e.Confidence = strings.TrimPrefix(c.GetCause().String(), "CAUSE_"), c.GetConfidence()
		}
		out = append(out, e)
	}
	return out
}

// bySubject groups transitions (oldest first) by subject, keeping their
// order.
func bySubject(ts []*vantagev1.Transition) map[string][]*vantagev1.Transition {
	out := map[string][]*vantagev1.Transition{}
	for _, tr := range ts {
		out[tr.GetSubject()] = append(out[tr.GetSubject()], tr)
	}
	return out
}

// networkOf checks the request's network parameter and returns the
// campaign's network verdicts (none when the campaign is not running),
// answering the error itself when it fails.
func (s *Server) networkOf(ctx context.Context, w http.ResponseWriter, r *http.Request, name, network string) ([]*vantagev1.Verdict, bool) {
	if network == "" {
		writeError(w, http.StatusBadRequest, "network: required (a network's name)")
		return nil, false
	}
	nets, err := s.networkVerdicts(ctx, name)
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	return nets, true
}
