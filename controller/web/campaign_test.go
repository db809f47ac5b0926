package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestEpisodes(t *testing.T) {
	at := func(min int) *timestamppb.Timestamp { return timestamppb.New(t0.Add(time.Duration(min) * time.Minute)) }
	tr := func(id int64, min int, to vantagev1.State, loc vantagev1.Location, cause vantagev1.Cause) *vantagev1.Transition {
		return &vantagev1.Transition{Id: id, To: to, OnsetEarliest: at(min - 1), OnsetLatest: at(min), Location: loc,
			Cause:       &vantagev1.CauseFinding{Cause: cause, Confidence: 0.9},
			LocationHop: &vantagev1.Router{Address: "198.51.100.42", Name: "unicom", Asn: 64501}}
	}
	const (
		reach    = vantagev1.State_STATE_REACHABLE
		unstable = vantagev1.State_STATE_UNSTABLE
		down     = vantagev1.State_STATE_UNREACHABLE
		degraded = vantagev1.State_STATE_DEGRADED
		up       = vantagev1.Location_LOCATION_UPSTREAM
		none     = vantagev1.Location_LOCATION_NONE
	)
	es := episodes([]*vantagev1.Transition{
		tr(0, -10, vantagev1.State_STATE_UNKNOWN, vantagev1.Location_LOCATION_UNSPECIFIED, vantagev1.Cause_CAUSE_UNSPECIFIED), // starting: no episode
		tr(1, 0, reach, none, vantagev1.Cause_CAUSE_UNSPECIFIED),
		tr(2, 10, unstable, vantagev1.Location_LOCATION_UNSPECIFIED, vantagev1.Cause_CAUSE_UNDETERMINED),
		tr(3, 20, down, up, vantagev1.Cause_CAUSE_UPSTREAM),
		tr(4, 600, degraded, up, vantagev1.Cause_CAUSE_UPSTREAM),
		tr(5, 700, reach, none, vantagev1.Cause_CAUSE_UNSPECIFIED),
		tr(6, 800, degraded, vantagev1.Location_LOCATION_UNSPECIFIED, vantagev1.Cause_CAUSE_UNSPECIFIED),
	})
	if len(es) != 2 {
		t.Fatalf("%d episodes, want 2: %+v", len(es), es)
	}
	e := es[0]
	if e.ID != "2" || !e.From.Equal(t0.Add(10*time.Minute)) || e.To == nil || !e.To.Equal(t0.Add(700*time.Minute)) ||
		e.Worst != "UNREACHABLE" || e.Location != "UPSTREAM" || e.Upstream != "unicom" || e.UpstreamAS != 64501 || e.Cause != "UPSTREAM" {
		t.Errorf("first episode %+v, want 2: +10m to +700m, worst UNREACHABLE at UPSTREAM unicom AS64501, cause UPSTREAM", e)
	}
	if e := es[1]; e.ID != "6" || e.To != nil || e.Worst != "DEGRADED" {
		t.Errorf("second episode %+v, want 6, open, DEGRADED", e)
	}
}

func TestCampaignViewWindow(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	login(t, web, c, "viewer-secret")
	for q, want := range map[string]int{
		"": http.StatusOK,
		"?from=2014-12-22T00:00:00Z&to=2014-12-23T00:00:00Z": http.StatusOK,
		"?from=yesterday": http.StatusBadRequest,
		"?from=2014-12-23T00:00:00Z&to=2014-12-22T00:00:00Z": http.StatusBadRequest,
		"?from=2014-01-01T00:00:00Z&to=2014-12-22T00:00:00Z": http.StatusBadRequest,
	} {
		resp, err := c.Get(web.URL + "/api/campaigns/kp/view" + q)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("view%s: %d %v, want %d", q, resp.StatusCode, v["error"], want)
		}
		if want == http.StatusOK && (v["campaign"] != "kp" || v["episodes"] == nil || v["series"] == nil) {
			t.Errorf("view%s: %v", q, v)
		}
	}
}

// The campaign page's shell names the campaign and keeps the URL's window
// (a link shows the same view); a bad window is refused.
func TestCampaignPage(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	login(t, web, c, "viewer-secret")
	code, body := page(t, c, web.URL+"/campaigns/kp?from=2014-12-22T00:00:00Z&to=2014-12-23T00:00:00Z")
	if code != http.StatusOK || !strings.Contains(body, `data-campaign="kp"`) || !strings.Contains(body, `value="2014-12-22T00:00:00Z"`) {
		t.Errorf("campaign page: %d %.400s", code, body)
	}
	if code, _ := page(t, c, web.URL+"/campaigns/kp?from=soon"); code != http.StatusBadRequest {
		t.Errorf("campaign page with a bad window: %d, want 400", code)
	}
}

