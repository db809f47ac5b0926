package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	_ "modernc.org/sqlite"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The campaigns the tests apply: min (two hosts, 5s rounds), fast (one
// host, 1s rounds) and tr (fast with traces on a change).
var (
	minimalCampaign = fixture.Campaign{Name: "min", PerNetwork: 2}.YAML()
	fastCampaign    = fixture.Campaign{Name: "fast", Probes: []string{"icmp: {timeout: 200ms}"}, Round: "1s"}.YAML()
	traceCampaign   = fixture.Campaign{Name: "tr", Probes: []string{"icmp: {timeout: 200ms}",
		"trace: {protocol: icmp, every: 1m, timeout: 200ms, on_change: true}"}, Round: "1s", Budget: "{per_target_pps: 2}"}.YAML()
)

type ctl struct {
	addr  string
	dir   string
	admin string
	pool  *x509.CertPool
	stop  func()
}

func startController(t *testing.T, opts ...func(*Config)) *ctl {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	cfg := Config{DataDir: dir, Listen: "127.0.0.1:0", EvaluateEvery: 50 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second, Ready: func(a net.Addr) { ready <- a }, AllowSpecialRanges: true}
	for _, o := range opts {
		o(&cfg)
	}
	dir = cfg.DataDir // an option may reuse a data dir (a restart)
	go func() { done <- Run(ctx, cfg) }()
	var addr net.Addr
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("controller did not start")
	}
	stopped := false
	c := &ctl{addr: addr.String(), dir: dir, stop: func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v", err)
		}
	}}
	t.Cleanup(c.stop)
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c.admin = strings.TrimSpace(string(tok))
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c.pool = x509.NewCertPool()
	c.pool.AppendCertsFromPEM(caPEM)
	return c
}

func (c *ctl) dial(t *testing.T, certs ...tls.Certificate) *grpc.ClientConn {
	t.Helper()
	return fixture.Dial(t, c.addr, c.pool, certs...)
}

func (c *ctl) ops(t *testing.T) vantagev1.OperatorServiceClient {
	return vantagev1.NewOperatorServiceClient(c.dial(t))
}

func bearer(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

type agentCreds struct {
	id   string
	cert tls.Certificate
}

func enroll(t *testing.T, c *ctl, token string) (agentCreds, error) {
	t.Helper()
	key, csr := fixture.AgentCSR(t, "x")
	resp, err := vantagev1.NewAgentServiceClient(c.dial(t)).Enroll(context.Background(), &vantagev1.EnrollRequest{
		JoinToken: token, CsrDer: csr, Name: "vps-test-1", Labels: map[string]string{"role": "vps"}})
	if err != nil {
		return agentCreds{}, err
	}
	cert := fixture.KeyPair(t, resp.GetCertificatePem(), key)
	if !bytes.Contains(resp.GetCaBundlePem(), []byte("BEGIN CERTIFICATE")) {
		t.Fatal("no CA bundle in EnrollResponse")
	}
	return agentCreds{id: resp.GetAgentId(), cert: cert}, nil
}

func joinToken(t *testing.T, c *ctl, req *vantagev1.CreateJoinTokenRequest) string {
	t.Helper()
	resp, err := c.ops(t).CreateJoinToken(bearer(c.admin), req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.GetCaHash(), "sha256:") || len(resp.GetCaHash()) != 71 {
		t.Fatalf("ca_hash = %q", resp.GetCaHash())
	}
	return resp.GetToken()
}

func newAgent(t *testing.T, c *ctl) agentCreds {
	t.Helper()
	a, err := enroll(t, c, joinToken(t, c, &vantagev1.CreateJoinTokenRequest{}))
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	return a
}

func openSession(t *testing.T, c *ctl, a agentCreds, epoch uint64) (vantagev1.AgentService_SessionClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := vantagev1.NewAgentServiceClient(c.dial(t, a.cert)).Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{
		AgentVersion: "test", Epoch: epoch, Labels: map[string]string{"role": "vps"},
		Capabilities: &vantagev1.Capabilities{DgramIcmp: true, TcpConnect: true}}}})
	// io.EOF means the server already ended the stream (e.g. a pending or
	// revoked agent); the caller's Recv returns the real status.
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return s, cancel
}

