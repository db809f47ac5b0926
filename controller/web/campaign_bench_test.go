package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	"github.com/vantage-net/vantage/controller/verdict"
	"github.com/vantage-net/vantage/controller/verdict/live"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The campaign page of a country: 65,536 targets, 198.18.0.0/16 as 256 /24
// networks (every address a host: per_network cannot give 256 from a /24),
// 3 vantages, 1-minute rounds, the store as after a 6-hour window with a
// blackout (networks go down over minutes 120 to 129 and come back over
// minutes 240 to 246).
const (
	benchNetworks = 256
	benchRounds   = 360
	benchDown     = 120 // network i goes down in round benchDown + i%10
	benchUp       = 240 // and comes back in round benchUp + i%7
	// benchMaxLoad is the page's budget: a load at or over it fails.
	benchMaxLoad = 2 * time.Second
)

var benchAgents = []string{"agt-a", "agt-b", "agt-c"}

// BenchmarkCampaignPage65536 loads the campaign page as a browser does,
// through the real web server and the real OperatorService over TLS on
// real SQLite: the page's shell, its view, and the first page of one
// network's targets. It reports the time and the bytes of one load, and
// fails if a load takes benchMaxLoad or more.
func BenchmarkCampaignPage65536(b *testing.B) {
	_, c, urls := benchCampaign(b)
	var loads int
	var took time.Duration
	var shipped int64
	for b.Loop() {
		t := time.Now()
		for _, u := range urls {
			shipped += fetch(b, c, u)
		}
		d := time.Since(t)
		if d >= benchMaxLoad {
			b.Fatalf("load %d took %s, the budget is under %s", loads+1, d, benchMaxLoad)
		}
		took += d
		loads++
	}
	b.ReportMetric(float64(took.Microseconds())/1000/float64(loads), "ms/load")
	b.ReportMetric(float64(shipped)/float64(loads), "bytes/load")
}

// benchCampaign is the 65,536-target campaign behind a dashboard, a
// viewer's logged-in client, and the URLs of one load of its page: the
// shell, the view, the first targets page of net0.
func benchCampaign(b *testing.B) (*env, *http.Client, []string) {
	setup := time.Now()
	end := t0
	start := end.Add(-benchRounds * time.Minute)
	var prefixes []string
	for i := range benchNetworks {
		prefixes = append(prefixes, fmt.Sprintf("198.18.%d.0/24", i))
	}
	specYAML := fixture.Campaign{Name: "kp", Networks: prefixes, EveryHost: true, Round: "1m", Start: start.Format(time.RFC3339),
		Budget: "{agent_pps: 5000}"}.YAML()
	sp := fixture.Spec(b, specYAML)
	if n := len(sp.Targets()); n != 65536 {
		b.Fatalf("the campaign has %d targets, want 65,536", n)
	}
	// The controller starts 10 s into the window's last round, its
	// results in the store: the worker restores every verdict from the
	// stored timeline and is fed that round (live.Worker's restore).
	e := newEnv(b, envOptions{now: end.Add(10 * time.Second), campaigns: map[string]string{"kp": specYAML},
		fill: func(db *sqlite.DB) { fillBlackout(b, db, sp, start) }})
	e.clock.Set(end.Add(live.GraceFor(sp.Round()) + time.Second))
	if err := e.worker.Evaluate(context.Background()); err != nil {
		b.Fatal(err)
	}
	if v, ok := e.worker.Verdict("kp/network/net0"); !ok || len(v.GetUpChildren()) != 256 {
		b.Fatalf("net0's verdict counts %d targets up, want 256 (the last round closed)", len(v.GetUpChildren()))
	}
	c := browser(b, e.web)
	if resp := login(b, e.web, c, "viewer-secret"); resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("login: %d", resp.StatusCode)
	}
	window := "from=" + start.Format(time.RFC3339) + "&to=" + end.Format(time.RFC3339)
	urls := []string{
		e.web.URL + "/campaigns/kp?" + window,
		e.web.URL + "/api/campaigns/kp/view?" + window,
		e.web.URL + "/api/campaigns/kp/targets?network=net0&" + window,
	}
	checkBenchPage(b, c, urls)
	b.Logf("setup %s", time.Since(setup).Round(time.Millisecond))
	return e, c, urls
}

// fetch GETs u and returns the bytes of its body; anything but 200 fails.
func fetch(b *testing.B, c *http.Client, u string) int64 {
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("%s: %d, %v", u, resp.StatusCode, err)
	}
	return n
}