func TestEpisodePage(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	login(t, web, c, "viewer-secret")
	code, body := page(t, c, web.URL+"/campaigns/kp/episode?from=2014-12-22T07:00:00Z&to=2014-12-22T17:00:00Z")
	if code != http.StatusOK || !strings.Contains(body, `id="episode" data-campaign="kp"`) || !strings.Contains(body, `id="graph"`) {
		t.Errorf("episode page: %d %.400s", code, body)
	}
}

func TestSeriesNetworks(t *testing.T) {
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	band := func(min int, state string) bandJSON { return bandJSON{From: at(min), State: state} }
	names := []string{"a", "b", "c", "d", "e"}
	bands := map[string][]bandJSON{
		"b": {band(0, "REACHABLE"), band(30, "UNREACHABLE"), band(40, "REACHABLE")},
		"c": {band(0, "REACHABLE")},
		"d": {band(0, "REACHABLE"), band(10, "DEGRADED")},
		"e": {band(0, "UNKNOWN"), band(5, "REACHABLE")},
	}
	for _, c := range []struct {
		most         int
		picked, left string
	}{
		{2, "e,d", "a,b,c"},
		{4, "e,d,b,a", "c"},
		{9, "e,d,b,a,c", ""},
	} {
		picked, left := seriesNetworks(names, bands, c.most)
		if strings.Join(picked, ",") != c.picked || strings.Join(left, ",") != c.left {
			t.Errorf("at most %d: picked %v, left %v; want %s and %s", c.most, picked, left, c.picked, c.left)
		}
	}
	if picked, left := seriesNetworks(nil, nil, 12); picked == nil || left == nil {
		t.Errorf("no networks: picked %#v, left %#v; want empty lists (JSON [], not null)", picked, left)
	}
}

// seriesEnv is campaign kp of 14 networks (net0..net13) whose store holds
// an hour from t0: net13 down at +10 min, net7 degraded at +20, net3 down
// at +30, the others reachable; and three rounds of quality from two
// vantages for every network.
func seriesEnv(t *testing.T) (*env, *http.Client) {
	t.Helper()
	var prefixes []string
	for i := range 14 {
		prefixes = append(prefixes, fmt.Sprintf("198.18.%d.0/24", i))
	}
	spec := fixture.Campaign{Name: "kp", Networks: prefixes, Round: "1m", Start: t0.Format(time.RFC3339)}.YAML()
	fill := func(db *sqlite.DB) {
		ctx := context.Background()
		tr := func(network string, min int, from, to vantagev1.State) *vantagev1.Transition {
			at := timestamppb.New(t0.Add(time.Duration(min) * time.Minute))
			return &vantagev1.Transition{Campaign: "kp", Level: vantagev1.Level_LEVEL_NETWORK, Subject: network, VerdictId: "kp/network/" + network,
				Round: int64(min), From: from, To: to, OnsetEarliest: at, OnsetLatest: at, DetectedAt: at}
		}
		var ts []*vantagev1.Transition
		var ps []*vantagev1.QualityPoint
		for i := range 14 {
			nw := fmt.Sprintf("net%d", i)
			ts = append(ts, tr(nw, 1, vantagev1.State_STATE_UNSPECIFIED, vantagev1.State_STATE_REACHABLE))
			for n := range int64(3) {
				for _, ag := range []string{"agt-a", "agt-b"} {
					ps = append(ps, &vantagev1.QualityPoint{Campaign: "kp", Network: nw, AgentId: ag, Round: n,
						RoundStart: timestamppb.New(t0.Add(time.Duration(n) * time.Minute)), Probes: 1, FirstTryAnswers: 1, RttP50Ms: 20})
				}
			}
		}
		ts = append(ts, tr("net13", 10, vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_UNREACHABLE),
			tr("net7", 20, vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_DEGRADED),
			tr("net3", 30, vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_UNREACHABLE))
		if err := db.AddTransitions(ctx, ts); err != nil {
			t.Fatal(err)
		}
		if err := db.AddQualityPoints(ctx, ps); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, envOptions{now: t0.Add(time.Hour), campaigns: map[string]string{"kp": spec}, fill: fill})
	c := browser(t, e.web)
	login(t, e.web, c, "viewer-secret")
	return e, c
}

