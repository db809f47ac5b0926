package web

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// episodeOf reads the episode view of window q ("from=...&to=...").
func episodeOf(t *testing.T, b *env, q string) episodeViewJSON {
	t.Helper()
	c := browser(t, b.web)
	login(t, b.web, c, "viewer-secret")
	code, body := page(t, c, b.web.URL+"/api/campaigns/kp/episode?"+q)
	var v episodeViewJSON
	if err := json.Unmarshal([]byte(body), &v); err != nil || code != http.StatusOK {
		t.Fatalf("episode view: %d %v %.300s", code, err, body)
	}
	return v
}

// evidenceFor is the evidence of verdict id's transition into state to.
func evidenceFor(t *testing.T, v episodeViewJSON, id, to string) evidenceJSON {
	t.Helper()
	for _, ev := range v.Evidence {
		if ev.VerdictID == id && ev.To == to {
			return ev
		}
	}
	t.Fatalf("no evidence of %s into %s in %+v", id, to, v.Evidence)
	return evidenceJSON{}
}

// The episode view carries, per transition, what the evidence section
// shows: cause and its evidence, location, children, and a row per
// vantage with its health while the verdict is still in that state, the
// quality series over the transition's rounds and a link to its raw
// results, which gives those results.
func TestEpisodeEvidence(t *testing.T) {
	b := outageBed(t, 14)
	v := episodeOf(t, b, "from=2014-12-22T15:00:00Z&to=2014-12-22T15:30:00Z")
	if len(v.Evidence) != len(v.Transitions) || len(v.Transitions) == 0 {
		t.Fatalf("%d evidence entries for %d transitions, want one each", len(v.Evidence), len(v.Transitions))
	}
	for _, raw := range v.Transitions {
		var tr struct{ ID string }
		json.Unmarshal(raw, &tr)
		if ev, ok := v.Evidence[tr.ID]; !ok || fmt.Sprint(ev.TransitionID) != tr.ID {
			t.Errorf("transition %s: evidence %+v, want it under its id", tr.ID, ev)
		}
	}

	down := evidenceFor(t, v, "kp/network/net0", "UNREACHABLE")
	if down.Level != "NETWORK" || down.Subject != "net0" || down.Cause != "UNDETERMINED" || len(down.CauseEvidence) == 0 ||
		down.Location != "LOCATING" || len(down.DownChildren) != 1 || down.DownChildren[0] != "198.18.0.10" || len(down.UpChildren) != 0 {
		t.Errorf("net0 down: %+v, want the network's cause with its evidence, LOCATING, 198.18.0.10 down", down)
	}
	if down.HealthAsOf == nil || !down.HealthAsOf.Equal(b.clock.Now()) {
		t.Errorf("net0 down: health as of %v, want the current verdict's evaluation (it is still UNREACHABLE)", down.HealthAsOf)
	}
	if len(down.Vantages) != 2 {
		t.Fatalf("net0 down: %d vantages, want 2: %+v", len(down.Vantages), down.Vantages)
	}
	for i, id := range []string{agentA, agentB} {
		r := down.Vantages[i]
		if r.Agent != id || r.Name != id || r.Verdict == nil || !r.Verdict.Healthy || r.Verdict.State != "UNREACHABLE" ||
			r.Verdict.TargetsDown != 1 || r.Verdict.TargetsUp != 0 || r.Verdict.LastRound != 13 {
			t.Errorf("net0 down, vantage %d: %+v %+v, want %s healthy, UNREACHABLE, 0 up 1 down, last round 13", i, r, r.Verdict, id)
		}
		if r.Quality != nil {
			t.Errorf("net0 down, %s: quality %+v, want none (nobody got an answer from net0)", id, r.Quality)
		}
	}
	want := "/campaigns/kp/results?agent=" + agentA + "&from=2014-12-22T15%3A08%3A02Z&network=net0&to=2014-12-22T15%3A11%3A21Z"
	if down.Vantages[0].ResultsURL != want {
		t.Errorf("net0 down, a1's link %q, want %q (a round before onset_earliest to detected_at)", down.Vantages[0].ResultsURL, want)
	}

	scope := evidenceFor(t, v, "kp/scope/KP", "DEGRADED")
	if scope.Reason != "PARTIAL" || len(scope.UpChildren) != 1 || scope.UpChildren[0] != "net1" || scope.DownChildren[0] != "net0" ||
		scope.HealthAsOf == nil || len(scope.Vantages) != 2 {
		t.Fatalf("scope degraded: %+v, want PARTIAL, net1 up, net0 down, the current verdict's two vantages", scope)
	}
	if q := scope.Vantages[1].Quality; q == nil || q.Loss != 0 || q.RTTP50 != 21 || q.Rounds != 3 || q.Probes != 3 {
		t.Errorf("scope degraded, a2's quality %+v, want 3 rounds of net1 answered at 21 ms", q)
	}
	if r := scope.Vantages[0]; r.Verdict == nil || r.Verdict.State != "DEGRADED" || r.Verdict.TargetsUp != 1 || r.Verdict.TargetsDown != 1 {
		t.Errorf("scope degraded, a1: %+v, want DEGRADED, 1 up 1 down", r.Verdict)
	}

	// A transition the verdict has left keeps its series, not today's health.
	was := evidenceFor(t, v, "kp/network/net0", "REACHABLE")
	if was.HealthAsOf != nil || len(was.Vantages) != 2 || was.Vantages[0].Verdict != nil {
		t.Errorf("net0 reachable (since left): %+v, want no health (the verdict is UNREACHABLE now)", was)
	}
	if q := was.Vantages[0].Quality; q == nil || q.Loss != 0 || q.RTTP50 != 20 || q.FirstTryAnswers != q.Probes || q.Answers["icmp"] == 0 {
		t.Errorf("net0 reachable, a1's quality %+v, want answered at 20 ms", q)
	}

	// The link gives the raw results it names.
	c := browser(t, b.web)
	login(t, b.web, c, "viewer-secret")
	rs := resultsOf(t, c, b.web.URL+"/api"+down.Vantages[0].ResultsURL, http.StatusOK)
	if len(rs.Results) != 3 || rs.Truncated {
		t.Fatalf("a1's net0 results over the transition: %d (truncated %v), want rounds 9 to 11", len(rs.Results), rs.Truncated)
	}
	for _, sr := range storedOf(t, rs) {
		if sr.GetAgentId() != agentA || sr.GetResult().GetTarget() != "198.18.0.10" || sr.GetResult().GetOutcome() != vantagev1.Outcome_OUTCOME_TIMEOUT {
			t.Errorf("linked result %v, want a1's timeouts to 198.18.0.10", sr)
		}
	}
	if code, body := page(t, c, b.web.URL+down.Vantages[0].ResultsURL); code != http.StatusOK || !strings.Contains(body, `value="`+agentA+`"`) {
		t.Errorf("the linked page: %d %.300s", code, body)
	}
}

