package scenarios

// The dashboard in a real browser: Debian's Chromium, driven over the
// DevTools protocol (chromedp), looks at the real controller's dashboard
// in the lab while the lab's upstream withdraws the country's routes.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vantage-net/vantage/controller/verdict/live"
	"github.com/vantage-net/vantage/deploy/demo"
	"github.com/vantage-net/vantage/deploy/lab"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var screenshots = flag.String("dashboard.screenshots", "", "directory for the dashboard test's screenshots (e.g. ../../docs/img); empty: the test's temporary directory")

// steadyBefore: the steady run the page shows before the fault.
const steadyBefore = 30 * time.Second

// chromiumPath finds Debian's chromium (or another Chromium or Chrome on
// PATH), skipping the test when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("the dashboard browser test needs Chromium (Debian package chromium; `bash deploy/install-deps.sh web`)")
	return ""
}

// browserTab starts a headless Chromium of its own (a fresh profile) and
// returns a tab's context. The lab's certificate is from the controller's
// own CA, which the browser does not know: it is told to accept it.
func browserTab(t *testing.T, ctx context.Context, chromium string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.UserDataDir(t.TempDir()),
		chromedp.IgnoreCertErrors, chromedp.WindowSize(1280, 1000),
		// Nothing but the dashboard: no host name resolves (the dashboard is
		// an IP literal), no component updates, pings or reports.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-pings", true), chromedp.Flag("disable-domain-reliability", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelTab)
	return tab
}

// shot saves a full-page screenshot as name.png in the screenshot
// directory.
func shot(t *testing.T, tab context.Context, dir, name string) string {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return path
}

// poll waits (at most d) for a JavaScript expression to be true in the page.
func poll(t *testing.T, tab context.Context, what, expr string, d time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(tab, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(d))); err != nil {
		text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
	}
}