func batch(tasks []*vantagev1.Task, epoch, first uint64, round int64) *vantagev1.ResultBatch {
	b := &vantagev1.ResultBatch{Epoch: epoch, FirstSeq: first}
	for i, tk := range tasks {
		b.Results = append(b.Results, &vantagev1.ProbeResult{Seq: first + uint64(i), TaskId: tk.GetId(), Campaign: tk.GetCampaign(),
			Target: tk.GetTarget(), Kind: tk.GetKind(), Round: round, SentAt: timestamppb.Now(),
			Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: 1000, Attempts: 1})
	}
	b.LastSeq = first + uint64(len(tasks)) - 1
	return b
}

// sendEachRound sends a batch of one result per task each 1s round on s,
// as an agent does (the schedule starts in 1970, so a round is a Unix
// second), until ctx ends or the session does; edit, when not nil, changes
// each batch before it is sent.
func sendEachRound(ctx context.Context, s vantagev1.AgentService_SessionClient, tasks []*vantagev1.Task, edit func(*vantagev1.ResultBatch)) {
	seq := uint64(1)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		b := batch(tasks, 1, seq, time.Now().Unix())
		if edit != nil {
			edit(b)
		}
		if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			return
		}
		seq += uint64(len(tasks))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func countRows(t *testing.T, dir, query string, args ...any) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "vantage.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestEnrolSessionAssignmentAndDedupe(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: minimalCampaign}); err != nil {
		t.Fatalf("ApplyCampaign: %v", err)
	}
	a := newAgent(t, c)
	s, _ := openSession(t, c, a, 7)
	as := fixture.RecvAssignment(t, s)
	if len(as.GetTasks()) != 2 || as.GetVersion() == 0 {
		t.Fatalf("assignment: version %d, %d tasks; want 2 tasks", as.GetVersion(), len(as.GetTasks()))
	}
	if d := time.Until(as.GetExpiresAt().AsTime()); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("assignment expires in %v; want about 10m", d)
	}

	b := batch(as.GetTasks(), 7, 1, 3)
	for i := range 2 { // the same batch twice: stored once, acked twice
		if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			t.Fatal(err)
		}
		ack := fixture.RecvAck(t, s)
		if ack.GetEpoch() != 7 || ack.GetUpToSeq() != b.GetLastSeq() {
			t.Fatalf("ack %d = %v; want epoch 7 up to %d", i, ack, b.GetLastSeq())
		}
	}
	if n := countRows(t, c.dir, `SELECT coalesce(sum(n), 0) FROM result_chunks WHERE agent_id = ?`, a.id); n != 2 {
		t.Fatalf("stored rows = %d; want 2", n)
	}
	agents, err := ops.ListAgents(bearer(c.admin), &vantagev1.ListAgentsRequest{})
	if err != nil || len(agents.GetAgents()) != 1 {
		t.Fatalf("ListAgents = %v, %v", agents, err)
	}
	ai := agents.GetAgents()[0]
	if !ai.GetConnected() || ai.GetResultsStored() != 2 || ai.GetDuplicatesDropped() != 2 || ai.GetEpoch() != 7 || ai.GetTasks() != 2 {
		t.Fatalf("AgentInfo = %v", ai)
	}

	qr, err := ops.QueryResults(bearer(c.admin), &vantagev1.QueryResultsRequest{Campaign: "min", AgentId: a.id})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for {
		r, err := qr.Recv()
		if err != nil {
			break
		}
		got = append(got, r.GetResult().GetSeq())
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("QueryResults seqs = %v; want [1 2]", got)
	}
	if _, err := recvOne(ops, c, 200000); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("QueryResults limit 200000 = %v; want InvalidArgument", err)
	}
	// An unknown campaign is NotFound, as GetVerdicts says, not an empty
	// stream (issue 14: "results --campaign nope" said "No results.").
	if st, err := ops.QueryResults(bearer(c.admin), &vantagev1.QueryResultsRequest{Campaign: "nope"}); err != nil {
		t.Fatal(err)
	} else if _, err := st.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("QueryResults campaign nope = %v; want NotFound", err)
	}
	ex, err := ops.Explain(bearer(c.admin), &vantagev1.ExplainRequest{VerdictId: "min/target/" + as.GetTasks()[0].GetTarget(), Rounds: 10})
	if err != nil || ex.GetVerdict().GetSubject() != as.GetTasks()[0].GetTarget() {
		t.Fatalf("Explain = %v, %v", ex, err)
	}

	// A changed campaign is pushed at once with a higher version.
	changed := strings.Replace(minimalCampaign, "per_network: 2", "per_network: 3", 1)
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: changed}); err != nil {
		t.Fatal(err)
	}
	as2 := fixture.RecvAssignment(t, s)
	if as2.GetVersion() <= as.GetVersion() || len(as2.GetTasks()) != 3 {
		t.Fatalf("new assignment: version %d (was %d), %d tasks; want higher, 3", as2.GetVersion(), as.GetVersion(), len(as2.GetTasks()))
	}

	// TaskStatus and Heartbeat show up in ListAgents.
	s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_TaskStatus{TaskStatus: &vantagev1.TaskStatus{
		TaskId: as2.GetTasks()[0].GetId(), Refused: true, Reason: "guard: special-purpose range"}}})
	s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Heartbeat{Heartbeat: &vantagev1.Heartbeat{
		SentAt: timestamppb.Now(), Spool: &vantagev1.SpoolState{PendingResults: 42}}}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		agents, err := ops.ListAgents(bearer(c.admin), &vantagev1.ListAgentsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		ai := agents.GetAgents()[0]
		if strings.Contains(ai.GetHealthReason(), "refused: guard: special-purpose range") && ai.GetSpool().GetPendingResults() == 42 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListAgents never showed the task status and heartbeat: %v", ai)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A malformed batch ends the stream with InvalidArgument.
	bad := batch(as2.GetTasks(), 7, 10, 3)
	bad.LastSeq++
	s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: bad}})
	for {
		_, err := s.Recv()
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("bad batch: %v; want InvalidArgument", err)
			}
			break
		}
	}
}

