package api

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var seriesT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// seriesServer serves OperatorService on loopback TLS over a real SQLite
// store holding campaign "kp" with three rounds of quality points for two
// networks and two vantages, and a transition; it returns a client and
// the context carrying a viewer token.
func seriesServer(t *testing.T) (vantagev1.OperatorServiceClient, context.Context) {
	t.Helper()
	db, ca, _ := fixture.StoreAndCA(t)
	ctx := context.Background()
	fixture.PutCampaign(t, db, "kp", fixture.Campaign{Name: "kp"}.YAML(), seriesT0)
	var ps []*vantagev1.QualityPoint
	for n := int64(0); n < 3; n++ {
		for _, nw := range []string{"net0", "net1"} {
			for _, ag := range []string{"agt-a", "agt-b"} {
				ps = append(ps, &vantagev1.QualityPoint{Campaign: "kp", Network: nw, AgentId: ag, Round: n,
					RoundStart: timestamppb.New(seriesT0.Add(time.Duration(n) * time.Minute)), Probes: 10, FirstTryAnswers: 6, Loss: 0.4,
					RttP50Ms: 12, RttP90Ms: 30, Answers: map[string]uint32{"icmp": 6}})
			}
		}
	}
	if err := db.AddQualityPoints(ctx, ps); err != nil {
		t.Fatal(err)
	}
	tr := &vantagev1.Transition{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, VerdictId: "kp/scope/KP",
		To: vantagev1.State_STATE_DEGRADED, Reason: vantagev1.Reason_REASON_LOSS, DetectedAt: timestamppb.New(seriesT0.Add(90 * time.Second))}
	if err := db.AddTransitions(ctx, []*vantagev1.Transition{tr}); err != nil {
		t.Fatal(err)
	}
	return serveOperator(t, db, ca)
}

// serveOperator serves OperatorService over db on loopback TLS, with a
// viewer token, and returns a client and the context carrying the token.
func serveOperator(t *testing.T, db *sqlite.DB, ca *fleet.CA) (vantagev1.OperatorServiceClient, context.Context) {
	t.Helper()
	ctx := context.Background()
	if err := db.PutOperatorToken(ctx, store.OperatorToken{Name: "viewer", Hash: fleet.HashSecret("viewer-secret"),
		Role: store.RoleViewer, CreatedAt: seriesT0}); err != nil {
		t.Fatal(err)
	}
	s := New(Config{Store: db, Fleet: fleet.New(db, ca, fleet.Options{})})
	addr := fixture.ServeTLS(t, ca, func(g *grpc.Server) { vantagev1.RegisterOperatorServiceServer(g, s) }, s.Wait,
		grpc.UnaryInterceptor(s.UnaryInterceptor()), grpc.StreamInterceptor(s.StreamInterceptor()))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return vantagev1.NewOperatorServiceClient(conn), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer viewer-secret")
}

func TestGetSeries(t *testing.T) {
	c, ctx := seriesServer(t)
	at := func(m int) *timestamppb.Timestamp {
		return timestamppb.New(seriesT0.Add(time.Duration(m) * time.Minute))
	}
	for _, tc := range []struct {
		name string
		req  *vantagev1.GetSeriesRequest
		want int
	}{
		{"all", &vantagev1.GetSeriesRequest{Campaign: "kp"}, 12},
		{"network", &vantagev1.GetSeriesRequest{Campaign: "kp", Network: "net1"}, 6},
		{"vantage and network", &vantagev1.GetSeriesRequest{Campaign: "kp", Network: "net1", AgentId: "agt-b"}, 3},
		{"interval", &vantagev1.GetSeriesRequest{Campaign: "kp", From: at(1), To: at(2)}, 4},
		{"limit", &vantagev1.GetSeriesRequest{Campaign: "kp", Limit: 5}, 5},
	} {
		resp, err := c.GetSeries(ctx, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := len(resp.GetPoints()); got != tc.want {
			t.Errorf("%s: %d points, want %d", tc.name, got, tc.want)
		}
	}
	resp, err := c.GetSeries(ctx, &vantagev1.GetSeriesRequest{Campaign: "kp", Network: "net0", AgentId: "agt-a", Limit: 1})
	if err != nil || len(resp.GetPoints()) != 1 {
		t.Fatalf("newest point: %v, %v", resp, err)
	}
	if p := resp.GetPoints()[0]; p.GetRound() != 2 || p.GetLoss() != 0.4 || p.GetRttP90Ms() != 30 || p.GetAnswers()["icmp"] != 6 {
		t.Errorf("newest point %v", p)
	}
	for _, bad := range []struct {
		req  *vantagev1.GetSeriesRequest
		code codes.Code
		msg  string
	}{
		{&vantagev1.GetSeriesRequest{}, codes.InvalidArgument, "campaign: required"},
		{&vantagev1.GetSeriesRequest{Campaign: "kp", Limit: MaxSeriesLimit + 1}, codes.InvalidArgument, "limit: 50001 is more than 50000"},
		{&vantagev1.GetSeriesRequest{Campaign: "kp", From: at(2), To: at(1)}, codes.InvalidArgument, "to: 2026-01-01T00:01:00Z must be after from 2026-01-01T00:02:00Z"},
		{&vantagev1.GetSeriesRequest{Campaign: "nope"}, codes.NotFound, ""},
	} {
		_, err := c.GetSeries(ctx, bad.req)
		if st, _ := status.FromError(err); st.Code() != bad.code || !containsMsg(st.Message(), bad.msg) {
			t.Errorf("%v: %v, want %s %q", bad.req, err, bad.code, bad.msg)
		}
	}
	if _, err := c.GetSeries(context.Background(), &vantagev1.GetSeriesRequest{Campaign: "kp"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a token: %v", err)
	}
}

func containsMsg(msg, want string) bool { return strings.Contains(msg, want) }

func TestGetTimelineIncludeSeries(t *testing.T) {
	c, ctx := seriesServer(t)
	resp, err := c.GetTimeline(ctx, &vantagev1.GetTimelineRequest{Campaign: "kp"})
	if err != nil || len(resp.GetTransitions()) != 1 || len(resp.GetSeries()) != 0 {
		t.Fatalf("without include_series: %d transitions, %d points, %v", len(resp.GetTransitions()), len(resp.GetSeries()), err)
	}
	resp, err = c.GetTimeline(ctx, &vantagev1.GetTimelineRequest{Campaign: "kp", IncludeSeries: true,
		From: timestamppb.New(seriesT0.Add(time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetTransitions()) != 1 || resp.GetTransitions()[0].GetReason() != vantagev1.Reason_REASON_LOSS {
		t.Errorf("transitions %v", resp.GetTransitions())
	}
	if n := len(resp.GetSeries()); n != 8 {
		t.Errorf("include_series from round 1: %d points, want 8", n)
	}
	for _, p := range resp.GetSeries() {
		if p.GetRound() < 1 {
			t.Errorf("point of round %d before from", p.GetRound())
		}
	}
}
