package web

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/api"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/ingest"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	"github.com/vantage-net/vantage/controller/verdict/live"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var t0 = time.Date(2014, 12, 22, 16, 0, 0, 0, time.UTC)

// dashboard is the web server in front of a real OperatorService over
// gRPC and TLS, with a viewer's and an operator's token, and one campaign.
func dashboard(t *testing.T) *httptest.Server {
	t.Helper()
	return newEnv(t, envOptions{now: t0.Add(time.Minute),
		campaigns: map[string]string{"kp": fixture.Campaign{Name: "kp", Networks: []string{"198.18.0.0/24"}}.YAML()}}).web
}

// env is a dashboard (web) in front of a real OperatorService over gRPC
// and TLS, on a real SQLite store (db), with a viewer's and an operator's
// token and a live verdict worker that evaluates when the test says so,
// on the clock the API shares.
type env struct {
	web    *httptest.Server
	db     *sqlite.DB
	worker *live.Worker
	clock  *fixture.Clock
}

type envOptions struct {
	now       time.Time
	campaigns map[string]string // name -> spec YAML, stored at now
	// fill, when set, writes what the store held before the controller
	// started (its verdict worker restores from it).
	fill func(db *sqlite.DB)
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	db, ca, _ := fixture.StoreAndCA(t)
	ctx := context.Background()
	for name, spec := range o.campaigns {
		fixture.PutCampaign(t, db, name, spec, o.now)
	}
	fixture.OperatorTokens(t, db, o.now)
	if o.fill != nil {
		o.fill(db)
	}
	cat := catalogue.New(catalogue.Options{Store: db})
	if err := cat.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	clock := fixture.NewClock(o.now)
	worker := live.New(live.Options{Store: db, Campaigns: cat, Now: clock.Now})
	t.Cleanup(func() { worker.Close() })
	if err := worker.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	fl := fleet.New(db, ca, fleet.Options{})
	sessions := ingest.New(ingest.Config{Store: db, Fleet: fl, Campaigns: cat, Observer: worker, Log: fixture.Log(t), Now: clock.Now})
	t.Cleanup(sessions.Wait)
	s := api.New(api.Config{Store: db, Fleet: fl, Campaigns: cat, Verdicts: worker, Sessions: sessions, Now: clock.Now})
	addr := fixture.ServeTLS(t, ca, func(g *grpc.Server) { vantagev1.RegisterOperatorServiceServer(g, s) }, s.Wait,
		grpc.UnaryInterceptor(s.UnaryInterceptor()), grpc.StreamInterceptor(s.StreamInterceptor()))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	web := httptest.NewTLSServer(New(Config{Operator: vantagev1.NewOperatorServiceClient(conn), Logger: fixture.Log(t), Now: clock.Now}))
	t.Cleanup(web.Close)
	return &env{web: web, db: db, worker: worker, clock: clock}
}

