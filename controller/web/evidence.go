package web

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/internal/bgpwords"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The evidence behind each transition of an episode: what `vantagectl
// explain` prints for a verdict, as far as the stored transition and the
// quality series keep it, with links to the raw results of its rounds.
//
// A stored transition keeps its cause, location, router, children and
// notes, but not the per-vantage view (VantageEvidence) of its verdict:
// only the current verdict has one. So each vantage's row carries loss
// and RTT from the quality series over the transition's rounds (stored
// per round, so true of that time), and its health, state and targets up
// and down only while the verdict is still in the state the transition
// entered (HealthAsOf says when that view was taken). A row never shows
// today's health as if it were the health at the time.

// EpisodeSeries bounds the quality points one read of the episode's
// evidence takes (the API's most; the newest are kept past it).
const EpisodeSeries = 50000

// maxSeriesSpans bounds the GetSeries calls of one episode view: past it,
// one call covers every transition's rounds.
const maxSeriesSpans = 32

// evidenceJSON is one transition's evidence.
type evidenceJSON struct {
	TransitionID int64  `json:"transition_id"`
	VerdictID    string `json:"verdict_id"`
	Level        string `json:"level"` // SCOPE, NETWORK
	Subject      string `json:"subject"`
	From         string `json:"from"` // states, as stateName
	To           string `json:"to"`
	// Cause is the CauseFinding's cause (UPSTREAM, ...), "" without one;
	// CauseEvidence its observations in words; BGP its routing finding
	// in words (bgpwords) and BGPSummary the lines behind it.
	Cause         string   `json:"cause,omitempty"`
	Confidence    float64  `json:"confidence"`
	CauseEvidence []string `json:"cause_evidence"`
	BGP           string   `json:"bgp,omitempty"`
	BGPSummary    []string `json:"bgp_summary,omitempty"`
	// Location is where the paths die (UPSTREAM, ...; "" unspecified),
	// Router the router it names.
	Location     string         `json:"location"`
	Router       *routerJSON    `json:"router,omitempty"`
	Reason       string         `json:"reason,omitempty"` // what made it DEGRADED
	UpChildren   []string       `json:"up_children"`
	DownChildren []string       `json:"down_children"`
	Upstreams    []upstreamJSON `json:"upstreams,omitempty"`
	Notes        []string       `json:"notes,omitempty"`
	// The transition's rounds: from a round before onset_earliest to
	// detected_at, and the raw results page over them (every vantage).
	ResultsFrom time.Time `json:"results_from"`
	ResultsTo   time.Time `json:"results_to"`
	ResultsURL  string    `json:"results_url"`
	// HealthAsOf is set when the verdict is still in the state this
	// transition entered: the vantages' Verdict columns are its view at
	// that evaluation. Nil when the verdict has moved on.
	HealthAsOf *time.Time       `json:"health_as_of,omitempty"`
	Vantages   []vantageRowJSON `json:"vantages"`
}

type routerJSON struct {
	Address string `json:"address"`
	Role    string `json:"role,omitempty"` // UPSTREAM, BORDER; "" when the campaign does not name it
	Name    string `json:"name,omitempty"`
	ASN     uint32 `json:"asn,omitempty"`
}

type upstreamJSON struct {
	Name         string   `json:"name"`
	Addresses    []string `json:"addresses"`
	Dead         bool     `json:"dead"`
	NetworksUp   []string `json:"networks_up,omitempty"`
	NetworksDown []string `json:"networks_down,omitempty"`
}

// vantageRowJSON is one vantage's evidence for a transition.
type vantageRowJSON struct {
	Agent string `json:"agent_id"`
	Name  string `json:"agent_name,omitempty"`
	// Verdict is the verdict's VantageEvidence (see HealthAsOf); nil
	// when it has moved on or did not count this vantage.
	Verdict *vantageVerdictJSON `json:"verdict,omitempty"`
	// Quality is the series over the transition's rounds; nil when the
	// vantage has no point for the subject in them: it got no answer
	// there, and no vantage did from the targets it probed.
	Quality    *qualityJSON `json:"quality,omitempty"`
	ResultsURL string       `json:"results_url"`
}

type vantageVerdictJSON struct {
	Healthy      bool       `json:"healthy"`
	Reason       string     `json:"reason,omitempty"`
	State        string     `json:"state"`
	TargetsUp    uint32     `json:"targets_up"`
	TargetsDown  uint32     `json:"targets_down"`
	LastRound    int64      `json:"last_round"`
	LastResultAt *time.Time `json:"last_result_at,omitempty"`
}

