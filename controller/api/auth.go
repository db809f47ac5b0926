package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/store"
)

// ServicePrefix is the prefix of every OperatorService full method name.
const ServicePrefix = "/vantage.v1.OperatorService/"

// methodRoles is the one table of the least role each method needs, of
// OperatorService and ExportService (whose method names differ). A method
// missing here is refused.
var methodRoles = map[string]store.Role{
	"ListAgents":          store.RoleViewer,
	"ListCampaigns":       store.RoleViewer,
	"GetCampaign":         store.RoleViewer,
	"QueryResults":        store.RoleViewer,
	"GetVerdicts":         store.RoleViewer,
	"WatchVerdicts":       store.RoleViewer,
	"GetTimeline":         store.RoleViewer,
	"GetSeries":           store.RoleViewer,
	"Explain":             store.RoleViewer,
	"Replay":              store.RoleViewer,
	"ListAudit":           store.RoleViewer,
	"GetBgpStatus":        store.RoleViewer,
	"ListBgpUpdates":      store.RoleViewer,
	"WatchBgp":            store.RoleViewer,
	"ExportResults":       store.RoleViewer, // ExportService
	"ExportEpisodes":      store.RoleViewer,
	"ExportBgp":           store.RoleViewer,
	"ImportBgpUpdates":    store.RoleOperator,
	"ApplyCampaign":       store.RoleOperator,
	"PauseCampaign":       store.RoleOperator,
	"ResumeCampaign":      store.RoleOperator,
	"DeleteCampaign":      store.RoleOperator,
	"CreateJoinToken":     store.RoleOperator,
	"ListJoinTokens":      store.RoleOperator,
	"RevokeJoinToken":     store.RoleOperator,
	"CreateOperatorToken": store.RoleAdmin,
	"ApproveAgent":        store.RoleAdmin,
	"RevokeAgent":         store.RoleAdmin,
}

type tokenKey struct{}

// caller returns the authenticated operator token of a request.
func caller(ctx context.Context) store.OperatorToken {
	t, _ := ctx.Value(tokenKey{}).(store.OperatorToken)
	return t
}

// actor is the audit log's name for the caller.
func actor(ctx context.Context) string { return "operator:" + caller(ctx).Name }

// authorize checks the bearer token and the role for an OperatorService
// method (its name without ServicePrefix).
func (s *Server) authorize(ctx context.Context, method string) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var secret string
	if v := md.Get("authorization"); len(v) == 1 {
		if tok, ok := strings.CutPrefix(v[0], "Bearer "); ok {
			secret = strings.TrimSpace(tok)
		}
	}
	tok, err := s.cfg.Fleet.Authenticate(ctx, secret)
	if err != nil {
		// An agent's certificate is not an operator credential: an agent
		// (or whoever stole its key) calling OperatorService is denied,
		// not merely asked to authenticate.
		if errors.Is(err, fleet.ErrBadOperatorToken) && hasClientCert(ctx) {
			return ctx, fmt.Errorf("%w: %s: an agent certificate is not an operator credential", rpcerr.ErrPermission, method)
		}
		return ctx, err
	}
	need, ok := methodRoles[method]
	if !ok {
		return ctx, fmt.Errorf("%w: method %s is not in the role table", rpcerr.ErrPermission, method)
	}
	if tok.Role < need {
		return ctx, fmt.Errorf("%w: %s needs role %s, token %q has %s", rpcerr.ErrPermission, method, need, tok.Name, tok.Role)
	}
	return context.WithValue(ctx, tokenKey{}, tok), nil
}

// hasClientCert reports whether the peer presented a verified client
// certificate (only agents have them).
func hasClientCert(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(ti.State.VerifiedChains) > 0
}

// operatorMethod returns the method name of an OperatorService or
// ExportService full method name; ok is false for other services.
func operatorMethod(full string) (string, bool) {
	if m, ok := strings.CutPrefix(full, ServicePrefix); ok {
		return m, true
	}
	return strings.CutPrefix(full, ExportPrefix)
}

// DeadlineInterceptor bounds every unary call, whatever deadline the
// client sets (or not): a handler stuck on the store cannot pin a
// goroutine and a connection forever.
func DeadlineInterceptor(d time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > d {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return handler(ctx, req)
	}
}

// UnaryInterceptor authenticates and authorizes unary OperatorService
// (and ExportService) calls, counts the query methods against the token's limit, and converts
// the call's error, once, through OperatorService's table (the handlers
// return sentinels). Other services (AgentService, health, reflection)
// pass through.
func (s *Server) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		method, ok := operatorMethod(info.FullMethod)
		if !ok {
			return handler(ctx, req)
		}
		ctx, err := s.authorize(ctx, method)
		if err != nil {
			return nil, s.fail(method, err)
		}
		resp, err := s.guardUnary(ctx, method, req, handler)
		return resp, s.fail(method, err)
	}
}

// StreamInterceptor is UnaryInterceptor for streaming calls, which it runs
// under the StreamLimits.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		method, ok := operatorMethod(info.FullMethod)
		if !ok {
			return handler(srv, ss)
		}
		ctx, err := s.authorize(ss.Context(), method)
		if err != nil {
			return s.fail(method, err)
		}
		return s.fail(method, s.guardStream(ctx, method, srv, ss, handler))
	}
}
