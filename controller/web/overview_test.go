package web

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func withEarliest(tr *vantagev1.Transition, min int) *vantagev1.Transition {
	tr.OnsetEarliest = timestamppb.New(t0.Add(time.Duration(min) * time.Minute))
	return tr
}

func TestBands(t *testing.T) {
	from := t0
	tr := func(min int, a, b vantagev1.State) *vantagev1.Transition {
		return &vantagev1.Transition{From: a, To: b, OnsetLatest: timestamppb.New(t0.Add(time.Duration(min) * time.Minute))}
	}
	const (
		reach = vantagev1.State_STATE_REACHABLE
		down  = vantagev1.State_STATE_UNREACHABLE
		none  = vantagev1.State_STATE_UNSPECIFIED
	)
	for _, c := range []struct {
		name string
		ts   []*vantagev1.Transition
		want string
	}{
		{"nothing", nil, ""},
		{"from the start", []*vantagev1.Transition{tr(0, none, reach), tr(30, reach, down)}, "0-30 REACHABLE, 30- UNREACHABLE"},
		{"before the window: the state it left", []*vantagev1.Transition{tr(20, reach, down), tr(50, down, reach)}, "0-20 REACHABLE, 20-50 UNREACHABLE, 50- REACHABLE"},
		{"onset before the window", []*vantagev1.Transition{tr(-5, reach, down), tr(10, down, reach)}, "0-10 UNREACHABLE, 10- REACHABLE"},
		{"the onset's error bar", []*vantagev1.Transition{tr(0, none, reach), withEarliest(tr(30, reach, down), 29)}, "0-30 REACHABLE, (29)30- UNREACHABLE"},
	} {
		got := ""
		for i, b := range bands(c.ts, from) {
			if i > 0 {
				got += ", "
			}
			if b.FromEarliest != nil {
				got += "(" + minute(*b.FromEarliest) + ")"
			}
			got += minute(b.From) + "-"
			if b.To != nil {
				got += minute(*b.To)
			}
			got += " " + b.State
		}
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func minute(t time.Time) string { return itoa(int(t.Sub(t0) / time.Minute)) }

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestOverviewJSON(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	login(t, web, c, "viewer-secret")
	resp, err := c.Get(web.URL + "/api/overview")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o overviewJSON
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("overview: %d %v", resp.StatusCode, err)
	}
	if len(o.Campaigns) != 1 || o.Campaigns[0].Name != "kp" || o.Campaigns[0].Status != "ACTIVE" || o.Campaigns[0].State != "" {
		t.Errorf("campaigns %+v, want kp ACTIVE with no verdict yet", o.Campaigns)
	}
	if o.From != o.At.Add(-OverviewWindow) {
		t.Errorf("window %v to %v, want a day", o.From, o.At)
	}
}

func TestWatchRefusesBadQueries(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	for q, want := range map[string]int{"": http.StatusUnauthorized} {
		resp, err := c.Get(web.URL + "/api/watch" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("watch%s without a session: %d, want %d", q, resp.StatusCode, want)
		}
	}
	login(t, web, c, "viewer-secret")
	for q, want := range map[string]int{"": http.StatusBadRequest, "?campaign=kp&level=planet": http.StatusBadRequest} {
		resp, err := c.Get(web.URL + "/api/watch" + q)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != want || e.Error == "" {
			t.Errorf("watch%s: %d %q, want %d with a reason", q, resp.StatusCode, e.Error, want)
		}
	}
}

// The watch relays the API's stream as server-sent events: the current
// verdicts first.
func TestWatchStreamsVerdicts(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	login(t, web, c, "viewer-secret")
	resp, err := c.Get(web.URL + "/api/watch?campaign=kp&level=scope")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() && sc.Text() != "" {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 2 || lines[0] != "event: verdict" || !strings.HasPrefix(lines[1], "data: {") || !strings.Contains(lines[1], `"kp/scope/`) {
		t.Errorf("first event %q, want a verdict of kp's scope", lines)
	}
}

func TestAgentsJSON(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	login(t, web, c, "viewer-secret")
	for _, path := range []string{"/api/agents", "/agents"} {
		resp, err := c.Get(web.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	resp, err := c.Get(web.URL + "/api/agents?page_token=garbage")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad page token: %d, want 400 (the API's InvalidArgument)", resp.StatusCode)
	}
}