// qualityJSON sums a vantage's quality points over some rounds (of the
// subject's network, or of every network for the scope). The points are
// the verdict engine's, those DEGRADED(LOSS) and DEGRADED(LATENCY) read:
// they count the probes of targets some vantage got an answer from in the
// round, so a target nobody reaches adds no loss, and a network nobody
// reaches has no point at all.
type qualityJSON struct {
	Rounds          int   `json:"rounds"` // distinct rounds with a point
	Probes          int64 `json:"probes"`
	FirstTryAnswers int64 `json:"first_try_answers"`
	// Loss is 1 - first_try_answers/probes over them; 0 with no probe.
	Loss float64 `json:"loss"`
	// RTT: the median of the points' p50 and p90, over the points with
	// an answer; 0 with none.
	RTTP50  float64          `json:"rtt_p50_ms"`
	RTTP90  float64          `json:"rtt_p90_ms"`
	Answers map[string]int64 `json:"answers,omitempty"` // per protocol
}

// evidenceInput is what the evidence of an episode's transitions is
// built from.
type evidenceInput struct {
	campaign string
	round    time.Duration
	verdicts map[string]*vantagev1.Verdict // current, by id
	points   []*vantagev1.QualityPoint
	names    map[string]string // agent names by id
}

// resultsWindow is a transition's rounds: from one round before
// onset_earliest (the last result in the old state) to detected_at,
// whole seconds outward, at most MaxWindow.
func resultsWindow(tr *vantagev1.Transition, round time.Duration) (from, to time.Time) {
	if round <= 0 {
		round = time.Minute
	}
	to = tr.GetDetectedAt().AsTime()
	switch {
	case tr.GetOnsetEarliest() != nil:
		from = tr.GetOnsetEarliest().AsTime()
	case tr.GetOnsetLatest() != nil:
		from = tr.GetOnsetLatest().AsTime()
	default:
		from = to.Add(-2 * round)
	}
	if tr.GetDetectedAt() == nil {
		to = from.Add(2 * round)
	}
	from, to = from.Add(-round).UTC().Truncate(time.Second), ceilSecond(to.UTC())
	if !from.Before(to) {
		from = to.Add(-round).Truncate(time.Second)
	}
	if to.Sub(from) > MaxWindow {
		from = to.Add(-MaxWindow)
	}
	return from, to
}

func ceilSecond(t time.Time) time.Time {
	if c := t.Truncate(time.Second); c.Before(t) {
		return c.Add(time.Second)
	}
	return t
}

