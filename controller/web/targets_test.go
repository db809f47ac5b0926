package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/internal/fixture"
)

var agents3 = []string{"agt-a", "agt-b", "agt-c"}

// targetsEnv is campaign kp, 10 s rounds from t0: net0 and net1 of 60
// hosts each (198.18.N.10 to .69), every vantage seeing everything up for
// 10 rounds, then net0's .10 to .19 down for 3.
func targetsEnv(t *testing.T) (*env, *http.Client) {
	t.Helper()
	spec := fixture.Campaign{Name: "kp", Networks: []string{"198.18.0.0/24", "198.18.1.0/24"}, PerNetwork: 60, Round: "10s",
		Start: t0.Format(time.RFC3339)}.YAML()
	e := newEnv(t, envOptions{now: t0, campaigns: map[string]string{"kp": spec}})
	sp := fixture.Spec(t, spec)
	for n := range int64(10) { // long enough to learn that they answer
		e.round(t, sp, n, agents3, func(string, campaign.Target) bool { return true })
	}
	for n := int64(10); n < 13; n++ {
		e.round(t, sp, n, agents3, func(_ string, tg campaign.Target) bool {
			b := tg.Addr.As4()
			return tg.Network != "net0" || b[3] >= 20
		})
	}
	c := browser(t, e.web)
	login(t, e.web, c, "viewer-secret")
	return e, c
}

// getJSON GETs u into v and returns the status and the error message of a
// refusal.
func getJSON(t *testing.T, c *http.Client, u string, v any) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	return resp.StatusCode, ""
}

// A network's targets come in address order, 50 a page, each with its
// bands over the window; the last page has no next token.
func TestTargets(t *testing.T) {
	e, c := targetsEnv(t)
	window := "&from=" + t0.Format(time.RFC3339) + "&to=" + t0.Add(time.Hour).Format(time.RFC3339)
	base := e.web.URL + "/api/campaigns/kp/targets?network=net0" + window
	var first targetsJSON
	if code, msg := getJSON(t, c, base, &first); code != http.StatusOK {
		t.Fatalf("first page: %d %s", code, msg)
	}
	if first.Total != 60 || len(first.Targets) != TargetsPage || first.Next == "" || first.Network != "net0" {
		t.Fatalf("first page: total %d, %d targets, next %q; want 60, 50 and a token", first.Total, len(first.Targets), first.Next)
	}
	for i, tg := range first.Targets {
		if want := fmt.Sprintf("198.18.0.%d", 10+i); tg.Address != want {
			t.Fatalf("target %d is %s, want %s (address order)", i, tg.Address, want)
		}
	}
	down, up := first.Targets[0], first.Targets[20] // .10, .30
	if down.Now != "down" || len(down.Bands) != 2 || down.Bands[0].State != "REACHABLE" || down.Bands[1].State != "UNREACHABLE" ||
		down.Bands[0].To == nil || down.Bands[1].To != nil {
		t.Errorf("198.18.0.10: %s, bands %+v; want down, REACHABLE then UNREACHABLE (lasting)", down.Now, down.Bands)
	}
	if up.Now != "up" || len(up.Bands) != 1 || up.Bands[0].State != "REACHABLE" {
		t.Errorf("198.18.0.30: %s, bands %+v; want up, REACHABLE throughout", up.Now, up.Bands)
	}
	var second targetsJSON
	if code, msg := getJSON(t, c, base+"&page_token="+url.QueryEscape(first.Next), &second); code != http.StatusOK {
		t.Fatalf("second page: %d %s", code, msg)
	}
	if second.Total != 60 || len(second.Targets) != 10 || second.Next != "" || second.Targets[0].Address != "198.18.0.60" ||
		second.Targets[9].Address != "198.18.0.69" {
		t.Errorf("second page: total %d, %d targets from %v, next %q; want the last 10 (.60 to .69) and no token",
			second.Total, len(second.Targets), second.Targets, second.Next)
	}
	var other targetsJSON
	if code, msg := getJSON(t, c, e.web.URL+"/api/campaigns/kp/targets?network=net1"+window, &other); code != http.StatusOK ||
		other.Total != 60 || other.Targets[0].Address != "198.18.1.10" || other.Targets[0].Now != "up" {
		t.Errorf("net1: %d %s, total %d", code, msg, other.Total)
	}
}

func TestTargetsRefused(t *testing.T) {
	e, c := targetsEnv(t)
	window := "&from=" + t0.Format(time.RFC3339) + "&to=" + t0.Add(time.Hour).Format(time.RFC3339)
	path := e.web.URL + "/api/campaigns/kp/targets"
	for _, tc := range []struct {
		name, query string
		code        int
		msg         string
	}{
		{"no network", "?" + window[1:], http.StatusBadRequest, "network: required (a network's name)"},
		{"not a network", "?network=net9" + window, http.StatusNotFound, `network: "net9" is not a network of campaign "kp"`},
		{"a target is not a network", "?network=198.18.0.10" + window, http.StatusNotFound, `network: "198.18.0.10" is not a network of campaign "kp"`},
		{"a made-up token", "?network=net0&page_token=bm9wZQ" + window, http.StatusBadRequest,
			`page_token: "bm9wZQ" is not a page token of this list (take next_page_token from the previous page)`},
		{"offset 0", "?network=net0&page_token=" + pageToken(0) + window, http.StatusBadRequest,
			fmt.Sprintf("page_token: %q is not a page token of this list (take next_page_token from the previous page)", pageToken(0))},
		{"past the end", "?network=net0&page_token=" + pageToken(60) + window, http.StatusBadRequest,
			"page_token: the page starts at entry 61, and the list has 60 now; start again from the first page"},
		{"a bad window", "?network=net0&from=soon", http.StatusBadRequest, `from: "soon" is not an RFC 3339 time`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, msg := getJSON(t, c, path+tc.query, nil); code != tc.code || msg != tc.msg {
				t.Errorf("%d %q, want %d %q", code, msg, tc.code, tc.msg)
			}
		})
	}
	if code, _ := getJSON(t, c, e.web.URL+"/api/campaigns/nope/targets?network=net0"+window, nil); code != http.StatusNotFound {
		t.Errorf("unknown campaign: %d, want 404", code)
	}
	if code, _ := getJSON(t, browser(t, e.web), path+"?network=net0"+window, nil); code != http.StatusUnauthorized {
		t.Errorf("without a session: %d, want 401", code)
	}
}

func TestPageToken(t *testing.T) {
	for _, off := range []int{1, 50, 65535} {
		if got, err := pageOffset(pageToken(off), 65536); err != nil || got != off {
			t.Errorf("pageOffset(pageToken(%d)) = %d, %v", off, got, err)
		}
	}
	for _, bad := range []string{"!!", pageToken(-1), "b2Zmc2V0OjA1", "b2Zmc2V0Oitz"} { // offset:05, offset:+s
		if _, err := pageOffset(bad, 100); err == nil {
			t.Errorf("pageOffset(%q) took it", bad)
		}
	}
}
