package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/api"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// sane bounds what the starved calls may take; it is generous because
// failing it means "waits forever".
const sane = 30 * time.Second

// storedResults fills a new data directory with n results of one agent,
// before a controller opens it, and returns the directory.
func storedResults(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	const agent = "agt-00000000000000aa"
	fixture.ActiveAgent(t, db, agent, nil, now)
	const per = 1000
	for first := 1; first <= n; first += per {
		var rs []*vantagev1.ProbeResult
		for s := first; s < first+per && s <= n; s++ {
			rs = append(rs, &vantagev1.ProbeResult{Seq: uint64(s), Campaign: "min", TaskId: "min/icmp/198.18.0.1", Target: "198.18.0.1",
				Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Round: int64(s), SentAt: timestamppb.New(now.Add(time.Duration(s-n) * time.Millisecond)),
				Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: 1000, Attempts: 1})
		}
		if _, _, err := db.CommitBatch(ctx, agent, 1, rs, nil); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// operatorToken creates an operator token with the controller's own
// subcommand, as an admin would.
func operatorToken(t *testing.T, c *ctl, name, role string) string {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"operator-token", "--data", c.dir, "--name", name, "--role", role})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("operator-token: %v", err)
	}
	return strings.TrimSpace(out.String())
}

// stingyConn is a connection of its own with the smallest HTTP/2 windows
// (no BDP growth): a stream nobody reads blocks the server after 64 KiB.
func (c *ctl) stingyConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	creds := credentials.NewTLS(&tls.Config{RootCAs: c.pool, MinVersion: tls.VersionTLS13})
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func timed(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, sane)
}