// checkBenchPage makes sure the page measured is the whole story: every
// network's bands, 12 networks' series of every round, the targets page.
func checkBenchPage(b *testing.B, c *http.Client, urls []string) {
	b.Helper()
	var v campaignViewJSON
	getBench(b, c, urls[1], &v)
	if len(v.Networks) != benchNetworks || len(v.NetworkNames) != benchNetworks || len(v.SeriesNetworks) != MaxViewSeriesNetworks ||
		len(v.Series) != MaxViewSeriesNetworks*len(benchAgents) || len(v.Episodes) != 1 {
		b.Fatalf("view: %d networks' bands, %d named, %d with series (%d series), %d episodes; want %d, %d, %d (%d), 1",
			len(v.Networks), len(v.NetworkNames), len(v.SeriesNetworks), len(v.Series), len(v.Episodes),
			benchNetworks, benchNetworks, MaxViewSeriesNetworks, MaxViewSeriesNetworks*len(benchAgents))
	}
	for _, s := range v.Series {
		if len(s.T) != benchRounds {
			b.Fatalf("view: %s from %s has %d rounds, want %d", s.Network, s.Agent, len(s.T), benchRounds)
		}
	}
	var tg targetsJSON
	getBench(b, c, urls[2], &tg)
	if tg.Total != 256 || len(tg.Targets) != TargetsPage || len(tg.Targets[0].Bands) != 3 {
		b.Fatalf("targets: total %d, %d on the page, %d bands for the first; want 256, %d, 3", tg.Total, len(tg.Targets),
			len(tg.Targets[0].Bands), TargetsPage)
	}
}

func getBench(b *testing.B, c *http.Client, u string, v any) {
	b.Helper()
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("%s: %d %v", u, resp.StatusCode, err)
	}
}

