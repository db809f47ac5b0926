package api

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var bgpT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type bgpEnv struct {
	db     *sqlite.DB
	rib    *bgp.RIB
	client vantagev1.OperatorServiceClient
	viewer context.Context
	oper   context.Context
}

// bgpServer serves OperatorService over a real store holding campaign kp
// (networks 198.18.0.0/24 and 198.18.1.0/24) with a RIB monitoring them,
// fed two peers' announcements; the clock is bgpT0 + 1 min.
func bgpServer(t *testing.T, limits StreamLimits) bgpEnv {
	t.Helper()
	db, ca, _ := fixture.StoreAndCA(t)
	ctx := context.Background()
	fixture.PutCampaign(t, db, "kp", fixture.Campaign{Name: "kp", Networks: []string{"198.18.0.0/24", "198.18.1.0/24"}}.YAML(), bgpT0)
	fixture.PutCampaign(t, db, "other", fixture.Campaign{Name: "other", Networks: []string{"203.0.113.0/24"}}.YAML(), bgpT0)
	rib := bgp.NewRIB(bgp.Options{})
	rib.SetMonitored(map[netip.Prefix]bgp.Monitor{
		netip.MustParsePrefix("198.18.0.0/24"):  {Campaign: "kp", Network: "net0"},
		netip.MustParsePrefix("198.18.1.0/24"):  {Campaign: "kp", Network: "net1"},
		netip.MustParsePrefix("203.0.113.0/24"): {Campaign: "other", Network: "net0"},
	})
	for i, peer := range []string{"192.0.2.1", "192.0.2.2"} {
		for _, p := range []string{"198.18.0.0/24", "198.18.1.0/24"} {
			rib.Update(bgpUpd(peer, p, 10+i, false))
		}
	}
	fixture.OperatorTokens(t, db, bgpT0)
	s := New(Config{Store: db, Fleet: fleet.New(db, ca, fleet.Options{}), RIB: rib, StreamLimits: limits,
		Now: func() time.Time { return bgpT0.Add(time.Minute) }})
	addr := fixture.ServeTLS(t, ca, func(g *grpc.Server) { vantagev1.RegisterOperatorServiceServer(g, s) }, s.Wait,
		grpc.UnaryInterceptor(s.UnaryInterceptor()), grpc.StreamInterceptor(s.StreamInterceptor()))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return bgpEnv{db: db, rib: rib, client: vantagev1.NewOperatorServiceClient(conn),
		viewer: metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer viewer-secret"),
		oper:   metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer operator-secret")}
}

func bgpUpd(peer, prefix string, sec int, withdraw bool) bgp.Update {
	u := bgp.Update{At: bgpT0.Add(time.Duration(sec) * time.Second), Peer: netip.MustParseAddr(peer), PeerAS: 64501,
		Prefix: netip.MustParsePrefix(prefix), Withdraw: withdraw, Source: "bgp:" + peer}
	if !withdraw {
		u.ASPath, u.NextHop = []uint32{64501, 64500}, u.Peer
	}
	return u
}

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("error = %v %q; want %v containing %q", st.Code(), st.Message(), code, msg)
	}
}

func TestGetBgpStatus(t *testing.T) {
	e := bgpServer(t, StreamLimits{})
	for _, tc := range []struct {
		name     string
		req      *vantagev1.GetBgpStatusRequest
		prefixes []string
	}{
		{"every monitored prefix", &vantagev1.GetBgpStatusRequest{}, []string{"198.18.0.0/24", "198.18.1.0/24", "203.0.113.0/24"}},
		{"one campaign", &vantagev1.GetBgpStatusRequest{Campaign: "kp"}, []string{"198.18.0.0/24", "198.18.1.0/24"}},
		{"one prefix, host bits masked", &vantagev1.GetBgpStatusRequest{Prefix: "198.18.1.7/24"}, []string{"198.18.1.0/24"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.client.GetBgpStatus(e.viewer, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetPeers()) != 2 || resp.GetPeers()[0].GetState() != "established" {
				t.Errorf("peers = %v", resp.GetPeers())
			}
			var got []string
			for _, p := range resp.GetPrefixes() {
				got = append(got, p.GetPrefix())
			}
			if strings.Join(got, " ") != strings.Join(tc.prefixes, " ") {
				t.Errorf("prefixes = %v, want %v", got, tc.prefixes)
			}
			if p := resp.GetPrefixes()[0]; p.GetPrefix() != "203.0.113.0/24" && (!p.GetVisible() || p.GetPeersWithRoute() != 2) {
				t.Errorf("%s: visible %v with %d routes, want visible with 2", p.GetPrefix(), p.GetVisible(), p.GetPeersWithRoute())
			}
		})
	}
	_, err := e.client.GetBgpStatus(e.viewer, &vantagev1.GetBgpStatusRequest{Prefix: "198.18.0.0"})
	wantCode(t, err, codes.InvalidArgument, `prefix: "198.18.0.0" is not a prefix`)
	_, err = e.client.GetBgpStatus(e.viewer, &vantagev1.GetBgpStatusRequest{Campaign: "nope"})
	wantCode(t, err, codes.NotFound, "not found")
}