// round feeds the worker round n of campaign spec from every agent, each
// target's outcome as up says, and evaluates once the round has closed.
func (e *env) round(t testing.TB, spec *campaign.Spec, n int64, agents []string, up func(agent string, target campaign.Target) bool) {
	t.Helper()
	start := spec.Start().Add(time.Duration(n) * spec.Round())
	for _, a := range agents {
		e.worker.SetAgentConnected(a, nil, true, start)
	}
	for ai, a := range agents {
		rs := make([]*vantagev1.ProbeResult, 0, len(spec.Targets()))
		for ti, tg := range spec.Targets() {
			res := &vantagev1.ProbeResult{Seq: uint64(n)<<32 | uint64(ti), Campaign: spec.Name(), Target: tg.Addr.String(), Round: n,
				Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Attempts: 1, Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: 20000,
				SentAt: timestamppb.New(start.Add(time.Duration(ai)*100*time.Millisecond + time.Duration(ti%1000)*time.Millisecond))}
			if !up(a, tg) {
				res.Outcome, res.RttUs, res.Attempts = vantagev1.Outcome_OUTCOME_TIMEOUT, 0, 2
			}
			rs = append(rs, res)
		}
		e.worker.Feed(a, rs)
	}
	e.clock.Set(start.Add(spec.Round() + live.GraceFor(spec.Round()) + time.Second))
	if err := e.worker.Evaluate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// browser is a client of the dashboard with a cookie jar that does not
// follow redirects (the tests look at them).
func browser(t testing.TB, web *httptest.Server) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *web.Client() // a copy: the server hands out one client
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func login(t testing.TB, web *httptest.Server, c *http.Client, secret string) *http.Response {
	t.Helper()
	resp, err := c.PostForm(web.URL+"/login", url.Values{"token": {secret}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func csrf(t *testing.T, web *httptest.Server, c *http.Client) string {
	t.Helper()
	resp, err := c.Get(web.URL + "/api/session")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ CSRF string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.CSRF == "" {
		t.Fatalf("session info: %v (%d)", err, resp.StatusCode)
	}
	return v.CSRF
}

// page GETs u and returns the status and the body.
func page(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String()
}

func post(t *testing.T, c *http.Client, u, csrf string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, nil)
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestNoCookieGoesToLogin(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	resp, err := c.Get(web.URL + "/?from=2014-12-22T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login?next=/") {
		t.Errorf("page without a session: %d to %q, want 303 to /login?next=...", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = c.Get(web.URL + "/api/campaigns")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("api without a session: %d, want 401", resp.StatusCode)
	}
	// A forged cookie is no session.
	u, _ := url.Parse(web.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: CookieName, Value: randomToken()}})
	if resp, err = c.Get(web.URL + "/api/campaigns"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("api with a forged cookie: %d, want 401", resp.StatusCode)
	}
}

func TestLoginRefusesABadToken(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	for _, secret := range []string{"", "nobody-secret"} {
		resp := login(t, web, c, secret)
		if resp.StatusCode < 400 || len(resp.Cookies()) != 0 {
			t.Errorf("login with %q: %d with %d cookies, want an error and no cookie", secret, resp.StatusCode, len(resp.Cookies()))
		}
	}
}

func TestCookieFlags(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	resp := login(t, web, c, "viewer-secret")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %d to %q, want 303 to /", resp.StatusCode, resp.Header.Get("Location"))
	}
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("login set %d cookies, want 1", len(cs))
	}
	k := cs[0]
	if k.Name != CookieName || !k.HttpOnly || !k.Secure || k.SameSite != http.SameSiteStrictMode || k.Path != "/" || k.MaxAge <= 0 {
		t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, a Max-Age", k)
	}
	if strings.Contains(k.Value, "viewer-secret") {
		t.Error("the cookie carries the token")
	}
	resp, err := c.Get(web.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("overview after login: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
}

func TestViewerCannotChangeState(t *testing.T) {
	web := dashboard(t)
	viewer, oper := browser(t, web), browser(t, web)
	login(t, web, viewer, "viewer-secret")
	login(t, web, oper, "operator-secret")
	if resp := post(t, viewer, web.URL+"/api/campaigns/kp/pause", csrf(t, web, viewer)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("viewer pausing with its CSRF token: %d, want 403 (the API's role table)", resp.StatusCode)
	}
	if resp := post(t, oper, web.URL+"/api/campaigns/kp/pause", csrf(t, web, oper)); resp.StatusCode != http.StatusOK {
		t.Errorf("operator pausing: %d, want 200", resp.StatusCode)
	}
	if resp := post(t, oper, web.URL+"/api/campaigns/nope/resume", csrf(t, web, oper)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("operator resuming an unknown campaign: %d, want 404", resp.StatusCode)
	}
}

func TestCSRFEnforced(t *testing.T) {
	web := dashboard(t)
	oper, other := browser(t, web), browser(t, web)
	login(t, web, oper, "operator-secret")
	login(t, web, other, "operator-secret")
	for _, c := range []struct {
		name, token string
	}{{"no token", ""}, {"a made-up token", randomToken()}, {"another session's token", csrf(t, web, other)}} {
		if resp := post(t, oper, web.URL+"/api/campaigns/kp/pause", c.token); resp.StatusCode != http.StatusForbidden {
			t.Errorf("operator pausing with %s: %d, want 403", c.name, resp.StatusCode)
		}
	}
	if resp := post(t, oper, web.URL+"/logout", ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("logout without a CSRF token: %d, want 403", resp.StatusCode)
	}
	if resp := post(t, oper, web.URL+"/logout", csrf(t, web, oper)); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d, want 303", resp.StatusCode)
	}
	resp, err := oper.Get(web.URL + "/api/campaigns")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after logout: %d, want 401", resp.StatusCode)
	}
}

func TestCheckPlain(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true, "127.3.2.1:80": true,
		"0.0.0.0:8080": false, ":8080": false, "192.0.2.1:8080": false, "[2001:db8::1]:80": false, "example.org:80": false, "nonsense": false} {
		if err := CheckPlain(addr); (err == nil) != ok {
			t.Errorf("CheckPlain(%q) = %v, want allowed %v", addr, err, ok)
		}
	}
}

func TestSessionsBounded(t *testing.T) {
	clock := fixture.NewClock(t0)
	s := newSessions(time.Hour, 3, clock.Now)
	var ids []string
	for range 5 {
		ids = append(ids, s.create("x", "").id)
		clock.Add(time.Second)
	}
	if len(s.byID) != 3 || s.get(ids[0]) != nil || s.get(ids[4]) == nil {
		t.Errorf("%d sessions kept; first %v last %v: want 3, the oldest gone", len(s.byID), s.get(ids[0]) != nil, s.get(ids[4]) != nil)
	}
	clock.Add(time.Hour)
	if s.get(ids[4]) != nil {
		t.Error("a session outlived its TTL")
	}
}

// The bundle is served from the binary, to anyone (it holds no data), and
// every page links it.
func TestStaticBundle(t *testing.T) {
	web := dashboard(t)
	c := browser(t, web)
	for path, ctype := range map[string]string{"/static/app.js": "text/javascript", "/static/app.css": "text/css"} {
		resp, err := c.Get(web.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || resp.ContentLength < 500 {
			t.Errorf("%s: %d %q %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.ContentLength)
		}
	}
	resp, err := c.Get(web.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	io.Copy(&b, resp.Body)
	if !strings.Contains(b.String(), `src="/static/app.js"`) || !strings.Contains(b.String(), `href="/static/app.css"`) {
		t.Errorf("login page does not link the bundle: %.300s", b.String())
	}
}
