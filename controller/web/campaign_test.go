package web

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

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