// recvOne opens QueryResults with a limit and returns its first answer.
func recvOne(ops vantagev1.OperatorServiceClient, c *ctl, limit uint32) (*vantagev1.StoredResult, error) {
	st, err := ops.QueryResults(bearer(c.admin), &vantagev1.QueryResultsRequest{Limit: limit})
	if err != nil {
		return nil, err
	}
	return st.Recv()
}

func TestSessionIdentity(t *testing.T) {
	c := startController(t)
	t.Run("no client cert", func(t *testing.T) {
		s, err := vantagev1.NewAgentServiceClient(c.dial(t)).Session(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{Epoch: 1}}})
		if _, err := s.Recv(); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("Recv = %v; want Unauthenticated", err)
		}
	})
	t.Run("first message not hello", func(t *testing.T) {
		a := newAgent(t, c)
		s, err := vantagev1.NewAgentServiceClient(c.dial(t, a.cert)).Session(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Heartbeat{Heartbeat: &vantagev1.Heartbeat{}}})
		if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Recv = %v; want InvalidArgument", err)
		}
	})
	t.Run("revoked closes the live session", func(t *testing.T) {
		a := newAgent(t, c)
		s, _ := openSession(t, c, a, 1)
		fixture.RecvAssignment(t, s)
		if _, err := c.ops(t).RevokeAgent(bearer(c.admin), &vantagev1.RevokeAgentRequest{Id: a.id, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		for {
			_, err := s.Recv()
			if err != nil {
				if status.Code(err) != codes.PermissionDenied {
					t.Fatalf("live session ended with %v; want PermissionDenied", err)
				}
				break
			}
		}
		s2, _ := openSession(t, c, a, 2)
		if _, err := s2.Recv(); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("new session = %v; want PermissionDenied", err)
		}
	})
}