// TestGetBgpStatusEmpty: without a collector the RIB is empty, not missing.
func TestGetBgpStatusEmpty(t *testing.T) {
	db, ca, _ := fixture.StoreAndCA(t)
	c, ctx := serveOperator(t, db, ca)
	resp, err := c.GetBgpStatus(ctx, &vantagev1.GetBgpStatusRequest{})
	if err != nil || len(resp.GetPeers()) != 0 || len(resp.GetPrefixes()) != 0 {
		t.Fatalf("GetBgpStatus = %v, %v; want nothing, no error", resp, err)
	}
}

func recvAll(t *testing.T, s grpc.ServerStreamingClient[vantagev1.BgpUpdate]) ([]string, error) {
	t.Helper()
	var out []string
	for {
		u, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		kind := "A"
		if u.GetWithdraw() {
			kind = "W"
		}
		out = append(out, u.GetPrefix()+kind)
	}
}

func TestImportAndListBgpUpdates(t *testing.T) {
	e := bgpServer(t, StreamLimits{})
	var ups []*vantagev1.BgpUpdate
	for i, p := range []string{"198.18.0.0/24", "198.18.0.0/16", "192.0.2.0/24", "198.18.1.0/25", "203.0.113.0/24"} {
		ups = append(ups, bgpUpd("192.0.2.9", p, 20+i, i == 0).Proto())
	}
	_, err := e.client.ImportBgpUpdates(e.viewer, &vantagev1.ImportBgpUpdatesRequest{Source: "mrt:x", Updates: ups})
	wantCode(t, err, codes.PermissionDenied, "needs role operator")
	resp, err := e.client.ImportBgpUpdates(e.oper, &vantagev1.ImportBgpUpdatesRequest{Source: "mrt:rib.20260301", Updates: ups})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetImported() != 4 || resp.GetSkipped() != 1 {
		t.Errorf("import = %v; want 4 imported, 1 skipped (192.0.2.0/24)", resp)
	}
	if st := e.rib.StateAt(netip.MustParsePrefix("198.18.1.0/24"), bgpT0.Add(time.Minute)); st.GetPeers() != 3 {
		t.Errorf("the RIB after import has %d peers, want 3", st.GetPeers())
	}
	audit, err := e.db.ListAudit(context.Background(), 1)
	if err != nil || len(audit) != 1 || audit[0].Action != "bgp.import" || audit[0].Subject != "mrt:rib.20260301" ||
		audit[0].Detail != "imported=4 skipped=1" || audit[0].Actor != "operator:operator" {
		t.Errorf("audit = %+v, %v", audit, err)
	}
	from := timestamppb.New(bgpT0.Add(21 * time.Second))
	for _, tc := range []struct {
		name string
		req  *vantagev1.ListBgpUpdatesRequest
		want string
	}{
		{"all", &vantagev1.ListBgpUpdatesRequest{}, "198.18.0.0/24W 198.18.0.0/16A 198.18.1.0/25A 203.0.113.0/24A"},
		{"one prefix: covering and more specific", &vantagev1.ListBgpUpdatesRequest{Prefix: "198.18.1.0/24"}, "198.18.0.0/16A 198.18.1.0/25A"},
		{"a campaign's networks", &vantagev1.ListBgpUpdatesRequest{Campaign: "kp"}, "198.18.0.0/24W 198.18.0.0/16A 198.18.1.0/25A"},
		{"from", &vantagev1.ListBgpUpdatesRequest{Campaign: "kp", From: from}, "198.18.0.0/16A 198.18.1.0/25A"},
		{"limit", &vantagev1.ListBgpUpdatesRequest{Limit: 1}, "198.18.0.0/24W"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := e.client.ListBgpUpdates(e.viewer, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := recvAll(t, s)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("got %v, want %s", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		req  *vantagev1.ListBgpUpdatesRequest
		code codes.Code
		msg  string
	}{
		{"limit over the cap", &vantagev1.ListBgpUpdatesRequest{Limit: MaxBGPUpdateLimit + 1}, codes.InvalidArgument, "limit: 50001 is more than 50000"},
		{"bad prefix", &vantagev1.ListBgpUpdatesRequest{Prefix: "x"}, codes.InvalidArgument, `prefix: "x" is not a prefix`},
		{"to before from", &vantagev1.ListBgpUpdatesRequest{From: from, To: timestamppb.New(bgpT0)}, codes.InvalidArgument, "to: "},
		{"unknown campaign", &vantagev1.ListBgpUpdatesRequest{Campaign: "nope"}, codes.NotFound, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := e.client.ListBgpUpdates(e.viewer, tc.req)
			if err == nil {
				_, err = recvAll(t, s)
			}
			wantCode(t, err, tc.code, tc.msg)
		})
	}
}

func TestImportBgpUpdatesInvalid(t *testing.T) {
	e := bgpServer(t, StreamLimits{})
	good := bgpUpd("192.0.2.9", "198.18.0.0/24", 20, false).Proto()
	hostBits := bgpUpd("192.0.2.9", "198.18.0.0/24", 21, false).Proto()
	hostBits.Prefix = "198.18.0.1/24"
	noPath := bgpUpd("192.0.2.9", "198.18.0.0/24", 22, false).Proto()
	noPath.AsPath = nil
	many := make([]*vantagev1.BgpUpdate, MaxBGPImport+1)
	for i := range many {
		many[i] = good
	}
	for _, tc := range []struct {
		name string
		ups  []*vantagev1.BgpUpdate
		msg  string
	}{
		{"host bits", []*vantagev1.BgpUpdate{good, hostBits}, "invalid argument: updates[1]: invalid BGP update: prefix: 198.18.0.1/24 has host bits set"},
		{"empty path", []*vantagev1.BgpUpdate{good, good, noPath}, "updates[2]: invalid BGP update: as_path: empty in an eBGP announcement"},
		{"too many", many, "updates: 10001, more than 10000 per call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.client.ImportBgpUpdates(e.oper, &vantagev1.ImportBgpUpdatesRequest{Updates: tc.ups})
			wantCode(t, err, codes.InvalidArgument, tc.msg)
		})
	}
	if us, err := e.db.BGPUpdates(context.Background(), store.BGPQuery{}); err != nil || len(us) != 0 {
		t.Errorf("a refused import stored %d updates (%v)", len(us), err)
	}
}

func TestWatchBgp(t *testing.T) {
	e := bgpServer(t, StreamLimits{QueriesPerToken: 2})
	ctx, cancel := context.WithCancel(e.viewer)
	defer cancel()
	byPrefix, err := e.client.WatchBgp(ctx, &vantagev1.WatchBgpRequest{Prefix: "198.18.1.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	byCampaign, err := e.client.WatchBgp(ctx, &vantagev1.WatchBgpRequest{Campaign: "other"})
	if err != nil {
		t.Fatal(err)
	}
	// Both streams are subscribed once a third query is refused (the
	// limit counts them from the interceptor on, before the subscribe:
	// wait for the first update instead).
	deadline := time.Now().Add(10 * time.Second)
	recv := func(s grpc.ServerStreamingClient[vantagev1.BgpUpdate], want string) {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			u, err := s.Recv()
			if err != nil {
				got <- err.Error()
				return
			}
			got <- u.GetPrefix()
		}()
		for {
			select {
			case p := <-got:
				if p != want {
					t.Fatalf("watch got %s, want %s", p, want)
				}
				return
			case <-time.After(20 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatal("no update on the watch")
				}
				// Not subscribed yet, or the update was filtered: send more.
				e.rib.Update(bgpUpd("192.0.2.1", "198.18.0.0/24", 30, true)) // neither watch's
				e.rib.Update(bgpUpd("192.0.2.1", "198.18.1.0/25", 31, false))
				e.rib.Update(bgpUpd("192.0.2.1", "203.0.113.0/24", 32, false))
			}
		}
	}
	recv(byPrefix, "198.18.1.0/25")
	recv(byCampaign, "203.0.113.0/24")
	// A third stream is over the token's query limit.
	s, err := e.client.WatchBgp(e.viewer, &vantagev1.WatchBgpRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	wantCode(t, err, codes.ResourceExhausted, "WatchBgp: token \"viewer\" already has 2 queries running")
}
