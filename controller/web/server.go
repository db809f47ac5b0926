package web

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// CookieName is the session cookie's name.
const CookieName = "vantage_session"

// Config is what the dashboard server needs.
type Config struct {
	// Operator is a client of the controller's own OperatorService.
	Operator vantagev1.OperatorServiceClient
	Logger   *slog.Logger
	// SessionTTL: a session ends this long after login. Default 12 h.
	SessionTTL time.Duration
	// MaxSessions bounds the logged-in browsers kept. Default 10,000.
	MaxSessions int
	// CallTimeout bounds each gRPC call a request makes. Default 10 s.
	CallTimeout time.Duration
	Now         func() time.Time
}

// Server serves the dashboard. Its zero value is not usable; use New.
type Server struct {
	cfg      Config
	sessions *sessions
	mux      *http.ServeMux
}

// New returns a dashboard server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 10000
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, sessions: newSessions(cfg.SessionTTL, cfg.MaxSessions, cfg.Now), mux: http.NewServeMux()}
	s.mux.Handle("GET /static/", staticHandler())
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.authed(s.mutating(s.logout)))
	s.mux.HandleFunc("GET /{$}", s.authed(s.overview))
	s.mux.HandleFunc("GET /campaigns/{name}", s.authed(s.campaignPage))
	s.mux.HandleFunc("GET /campaigns/{name}/episode", s.authed(s.episodePage))
	s.mux.HandleFunc("GET /campaigns/{name}/results", s.authed(s.resultsPage))
	s.mux.HandleFunc("GET /api/session", s.authed(s.sessionInfo))
	s.mux.HandleFunc("GET /api/campaigns", s.authed(s.campaigns))
	s.mux.HandleFunc("GET /api/overview", s.authed(s.overviewData))
	s.mux.HandleFunc("GET /api/agents", s.authed(s.agentsData))
	s.mux.HandleFunc("GET /agents", s.authed(s.agentsPage))
	s.mux.HandleFunc("GET /api/campaigns/{name}/view", s.authed(s.campaignView))
	s.mux.HandleFunc("GET /api/campaigns/{name}/episode", s.authed(s.episodeView))
	s.mux.HandleFunc("GET /api/campaigns/{name}/results", s.authed(s.resultsData))
	s.mux.HandleFunc("GET /api/campaigns/{name}/targets", s.authed(s.targets))
	s.mux.HandleFunc("GET /api/campaigns/{name}/series", s.authed(s.seriesView))
	s.mux.HandleFunc("GET /api/watch", s.authed(s.watch))
	s.mux.HandleFunc("POST /api/campaigns/{name}/pause", s.authed(s.mutating(s.pause)))
	s.mux.HandleFunc("POST /api/campaigns/{name}/resume", s.authed(s.mutating(s.resume)))
	return s
}

// ServeHTTP sets the headers every response carries and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Everything the pages load comes from here: no CDN, no inline
	// script, no framing by another site.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	s.mux.ServeHTTP(w, r)
}

// CheckPlain refuses plain HTTP on anything but a loopback address: the
// session cookie and the token at login would cross the network in clear.
func CheckPlain(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("web address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("web address %q: plain HTTP is only allowed on loopback (127.0.0.0/8, ::1), behind a proxy that terminates TLS; serve HTTPS elsewhere", addr)
	}
	return nil
}

type sessionKey struct{}

func sessionOf(r *http.Request) *session {
	ses, _ := r.Context().Value(sessionKey{}).(*session)
	return ses
}

// authed requires a live session: a page without one redirects to the
// login, an /api/ call gets 401.
func (s *Server) authed(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ses *session
		if c, err := r.Cookie(CookieName); err == nil {
			ses = s.sessions.get(c.Value)
		}
		if ses == nil {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				writeError(w, http.StatusUnauthorized, "not logged in: POST /login with an operator token")
				return
			}
			http.Redirect(w, r, "/login?next="+urlPath(r), http.StatusSeeOther)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, ses)))
	}
}

// mutating requires the session's CSRF token (header or form field).
func (s *Server) mutating(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-CSRF-Token")
		if got == "" {
			got = r.PostFormValue("csrf")
		}
		if !sessionOf(r).csrfOK(got) {
			writeError(w, http.StatusForbidden, "missing or wrong CSRF token (X-CSRF-Token header or csrf field)")
			return
		}
		next(w, r)
	}
}

// urlPath is the request's path and query, to come back to after login;
// only a local path is kept.
func urlPath(r *http.Request) string {
	p := r.URL.RequestURI()
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return "/"
	}
	return p
}

// call is the context of a gRPC call on behalf of the session.
func (s *Server) call(r *http.Request, ses *session) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CallTimeout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+ses.secret), cancel
}

