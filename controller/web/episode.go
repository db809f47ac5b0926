package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// EpisodeTraces bounds the results an episode page reads for its path
// graph (the newest trace of each vantage and target is drawn).
const EpisodeTraces = 20000

// episodeViewJSON is the episode page's data: its transitions with their
// evidence, the path graph of the traces in its window, and the BGP
// updates in it.
type episodeViewJSON struct {
	Campaign    string            `json:"campaign"`
	From        time.Time         `json:"from"`
	To          time.Time         `json:"to"`
	Transitions []json.RawMessage `json:"transitions"`
	Graph       pathGraphJSON     `json:"graph"`
	BGPUpdates  []json.RawMessage `json:"bgp_updates"`
	// Evidence is each transition's evidence (evidence.go), by its id.
	Evidence map[string]evidenceJSON `json:"evidence"`
	// Truncated names what was cut at its bound ("traces", "bgp",
	// "series").
	Truncated []string `json:"truncated,omitempty"`
}

// pathGraphJSON is every vantage's newest trace to each target as a
// graph: nodes are vantages, responding hops and targets; each path says
// where it ended and whether it reached its target.
type pathGraphJSON struct {
	Nodes []pathNodeJSON `json:"nodes"`
	Paths []pathJSON     `json:"paths"`
}

type pathNodeJSON struct {
	ID   string `json:"id"`   // "agent:<id>", "net:<network>", or the address
	Kind string `json:"kind"` // vantage, hop, target, network
	// Targets: a network's hosts that have a path in the graph.
	Targets int    `json:"targets,omitempty"`
	Role    string `json:"role,omitempty"`
	Name    string `json:"name,omitempty"`
	ASN     uint32 `json:"asn,omitempty"`
}

// pathJSON is one way a vantage's newest traces went. The hosts of the
// campaign's networks are merged: Target is then "net:<network>", and
// Count says how many of its hosts' traces went this way (a country has
// tens of thousands of hosts, and few distinct paths to them).
type pathJSON struct {
	Agent   string   `json:"agent"`
	Target  string   `json:"target"` // the target's address, or "net:<network>"
	Count   int      `json:"count"`
	Hops    []string `json:"hops"` // responding hops in TTL order
	Reached bool     `json:"reached"`
	LastHop string   `json:"last_hop,omitempty"`
	// DiesAt, on a path that did not reach its target, is the router that
	// stopped answering: the hop after LastHop on this vantage's last
	// earlier trace to the target that went past LastHop (a router that
	// drops, or whose "unreachable" answers are rate-limited, is silent in
	// the trace itself). Empty when no earlier trace says.
	DiesAt string `json:"dies_at,omitempty"`
	Stop   string `json:"stop"`
	At     int64  `json:"at"` // Unix seconds
}