func TestApproveAgents(t *testing.T) {
	c := startController(t, func(cfg *Config) { cfg.ApproveAgents = true })
	a := newAgent(t, c)
	s, _ := openSession(t, c, a, 1)
	if _, err := s.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("pending agent session = %v; want FailedPrecondition", err)
	}
	ops := c.ops(t)
	info, err := ops.ApproveAgent(bearer(c.admin), &vantagev1.ApproveAgentRequest{Id: a.id})
	if err != nil || info.GetState() != vantagev1.AgentState_AGENT_STATE_ACTIVE {
		t.Fatalf("ApproveAgent = %v, %v", info, err)
	}
	s2, _ := openSession(t, c, a, 2)
	fixture.RecvAssignment(t, s2)
	au, err := ops.ListAudit(bearer(c.admin), &vantagev1.ListAuditRequest{})
	if err != nil || au.GetEntries()[0].GetAction() != "agent.approve" || au.GetEntries()[0].GetActor() != "operator:admin" {
		t.Fatalf("ListAudit = %v, %v; want agent.approve by operator:admin first", au, err)
	}
}

func TestJoinTokens(t *testing.T) {
	c := startController(t)
	short := joinToken(t, c, &vantagev1.CreateJoinTokenRequest{TtlS: 1})
	once := joinToken(t, c, &vantagev1.CreateJoinTokenRequest{MaxUses: 1})
	if _, err := enroll(t, c, once); err != nil {
		t.Fatalf("first use: %v", err)
	}
	time.Sleep(1100 * time.Millisecond) // let the 1s token expire
	tests := []struct {
		name, token string
	}{
		{"unknown", "0123456789abcdef"},
		{"empty", ""},
		{"expired", short},
		{"used up", once},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := enroll(t, c, tc.token); status.Code(err) != codes.Unauthenticated {
				t.Fatalf("Enroll = %v; want Unauthenticated", err)
			}
		})
	}
}

func TestOperatorAuth(t *testing.T) {
	c := startController(t)
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"operator-token", "--data", c.dir, "--name", "ro", "--role", "viewer"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("operator-token: %v", err)
	}
	viewer := strings.TrimSpace(out.String())
	a := newAgent(t, c)
	agentOps := vantagev1.NewOperatorServiceClient(c.dial(t, a.cert))
	ops := c.ops(t)
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"no token", func() error {
			_, err := ops.ListAgents(context.Background(), &vantagev1.ListAgentsRequest{})
			return err
		}, codes.Unauthenticated},
		{"wrong token", func() error {
			_, err := ops.ListAgents(bearer("nope"), &vantagev1.ListAgentsRequest{})
			return err
		}, codes.Unauthenticated},
		{"agent cert without token", func() error {
			_, err := agentOps.ListAgents(context.Background(), &vantagev1.ListAgentsRequest{})
			return err
		}, codes.PermissionDenied},
		{"agent cert with a wrong token", func() error {
			_, err := agentOps.ApplyCampaign(bearer("nope"), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: minimalCampaign})
			return err
		}, codes.PermissionDenied},
		{"agent cert on a stream", func() error {
			st, err := agentOps.WatchVerdicts(context.Background(), &vantagev1.WatchVerdictsRequest{})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}, codes.PermissionDenied},
		{"viewer reads", func() error {
			_, err := ops.ListCampaigns(bearer(viewer), &vantagev1.ListCampaignsRequest{})
			return err
		}, codes.OK},
		{"viewer applies", func() error {
			_, err := ops.ApplyCampaign(bearer(viewer), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: minimalCampaign})
			return err
		}, codes.PermissionDenied},
		{"viewer revokes", func() error {
			_, err := ops.RevokeAgent(bearer(viewer), &vantagev1.RevokeAgentRequest{Id: a.id})
			return err
		}, codes.PermissionDenied},
		{"replay without a campaign", func() error {
			_, err := ops.Replay(bearer(viewer), &vantagev1.ReplayRequest{})
			return err
		}, codes.InvalidArgument},
		{"replay of an unknown campaign", func() error {
			_, err := ops.Replay(bearer(viewer), &vantagev1.ReplayRequest{Campaign: "nope"})
			return err
		}, codes.NotFound},
		{"unknown campaign", func() error {
			_, err := ops.GetCampaign(bearer(viewer), &vantagev1.GetCampaignRequest{Name: "nope"})
			return err
		}, codes.NotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); status.Code(err) != tc.want {
				t.Fatalf("err = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestMalformedCampaignStoresNothing(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	bad := strings.Replace(minimalCampaign, "198.18.0.0/24", "198.18.0.0/33", 1)
	_, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: bad})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "targets.networks[0].prefix") {
		t.Fatalf("ApplyCampaign = %v; want InvalidArgument naming targets.networks[0].prefix", err)
	}
	// dry run validates and stores nothing either
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: minimalCampaign, DryRun: true}); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if n := countRows(t, c.dir, `SELECT count(*) FROM campaigns`); n != 0 {
		t.Fatalf("campaign rows = %d; want 0", n)
	}
	if n := countRows(t, c.dir, `SELECT count(*) FROM audit WHERE action LIKE 'campaign.%'`); n != 0 {
		t.Fatalf("campaign audit rows = %d; want 0", n)
	}
	// a valid apply is audited with the operator's name
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: minimalCampaign}); err != nil {
		t.Fatal(err)
	}
	au, err := ops.ListAudit(bearer(c.admin), &vantagev1.ListAuditRequest{Limit: 1})
	if err != nil || len(au.GetEntries()) != 1 || au.GetEntries()[0].GetActor() != "operator:admin" || au.GetEntries()[0].GetAction() != "campaign.apply" {
		t.Fatalf("ListAudit = %v, %v", au, err)
	}
}