// resultsURL is the raw results page of campaign with filter f; the
// window is always in it, so a shared link shows the same results.
func resultsURL(campaign string, f resultsFilter) string {
	q := url.Values{}
	for _, kv := range [][2]string{{"agent", f.Agent}, {"target", f.Target}, {"network", f.Network}} {
		if kv[1] != "" {
			q.Set(kv[0], kv[1])
		}
	}
	q.Set("from", f.From.UTC().Format(time.RFC3339))
	q.Set("to", f.To.UTC().Format(time.RFC3339))
	if f.Limit != 0 && f.Limit != DefaultResults {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	return "/campaigns/" + url.PathEscape(campaign) + "/results?" + q.Encode()
}

// evidenceOf is tr's evidence.
func evidenceOf(tr *vantagev1.Transition, in evidenceInput) evidenceJSON {
	from, to := resultsWindow(tr, in.round)
	ev := evidenceJSON{TransitionID: tr.GetId(), VerdictID: tr.GetVerdictId(), Level: strings.TrimPrefix(tr.GetLevel().String(), "LEVEL_"),
		Subject: tr.GetSubject(), From: stateName(tr.GetFrom()), To: stateName(tr.GetTo()),
		CauseEvidence: nonNil(tr.GetCause().GetEvidence()), UpChildren: nonNil(tr.GetUpChildren()),
		DownChildren: nonNil(tr.GetDownChildren()), Notes: tr.GetNotes(), ResultsFrom: from, ResultsTo: to, Vantages: []vantageRowJSON{}}
	if c := tr.GetCause(); c.GetCause() != vantagev1.Cause_CAUSE_UNSPECIFIED {
		ev.Cause, ev.Confidence = strings.TrimPrefix(c.GetCause().String(), "CAUSE_"), c.GetConfidence()
		if b := c.GetBgp(); b != nil {
			ev.BGP, ev.BGPSummary = bgpwords.Finding(b), b.GetSummary()
		}
	}
	if l := tr.GetLocation(); l != vantagev1.Location_LOCATION_UNSPECIFIED {
		ev.Location = strings.TrimPrefix(l.String(), "LOCATION_")
	}
	if h := tr.GetLocationHop(); h.GetAddress() != "" {
		ev.Router = &routerJSON{Address: h.GetAddress(), Name: h.GetName(), ASN: h.GetAsn()}
		if h.GetRole() != vantagev1.TargetRole_TARGET_ROLE_UNSPECIFIED {
			ev.Router.Role = strings.TrimPrefix(h.GetRole().String(), "TARGET_ROLE_")
		}
	}
	if r := tr.GetReason(); r != vantagev1.Reason_REASON_UNSPECIFIED {
		ev.Reason = strings.TrimPrefix(r.String(), "REASON_")
	}
	for _, u := range tr.GetUpstreams() {
		ev.Upstreams = append(ev.Upstreams, upstreamJSON{Name: u.GetName(), Addresses: nonNil(u.GetAddresses()), Dead: u.GetDead(),
			NetworksUp: u.GetNetworksUp(), NetworksDown: u.GetNetworksDown()})
	}
	filter := resultsFilter{From: from, To: to}
	network := ""
	switch tr.GetLevel() {
	case vantagev1.Level_LEVEL_NETWORK:
		filter.Network, network = tr.GetSubject(), tr.GetSubject()
	case vantagev1.Level_LEVEL_TARGET:
		filter.Target = tr.GetSubject()
	}
	ev.ResultsURL = resultsURL(in.campaign, filter)

	rows := map[string]*vantageRowJSON{}
	row := func(agent string) *vantageRowJSON {
		if r := rows[agent]; r != nil {
			return r
		}
		f := filter
		f.Agent = agent
		r := &vantageRowJSON{Agent: agent, Name: in.names[agent], ResultsURL: resultsURL(in.campaign, f)}
		rows[agent] = r
		return r
	}
	if v := in.verdicts[tr.GetVerdictId()]; stillIn(v, tr) {
		at := v.GetEvaluatedAt().AsTime()
		ev.HealthAsOf = &at
		for _, e := range v.GetEvidence() {
			r := row(e.GetAgentId())
			if e.GetAgentName() != "" {
				r.Name = e.GetAgentName()
			}
			r.Verdict = &vantageVerdictJSON{Healthy: e.GetHealthy(), Reason: e.GetReason(), State: stateName(e.GetState()),
				TargetsUp: e.GetTargetsUp(), TargetsDown: e.GetTargetsDown(), LastRound: e.GetLastRound()}
			if e.GetLastResultAt() != nil {
				t := e.GetLastResultAt().AsTime()
				r.Verdict.LastResultAt = &t
			}
		}
	}
	if tr.GetLevel() != vantagev1.Level_LEVEL_TARGET {
		// Every vantage with a point in these rounds has a row (and a
		// link), also one with none for this network.
		for agent := range quality(in.points, "", from, to) {
			row(agent)
		}
		for agent, q := range quality(in.points, network, from, to) {
			row(agent).Quality = q
		}
	}
	for _, r := range rows {
		ev.Vantages = append(ev.Vantages, *r)
	}
	sort.Slice(ev.Vantages, func(i, j int) bool {
		a, b := ev.Vantages[i], ev.Vantages[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Agent < b.Agent
	})
	return ev
}

// stillIn reports whether the current verdict v is still in the state tr
// entered (the same onset: tr or a refinement of it), so that its
// per-vantage view is this transition's.
func stillIn(v *vantagev1.Verdict, tr *vantagev1.Transition) bool {
	return v != nil && v.GetState() == tr.GetTo() && v.GetOnsetLatest() != nil &&
		v.GetOnsetLatest().AsTime().Equal(tr.GetOnsetLatest().AsTime())
}

// quality sums each vantage's points of network ("" every network) whose
// round starts in [from, to).
func quality(ps []*vantagev1.QualityPoint, network string, from, to time.Time) map[string]*qualityJSON {
	type acc struct {
		q        *qualityJSON
		rounds   map[int64]bool
		p50, p90 []float64
	}
	accs := map[string]*acc{}
	for _, p := range ps {
		at := p.GetRoundStart().AsTime()
		if (network != "" && p.GetNetwork() != network) || at.Before(from) || !at.Before(to) {
			continue
		}
		a := accs[p.GetAgentId()]
		if a == nil {
			a = &acc{q: &qualityJSON{}, rounds: map[int64]bool{}}
			accs[p.GetAgentId()] = a
		}
		a.rounds[p.GetRound()] = true
		a.q.Probes += int64(p.GetProbes())
		a.q.FirstTryAnswers += int64(p.GetFirstTryAnswers())
		if p.GetFirstTryAnswers() > 0 && p.GetRttP50Ms() > 0 {
			a.p50, a.p90 = append(a.p50, p.GetRttP50Ms()), append(a.p90, p.GetRttP90Ms())
		}
		for proto, n := range p.GetAnswers() {
			if a.q.Answers == nil {
				a.q.Answers = map[string]int64{}
			}
			a.q.Answers[proto] += int64(n)
		}
	}
	out := make(map[string]*qualityJSON, len(accs))
	for agent, a := range accs {
		a.q.Rounds = len(a.rounds)
		if a.q.Probes > 0 {
			a.q.Loss = 1 - float64(a.q.FirstTryAnswers)/float64(a.q.Probes)
		}
		a.q.RTTP50, a.q.RTTP90 = median(a.p50), median(a.p90)
		out[agent] = a.q
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// spans merges the windows (any order) that overlap or touch into the
// fewest spans; past maxSeriesSpans, one span covers them all.
func spans(ws [][2]time.Time) [][2]time.Time {
	if len(ws) == 0 {
		return nil
	}
	ws = append([][2]time.Time(nil), ws...)
	sort.Slice(ws, func(i, j int) bool { return ws[i][0].Before(ws[j][0]) })
	out := [][2]time.Time{ws[0]}
	for _, w := range ws[1:] {
		last := &out[len(out)-1]
		if !w[0].After(last[1]) {
			if w[1].After(last[1]) {
				last[1] = w[1]
			}
			continue
		}
		out = append(out, w)
	}
	if len(out) > maxSeriesSpans {
		end := out[0][1]
		for _, w := range out {
			if w[1].After(end) {
				end = w[1]
			}
		}
		out = [][2]time.Time{{out[0][0], end}}
	}
	return out
}

// transitionEvidence builds the evidence of ts (campaign c's): the
// campaign's round, its current scope and network verdicts, the agents'
// names and the quality series over the transitions' rounds. truncated:
// a series read was cut at EpisodeSeries. Its errors are the API's, as
// they came (fail turns their status into the answer's).
func (s *Server) transitionEvidence(ctx context.Context, c *vantagev1.Campaign, ts []*vantagev1.Transition) (map[string]evidenceJSON, bool, error) {
	out := make(map[string]evidenceJSON, len(ts))
	if len(ts) == 0 {
		return out, false, nil
	}
	name := c.GetName()
	var err error
	in := evidenceInput{campaign: name, round: time.Duration(c.GetRoundMs()) * time.Millisecond, verdicts: map[string]*vantagev1.Verdict{}}
	for _, lv := range []vantagev1.Level{vantagev1.Level_LEVEL_SCOPE, vantagev1.Level_LEVEL_NETWORK} {
		vs, err := s.cfg.Operator.GetVerdicts(ctx, &vantagev1.GetVerdictsRequest{Campaign: name, Level: lv})
		if err != nil {
			return nil, false, err
		}
		for _, v := range vs.GetVerdicts() {
			in.verdicts[v.GetId()] = v
		}
	}
	if in.names, err = s.agentNames(ctx); err != nil {
		return nil, false, err
	}
	var ws [][2]time.Time
	for _, tr := range ts {
		from, to := resultsWindow(tr, in.round)
		ws = append(ws, [2]time.Time{from, to})
	}
	truncated := false
	for _, sp := range spans(ws) {
		sr, err := s.cfg.Operator.GetSeries(ctx, &vantagev1.GetSeriesRequest{Campaign: name, From: timestamppb.New(sp[0]),
			To: timestamppb.New(sp[1]), Limit: EpisodeSeries})
		if err != nil {
			return nil, false, err
		}
		in.points = append(in.points, sr.GetPoints()...)
		truncated = truncated || len(sr.GetPoints()) >= EpisodeSeries
	}
	for _, tr := range ts {
		out[fmt.Sprint(tr.GetId())] = evidenceOf(tr, in)
	}
	return out, truncated, nil
}

func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}