// TestViewerCannotHangController is the attack of the issue: a viewer
// opens as many QueryResults streams as there are read connections over
// enough stored results that each blocks on flow control, and never reads
// them. Token checks, a new agent's enrolment and session, an admin's
// ListCampaigns and another viewer's query must still work, one more
// query of the same viewer is refused naming the limit, and the idle
// streams are ended by the server.
func TestViewerCannotHangController(t *testing.T) {
	dir := storedResults(t, 30000)
	c := startController(t, func(cfg *Config) {
		cfg.DataDir = dir
		cfg.Streams = api.StreamLimits{QueriesPerToken: 4, SendIdle: 3 * time.Second}
	})
	ops := c.ops(t)
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: minimalCampaign}); err != nil {
		t.Fatal(err)
	}
	viewer, other := operatorToken(t, c, "attacker", "viewer"), operatorToken(t, c, "bystander", "viewer")

	var idle []vantagev1.OperatorService_QueryResultsClient
	for i := range 4 {
		ctx, cancel := context.WithCancel(bearer(viewer))
		t.Cleanup(cancel)
		st, err := vantagev1.NewOperatorServiceClient(c.stingyConn(t)).QueryResults(ctx, &vantagev1.QueryResultsRequest{Limit: 100000})
		if err != nil {
			t.Fatal(err)
		}
		hctx, hcancel := timed(context.Background())
		go func() { // a stream that never answers fails the test, not hangs it
			if <-hctx.Done(); errors.Is(hctx.Err(), context.DeadlineExceeded) {
				cancel()
			}
		}()
		if _, err := st.Header(); err != nil {
			t.Fatalf("idle stream %d: no headers: %v", i, err)
		}
		hcancel()
		idle = append(idle, st)
	}

	start := time.Now()
	ctx, cancel := timed(bearer(viewer))
	_, err := recvFirst(ctx, ops, &vantagev1.QueryResultsRequest{Limit: 1})
	cancel()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "--max-queries-per-token") {
		t.Errorf("fifth query of the viewer = %v; want RESOURCE_EXHAUSTED naming --max-queries-per-token", err)
	}
	t.Logf("fifth query refused after %v: %v", time.Since(start), status.Convert(err).Message())

	start = time.Now()
	ctx, cancel = timed(bearer(c.admin))
	defer cancel()
	if _, err := ops.ListCampaigns(ctx, &vantagev1.ListCampaignsRequest{}); err != nil {
		t.Errorf("admin ListCampaigns while a viewer hogs streams: %v", err)
	}
	t.Logf("admin ListCampaigns took %v", time.Since(start))

	start = time.Now()
	octx, ocancel := timed(bearer(other))
	defer ocancel()
	if r, err := recvFirst(octx, ops, &vantagev1.QueryResultsRequest{Limit: 10}); err != nil || r == nil {
		t.Errorf("another viewer's QueryResults = %v, %v", r, err)
	}
	t.Logf("another viewer's query took %v", time.Since(start))

	start = time.Now()
	a := newAgent(t, c)
	sctx, scancel := timed(context.Background())
	defer scancel()
	s, err := vantagev1.NewAgentServiceClient(c.dial(t, a.cert)).Session(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{AgentVersion: "test", Epoch: 1,
		Labels: map[string]string{"role": "vps"}}}}); err != nil {
		t.Fatal(err)
	}
	fixture.RecvAssignment(t, s)
	t.Logf("a new agent enrolled and got its assignment in %v", time.Since(start))

	// The server ends the idle streams: the viewer's slots come back, and
	// a drained stream ends with DEADLINE_EXCEEDED naming the idle limit.
	start = time.Now()
	for {
		ctx, cancel := timed(bearer(viewer))
		_, err := recvFirst(ctx, ops, &vantagev1.QueryResultsRequest{Limit: 1})
		cancel()
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Since(start) > 2*sane {
			t.Fatalf("viewer query after the idle limit = %v (after %v)", err, time.Since(start))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the viewer's slots came back %v after the checks", time.Since(start))
	n := 0
	for {
		_, err := idle[0].Recv()
		if err == nil {
			n++
			continue
		}
		if status.Code(err) != codes.DeadlineExceeded || !strings.Contains(err.Error(), "--stream-send-idle") {
			t.Fatalf("idle stream ended with %v after %d results; want DEADLINE_EXCEEDED naming --stream-send-idle", err, n)
		}
		t.Logf("idle stream ended by the server after %d of 30000 results: %v", n, status.Convert(err).Message())
		break
	}
}

// recvFirst opens QueryResults and returns its first result.
func recvFirst(ctx context.Context, ops vantagev1.OperatorServiceClient, req *vantagev1.QueryResultsRequest) (*vantagev1.StoredResult, error) {
	st, err := ops.QueryResults(ctx, req)
	if err != nil {
		return nil, err
	}
	return st.Recv()
}

// TestStreamMaxAge: a QueryResults stream that reads, slowly, still ends
// at its overall deadline; a WatchVerdicts stream ends cleanly at its own
// (vantagectl watch reopens such a stream).
func TestStreamMaxAge(t *testing.T) {
	dir := storedResults(t, 5000)
	c := startController(t, func(cfg *Config) {
		cfg.DataDir = dir
		cfg.Streams = api.StreamLimits{QueryMaxAge: 2 * time.Second, WatchMaxAge: 2 * time.Second, SendIdle: time.Minute}
	})
	ops := c.ops(t)
	ctx, cancel := timed(bearer(c.admin))
	defer cancel()
	// The small windows keep the server sending at the reader's pace.
	st, err := vantagev1.NewOperatorServiceClient(c.stingyConn(t)).QueryResults(ctx, &vantagev1.QueryResultsRequest{Limit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, err = st.Recv(); err != nil {
			break
		}
		n++
		time.Sleep(2 * time.Millisecond)
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("slow QueryResults ended with %v after %d results; want DEADLINE_EXCEEDED", err, n)
	}
	t.Logf("slow QueryResults ended after %d of 5000 results: %v", n, err)

	w, err := ops.WatchVerdicts(ctx, &vantagev1.WatchVerdictsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err = w.Recv(); err != nil {
			break
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("WatchVerdicts at its max age ended with %v; want a clean end", err)
	}
}