func eval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// TestDashboard logs in as a viewer, keeps the campaign page open through
// a blackout at the upstreams, and checks what a reader sees: the
// UNREACHABLE band within 2 rounds of the fault without a reload, then the
// episode page with the cause, the named upstream and traceroute paths
// that end at the upstream routers.
func TestDashboard(t *testing.T) {
	demo.SkipUnlessLab(t, "dashboard browser test")
	chromium := chromiumPath(t)
	dir := *screenshots
	if dir == "" {
		dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := demo.Start(ctx, demo.Config{BinDir: binDir, Prefix: "vw", WorkDir: t.TempDir(), Logger: logger, Web: demo.WebHTTPS})
	if err != nil {
		t.Fatal(err)
	}
	demo.CloseAtCleanup(t, h, 3000)
	applied := time.Now().Add(-time.Second).Truncate(time.Second)
	// The suite's campaign, with traces every 20 s instead of 10 min: in
	// its short steady run before the fault every host is traced, as in a
	// campaign that has run for a while, so the graph knows each path's
	// routers from before the outage.
	spec := strings.Replace(string(readSpec(t, "campaign.yaml")), "every: 10m", "every: 20s", 1)
	if !strings.Contains(spec, "every: 20s") {
		t.Fatal("campaign.yaml: no trace probe with every: 10m to shorten")
	}
	camp, err := h.Operator.ApplyCampaign(h.Authed(ctx), &vantagev1.ApplyCampaignRequest{SpecYaml: spec})
	if err != nil {
		t.Fatalf("apply campaign: %v", err)
	}
	s := &suite{t: t, h: h, ctx: ctx, name: camp.GetName(), scopeID: camp.GetName() + "/scope/" + camp.GetScope(),
		round: time.Duration(camp.GetRoundMs()) * time.Millisecond, start: time.Unix(0, 0)}
	s.grace = live.GraceFor(s.round)
	s.waitClean(t, 30)
	viewer, err := h.OperatorToken(ctx, "browser", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	base := h.WebURL()
	tab := browserTab(t, ctx, chromium)

	// Log in as a viewer: the form, then the overview.
	if err := chromedp.Do(tab, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), viewer), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#campaigns"))); err != nil {
		t.Fatalf("log in: %v", err)
	}
	poll(t, tab, "the overview lists the campaign and the three agents",
		fmt.Sprintf(`document.querySelector('#campaigns a[href="/campaigns/%s"]') !== null && document.querySelectorAll('#agents tbody tr').length === 3`, s.name), 20*time.Second)
	overview := shot(t, tab, dir, "dashboard-overview")

	// The campaign page, open before the fault and never reloaded.
	// The window starts with the campaign (a link with from and no to
	// follows the verdicts live).
	campaignURL := base + "/campaigns/" + url.PathEscape(s.name) + "?from=" + url.QueryEscape(applied.UTC().Format(time.RFC3339))
	if err := chromedp.Do(tab, chromedp.Navigate(campaignURL)); err != nil {
		t.Fatal(err)
	}
	const scopeState = `document.querySelector('#bands .band-row .state')?.textContent`
	poll(t, tab, "the campaign page shows the scope REACHABLE", scopeState+` === 'REACHABLE'`, 20*time.Second)
	eval[bool](t, tab, `window.vantageNoReload = true`)
	time.Sleep(steadyBefore) // some steady rounds to see on the page before the fault
	// Both upstreams drop the country's routes and answer "net
	// unreachable", as China Unicom's routers did for North Korea's
	// networks: the rest of the lab still sends them the traffic.
	b := s.atBoundary(t, "blackout", func() error {
		return errors.Join(h.Lab.Withdraw("upstream", lab.WithdrawUnreachable), h.Lab.Withdraw("upstream-b", lab.WithdrawUnreachable))
	})
	defer h.Lab.Reannounce("upstream-b")
	defer h.Lab.Reannounce("upstream")
	poll(t, tab, "the campaign page shows the scope UNREACHABLE", scopeState+` === 'UNREACHABLE'`, 10*s.round)
	seen := time.Now()
	if !eval[bool](t, tab, `window.vantageNoReload === true`) {
		t.Fatal("the campaign page was reloaded: it must update in place")
	}
	tr := s.firstTo(t, b.Add(-s.round), vantagev1.State_STATE_UNREACHABLE)
	lat, closed := s.latency(b, tr)
	shown := seen.Sub(b)
	t.Logf("blackout at %s: scope UNREACHABLE detected after %s (%s rounds, %d closed), on the page after %s (%s rounds; page %s after detection)",
		b.Format(time.TimeOnly), lat.Round(time.Millisecond), s.rounds(lat), closed, shown.Round(time.Millisecond), s.rounds(shown),
		seen.Sub(tr.GetDetectedAt().AsTime()).Round(time.Millisecond))
	if closed > 2 {
		t.Errorf("UNREACHABLE detected after %d closed rounds, want at most 2", closed)
	}
	// Detection closes at most 2 rounds (plus the grace); the page follows
	// the verdict stream and redraws within a second.
	if limit := 2*s.round + s.grace + time.Second; shown > limit {
		t.Errorf("the page showed UNREACHABLE %s after the fault, want within %s (2 rounds, the grace and 1 s to draw)", shown, limit)
	}
	if live := eval[string](t, tab, `document.getElementById('live').textContent`); !strings.Contains(live, "UNREACHABLE") {
		t.Errorf("the live line says %q, want the transition to UNREACHABLE", live)
	}

	// Wait for the traces to place the episode, as a reader would wait for
	// the location; the episodes table then gives it and links to it.
	var last *vantagev1.Verdict
	for deadline := time.Now().Add(12 * s.round); ; time.Sleep(s.round / 4) {
		last = s.scope(t)
		if last.GetState() == vantagev1.State_STATE_UNREACHABLE && last.GetLocation() == vantagev1.Location_LOCATION_UPSTREAM &&
			last.GetCause().GetCause() == vantagev1.Cause_CAUSE_UPSTREAM && last.GetLastResponsiveHop() != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the traces did not place the blackout at the upstream within 12 rounds: %s, location %s (%s), cause %s",
				short(last.GetState()), loc(last.GetLocation()), last.GetLocationHop().GetName(), causeName(last.GetCause().GetCause()))
		}
	}
	t.Logf("the blackout placed: location %s at %s (%s), cause %s %.2f", loc(last.GetLocation()), last.GetLastResponsiveHop(), last.GetLocationHop().GetName(),
		causeName(last.GetCause().GetCause()), last.GetCause().GetConfidence())
	const episodeRow = `[...document.querySelectorAll('#episodes tbody tr')].find((r) => r.textContent.includes('UNREACHABLE'))`
	poll(t, tab, "the episodes table lists the blackout with cause and upstream",
		`(() => { const r = `+episodeRow+`; return !!r && r.textContent.includes('UPSTREAM') && /unicom|satgate/.test(r.textContent); })()`, 5*s.round)
	if !eval[bool](t, tab, `window.vantageNoReload === true`) {
		t.Fatal("the campaign page was reloaded: it must update in place")
	}
	campaignShot := shot(t, tab, dir, "dashboard-campaign-blackout")

	// The episode page, reached by its link.
	eval[bool](t, tab, `(() => { `+episodeRow+`.querySelector('a').click(); return true; })()`)
	if err := chromedp.Do(tab, chromedp.WaitVisible(chromedp.CSS("#graph svg.paths"))); err != nil {
		text, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("open the episode: %v\n%s", err, text)
	}
	// The localisation traces of the blackout may still be on their way:
	// reload the episode until the graph has a path to every country target
	// from each vantage (the episode page, unlike the campaign page, is a
	// snapshot of its window).
	countryPaths := `(async () => { const v = await (await fetch('/api/campaigns/' + document.getElementById('episode').dataset.campaign + '/episode' + location.search)).json();
		return v.graph.paths.filter((p) => p.target.startsWith('net:') && !p.reached).reduce((n, p) => n + p.count, 0); })()`
	for deadline := time.Now().Add(5 * s.round); ; time.Sleep(s.round / 2) {
		n, err := chromedp.Run(tab, chromedp.Evaluate[int](countryPaths, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if n >= 3*16 || time.Now().After(deadline) {
			t.Logf("the episode's graph: %d dead paths toward the country's 16 hosts from 3 vantages", n)
			break
		}
		if err := chromedp.Do(tab, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#graph svg.paths"))); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, tab, "the episode page gives the cause and names the upstream",
		`(() => { const t = document.getElementById('transitions').textContent; return t.includes('UPSTREAM') && /unicom|satgate/.test(t); })()`, 10*time.Second)
	type pathEnd struct {
		ID   string `json:"id"`
		Role string `json:"role"`
		Text string `json:"text"`
	}
	ends := eval[[]pathEnd](t, tab, `[...document.querySelectorAll('#graph .node[data-paths-end]')].map((n) => ({id: n.dataset.id,
		role: [...n.classList].filter((c) => c.startsWith('role-')).join(' '), text: n.textContent}))`)
	upstreams := []string{"198.51.100.42", "198.51.100.58"}
	t.Logf("the path graph's dead ends: %+v", ends)
	if len(ends) == 0 {
		t.Fatal("the path graph shows no path that ends before its target")
	}
	for _, e := range ends {
		if !slices.Contains(upstreams, e.ID) || e.Role != "role-upstream" {
			t.Errorf("a path ends at %s (%s, %q), want an upstream router (%v, role upstream)", e.ID, e.Role, e.Text, upstreams)
			paths, _ := chromedp.Run(tab, chromedp.Evaluate[string](`(async () => JSON.stringify((await (await fetch('/api/campaigns/' +
				document.getElementById('episode').dataset.campaign + '/episode' + location.search)).json()).graph.paths))()`, chromedp.EvalAwaitPromise))
			t.Logf("the graph's paths: %s", paths)
		}
	}
	// Every trace toward the country dies: none of its targets is reached.
	reached := eval[int](t, tab, `document.querySelectorAll('#graph .edge-reached').length`)
	dead := eval[int](t, tab, `document.querySelectorAll('#graph .edge-dead').length`)
	t.Logf("path graph edges: %d on paths that reached their target, %d on paths that died", reached, dead)
	episodeShot := shot(t, tab, dir, "dashboard-episode")

	// At phone width the campaign page fits: no sideways scrolling.
	if err := chromedp.Do(tab, chromedp.EmulateViewport(390, 844), chromedp.Navigate(campaignURL)); err != nil {
		t.Fatal(err)
	}
	poll(t, tab, "the campaign page draws at phone width", scopeState+` !== undefined`, 20*time.Second)
	if w := eval[int](t, tab, `document.documentElement.scrollWidth`); w > 390 {
		wide := eval[[]string](t, tab, `[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > 391)
			.slice(0, 8).map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + [...e.classList].join('.') + ' ' + Math.round(e.getBoundingClientRect().right))`)
		t.Errorf("at 390 px wide the campaign page is %d px wide: it scrolls sideways; past the edge: %v", w, wide)
	}
	phone := shot(t, tab, dir, "dashboard-campaign-phone")
	t.Logf("screenshots: %s", strings.Join([]string{overview, campaignShot, episodeShot, phone}, ", "))
}