// evidenceOf in full: the router with its role, name and AS, the cause
// with its BGP finding, the upstreams, the current verdict's view of each
// vantage, a vantage known only from the series, and the scope's series
// pooled over its networks.
func TestEvidenceOf(t *testing.T) {
	at := func(sec int) *timestamppb.Timestamp { return timestamppb.New(t0.Add(time.Duration(sec) * time.Second)) }
	tr := &vantagev1.Transition{Id: 7, Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, Subject: "KP", VerdictId: "kp/scope/KP",
		From: vantagev1.State_STATE_REACHABLE, To: vantagev1.State_STATE_UNREACHABLE, OnsetEarliest: at(100), OnsetLatest: at(160),
		DetectedAt: at(230), Location: vantagev1.Location_LOCATION_UPSTREAM, DownChildren: []string{"net0", "net1"},
		LocationHop: &vantagev1.Router{Address: "198.51.100.42", Role: vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, Name: "unicom", Asn: 64501},
		Cause: &vantagev1.CauseFinding{Cause: vantagev1.Cause_CAUSE_UPSTREAM, Confidence: 0.9, Evidence: []string{"upstream 198.51.100.42 answers from 2 of 2 vantages"},
			Bgp: &vantagev1.BgpEvidence{Finding: vantagev1.BgpFinding_BGP_FINDING_ANNOUNCED, Prefixes: []*vantagev1.BgpPrefixState{{Visible: true}}, Summary: []string{"198.18.0.0/24 announced"}}},
		Upstreams: []*vantagev1.UpstreamView{{Name: "unicom", Addresses: []string{"198.51.100.42"}, Dead: true, NetworksDown: []string{"net0", "net1"}}}}
	v := &vantagev1.Verdict{Id: "kp/scope/KP", State: vantagev1.State_STATE_UNREACHABLE, OnsetLatest: at(160), EvaluatedAt: at(600),
		Evidence: []*vantagev1.VantageEvidence{{AgentId: "agt-b", AgentName: "beijing", Reason: "no fresh data", State: vantagev1.State_STATE_UNKNOWN, LastRound: 2}}}
	point := func(agent, network string, sec int, probes, first uint32, p50 float64) *vantagev1.QualityPoint {
		return &vantagev1.QualityPoint{AgentId: agent, Network: network, Round: int64(sec / 60), RoundStart: at(sec), Probes: probes,
			FirstTryAnswers: first, RttP50Ms: p50, RttP90Ms: 2 * p50}
	}
	in := evidenceInput{campaign: "kp", round: time.Minute, verdicts: map[string]*vantagev1.Verdict{v.Id: v},
		names: map[string]string{"agt-a": "seoul", "agt-b": "old-name"}, points: []*vantagev1.QualityPoint{
			point("agt-a", "net0", 60, 4, 3, 10), point("agt-a", "net1", 60, 4, 1, 30), point("agt-a", "net0", 120, 4, 0, 0),
			point("agt-a", "net0", 0, 4, 4, 99), // before the window: left out
		}}
	ev := evidenceOf(tr, in)
	if ev.Router == nil || *ev.Router != (routerJSON{Address: "198.51.100.42", Role: "UPSTREAM", Name: "unicom", ASN: 64501}) {
		t.Errorf("router %+v, want upstream unicom 198.51.100.42 AS64501", ev.Router)
	}
	if ev.Cause != "UPSTREAM" || ev.Confidence != 0.9 || len(ev.CauseEvidence) != 1 || ev.BGP != "announced 1/1" || len(ev.BGPSummary) != 1 {
		t.Errorf("cause %q %v %v bgp %q %v", ev.Cause, ev.Confidence, ev.CauseEvidence, ev.BGP, ev.BGPSummary)
	}
	if len(ev.Upstreams) != 1 || !ev.Upstreams[0].Dead || ev.Location != "UPSTREAM" || ev.HealthAsOf == nil || !ev.HealthAsOf.Equal(t0.Add(600*time.Second)) {
		t.Errorf("upstreams %+v location %q health as of %v", ev.Upstreams, ev.Location, ev.HealthAsOf)
	}
	if !ev.ResultsFrom.Equal(t0.Add(40*time.Second)) || !ev.ResultsTo.Equal(t0.Add(230*time.Second)) ||
		ev.ResultsURL != "/campaigns/kp/results?from=2014-12-22T16%3A00%3A40Z&to=2014-12-22T16%3A03%3A50Z" {
		t.Errorf("results %v to %v at %q, want a round before onset_earliest to detected_at, every vantage", ev.ResultsFrom, ev.ResultsTo, ev.ResultsURL)
	}
	if len(ev.Vantages) != 2 {
		t.Fatalf("vantages %+v, want agt-b (the verdict's) and agt-a (the series')", ev.Vantages)
	}
	bj, a := ev.Vantages[0], ev.Vantages[1] // by name: beijing, seoul
	if bj.Agent != "agt-b" || bj.Name != "beijing" || bj.Verdict == nil || bj.Verdict.Healthy || bj.Verdict.Reason != "no fresh data" || bj.Quality != nil {
		t.Errorf("agt-b %+v %+v, want unhealthy, no fresh data, named as the verdict names it, no series", bj, bj.Verdict)
	}
	if a.Agent != "agt-a" || a.Name != "seoul" || a.Verdict != nil || a.Quality == nil {
		t.Fatalf("agt-a %+v, want the series only", a)
	}
	if q := a.Quality; q.Rounds != 2 || q.Probes != 12 || q.FirstTryAnswers != 4 || math.Abs(q.Loss-(1-4.0/12)) > 1e-9 || q.RTTP50 != 20 || q.RTTP90 != 40 {
		t.Errorf("agt-a's quality %+v, want rounds 1 and 2 of both networks: 4 of 12, RTT the median of 10 and 30", q)
	}
	if !strings.Contains(a.ResultsURL, "agent=agt-a&") || strings.Contains(a.ResultsURL, "network=") {
		t.Errorf("agt-a's link %q, want its results of the whole scope", a.ResultsURL)
	}

	// Moved on: the same transition, the verdict now REACHABLE.
	v.State = vantagev1.State_STATE_REACHABLE
	if ev := evidenceOf(tr, in); ev.HealthAsOf != nil || ev.Vantages[0].Verdict != nil {
		t.Errorf("after the verdict moved on: %+v, want no health", ev)
	}
}

