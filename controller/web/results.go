package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The raw results page: the stored results behind a verdict, as the
// agents sent them, so a reader can check the evidence row by row. The
// query is in the URL, so a shared link shows the same results; the
// episode page links each vantage's evidence here with the transition's
// rounds.

// Results per answer: the default and the most one request may ask.
const (
	DefaultResults = 200
	MaxResults     = 1000
)

// ResultsScan bounds the results read to filter by network: the API
// filters by agent, target and time, not by network, so the server reads
// the campaign's results in the window and keeps the network's.
const ResultsScan = 100000

// resultParams are the results query's parameters, in the order errors
// name them.
var resultParams = []string{"agent", "target", "network", "from", "to", "limit"}

// resultsFilter is a checked results query.
type resultsFilter struct {
	Agent, Target, Network string
	From, To               time.Time
	Limit                  int
}

// resultsJSON is the results endpoint's answer.
type resultsJSON struct {
	Campaign string    `json:"campaign"`
	Agent    string    `json:"agent,omitempty"`
	Target   string    `json:"target,omitempty"`
	Network  string    `json:"network,omitempty"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Limit    int       `json:"limit"`
	// Results are the stored results (StoredResult as protojson), oldest
	// first.
	Results []json.RawMessage `json:"results"`
	// Names are the names of the agents in Results, by id.
	Names map[string]string `json:"names"`
	// Truncated: more results match than Results holds (the limit), or a
	// network's filter stopped at ResultsScan results read.
	Truncated bool `json:"truncated"`
}

// resultsFilterOf checks the results query: every parameter known and
// given at most once, agent an agent id, target an IP address, network a
// name, the window as window() has it, limit 1 to MaxResults. Whether
// the network is the campaign's is checked against the campaign.
func (s *Server) resultsFilterOf(r *http.Request) (resultsFilter, error) {
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		known := false
		for _, p := range resultParams {
			known = known || k == p
		}
		if !known {
			return resultsFilter{}, fmt.Errorf("%s: unknown parameter (known: %s)", k, strings.Join(resultParams, ", "))
		}
		if n := len(q[k]); n > 1 {
			return resultsFilter{}, fmt.Errorf("%s: given %d times, at most once", k, n)
		}
	}
	f := resultsFilter{Agent: q.Get("agent"), Network: q.Get("network"), Limit: DefaultResults}
	if f.Agent != "" && !validAgentID(f.Agent) {
		return f, fmt.Errorf("agent: %q is not an agent id (agt- and up to 60 letters, digits, - or _)", f.Agent)
	}
	if v := q.Get("target"); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return f, fmt.Errorf("target: %q is not an IP address", v)
		}
		f.Target = a.String()
	}
	if f.Network != "" && !validName(f.Network) {
		return f, fmt.Errorf("network: %q is not a network name (up to 64 letters, digits, ., - or _)", f.Network)
	}
	from, to, err := s.window(r)
	if err != nil {
		return f, err
	}
	f.From, f.To = from.UTC(), to.UTC()
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxResults {
			return f, fmt.Errorf("limit: %q is not a whole number from 1 to %d", v, MaxResults)
		}
		f.Limit = n
	}
	return f, nil
}

func validAgentID(id string) bool {
	rest, ok := strings.CutPrefix(id, "agt-")
	return ok && rest != "" && len(rest) <= 60 && strings.Trim(rest, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") == ""
}

func validName(n string) bool {
	return len(n) <= 64 && strings.Trim(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == ""
}

// networkTargets is the addresses of campaign c's network name, or an
// error naming the parameter that does not fit: network when c has no
// such network, target when target is not in it.
func networkTargets(c *vantagev1.Campaign, name, target string) (map[string]bool, error) {
	known := false
	var names []string
	for _, n := range c.GetNetworks() {
		names = append(names, n.GetName())
		known = known || n.GetName() == name
	}
	if !known {
		return nil, fmt.Errorf("network: campaign %s has no network %q (it has: %s)", c.GetName(), name, strings.Join(names, ", "))
	}
	in := map[string]bool{}
	for _, t := range c.GetTargets() {
		if t.GetNetwork() == name {
			in[t.GetAddress()] = true
		}
	}
	if target != "" && !in[target] {
		return nil, fmt.Errorf("target: %s is not in network %s", target, name)
	}
	return in, nil
}

// resultsData answers GET /api/campaigns/NAME/results: the stored results
// of the campaign that the query selects, oldest first.
func (s *Server) resultsData(w http.ResponseWriter, r *http.Request) {
	f, err := s.resultsFilterOf(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	name := r.PathValue("name")
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel() // also ends a stream left before its end
	c, err := s.cfg.Operator.GetCampaign(ctx, &vantagev1.GetCampaignRequest{Name: name})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req := &vantagev1.QueryResultsRequest{Campaign: name, AgentId: f.Agent, Target: f.Target, From: timestamppb.New(f.From),
		To: timestamppb.New(f.To), Limit: uint32(f.Limit + 1)} // one more says whether there are more
	var in map[string]bool // the network's addresses, when the server filters
	if f.Network != "" {
		nt, err := networkTargets(c, f.Network, f.Target)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if f.Target == "" {
			in, req.Limit = nt, ResultsScan
		}
	}
	stream, err := s.cfg.Operator.QueryResults(ctx, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := resultsJSON{Campaign: name, Agent: f.Agent, Target: f.Target, Network: f.Network, From: f.From, To: f.To, Limit: f.Limit,
		Results: []json.RawMessage{}, Names: map[string]string{}}
	agents := map[string]bool{}
	read := 0
	for {
		sr, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			out.Truncated = in != nil && read >= ResultsScan
			break
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		read++
		if in != nil && !in[sr.GetResult().GetTarget()] {
			continue
		}
		if len(out.Results) == f.Limit {
			out.Truncated = true
			break
		}
		b, err := marshal.Marshal(sr)
		if err != nil {
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("encode: %v", err))
			return
		}
		out.Results = append(out.Results, b)
		agents[sr.GetAgentId()] = true
	}
	if len(agents) > 0 {
		names, err := s.agentNames(ctx)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for id := range agents {
			if n := names[id]; n != "" {
				out.Names[id] = n
			}
		}
	}
	writeJSON(w, out)
}

// resultsPage is the raw results page's shell for the query in the URL
// (checked as the endpoint checks it, the network against the campaign);
// the script fills the table.
func (s *Server) resultsPage(w http.ResponseWriter, r *http.Request) {
	f, err := s.resultsFilterOf(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if f.Network != "" {
		ctx, cancel := s.call(r, sessionOf(r))
		defer cancel()
		c, err := s.cfg.Operator.GetCampaign(ctx, &vantagev1.GetCampaignRequest{Name: r.PathValue("name")})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if _, err := networkTargets(c, f.Network, f.Target); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	q := r.URL.Query()
	render(w, http.StatusOK, "results", struct {
		Name, Agent, Target, Network, From, To, Limit string
		Start, End                                    string
	}{r.PathValue("name"), q.Get("agent"), q.Get("target"), q.Get("network"), q.Get("from"), q.Get("to"), q.Get("limit"),
		f.From.Format(time.RFC3339), f.To.Format(time.RFC3339)})
}

// agentNames is every agent's name by id (the API pages them; at most
// maxNamePages pages are read).
func (s *Server) agentNames(ctx context.Context) (map[string]string, error) {
	const maxNamePages = 10
	names := map[string]string{}
	token := ""
	for range maxNamePages {
		as, err := s.cfg.Operator.ListAgents(ctx, &vantagev1.ListAgentsRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		for _, a := range as.GetAgents() {
			names[a.GetId()] = a.GetName()
		}
		if token = as.GetNextPageToken(); token == "" {
			break
		}
	}
	return names, nil
}
