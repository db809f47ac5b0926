package web

import (
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The overview's JSON: small and already aggregated, so the page draws it
// as it comes; the sparkline is a day of scope state as bands, not the
// rounds behind them.
type overviewJSON struct {
	At        time.Time      `json:"at"`
	From      time.Time      `json:"from"`
	Campaigns []campaignJSON `json:"campaigns"`
	Agents    []agentJSON    `json:"agents"`
	// AgentsTruncated: more agents than the first page (the Agents page
	// pages through them all).
	AgentsTruncated bool `json:"agents_truncated,omitempty"`
}

type campaignJSON struct {
	Name   string     `json:"name"`
	Scope  string     `json:"scope"`
	Status string     `json:"status"` // ACTIVE, PAUSED, ...
	State  string     `json:"state"`  // the scope verdict's, "" before the first
	Since  *time.Time `json:"since,omitempty"`
	Bands  []bandJSON `json:"bands"`
}

// bandJSON is a span of one state; To is nil while it lasts. FromEarliest
// is the onset's error bar: the state changed between it and From (the
// last round in the old state and the first in the new one).
type bandJSON struct {
	From         time.Time  `json:"from"`
	FromEarliest *time.Time `json:"from_earliest,omitempty"`
	To           *time.Time `json:"to,omitempty"`
	State        string     `json:"state"`
}

type agentJSON struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	State        string     `json:"state"`
	Connected    bool       `json:"connected"`
	Healthy      bool       `json:"healthy"`
	HealthReason string     `json:"health_reason,omitempty"`
	LastSeen     *time.Time `json:"last_seen,omitempty"`
	Version      string     `json:"version,omitempty"`
	// The agents page's columns.
	Labels        map[string]string `json:"labels,omitempty"`
	Engines       []string          `json:"engines,omitempty"`
	SpoolPending  uint64            `json:"spool_pending"`
	SpoolDropped  uint64            `json:"spool_dropped"`
	Gaps          uint64            `json:"gaps"`
	ResultsStored uint64            `json:"results_stored"`
	Tasks         uint32            `json:"tasks"`
	RemoteAddr    string            `json:"remote_addr,omitempty"`
}

func agentOf(a *vantagev1.AgentInfo) agentJSON {
	aj := agentJSON{ID: a.GetId(), Name: a.GetName(), State: strings.TrimPrefix(a.GetState().String(), "AGENT_STATE_"),
		Connected: a.GetConnected(), Healthy: a.GetHealthy(), HealthReason: a.GetHealthReason(), Version: a.GetAgentVersion(),
		Labels: a.GetLabels(), Engines: a.GetCapabilities().GetEngines(), SpoolPending: a.GetSpool().GetPendingResults(),
		SpoolDropped: a.GetSpool().GetDroppedResults(), Gaps: a.GetGaps(), ResultsStored: a.GetResultsStored(), Tasks: a.GetTasks(),
		RemoteAddr: a.GetRemoteAddr()}
	if a.GetLastSeen() != nil {
		t := a.GetLastSeen().AsTime()
		aj.LastSeen = &t
	}
	return aj
}

// agentsData is every agent, paged by the API (page_token in, next_page_token out).
func (s *Server) agentsData(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel()
	as, err := s.cfg.Operator.ListAgents(ctx, &vantagev1.ListAgentsRequest{PageToken: r.URL.Query().Get("page_token")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := struct {
		Agents []agentJSON `json:"agents"`
		Next   string      `json:"next_page_token,omitempty"`
	}{Agents: []agentJSON{}, Next: as.GetNextPageToken()}
	for _, a := range as.GetAgents() {
		out.Agents = append(out.Agents, agentOf(a))
	}
	writeJSON(w, out)
}

// OverviewWindow is how far back the overview's sparklines reach.
const OverviewWindow = 24 * time.Hour

func (s *Server) overviewData(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel()
	now := s.cfg.Now().UTC()
	out := overviewJSON{At: now, From: now.Add(-OverviewWindow), Campaigns: []campaignJSON{}, Agents: []agentJSON{}}
	cs, err := s.cfg.Operator.ListCampaigns(ctx, &vantagev1.ListCampaignsRequest{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, c := range cs.GetCampaigns() {
		cj := campaignJSON{Name: c.GetName(), Scope: c.GetScope(), Status: strings.TrimPrefix(c.GetState().String(), "CAMPAIGN_STATE_"), Bands: []bandJSON{}}
		vs, err := s.cfg.Operator.GetVerdicts(ctx, &vantagev1.GetVerdictsRequest{Campaign: c.GetName(), Level: vantagev1.Level_LEVEL_SCOPE})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, v := range vs.GetVerdicts() {
			if v.GetState() == vantagev1.State_STATE_UNSPECIFIED {
				continue // not evaluated yet
			}
			cj.State = stateName(v.GetState())
			if v.GetSince() != nil {
				t := v.GetSince().AsTime()
				cj.Since = &t
			}
		}
		tl, err := s.cfg.Operator.GetTimeline(ctx, &vantagev1.GetTimelineRequest{Campaign: c.GetName(), Level: vantagev1.Level_LEVEL_SCOPE,
			From: timestamppb.New(out.From), To: timestamppb.New(now)})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		cj.Bands = bands(tl.GetTransitions(), out.From)
		out.Campaigns = append(out.Campaigns, cj)
	}
	as, err := s.cfg.Operator.ListAgents(ctx, &vantagev1.ListAgentsRequest{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, a := range as.GetAgents() {
		out.Agents = append(out.Agents, agentOf(a))
	}
	out.AgentsTruncated = as.GetNextPageToken() != ""
	writeJSON(w, out)
}

// bands turns a subject's transitions (oldest first) into the spans of
// its states from `from` on: the first span starts at from with the state
// the first transition left (unknown when there is none).
func bands(ts []*vantagev1.Transition, from time.Time) []bandJSON {
	out := []bandJSON{}
	for _, tr := range ts {
		at := tr.GetOnsetLatest().AsTime()
		if tr.GetOnsetLatest() == nil {
			at = tr.GetDetectedAt().AsTime()
		}
		if at.Before(from) {
			at = from
		}
		if n := len(out); n > 0 {
			end := at
			out[n-1].To = &end
		} else if at.After(from) && tr.GetFrom() != vantagev1.State_STATE_UNSPECIFIED {
			end := at
			out = append(out, bandJSON{From: from, To: &end, State: stateName(tr.GetFrom())})
		}
		b := bandJSON{From: at, State: stateName(tr.GetTo())}
		if e := tr.GetOnsetEarliest(); e != nil && tr.GetFrom() != tr.GetTo() && e.AsTime().Before(at) && !e.AsTime().Before(from) {
			t := e.AsTime()
			b.FromEarliest = &t
		}
		out = append(out, b)
	}
	return out
}

func stateName(s vantagev1.State) string { return strings.TrimPrefix(s.String(), "STATE_") }
