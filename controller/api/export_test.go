package api

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var exportT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type exportEnv struct {
	ev     fixture.Evidence
	client vantagev1.ExportServiceClient
	viewer context.Context
}

// exportServer serves OperatorService and ExportService, as the
// controller does, over TLS on loopback, from a real store holding
// fixture.StoreEvidence's 10 rounds.
func exportServer(t *testing.T) exportEnv {
	t.Helper()
	db, ca, _ := fixture.StoreAndCA(t)
	ev := fixture.StoreEvidence(t, db, exportT0, 10)
	fixture.OperatorTokens(t, db, exportT0)
	s := New(Config{Store: db, Fleet: fleet.New(db, ca, fleet.Options{}), Now: func() time.Time { return exportT0.Add(time.Hour) }})
	addr := fixture.ServeTLS(t, ca, func(g *grpc.Server) {
		vantagev1.RegisterOperatorServiceServer(g, s)
		vantagev1.RegisterExportServiceServer(g, s.Exporter())
	}, s.Wait, grpc.UnaryInterceptor(s.UnaryInterceptor()), grpc.StreamInterceptor(s.StreamInterceptor()))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return exportEnv{ev: ev, client: vantagev1.NewExportServiceClient(conn),
		viewer: metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer viewer-secret")}
}

func (e exportEnv) req(after string) *vantagev1.ExportRequest {
	return &vantagev1.ExportRequest{Campaign: "kp", From: timestamppb.New(e.ev.From), To: timestamppb.New(e.ev.To), After: after}
}

type cursored interface{ GetCursor() string }

// drain reads a stream to its end.
func drain[T cursored](stream interface{ Recv() (T, error) }, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	var out []T
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

// checkResume checks that resuming after each message's cursor gives
// exactly the messages after it: same cursors, in order, no more.
func checkResume[T cursored](t *testing.T, all []T, again func(after string) ([]T, error)) {
	t.Helper()
	cursors := func(ms []T) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.GetCursor())
		}
		return out
	}
	want := cursors(all)
	if len(slices.Compact(slices.Clone(want))) != len(want) {
		t.Fatalf("cursors repeat: %v", want)
	}
	for i := range all {
		rest, err := again(want[i])
		if err != nil {
			t.Fatalf("after message %d: %v", i, err)
		}
		if got := cursors(rest); !slices.Equal(got, want[i+1:]) {
			t.Fatalf("after message %d of %d: got %d messages, want %d", i, len(all), len(got), len(want)-i-1)
		}
	}
}

func TestExportResults(t *testing.T) {
	e := exportServer(t)
	all, err := drain(e.client.ExportResults(e.viewer, e.req("")))
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for i, m := range all {
		r := m.GetResult()
		per[r.GetAgentId()]++
		if r.GetResult().GetCampaign() != "kp" || r.GetResult().GetRound() < 0 {
			t.Errorf("result %d: campaign %s round %d, outside the export", i, r.GetResult().GetCampaign(), r.GetResult().GetRound())
		}
		if m.GetAgentName() != "vantage-"+r.GetAgentId() {
			t.Errorf("result %d: agent name %q", i, m.GetAgentName())
		}
		if i > 0 {
			p := all[i-1].GetResult()
			a, b := p.GetResult().GetSentAt().AsTime(), r.GetResult().GetSentAt().AsTime()
			if b.Before(a) || b.Equal(a) && p.GetAgentId() > r.GetAgentId() {
				t.Errorf("result %d (%s %s) before result %d (%s %s)", i, b, r.GetAgentId(), i-1, a, p.GetAgentId())
			}
		}
	}
	if !maps(per, e.ev.Results) {
		t.Errorf("results per agent = %v, want %v", per, e.ev.Results)
	}
	checkResume(t, all, func(after string) ([]*vantagev1.ExportedResult, error) {
		return drain(e.client.ExportResults(e.viewer, e.req(after)))
	})
}