// fillBlackout writes, straight through the store's API, what 6 hours of
// sp from start leave: every vantage enrolled, the transitions at scope,
// network and target level, the quality series of every network, vantage
// and round, and the last round's results.
func fillBlackout(b *testing.B, db *sqlite.DB, sp *campaign.Spec, start time.Time) {
	b.Helper()
	ctx := context.Background()
	for _, a := range benchAgents {
		fixture.ActiveAgent(b, db, a, nil, start)
	}
	ts := blackoutTimeline(sp, start)
	for i := 0; i < len(ts); i += 10000 {
		if err := db.AddTransitions(ctx, ts[i:min(i+10000, len(ts))]); err != nil {
			b.Fatal(err)
		}
	}
	ps := blackoutSeries(sp, start)
	for i := 0; i < len(ps); i += 10000 {
		if err := db.AddQualityPoints(ctx, ps[i:min(i+10000, len(ps))]); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("stored %d transitions, %d quality points", len(ts), len(ps))
	// The last round's results, as the agents' batches (4,096 results).
	last := int64(benchRounds - 1)
	roundStart := start.Add(time.Duration(last) * sp.Round())
	task := sp.Tasks(start)[0].GetId()
	for ai, a := range benchAgents {
		rs := make([]*vantagev1.ProbeResult, 0, len(sp.Targets()))
		for ti, tg := range sp.Targets() {
			rs = append(rs, &vantagev1.ProbeResult{Seq: uint64(ti + 1), TaskId: task, Campaign: sp.Name(), Target: tg.Addr.String(),
				Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Round: last, Outcome: vantagev1.Outcome_OUTCOME_REPLY,
				RttUs: uint32(180000 + 1000*ai), Attempts: 1,
				SentAt: timestamppb.New(roundStart.Add(30*time.Second + time.Duration(ai)*100*time.Millisecond + time.Duration(ti%1000)*time.Millisecond))})
		}
		for i := 0; i < len(rs); i += 4096 {
			if _, _, err := db.CommitBatch(ctx, a, 1, rs[i:min(i+4096, len(rs))], nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// outage is when network i is down: rounds [down, up).
func outage(i int) (down, up int64) { return int64(benchDown + i%10), int64(benchUp + i%7) }

// blackoutTimeline is the campaign's transitions, oldest round first, the
// scope before the networks before the targets in each round (as the
// engine publishes them): everything REACHABLE at round 0, each network
// and its hosts UNREACHABLE over its outage, the scope DEGRADED, then
// UNREACHABLE, then DEGRADED, then REACHABLE again.
func blackoutTimeline(sp *campaign.Spec, start time.Time) []*vantagev1.Transition {
	const (
		unspec   = vantagev1.State_STATE_UNSPECIFIED
		up       = vantagev1.State_STATE_REACHABLE
		degraded = vantagev1.State_STATE_DEGRADED
		down     = vantagev1.State_STATE_UNREACHABLE
	)
	hosts := map[string][]string{}
	var networks []string
	for _, tg := range sp.Targets() {
		if _, ok := hosts[tg.Network]; !ok {
			networks = append(networks, tg.Network)
		}
		hosts[tg.Network] = append(hosts[tg.Network], tg.Addr.String())
	}
	round := sp.Round()
	tr := func(level vantagev1.Level, subject string, n int64, from, to vantagev1.State) *vantagev1.Transition {
		id, _ := verdict.ID(sp.Name(), level, subject)
		t := &vantagev1.Transition{Campaign: sp.Name(), Level: level, Subject: subject, VerdictId: id, Round: n, From: from, To: to,
			OnsetEarliest: timestamppb.New(start.Add(time.Duration(n-1) * round)), OnsetLatest: timestamppb.New(start.Add(time.Duration(n) * round)),
			DetectedAt: timestamppb.New(start.Add(time.Duration(n+1)*round + 5*time.Second)), Location: vantagev1.Location_LOCATION_NONE}
		if to == down || to == degraded {
			t.Location = vantagev1.Location_LOCATION_TARGET_NETWORK
		}
		return t
	}
	// downAt[n]: the networks down in round n.
	downIn := func(n int64) (upNets, downNets []string) {
		for i, nw := range networks {
			if d, u := outage(i); n >= d && n < u {
				downNets = append(downNets, nw)
			} else {
				upNets = append(upNets, nw)
			}
		}
		return upNets, downNets
	}
	var out []*vantagev1.Transition
	scope := up
	for n := int64(0); n < benchRounds; n++ {
		upNets, downNets := downIn(n)
		want := up
		switch {
		case len(upNets) == 0:
			want = down
		case len(downNets) > 0:
			want = degraded
		}
		if n == 0 || want != scope {
			from := scope
			if n == 0 {
				from = unspec
			}
			t := tr(vantagev1.Level_LEVEL_SCOPE, sp.ScopeName(), n, from, want)
			t.UpChildren, t.DownChildren = upNets, downNets
			out = append(out, t)
			scope = want
		}
		var targets []*vantagev1.Transition
		for i, nw := range networks {
			d, u := outage(i)
			var from, to vantagev1.State
			switch n {
			case 0:
				from, to = unspec, up
			case d:
				from, to = up, down
			case u:
				from, to = down, up
			default:
				continue
			}
			t := tr(vantagev1.Level_LEVEL_NETWORK, nw, n, from, to)
			if to == up {
				t.UpChildren = hosts[nw]
			} else {
				t.DownChildren = hosts[nw]
			}
			out = append(out, t)
			for _, h := range hosts[nw] {
				t := tr(vantagev1.Level_LEVEL_TARGET, h, n, from, to)
				if to == up {
					t.UpChildren = benchAgents
				} else {
					t.DownChildren = benchAgents
				}
				targets = append(targets, t)
			}
		}
		out = append(out, targets...)
	}
	return out
}

// blackoutSeries is every network's quality per vantage and round: a
// little loss and 180 to 215 ms, all lost during its outage.
func blackoutSeries(sp *campaign.Spec, start time.Time) []*vantagev1.QualityPoint {
	networks := sp.NetworkNames()
	out := make([]*vantagev1.QualityPoint, 0, len(networks)*len(benchAgents)*benchRounds)
	for n := int64(0); n < benchRounds; n++ {
		for i, nw := range networks {
			d, u := outage(i)
			for ai, a := range benchAgents {
				p := &vantagev1.QualityPoint{Campaign: sp.Name(), Network: nw, AgentId: a, Round: n,
					RoundStart: timestamppb.New(start.Add(time.Duration(n) * sp.Round())), Probes: 256}
				if n < d || n >= u {
					lost := uint32((int(n)*7 + i*3 + ai) % 4)
					p.FirstTryAnswers = 256 - lost
					p.Loss = float64(lost) / 256
					p.RttP50Ms = float64(180 + i%20 + 5*ai)
					p.RttP90Ms = p.RttP50Ms * 1.3
					p.Answers = map[string]uint32{"icmp": p.FirstTryAnswers}
				} else {
					p.Loss = 1
				}
				out = append(out, p)
			}
		}
	}
	return out
}