// fail writes a gRPC error as its HTTP status. A token no longer accepted
// (revoked, expired) ends the session.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	st := status.Convert(err)
	code := httpStatus(st.Code())
	if st.Code() == codes.Unauthenticated {
		if ses := sessionOf(r); ses != nil {
			s.sessions.drop(ses.id)
		}
	}
	if code >= 500 {
		s.cfg.Logger.Warn("web: call failed", "path", r.URL.Path, "code", st.Code().String(), "err", st.Message())
	}
	writeError(w, code, st.Message())
}

func httpStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded, codes.Canceled:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

// writeJSON writes v as a JSON answer no cache keeps (it is a view of now).
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

var marshal = protojson.MarshalOptions{EmitUnpopulated: false, UseProtoNames: true}

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := marshal.Marshal(m)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("encode: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.}} · vantage</title><link rel="stylesheet" href="/static/app.css"><script src="/static/app.js" defer></script></head><body>{{end}}
{{define "login"}}{{template "head" "Log in"}}
<main><h1>vantage</h1>
<form method="post" action="/login">
<label for="token">Operator token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{{.Next}}">
<button type="submit">Log in</button>
</form>
{{if .Error}}<p role="alert" id="login-error">{{.Error}}</p>{{end}}
</main></body></html>{{end}}
{{define "campaign"}}{{template "head" .Name}}
<main id="campaign" data-campaign="{{.Name}}"><p><a href="/">All campaigns</a></p><h1>{{.Name}}</h1>
<form id="window" method="get"><label>From <input name="from" value="{{.From}}" placeholder="RFC 3339"></label> <label>To <input name="to" value="{{.To}}" placeholder="now"></label> <button type="submit">Show</button></form>
<p id="live" aria-live="polite"></p>
<section><h2>State</h2><div id="bands"></div></section>
<section><h2>Loss and RTT</h2><div id="charts"></div></section>
<section><h2>BGP</h2><table id="bgp"><thead><tr><th>Prefix</th><th>Network</th><th>Visibility</th><th>Updates/min (baseline)</th><th>Last path</th></tr></thead><tbody></tbody></table></section>
<section><h2>Episodes</h2><table id="episodes"><thead><tr><th>From</th><th>To</th><th>Worst</th><th>Where</th><th>Upstream</th><th>Cause</th></tr></thead><tbody></tbody></table></section>
</main></body></html>{{end}}
{{define "episode"}}{{template "head" "Episode"}}
<main id="episode" data-campaign="{{.Name}}"><p><a href="/campaigns/{{.Name}}">{{.Name}}</a></p><h1>{{.Name}}: {{.From}} to {{.To}}</h1>
<p id="live" aria-live="polite"></p>
<section><h2>Traceroute paths</h2><p>Each vantage's newest trace to each target, a network's hosts merged; a ✕ marks where paths die.</p><div id="graph"></div></section>
<section><h2>Verdicts</h2><table id="transitions"><thead><tr><th>Detected</th><th>Subject</th><th>Change</th><th>Where</th><th>Router</th><th>Cause</th><th>Evidence</th></tr></thead><tbody></tbody></table></section>
<section><h2>Evidence behind each verdict</h2><p>What <code>vantagectl explain</code> shows for each transition, with each vantage's raw results over its rounds. The scope's latest is open.</p><div id="evidence"></div></section>
<section><h2>BGP updates</h2><table id="bgp-updates"><thead><tr><th>At</th><th>Peer</th><th>Prefix</th><th>Update</th><th>AS path</th></tr></thead><tbody></tbody></table></section>
</main></body></html>{{end}}
{{define "results"}}{{template "head" "Raw results"}}
<main id="results-page" data-campaign="{{.Name}}"><p><a href="/campaigns/{{.Name}}?from={{.Start}}&amp;to={{.End}}">{{.Name}}</a></p><h1>{{.Name}}: raw results, {{.Start}} to {{.End}}</h1>
<form id="results-filter" method="get"><label>Vantage <input name="agent" value="{{.Agent}}" placeholder="agent id"></label> <label>Target <input name="target" value="{{.Target}}" placeholder="IP address"></label> <label>Network <input name="network" value="{{.Network}}"></label> <label>From <input name="from" value="{{.From}}" placeholder="RFC 3339"></label> <label>To <input name="to" value="{{.To}}" placeholder="now"></label> <label>Limit <input name="limit" value="{{.Limit}}" placeholder="200, at most 1000" inputmode="numeric"></label> <button type="submit">Show</button></form>
<p id="results-status" aria-live="polite"></p>
<table id="results"><thead><tr><th>Sent</th><th>Vantage</th><th>Round</th><th>Target</th><th>Kind</th><th>Outcome</th><th>RTT</th><th>From</th><th>Hops</th></tr></thead><tbody></tbody></table>
</main></body></html>{{end}}
{{define "agents"}}{{template "head" "Agents"}}
<main id="agents-page"><p><a href="/">All campaigns</a></p><h1>Agents</h1>
<table id="agent-list"><thead><tr><th>Agent</th><th>State</th><th>Session</th><th>Health</th><th>Last seen</th><th>Spool pending</th><th>Dropped</th><th>Gaps</th><th>Results</th><th>Tasks</th><th>Engines</th><th>Version</th></tr></thead><tbody></tbody></table>
<p><button id="more" hidden>More</button></p>
</main></body></html>{{end}}
{{define "overview"}}{{template "head" "Overview"}}
<main><h1>Campaigns</h1>
<table id="campaigns"><thead><tr><th>Campaign</th><th>Scope</th><th>State</th><th>Last day</th></tr></thead><tbody>
{{range .Campaigns}}<tr><td><a href="/campaigns/{{.Name}}">{{.Name}}</a></td><td>{{.Scope}}</td><td class="state state-{{.StateClass}}">{{.State}}</td><td></td></tr>{{end}}
</tbody></table>
<h2><a href="/agents">Agents</a></h2>
<table id="agents"><thead><tr><th>Agent</th><th>Session</th><th>Health</th><th>Last seen</th><th>Version</th></tr></thead><tbody></tbody></table>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Log out</button></form>
</main></body></html>{{end}}
`))

type loginView struct{ Next, Error string }

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		next = "/"
	}
	render(w, http.StatusOK, "login", loginView{Next: next})
}

func render(w http.ResponseWriter, code int, name string, v any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := pages.ExecuteTemplate(w, name, v); err != nil {
		slog.Warn("web: render", "page", name, "err", err)
	}
}

// login swaps an operator token for a session. The token is checked by
// the cheapest viewer call; one the API refuses is refused here.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	secret := strings.TrimSpace(r.PostFormValue("token"))
	next := r.PostFormValue("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		next = "/"
	}
	if secret == "" {
		render(w, http.StatusBadRequest, "login", loginView{Next: next, Error: "token: empty"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CallTimeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
	if _, err := s.cfg.Operator.ListCampaigns(ctx, &vantagev1.ListCampaignsRequest{}); err != nil {
		st := status.Convert(err)
		msg := "token: " + st.Message()
		if st.Code() == codes.Unauthenticated {
			msg = "token: not accepted (unknown, revoked or expired)"
		}
		render(w, httpStatus(st.Code()), "login", loginView{Next: next, Error: msg})
		return
	}
	ses := s.sessions.create(secret, "")
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: ses.id, Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, Expires: ses.expires, MaxAge: int(s.cfg.SessionTTL / time.Second)})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.sessions.drop(sessionOf(r).id)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// sessionInfo gives the page its CSRF token (the cookie is HttpOnly: the
// page cannot read it, and a CSRF token in it would prove nothing).
func (s *Server) sessionInfo(w http.ResponseWriter, r *http.Request) {
	ses := sessionOf(r)
	writeJSON(w, map[string]any{"csrf": ses.csrf, "expires": ses.expires.UTC().Format(time.RFC3339)})
}

// campaignPage is the campaign page's shell; the script fills it from
// /api/campaigns/NAME/view with the window in the page's URL, so a link
// shows the same view.
func (s *Server) campaignPage(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.window(r); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := r.URL.Query()
	render(w, http.StatusOK, "campaign", struct{ Name, From, To string }{r.PathValue("name"), q.Get("from"), q.Get("to")})
}

func (s *Server) agentsPage(w http.ResponseWriter, r *http.Request) {
	render(w, http.StatusOK, "agents", nil)
}

// episodePage is the episode page's shell, for the window in the URL.
func (s *Server) episodePage(w http.ResponseWriter, r *http.Request) {
	from, to, err := s.window(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	render(w, http.StatusOK, "episode", struct{ Name, From, To string }{r.PathValue("name"), from.Format(time.RFC3339), to.Format(time.RFC3339)})
}

type campaignRow struct{ Name, Scope, State, StateClass string }

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	ses := sessionOf(r)
	ctx, cancel := s.call(r, ses)
	defer cancel()
	resp, err := s.cfg.Operator.ListCampaigns(ctx, &vantagev1.ListCampaignsRequest{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var rows []campaignRow
	for _, c := range resp.GetCampaigns() {
		st := strings.TrimPrefix(c.GetState().String(), "CAMPAIGN_STATE_")
		rows = append(rows, campaignRow{Name: c.GetName(), Scope: c.GetScope(), State: st, StateClass: strings.ToLower(st)})
	}
	render(w, http.StatusOK, "overview", struct {
		Campaigns []campaignRow
		CSRF      string
	}{rows, ses.csrf})
}

func (s *Server) campaigns(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel()
	resp, err := s.cfg.Operator.ListCampaigns(ctx, &vantagev1.ListCampaignsRequest{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeProto(w, resp)
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel()
	c, err := s.cfg.Operator.PauseCampaign(ctx, &vantagev1.PauseCampaignRequest{Name: r.PathValue("name")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeProto(w, c)
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.call(r, sessionOf(r))
	defer cancel()
	c, err := s.cfg.Operator.ResumeCampaign(ctx, &vantagev1.ResumeCampaignRequest{Name: r.PathValue("name")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeProto(w, c)
}
