package web

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
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
	ID   string `json:"id"`   // "agent:<id>", or the address
	Kind string `json:"kind"` // vantage, hop, target
	Role string `json:"role,omitempty"`
	Name string `json:"name,omitempty"`
	ASN  uint32 `json:"asn,omitempty"`
}

type pathJSON struct {
	Agent   string   `json:"agent"`
	Target  string   `json:"target"`
	Hops    []string `json:"hops"` // responding hops in TTL order
	Reached bool     `json:"reached"`
	LastHop string   `json:"last_hop,omitempty"`
	Stop    string   `json:"stop"`
	At      int64    `json:"at"` // Unix seconds
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
	evidence, cut, err := s.transitionEvidence(ctx, name, ts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out.Evidence = evidence
	if cut {
		out.Truncated = append(out.Truncated, "series")
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
	out.Graph = pathGraph(results, routers)
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
func pathGraph(results []*vantagev1.StoredResult, routers map[string]*vantagev1.Router) pathGraphJSON {
	newest := map[[2]string]*vantagev1.StoredResult{}
	for _, sr := range results {
		res := sr.GetResult()
		if res.GetKind() != vantagev1.ProbeKind_PROBE_KIND_TRACE {
			continue
		}
		k := [2]string{sr.GetAgentId(), res.GetTarget()}
		if o := newest[k]; o == nil || o.GetResult().GetSentAt().AsTime().Before(res.GetSentAt().AsTime()) {
			newest[k] = sr
		}
	}
	g := pathGraphJSON{Nodes: []pathNodeJSON{}, Paths: []pathJSON{}}
	seen := map[string]bool{}
	node := func(n pathNodeJSON) {
		if seen[n.ID] {
			return
		}
		seen[n.ID] = true
		if rt := routers[n.ID]; rt != nil {
			n.Role = strings.TrimPrefix(rt.GetRole().String(), "TARGET_ROLE_")
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
	for _, k := range keys {
		res := newest[k].GetResult()
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
		node(pathNodeJSON{ID: k[1], Kind: "target"})
		g.Paths = append(g.Paths, p)
	}
	return g
}
