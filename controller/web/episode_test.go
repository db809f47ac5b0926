package web

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestPathGraph(t *testing.T) {
	trace := func(agent, target string, sec int, stop vantagev1.TraceStopReason, hops ...string) *vantagev1.StoredResult {
		res := &vantagev1.ProbeResult{Target: target, Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, StopReason: stop,
			SentAt: timestamppb.New(t0.Add(time.Duration(sec) * time.Second))}
		for i, h := range hops {
			res.Hops = append(res.Hops, &vantagev1.Hop{Ttl: uint32(i + 1), Addr: h})
		}
		return &vantagev1.StoredResult{AgentId: agent, Result: res}
	}
	const ix, unicom, host = "198.51.100.1", "198.51.100.42", "198.18.0.10"
	g := pathGraph([]*vantagev1.StoredResult{
		trace("a", host, 0, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, ix, unicom, host), // older: replaced
		trace("a", host, 10, vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE, ix, "", unicom),
		trace("b", host, 5, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, ix, unicom, host),
		{AgentId: "b", Result: &vantagev1.ProbeResult{Target: host, Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO}}, // not a trace
	}, map[string]*vantagev1.Router{unicom: {Address: unicom, Role: vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, Name: "unicom", Asn: 64501}})
	if len(g.Paths) != 2 {
		t.Fatalf("%d paths, want a's newest and b's: %+v", len(g.Paths), g.Paths)
	}
	a, b := g.Paths[0], g.Paths[1]
	if a.Agent != "a" || a.Reached || a.LastHop != unicom || len(a.Hops) != 2 || a.Stop != "UNREACHABLE" {
		t.Errorf("a's path %+v, want its newest: dies at unicom after 2 responding hops", a)
	}
	if !b.Reached || b.LastHop != unicom || len(b.Hops) != 2 {
		t.Errorf("b's path %+v, want reached, hops ix and unicom (the target is a node, not a hop)", b)
	}
	nodes := map[string]pathNodeJSON{}
	for _, n := range g.Nodes {
		nodes[n.ID] = n
	}
	if n := nodes[unicom]; n.Role != "UPSTREAM" || n.Name != "unicom" || n.ASN != 64501 || n.Kind != "hop" {
		t.Errorf("unicom's node %+v, want an UPSTREAM hop named unicom, AS64501", n)
	}
	if len(nodes) != 5 || nodes["agent:a"].Kind != "vantage" || nodes[host].Kind != "target" {
		t.Errorf("nodes %+v, want 2 vantages, 2 hops and the target", g.Nodes)
	}
}

func TestEpisodeView(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	login(t, web, c, "viewer-secret")
	resp, err := c.Get(web.URL + "/api/campaigns/kp/episode?from=2014-12-22T15:00:00Z&to=2014-12-22T17:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v episodeViewJSON
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("episode view: %d %v", resp.StatusCode, err)
	}
	if v.Campaign != "kp" || v.Graph.Paths == nil || v.Transitions == nil || v.BGPUpdates == nil || v.Evidence == nil {
		t.Errorf("episode view %+v", v)
	}
}