func (s *Server) episodeView(w http.ResponseWriter, r *http.Request) {
	from, to, ok := s.windowOf(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel()
	out := episodeViewJSON{Campaign: name, From: from, To: to, Transitions: []json.RawMessage{}, BGPUpdates: []json.RawMessage{},
		Graph: pathGraphJSON{Nodes: []pathNodeJSON{}, Paths: []pathJSON{}}}
	routers := map[string]*vantagev1.Router{}
	var ts []*vantagev1.Transition
	for _, lv := range []vantagev1.Level{vantagev1.Level_LEVEL_SCOPE, vantagev1.Level_LEVEL_NETWORK} {
		tl, err := s.cfg.Operator.GetTimeline(ctx, &vantagev1.GetTimelineRequest{Campaign: name, Level: lv,
			From: timestamppb.New(from), To: timestamppb.New(to)})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, tr := range tl.GetTransitions() {
			if h := tr.GetLocationHop(); h.GetAddress() != "" {
				routers[h.GetAddress()] = h
			}
			b, err := marshal.Marshal(tr)
			if err != nil {
				writeError(w, http.StatusInternalServerError, err.Error())
				return
			}
			out.Transitions = append(out.Transitions, b)
			ts = append(ts, tr)
		}
	}
	// One read of the campaign serves the evidence (its round) and the
	// graph (its routers, its networks' hosts).
	c, err := s.cfg.Operator.GetCampaign(ctx, &vantagev1.GetCampaignRequest{Name: name})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	evidence, cut, err := s.transitionEvidence(ctx, c, ts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out.Evidence = evidence
	if cut {
		out.Truncated = append(out.Truncated, "series")
	}
	// The campaign's own routers (upstreams, borders) give the graph's
	// hops their role and name where no verdict named them.
	for _, t := range c.GetTargets() {
		if t.GetRole() == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || t.GetRole() == vantagev1.TargetRole_TARGET_ROLE_BORDER {
			if routers[t.GetAddress()] == nil {
				routers[t.GetAddress()] = &vantagev1.Router{Address: t.GetAddress(), Role: t.GetRole(), Name: t.GetName()}
			}
		}
	}
	rs, err := s.cfg.Operator.QueryResults(ctx, &vantagev1.QueryResultsRequest{Campaign: name, From: timestamppb.New(from),
		To: timestamppb.New(to), Limit: EpisodeTraces})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var results []*vantagev1.StoredResult
	for {
		sr, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		results = append(results, sr)
	}
	if len(results) >= EpisodeTraces {
		out.Truncated = append(out.Truncated, "traces")
	}
	networkOf := map[string]string{}
	for _, t := range c.GetTargets() {
		networkOf[t.GetAddress()] = t.GetNetwork()
	}
	out.Graph = pathGraph(results, routers, networkOf)
	bu, err := s.cfg.Operator.ListBgpUpdates(ctx, &vantagev1.ListBgpUpdatesRequest{Campaign: name, From: timestamppb.New(from),
		To: timestamppb.New(to), Limit: 1000})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for {
		u, err := bu.Recv()
		if err != nil {
			break // io.EOF, or an error after some updates: show what came
		}
		b, err := marshal.Marshal(u)
		if err == nil {
			out.BGPUpdates = append(out.BGPUpdates, b)
		}
	}
	if len(out.BGPUpdates) >= 1000 {
		out.Truncated = append(out.Truncated, "bgp")
	}
	writeJSON(w, out)
}

// pathGraph keeps each vantage's newest trace to each target and builds
// the graph; routers the verdicts named give hops their role, name and AS.
//
// A dead path's DiesAt comes from the traces that went past its last
// answer: first this vantage's earlier traces to the same target, then
// its traces to the target's network (networkOf: target -> network), then
// any vantage's traces to that network.
func pathGraph(results []*vantagev1.StoredResult, routers map[string]*vantagev1.Router, networkOf map[string]string) pathGraphJSON {
	var all []*vantagev1.StoredResult
	for _, sr := range results {
		if sr.GetResult().GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE {
			all = append(all, sr)
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		return all[i].GetResult().GetSentAt().AsTime().Before(all[j].GetResult().GetSentAt().AsTime())
	})
	traces := map[[2]string][]*vantagev1.ProbeResult{}     // per vantage and target, oldest first
	byAgentNet := map[[2]string][]*vantagev1.ProbeResult{} // per vantage and network
	byNet := map[string][]*vantagev1.ProbeResult{}
	for _, sr := range all {
		res := sr.GetResult()
		traces[[2]string{sr.GetAgentId(), res.GetTarget()}] = append(traces[[2]string{sr.GetAgentId(), res.GetTarget()}], res)
		if nw := networkOf[res.GetTarget()]; nw != "" {
			byAgentNet[[2]string{sr.GetAgentId(), nw}] = append(byAgentNet[[2]string{sr.GetAgentId(), nw}], res)
			byNet[nw] = append(byNet[nw], res)
		}
	}
	newest := map[[2]string]*vantagev1.ProbeResult{}
	for k, ts := range traces {
		newest[k] = ts[len(ts)-1]
	}
	g := pathGraphJSON{Nodes: []pathNodeJSON{}, Paths: []pathJSON{}}
	seen := map[string]bool{}
	node := func(n pathNodeJSON) {
		if seen[n.ID] {
			return
		}
		seen[n.ID] = true
		if rt := routers[n.ID]; rt != nil {
			if rt.GetRole() != vantagev1.TargetRole_TARGET_ROLE_UNSPECIFIED {
				n.Role = strings.TrimPrefix(rt.GetRole().String(), "TARGET_ROLE_")
			}
			n.Name, n.ASN = rt.GetName(), rt.GetAsn()
		}
		g.Nodes = append(g.Nodes, n)
	}
	keys := make([][2]string, 0, len(newest))
	for k := range newest {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || (keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1])
	})
	merged := map[string]int{} // path key -> index in g.Paths
	hosts := map[string]map[string]bool{}
	var nets []string // in order of first appearance
	for _, k := range keys {
		res := newest[k]
		p := pathJSON{Agent: k[0], Target: k[1], Hops: []string{}, Stop: strings.TrimPrefix(res.GetStopReason().String(), "TRACE_STOP_REASON_"),
			At: res.GetSentAt().AsTime().Unix()}
		node(pathNodeJSON{ID: "agent:" + k[0], Kind: "vantage", Name: k[0]})
		for _, h := range res.GetHops() {
			if h.GetAddr() == "" {
				continue
			}
			if h.GetAddr() == k[1] {
				p.Reached = true
				continue
			}
			p.Hops = append(p.Hops, h.GetAddr())
			node(pathNodeJSON{ID: h.GetAddr(), Kind: "hop"})
		}
		if res.GetStopReason() == vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED {
			p.Reached = true
		}
		if n := len(p.Hops); n > 0 {
			p.LastHop = p.Hops[n-1]
		}
		// A router that answered "unreachable" is where the path ends; one
		// that ended in silence went on to a router that did not answer.
		if !p.Reached && res.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE {
			ts, nw := traces[k], networkOf[k[1]]
			if p.DiesAt = diesAt(p, ts[:len(ts)-1], byAgentNet[[2]string{k[0], nw}], byNet[nw]); p.DiesAt != "" {
				node(pathNodeJSON{ID: p.DiesAt, Kind: "hop"})
			}
		}
		if nw := networkOf[k[1]]; nw != "" {
			p.Target = "net:" + nw
			if hosts[nw] == nil {
				hosts[nw] = map[string]bool{}
				nets = append(nets, nw)
			}
			hosts[nw][k[1]] = true
		} else {
			node(pathNodeJSON{ID: k[1], Kind: "target"})
		}
		key := strings.Join([]string{p.Agent, p.Target, strings.Join(p.Hops, " "), strconv.FormatBool(p.Reached), p.DiesAt, p.Stop}, "|")
		if i, ok := merged[key]; ok {
			g.Paths[i].Count++
			g.Paths[i].At = max(g.Paths[i].At, p.At)
			continue
		}
		p.Count = 1
		merged[key] = len(g.Paths)
		g.Paths = append(g.Paths, p)
	}
	for _, nw := range nets {
		node(pathNodeJSON{ID: "net:" + nw, Kind: "network", Name: nw, Targets: len(hosts[nw])})
	}
	return g
}

// diesAt is the hop after p's last responding hop on the newest trace
// that went past it, looking in each group (oldest first) in turn: where p
// went silent.
func diesAt(p pathJSON, groups ...[]*vantagev1.ProbeResult) string {
	for _, g := range groups {
		if hop := diesAtIn(p, g); hop != "" {
			return hop
		}
	}
	return ""
}

func diesAtIn(p pathJSON, traces []*vantagev1.ProbeResult) string {
	for i := len(traces) - 1; i >= 0; i-- {
		var hops []string
		for _, h := range traces[i].GetHops() {
			if h.GetAddr() != "" {
				hops = append(hops, h.GetAddr())
			}
		}
		at := 0 // the index of the hop after LastHop
		if p.LastHop != "" {
			at = slices.Index(hops, p.LastHop) + 1
			if at == 0 {
				continue // that trace did not pass where p ended
			}
		}
		if at < len(hops) && hops[at] != traces[i].GetTarget() {
			return hops[at]
		}
	}
	return ""
}