func TestHealthAndReflection(t *testing.T) {
	c := startController(t)
	conn := c.dial(t)
	hr, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "vantage.v1.OperatorService"})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", hr, err)
	}
	rs, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"vantage.v1.OperatorService", "vantage.v1.AgentService", "grpc.health.v1.Health"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("reflection lists %v; missing %s", names, want)
		}
	}
}

func TestWatchVerdictsDeliversTransition(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: fastCampaign}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bearer(c.admin), 60*time.Second)
	defer cancel()
	w, err := ops.WatchVerdicts(ctx, &vantagev1.WatchVerdictsRequest{Campaign: "fast"})
	if err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, c)
	s, _ := openSession(t, c, a, 1)
	tasks := fixture.RecvAssignment(t, s).GetTasks()
	go func() { // drain acks
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}()
	go sendEachRound(ctx, s, tasks, nil) // one REPLY per task per 1s round, like an agent
	for {
		u, err := w.Recv()
		if err != nil {
			t.Fatalf("WatchVerdicts: %v (no transition)", err)
		}
		if tr := u.GetTransition(); tr != nil {
			if tr.GetId() == 0 || tr.GetCampaign() != "fast" {
				t.Fatalf("transition = %v; want a stored id and campaign fast", tr)
			}
			tl, err := ops.GetTimeline(bearer(c.admin), &vantagev1.GetTimelineRequest{Campaign: "fast"})
			if err != nil || len(tl.GetTransitions()) == 0 {
				t.Fatalf("GetTimeline = %v, %v", tl, err)
			}
			return
		}
	}
}

func TestOutageTriggersTraces(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: traceCampaign}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := newAgent(t, c)
	s, _ := openSession(t, c, a, 1)
	var icmp []*vantagev1.Task
	for _, tk := range fixture.RecvAssignment(t, s).GetTasks() {
		if tk.GetKind() == vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO {
			icmp = append(icmp, tk)
		}
	}
	go sendEachRound(ctx, s, icmp, func(b *vantagev1.ResultBatch) { // every icmp probe times out: an outage
		for _, r := range b.Results {
			r.Outcome, r.RttUs = vantagev1.Outcome_OUTCOME_TIMEOUT, 0
		}
	})
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("no trigger before the session ended: %v", err)
		}
		if tr := m.GetTrigger(); tr != nil {
			if len(tr.GetTasks()) == 0 || tr.GetTasks()[0].GetKind() != vantagev1.ProbeKind_PROBE_KIND_TRACE || tr.GetId() == "" {
				t.Fatalf("trigger = %v; want trace tasks", tr)
			}
			// A result of the trigger is accepted.
			r := batch(tr.GetTasks()[:1], 1, 100000, time.Now().Unix())
			r.Results[0].TriggerId = tr.GetId()
			if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: r}}); err != nil {
				t.Fatal(err)
			}
			for {
				m, err := s.Recv()
				if err != nil {
					t.Fatalf("trigger result refused: %v", err)
				}
				if m.GetAck().GetUpToSeq() == 100000 {
					return
				}
			}
		}
	}
}