// The view ships the series of 12 networks, those that left REACHABLE
// first, names all 14 and says which 2 it left out.
func TestCampaignViewSeries(t *testing.T) {
	e, c := seriesEnv(t)
	window := "?from=" + t0.Format(time.RFC3339) + "&to=" + t0.Add(time.Hour).Format(time.RFC3339)
	var v campaignViewJSON
	if code, msg := getJSON(t, c, e.web.URL+"/api/campaigns/kp/view"+window, &v); code != http.StatusOK {
		t.Fatalf("view: %d %s", code, msg)
	}
	if len(v.NetworkNames) != 14 || v.NetworkNames[0] != "net0" || v.NetworkNames[13] != "net9" {
		t.Errorf("network_names %v, want net0..net13 by name", v.NetworkNames)
	}
	if got, want := strings.Join(v.SeriesNetworks, ","), "net13,net7,net3,net0,net1,net10,net11,net12,net2,net4,net5,net6"; got != want {
		t.Errorf("series_networks %s, want %s", got, want)
	}
	if got := strings.Join(v.SeriesLeftOut, ","); got != "net8,net9" {
		t.Errorf("series_left_out %s, want net8,net9", got)
	}
	shipped := map[string]int{}
	for _, s := range v.Series {
		shipped[s.Network]++
		if len(s.T) != 3 {
			t.Errorf("%s from %s: %d points, want 3", s.Network, s.Agent, len(s.T))
		}
	}
	if len(v.Series) != 24 || shipped["net13"] != 2 || shipped["net8"] != 0 {
		t.Errorf("%d series (%v), want 24: 2 vantages for each of the 12", len(v.Series), shipped)
	}
}

// One network's series, for a network the view left out; a missing or
// unknown network is refused.
func TestSeriesView(t *testing.T) {
	e, c := seriesEnv(t)
	window := "&from=" + t0.Format(time.RFC3339) + "&to=" + t0.Add(time.Hour).Format(time.RFC3339)
	var got struct {
		Network string       `json:"network"`
		Series  []seriesJSON `json:"series"`
	}
	if code, msg := getJSON(t, c, e.web.URL+"/api/campaigns/kp/series?network=net8"+window, &got); code != http.StatusOK {
		t.Fatalf("series: %d %s", code, msg)
	}
	if got.Network != "net8" || len(got.Series) != 2 || got.Series[0].Network != "net8" || len(got.Series[0].T) != 3 ||
		got.Series[0].Agent != "agt-a" || got.Series[1].Agent != "agt-b" {
		t.Errorf("net8's series %+v, want agt-a's and agt-b's, 3 rounds each", got)
	}
	for _, tc := range []struct {
		query string
		code  int
		msg   string
	}{
		{"?" + window[1:], http.StatusBadRequest, "network: required (a network's name)"},
		{"?network=net99" + window, http.StatusNotFound, `network: "net99" is not a network of campaign "kp"`},
		{"?network=net8&to=later", http.StatusBadRequest, `to: "later" is not an RFC 3339 time`},
	} {
		if code, msg := getJSON(t, c, e.web.URL+"/api/campaigns/kp/series"+tc.query, nil); code != tc.code || msg != tc.msg {
			t.Errorf("series%s: %d %q, want %d %q", tc.query, code, msg, tc.code, tc.msg)
		}
	}
}

// A round with no probe counted (no target answered any vantage: a
// blackout) has no loss, not 0% loss; series come in time order, named.
func TestColumns(t *testing.T) {
	point := func(agent string, sec int, probes, first uint32) *vantagev1.QualityPoint {
		p := &vantagev1.QualityPoint{Network: "net0", AgentId: agent, RoundStart: timestamppb.New(t0.Add(time.Duration(sec) * time.Second)),
			Probes: probes, FirstTryAnswers: first, RttP50Ms: 20}
		if probes > 0 {
			p.Loss = 1 - float64(first)/float64(probes)
		}
		return p
	}
	got := columns([]*vantagev1.QualityPoint{point("agt-a", 60, 0, 0), point("agt-a", 0, 4, 3), point("agt-b", 0, 4, 4)},
		map[string]string{"agt-a": "vantage-a"})
	if len(got) != 2 {
		t.Fatalf("%d series, want one per vantage: %+v", len(got), got)
	}
	a, b := got[0], got[1]
	if a.AgentName != "vantage-a" || b.AgentName != "" || len(a.T) != 2 || a.T[0] != t0.Unix() || a.T[1] != t0.Unix()+60 {
		t.Errorf("a's series %+v (b named %q), want vantage-a's two rounds in time order, b unnamed", a, b.AgentName)
	}
	if a.Loss[0] == nil || *a.Loss[0] != 0.25 || a.Loss[1] != nil {
		t.Errorf("a's loss %v, want 0.25 then none (no probe counted)", a.Loss)
	}
}
