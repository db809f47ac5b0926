package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/verdict/live"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Two vantages watch kp's two networks in one-minute rounds from 15:00;
// from round 5 on net0's host stops answering both, net1's still does.
const (
	agentA, agentB = "agt-00000000000000a1", "agt-00000000000000a2"
	outageRound    = 5
)

var outageStart = time.Date(2014, 12, 22, 15, 0, 0, 0, time.UTC)

// outageBed is the dashboard over a real verdict engine that has seen
// rounds 0 to rounds-1 of that outage, every result stored.
func outageBed(t *testing.T, rounds int64) *env {
	t.Helper()
	spec := fixture.Campaign{Name: "kp", Networks: []string{"198.18.0.0/24", "198.18.1.0/24"}, Round: "60s",
		Start: outageStart.Format(time.RFC3339)}.YAML()
	b := newEnv(t, envOptions{now: outageStart, campaigns: map[string]string{"kp": spec}})
	sp := fixture.Spec(t, spec)
	ctx := context.Background()
	for _, id := range []string{agentA, agentB} {
		fixture.ActiveAgent(t, b.db, id, nil, t0)
		b.worker.SetAgentConnected(id, nil, true, outageStart)
	}
	seq := map[string]uint64{}
	for n := int64(0); n < rounds; n++ {
		at := outageStart.Add(time.Duration(n) * sp.Round())
		for i, id := range []string{agentA, agentB} {
			var rs []*vantagev1.ProbeResult
			for _, tg := range sp.Targets() {
				seq[id]++
				res := &vantagev1.ProbeResult{Seq: seq[id], Campaign: "kp", Target: tg.Addr.String(), Round: n,
					Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, SentAt: timestamppb.New(at.Add(time.Duration(1+i) * time.Second)),
					Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: uint32(20000 + 1000*i), Attempts: 1, Engine: "pro-bing/raw"}
				if tg.Network == "net0" && n >= outageRound {
					res.Outcome, res.RttUs = vantagev1.Outcome_OUTCOME_TIMEOUT, 0
				}
				rs = append(rs, res)
			}
			if _, _, err := b.db.CommitBatch(ctx, id, 1, rs, nil); err != nil {
				t.Fatal(err)
			}
			b.worker.Feed(id, rs)
		}
		b.clock.Set(at.Add(sp.Round() + live.GraceFor(sp.Round()) + time.Second))
		if err := b.worker.Evaluate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// resultsOf GETs a results answer, failing unless its status is want.
func resultsOf(t *testing.T, c *http.Client, u string, want int) resultsJSON {
	t.Helper()
	code, body := page(t, c, u)
	if code != want {
		t.Fatalf("GET %s: %d %.300s, want %d", u, code, body, want)
	}
	var rs resultsJSON
	if err := json.Unmarshal([]byte(body), &rs); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return rs
}

func storedOf(t *testing.T, rs resultsJSON) []*vantagev1.StoredResult {
	t.Helper()
	var out []*vantagev1.StoredResult
	for _, b := range rs.Results {
		sr := &vantagev1.StoredResult{}
		if err := protojson.Unmarshal(b, sr); err != nil {
			t.Fatal(err)
		}
		out = append(out, sr)
	}
	return out
}

// The outage bed holds 56 results: 2 vantages, 2 hosts (198.18.0.10 in
// net0, 198.18.1.10 in net1), rounds 0 to 13 from 15:00.
const allRounds = "&from=2014-12-22T15:00:00Z&to=2014-12-22T15:14:00Z"

func TestResults(t *testing.T) {
	b := outageBed(t, 14)
	c := browser(t, b.web)
	login(t, b.web, c, "viewer-secret")
	for _, tc := range []struct {
		name, query string
		n           int
		truncated   bool
		agent       string // every result's, when set
		target      string
	}{
		{"everything", "limit=1000" + allRounds, 56, false, "", ""},
		{"one vantage in one network", "agent=" + agentA + "&network=net0" + allRounds, 14, false, agentA, "198.18.0.10"},
		{"one target, both vantages", "target=198.18.1.10" + allRounds, 28, false, "", "198.18.1.10"},
		{"a target in its network", "network=net1&target=198.18.1.10&agent=" + agentB + allRounds, 14, false, agentB, "198.18.1.10"},
		{"a window: rounds 9 to 11", "agent=" + agentA + "&network=net0&from=2014-12-22T15:08:02Z&to=2014-12-22T15:11:21Z", 3, false, agentA, "198.18.0.10"},
		{"cut at the limit", "limit=5" + allRounds, 5, true, "", ""},
		{"exactly the limit", "limit=56" + allRounds, 56, false, "", ""},
		{"one under", "limit=55" + allRounds, 55, true, "", ""},
		{"a network, exactly the limit", "network=net0&limit=28" + allRounds, 28, false, "", "198.18.0.10"},
		{"a network, cut", "network=net0&limit=27" + allRounds, 27, true, "", "198.18.0.10"},
		{"the default window: 6 h to now", "", 56, false, "", ""},
		{"the form's empty fields", "agent=&target=&network=&limit=&from=&to=", 56, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := resultsOf(t, c, b.web.URL+"/api/campaigns/kp/results?"+tc.query, http.StatusOK)
			srs := storedOf(t, rs)
			if len(srs) != tc.n || rs.Truncated != tc.truncated || rs.Campaign != "kp" {
				t.Fatalf("%d results, truncated %v, want %d, %v", len(srs), rs.Truncated, tc.n, tc.truncated)
			}
			for i, sr := range srs {
				if (tc.agent != "" && sr.GetAgentId() != tc.agent) || (tc.target != "" && sr.GetResult().GetTarget() != tc.target) {
					t.Errorf("result %d: %s to %s, want %q to %q", i, sr.GetAgentId(), sr.GetResult().GetTarget(), tc.agent, tc.target)
				}
				if i > 0 && sr.GetResult().GetSentAt().AsTime().Before(srs[i-1].GetResult().GetSentAt().AsTime()) {
					t.Errorf("result %d sent before result %d: want oldest first", i, i-1)
				}
			}
			if len(srs) > 0 && rs.Names[srs[0].GetAgentId()] == "" {
				t.Errorf("names %v lack %s", rs.Names, srs[0].GetAgentId())
			}
		})
	}
	// The raw result keeps what the agent sent.
	rs := storedOf(t, resultsOf(t, c, b.web.URL+"/api/campaigns/kp/results?limit=1&target=198.18.0.10&agent="+agentB+allRounds, http.StatusOK))
	if r := rs[0].GetResult(); r.GetRttUs() != 21000 || r.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY || r.GetEngine() != "pro-bing/raw" || r.GetRound() != 0 {
		t.Errorf("b's first result %v, want round 0 answered in 21 ms by pro-bing/raw", r)
	}
}

// Every bad parameter is refused, naming it.
func TestResultsRefuseBadParameters(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	login(t, web, c, "viewer-secret")
	for q, want := range map[string]string{
		"agent=bob":                            "agent: ",
		"agent=agt-" + strings.Repeat("a", 61): "agent: ",
		"agent=agt-a/b":                        "agent: ",
		"target=nope":                          "target: ",
		"target=198.18.0.300":                  "target: ",
		"target=fe80::1%25eth0":                "target: ",
		"network=net9":                         "network: campaign kp has no network \"net9\" (it has: net0)",
		"network=bad%20name":                   "network: ",
		"network=net0&target=198.18.1.10":      "target: 198.18.1.10 is not in network net0",
		"from=yesterday":                       "from: ",
		"to=soon":                              "to: ",
		"from=2014-12-22T15:10:00Z&to=2014-12-22T15:00:00Z": "from: ",
		"from=2014-01-01T00:00:00Z&to=2014-12-22T00:00:00Z": "from: ",
		"limit=0":                 "limit: ",
		"limit=1001":              "limit: \"1001\" is not a whole number from 1 to 1000",
		"limit=ten":               "limit: ",
		"limit=-1":                "limit: ",
		"kind=icmp":               "kind: unknown parameter",
		"agent=agt-a&agent=agt-b": "agent: given 2 times",
	} {
		for _, path := range []string{"/api/campaigns/kp/results?", "/campaigns/kp/results?"} {
			code, body := page(t, c, web.URL+path+q)
			var e struct{ Error string }
			json.Unmarshal([]byte(body), &e)
			if code != http.StatusBadRequest || !strings.HasPrefix(e.Error, want) {
				t.Errorf("%s%s: %d %q, want 400 %q...", path, q, code, e.Error, want)
			}
		}
	}
	if code, _ := page(t, c, web.URL+"/api/campaigns/nope/results"); code != http.StatusNotFound {
		t.Errorf("an unknown campaign's results: %d, want 404", code)
	}
}

func TestResultsNeedASession(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	q := "agent=" + agentA + allRounds
	if code, _ := page(t, c, web.URL+"/api/campaigns/kp/results?"+q); code != http.StatusUnauthorized {
		t.Errorf("results without a session: %d, want 401", code)
	}
	resp, err := c.Get(web.URL + "/campaigns/kp/results?" + q)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.QueryUnescape(strings.TrimPrefix(resp.Header.Get("Location"), "/login?next="))
	if resp.StatusCode != http.StatusSeeOther || loc != "/campaigns/kp/results?"+q {
		t.Errorf("results page without a session: %d to %q, want 303 to the login, back to the same results", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// The results page's shell keeps the URL's query in its form (a link
// shows the same results) and its window in the heading.
func TestResultsPage(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	login(t, web, c, "viewer-secret")
	code, body := page(t, c, web.URL+"/campaigns/kp/results?agent="+agentA+"&network=net0&limit=50"+allRounds)
	for _, want := range []string{`id="results-page" data-campaign="kp"`, `id="results"`, `id="results-status"`, `name="agent" value="` + agentA + `"`,
		`name="network" value="net0"`, `name="limit" value="50"`, `value="2014-12-22T15:00:00Z"`, "2014-12-22T15:00:00Z to 2014-12-22T15:14:00Z"} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("results page: %d, lacks %s: %.600s", code, want, body)
		}
	}
}
