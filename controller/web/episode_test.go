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
	const ix, transit, unicom, host, host2 = "198.51.100.1", "198.51.100.26", "198.51.100.42", "198.18.0.10", "198.18.0.11"
	g := pathGraph([]*vantagev1.StoredResult{
		// c: unicom went silent (its "unreachable" answers rate-limited): the
		// newest trace ends at transit, the one before went on to unicom.
		trace("c", host, 12, vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT, ix, transit, "", ""),
		trace("c", host, 2, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, ix, transit, unicom, host),
		trace("c", host, 1, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, ix, "198.51.100.99", host), // older, another path
		// d: no earlier trace of its own to host2; c's to host, in the same
		// network, went past transit to unicom.
		trace("d", host2, 12, vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT, ix, transit),
		// e: two hosts of net0 the same way: one path, count 2.
		trace("e", host, 12, vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE, ix, unicom),
		trace("e", host2, 13, vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE, ix, unicom),
		trace("a", host, 0, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, ix, unicom, host), // older: replaced
		trace("a", host, 10, vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE, ix, "", unicom),
		trace("b", host, 5, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, ix, unicom, host),
		{AgentId: "b", Result: &vantagev1.ProbeResult{Target: host, Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO}}, // not a trace
	}, map[string]*vantagev1.Router{unicom: {Address: unicom, Role: vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, Name: "unicom", Asn: 64501}}, map[string]string{host: "net0", host2: "net0"})
	if len(g.Paths) != 5 {
		t.Fatalf("%d paths, want a's, b's, c's and d's newest, and e's two merged: %+v", len(g.Paths), g.Paths)
	}
	a, b, c, d, e := g.Paths[0], g.Paths[1], g.Paths[2], g.Paths[3], g.Paths[4]
	if e.Agent != "e" || e.Count != 2 || e.Target != "net:net0" || e.At != t0.Add(13*time.Second).Unix() || a.Count != 1 {
		t.Errorf("e's path %+v, want net0's two hosts merged (count 2, the newest time)", e)
	}
	if d.Agent != "d" || d.LastHop != transit || d.DiesAt != unicom {
		t.Errorf("d's path %+v, want: dies at unicom, from c's trace into the same network", d)
	}
	if a.Agent != "a" || a.Reached || a.LastHop != unicom || len(a.Hops) != 2 || a.Stop != "UNREACHABLE" || a.DiesAt != "" {
		t.Errorf("a's path %+v, want its newest: ends at unicom (which answered) after 2 responding hops", a)
	}
	if c.Agent != "c" || c.Reached || c.LastHop != transit || c.DiesAt != unicom {
		t.Errorf("c's path %+v, want: last answer from transit, dies at unicom (the next hop of c's trace before)", c)
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
	if n := nodes["net:net0"]; len(nodes) != 9 || nodes[transit].Kind != "hop" || nodes["agent:a"].Kind != "vantage" ||
		n.Kind != "network" || n.Name != "net0" || n.Targets != 2 {
		t.Errorf("nodes %+v, want 5 vantages, 3 hops and net0 with its 2 hosts", g.Nodes)
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