func TestResultsWindow(t *testing.T) {
	at := func(sec float64) *timestamppb.Timestamp {
		return timestamppb.New(t0.Add(time.Duration(sec * float64(time.Second))))
	}
	for _, c := range []struct {
		name     string
		tr       *vantagev1.Transition
		round    time.Duration
		from, to float64 // seconds after t0
	}{
		{"a round before the onset to detection", &vantagev1.Transition{OnsetEarliest: at(100), OnsetLatest: at(160), DetectedAt: at(230)}, time.Minute, 40, 230},
		{"whole seconds outward", &vantagev1.Transition{OnsetEarliest: at(100.5), DetectedAt: at(230.2)}, time.Minute, 40, 231},
		{"no onset: two rounds before detection", &vantagev1.Transition{DetectedAt: at(600)}, time.Minute, 420, 600},
		{"no round known: a minute", &vantagev1.Transition{OnsetEarliest: at(100), DetectedAt: at(230)}, 0, 40, 230},
		{"a refinement long after its onset: MaxWindow", &vantagev1.Transition{OnsetEarliest: at(0), DetectedAt: at(40 * 86400)}, time.Minute,
			40*86400 - MaxWindow.Seconds(), 40 * 86400},
	} {
		from, to := resultsWindow(c.tr, c.round)
		if !from.Equal(t0.Add(time.Duration(c.from)*time.Second)) || !to.Equal(t0.Add(time.Duration(c.to)*time.Second)) {
			t.Errorf("%s: %v to %v, want +%vs to +%vs", c.name, from, to, c.from, c.to)
		}
	}
}

func TestSpans(t *testing.T) {
	w := func(a, b int) [2]time.Time {
		return [2]time.Time{t0.Add(time.Duration(a) * time.Minute), t0.Add(time.Duration(b) * time.Minute)}
	}
	got := spans([][2]time.Time{w(10, 12), w(0, 3), w(2, 5), w(5, 6), w(11, 11)})
	if len(got) != 2 || got[0] != w(0, 6) || got[1] != w(10, 12) {
		t.Errorf("spans %v, want 0-6 and 10-12", got)
	}
	var many [][2]time.Time
	for i := range maxSeriesSpans + 1 {
		many = append(many, w(10*i, 10*i+1))
	}
	if got := spans(many); len(got) != 1 || got[0] != w(0, 10*maxSeriesSpans+1) {
		t.Errorf("%d windows apart: %v, want one span over them all", len(many), got)
	}
}