func maps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestExportEpisodes(t *testing.T) {
	e := exportServer(t)
	all, err := drain(e.client.ExportEpisodes(e.viewer, e.req("")))
	if err != nil {
		t.Fatal(err)
	}
	type ep struct {
		verdict    string
		start, end time.Duration
		state      vantagev1.State
		upstream   string
		cause      vantagev1.Cause
	}
	var got []ep
	for _, m := range all {
		x := m.GetEpisode()
		g := ep{verdict: x.GetVerdictId(), start: x.GetStartLatest().AsTime().Sub(exportT0), end: -1, state: x.GetState(),
			upstream: x.GetUpstream().GetName(), cause: x.GetCause().GetCause()}
		if x.GetEndLatest() != nil {
			g.end = x.GetEndLatest().AsTime().Sub(exportT0)
		}
		got = append(got, g)
	}
	want := []ep{
		{"kp/network/net0", 20 * time.Second, 50 * time.Second, vantagev1.State_STATE_UNREACHABLE, "upstream-a", vantagev1.Cause_CAUSE_UPSTREAM},
		{"kp/scope/KP", 30 * time.Second, 60 * time.Second, vantagev1.State_STATE_UNREACHABLE, "", vantagev1.Cause_CAUSE_UNSPECIFIED},
		{"kp/scope/KP", 80 * time.Second, -1, vantagev1.State_STATE_DEGRADED, "", vantagev1.Cause_CAUSE_UNSPECIFIED},
	}
	if !slices.Equal(got, want) {
		t.Errorf("episodes:\n got %v\nwant %v", got, want)
	}
	checkResume(t, all, func(after string) ([]*vantagev1.ExportedEpisode, error) {
		return drain(e.client.ExportEpisodes(e.viewer, e.req(after)))
	})
	scope := e.req("")
	scope.Level = vantagev1.Level_LEVEL_SCOPE
	if ms, err := drain(e.client.ExportEpisodes(e.viewer, scope)); err != nil || len(ms) != 2 {
		t.Errorf("scope episodes: %d, %v; want 2", len(ms), err)
	}
}

func TestExportBgp(t *testing.T) {
	e := exportServer(t)
	all, err := drain(e.client.ExportBgp(e.viewer, e.req("")))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range all {
		got = append(got, m.GetUpdate().GetAt().AsTime().Sub(exportT0).String()+" "+m.GetUpdate().GetPrefix())
	}
	// Not 203.0.113.0/24 (another campaign's), nor the update at the
	// window's end.
	if want := []string{"30s 198.18.0.0/24", "40s 198.18.1.0/24", "1m0s 198.18.0.0/24"}; !slices.Equal(got, want) {
		t.Errorf("updates = %v, want %v", got, want)
	}
	checkResume(t, all, func(after string) ([]*vantagev1.ExportedBgpUpdate, error) {
		return drain(e.client.ExportBgp(e.viewer, e.req(after)))
	})
}

func TestExportRefuses(t *testing.T) {
	e := exportServer(t)
	results, err := drain(e.client.ExportResults(e.viewer, e.req("")))
	if err != nil || len(results) == 0 {
		t.Fatalf("results: %d, %v", len(results), err)
	}
	inverted := e.req("")
	inverted.From, inverted.To = inverted.To, inverted.From
	for _, tc := range []struct {
		name string
		ctx  context.Context
		req  *vantagev1.ExportRequest
		code codes.Code
		msg  string
	}{
		{"no token", context.Background(), e.req(""), codes.Unauthenticated, ""},
		{"no campaign", e.viewer, &vantagev1.ExportRequest{From: e.req("").From, To: e.req("").To}, codes.InvalidArgument, "campaign: required"},
		{"no window", e.viewer, &vantagev1.ExportRequest{Campaign: "kp"}, codes.InvalidArgument, "from and to: both required"},
		{"inverted window", e.viewer, inverted, codes.InvalidArgument, "is not after from"},
		{"unknown campaign", e.viewer, &vantagev1.ExportRequest{Campaign: "nope", From: e.req("").From, To: e.req("").To}, codes.NotFound, "nope"},
		{"garbage cursor", e.viewer, e.req("r1.!!"), codes.InvalidArgument, "after: not a cursor of this export"},
		{"another method's cursor", e.viewer, e.req("e1.WyJrcC9zY29wZS9LUCIsMCwxXQ"), codes.InvalidArgument, `want one beginning "r1."`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := drain(e.client.ExportResults(tc.ctx, tc.req))
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	// A result cursor is not an episode cursor either.
	_, err = drain(e.client.ExportEpisodes(e.viewer, e.req(results[0].GetCursor())))
	wantCode(t, err, codes.InvalidArgument, `want one beginning "e1."`)
}

// TestRoleTableCoversServices: every OperatorService and ExportService
// method has a row in the one role table (a missing one is refused to
// everybody), and the export methods are a viewer's.
func TestRoleTableCoversServices(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{vantagev1.OperatorService_ServiceDesc, vantagev1.ExportService_ServiceDesc} {
		var names []string
		for _, m := range sd.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range sd.Streams {
			names = append(names, s.StreamName)
		}
		for _, n := range names {
			if _, ok := methodRoles[n]; !ok {
				t.Errorf("%s/%s is not in methodRoles", sd.ServiceName, n)
			}
		}
	}
	for _, n := range []string{"ExportResults", "ExportEpisodes", "ExportBgp"} {
		if methodRoles[n] != store.RoleViewer || !queryMethods[n] {
			t.Errorf("%s: role %v, counted %v; want viewer, counted", n, methodRoles[n], queryMethods[n])
		}
	}
}
