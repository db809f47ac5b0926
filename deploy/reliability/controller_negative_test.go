package reliability

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func statusCode(err error) codes.Code { return status.Code(err) }

const vkCampaign = `name: neg
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefix: PREFIX}
  hosts: {per_network: 2}
probes:
  - icmp: {}
schedule: {round: 5s}
`

// TestControllerRefuses checks every way in that must be refused, each
// with its gRPC code, against a real controller process on loopback, and
// prints one line per case. No root needed.
func TestControllerRefuses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the controller binary")
	}
	blocklist := filepath.Join(t.TempDir(), "blocklist.txt")
	if err := os.WriteFile(blocklist, []byte("# probed never\n5.5.5.0/24\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	optOut := filepath.Join(t.TempDir(), "opt-out.txt")
	if err := os.WriteFile(optOut, []byte("8.8.8.0/24 # asked not to be probed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No --allow-special-ranges: a production controller.
	c := startVKController(t, "--blocklist", blocklist, "--opt-out", optOut, "--ingest-rate", "1000")
	ctx := context.Background()
	admin := c.bearer(ctx, c.admin)
	ops := c.ops(t)

	short := c.joinToken(t, &vantagev1.CreateJoinTokenRequest{TtlS: 1})
	once := c.joinToken(t, &vantagev1.CreateJoinTokenRequest{MaxUses: 1})
	good := c.joinToken(t, &vantagev1.CreateJoinTokenRequest{TtlS: 600})
	a, err := c.enroll(t, good, "vk-a", "vk-a")
	if err != nil {
		t.Fatalf("enroll a: %v", err)
	}
	b, err := c.enroll(t, good, "vk-b", "vk-b")
	if err != nil {
		t.Fatalf("enroll b: %v", err)
	}
	if _, err := c.enroll(t, once, "vk-once", "vk-once"); err != nil {
		t.Fatalf("first use of a single-use token: %v", err)
	}
	viewer := operatorToken(t, c, "vk-viewer", "viewer")
	time.Sleep(1100 * time.Millisecond) // the 1 s token expires

	// A certificate from another CA, for a real agent's id.
	oca, okey := otherCA(t)
	foreign := signClient(t, oca, okey, a.id)
	// Certificates made with the controller's own CA key (as if stolen):
	// a CN that is no enrolled agent, and agent B's id with a serial the
	// controller never issued.
	cca, ckey := c.controllerCA(t)
	unknownCN := signClient(t, cca, ckey, "agt-00000000deadbeef")
	posingAsB := signClient(t, cca, ckey, b.id)

	revoked, err := c.enroll(t, good, "vk-revoked", "vk-revoked")
	if err != nil {
		t.Fatal(err)
	}
	// A live session of the agent to revoke.
	liveCtx, liveCancel := context.WithTimeout(ctx, 30*time.Second)
	defer liveCancel()
	live, err := vantagev1.NewAgentServiceClient(c.dial(t, revoked.cert)).Session(liveCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Send(hello(1)); err != nil {
		t.Fatal(err)
	}
	if m, err := live.Recv(); err != nil || m.GetAssignment() == nil {
		t.Fatalf("live session: %v, %v", m, err)
	}

	big := strings.Repeat("x", 5<<20)
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"session without a client certificate", func() error { return c.sessionErr(t) }, codes.Unauthenticated},
		{"session with a certificate from another CA (withheld by the client)", func() error { return c.sessionErr(t, foreign) }, codes.Unauthenticated},
		{"session with a certificate from another CA (presented anyway: handshake refused)", func() error { return c.sessionErrTLS(t, c.forced(foreign)) }, codes.Unavailable},
		{"session with a CN that is no enrolled agent", func() error { return c.sessionErr(t, unknownCN) }, codes.Unauthenticated},
		{"session posing as agent B (B's id, a serial never issued)", func() error { return c.sessionErr(t, posingAsB) }, codes.Unauthenticated},
		{"agent A's own certificate works", func() error { return c.sessionErr(t, a.cert) }, codes.OK},
		{"enrol with an expired join token", func() error { _, err := c.enroll(t, short, "vk-late", "vk-late"); return err }, codes.Unauthenticated},
		{"enrol twice with a single-use token", func() error { _, err := c.enroll(t, once, "vk-twice", "vk-twice"); return err }, codes.Unauthenticated},
		{"enrol asking for agent B's id in the CSR gets a new id", func() error {
			e, err := c.enroll(t, good, "vk-c", b.id)
			if err == nil && e.id == b.id {
				return status.Error(codes.Internal, "the controller took the agent id from the CSR")
			}
			return err
		}, codes.OK},
		{"revoked agent: its live session ends", func() error {
			if _, err := ops.RevokeAgent(admin, &vantagev1.RevokeAgentRequest{Id: revoked.id, Reason: "vk test"}); err != nil {
				return err
			}
			for {
				if _, err := live.Recv(); err != nil {
					return err
				}
			}
		}, codes.PermissionDenied},
		{"revoked agent: a new session", func() error { return c.sessionErr(t, revoked.cert) }, codes.PermissionDenied},
		{"agent A sends results for a task it was never given", func() error {
			// Not stored, but acked and recorded as a gap: a refused
			// batch must not block the agent's stream forever.
			sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			s, err := vantagev1.NewAgentServiceClient(c.dial(t, a.cert)).Session(sctx)
			if err != nil {
				return err
			}
			s.Send(hello(7))
			s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: &vantagev1.ResultBatch{Epoch: 7, FirstSeq: 1, LastSeq: 1,
				Results: []*vantagev1.ProbeResult{{Seq: 1, TaskId: "other/icmp/1.2.3.4", Campaign: "other", Target: "1.2.3.4", SentAt: timestamppb.Now()}}}}})
			for {
				m, err := s.Recv()
				if err != nil {
					return err
				}
				if ack := m.GetAck(); ack != nil {
					if ack.GetEpoch() != 7 || ack.GetUpToSeq() != 1 {
						return status.Errorf(codes.Internal, "ack %v, want epoch 7 up to 1", ack)
					}
					break
				}
			}
			const why = `refused by controller: task "other/icmp/1.2.3.4" is not assigned to this agent`
			if err := refusedAsGap(admin, ops, c.dir, a.id, 7, 1, why); err != nil {
				return err
			}
			t.Logf("result for a task never given: acked up to 1, not stored, gap epoch 7 seq 1..1 reason %q", why)
			return nil
		}, codes.OK},
		{"no credentials on an operator RPC", func() error { _, err := ops.ListAgents(ctx, &vantagev1.ListAgentsRequest{}); return err }, codes.Unauthenticated},
		{"an agent certificate on an operator RPC", func() error {
			_, err := c.ops(t, a.cert).ListAgents(ctx, &vantagev1.ListAgentsRequest{})
			return err
		}, codes.PermissionDenied},
		{"a viewer calling ApplyCampaign", func() error {
			_, err := ops.ApplyCampaign(c.bearer(ctx, viewer), &vantagev1.ApplyCampaignRequest{SpecYaml: strings.Replace(vkCampaign, "PREFIX", "1.2.3.0/24", 1)})
			return err
		}, codes.PermissionDenied},
		{"a viewer calling RevokeAgent", func() error {
			_, err := ops.RevokeAgent(c.bearer(ctx, viewer), &vantagev1.RevokeAgentRequest{Id: a.id})
			return err
		}, codes.PermissionDenied},
		{"an oversized message (5 MiB ApplyCampaign)", func() error {
			_, err := ops.ApplyCampaign(admin, &vantagev1.ApplyCampaignRequest{SpecYaml: big})
			return err
		}, codes.ResourceExhausted},
		{"an oversized message (5 MiB ResultBatch)", func() error {
			sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			s, err := vantagev1.NewAgentServiceClient(c.dial(t, a.cert)).Session(sctx)
			if err != nil {
				return err
			}
			s.Send(hello(8))
			s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: &vantagev1.ResultBatch{Epoch: 8, FirstSeq: 1, LastSeq: 1,
				Results: []*vantagev1.ProbeResult{{Seq: 1, Error: big}}}}})
			for {
				if _, err := s.Recv(); err != nil {
					return err
				}
			}
		}, codes.ResourceExhausted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			t.Logf("negative case %-60q -> %s (want %s) %v", tc.name, fmtCode(err), tc.want, err)
			if statusCode(err) != tc.want {
				t.Fatalf("%s: got %v, want %s", tc.name, err, tc.want)
			}
		})
	}

	// Campaign validation: special-purpose, blocklisted and opted-out
	// ranges, and rates over the caps.
	camps := []struct{ name, prefix, edit, why string }{
		{"RFC 1918 10.0.0.0/8", "10.0.0.0/8", "", "special-purpose range 10.0.0.0/8"},
		{"loopback 127.0.0.0/8", "127.0.0.0/8", "", "special-purpose range 127.0.0.0/8"},
		{"lab range without --allow-special-ranges", "198.18.0.0/24", "", "special-purpose range 198.18.0.0/15"},
		{"blocklisted 5.5.5.0/24 (--blocklist)", "5.5.5.0/24", "", "on the controller's blocklist"},
		{"opted out 8.8.8.0/24 (--opt-out)", "8.8.8.0/25", "", "opted out"},
		{"per_target_pps over the cap", "1.2.3.0/24", "budget: {per_target_pps: 50}\n", "budget.per_target_pps"},
		// IPv4 hidden in IPv6: checked as the IPv4 address, or the form
		// refused whole (internal/netrange).
		{"NAT64 64:ff9b::a00:0/120 (10.0.0.0/24)", "64:ff9b::a00:0/120", "", "special-purpose range 10.0.0.0/8"},
		{"NAT64 64:ff9b::a9fe:a900/120 (169.254.169.0/24)", "64:ff9b::a9fe:a900/120", "", "special-purpose range 169.254.0.0/16"},
		{"IPv4-compatible ::a00:0/120", `"::a00:0/120"`, "", "special-purpose range ::/96"},
		{"IPv4-translated ::ffff:0:a00:0/120", `"::ffff:0:a00:0/120"`, "", "special-purpose range ::ffff:0:0:0/96"},
		{"6to4 2002:808:800::/40", "2002:808:800::/40", "", "special-purpose range 2002::/16"},
		{"Teredo 2001:0:4136:e378::/64", "2001:0:4136:e378::/64", "", "special-purpose range 2001::/32"},
	}
	for _, tc := range camps {
		t.Run("campaign "+tc.name, func(t *testing.T) {
			spec := strings.Replace(vkCampaign, "PREFIX", tc.prefix, 1) + tc.edit
			_, err := ops.ApplyCampaign(admin, &vantagev1.ApplyCampaignRequest{SpecYaml: spec})
			t.Logf("campaign aimed at %-45s -> %s: %v", tc.name, fmtCode(err), status.Convert(err).Message())
			if statusCode(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("ApplyCampaign(%s) = %v, want InvalidArgument naming %q", tc.prefix, err, tc.why)
			}
		})
	}
	if l, err := ops.ListCampaigns(admin, &vantagev1.ListCampaignsRequest{}); err != nil || len(l.GetCampaigns()) != 0 {
		t.Errorf("campaigns stored after refusals: %v, %v", l, err)
	}

	t.Run("agent over its ingest rate", func(t *testing.T) { overRate(t, c, a) })

	// Secrets on disk.
	for _, f := range []string{"ca-key.pem", "admin.token"} {
		m := fileMode(t, filepath.Join(c.dir, f))
		t.Logf("secret %s mode %o", f, m)
		if m != 0o600 {
			t.Errorf("%s has mode %o, want 600", f, m)
		}
	}
	if m := fileMode(t, c.dir); m&0o077 != 0 {
		t.Errorf("data dir has mode %o, want no group/other access", m)
	}

	// Every change is in the audit log.
	au, err := ops.ListAudit(admin, &vantagev1.ListAuditRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]int{}
	for _, e := range au.GetEntries() {
		actions[e.GetAction()]++
	}
	t.Logf("audit actions: %v", actions)
	for _, want := range []string{"token.join.create", "agent.enroll", "agent.revoke", "token.operator.create"} {
		if actions[want] == 0 {
			t.Errorf("no %s in the audit log: %v", want, actions)
		}
	}
}

// refusedAsGap checks that agent id has no result stored and exactly one
// gap, (epoch, seq, seq) with reason, in the operator API's counters and in
// the controller's gaps table.
// admin carries an operator token.
func refusedAsGap(admin context.Context, ops vantagev1.OperatorServiceClient, dataDir, id string, epoch, seq uint64, reason string) error {
	l, err := ops.ListAgents(admin, &vantagev1.ListAgentsRequest{})
	if err != nil {
		return err
	}
	found := false
	for _, ag := range l.GetAgents() {
		if ag.GetId() != id {
			continue
		}
		found = true
		if ag.GetResultsStored() != 0 || ag.GetGaps() != 1 {
			return status.Errorf(codes.Internal, "agent %s: results_stored %d, gaps %d; want 0 and 1", id, ag.GetResultsStored(), ag.GetGaps())
		}
	}
	if !found {
		return status.Errorf(codes.Internal, "agent %s not listed", id)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dataDir, "vantage.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	var n int
	var first, last uint64
	var why string
	if err := db.QueryRow(`SELECT count(*), coalesce(max(first_seq), 0), coalesce(max(last_seq), 0), coalesce(max(reason), '')
		FROM gaps WHERE agent_id = ? AND epoch = ?`, id, epoch).Scan(&n, &first, &last, &why); err != nil {
		return err
	}
	if n != 1 || first != seq || last != seq || why != reason {
		return status.Errorf(codes.Internal, "gaps of epoch %d: %d rows, seq %d..%d, reason %q; want 1 row, %d..%d, %q", epoch, n, first, last, why, seq, seq, reason)
	}
	return nil
}

// operatorToken creates an operator token offline with the controller's
// own command, as an administrator would.
func operatorToken(t *testing.T, c *vkController, name, role string) string {
	t.Helper()
	out, err := execOut(filepath.Join(labBinaries(t), "vantage-controller"), "operator-token", "--data", c.dir, "--name", name, "--role", role)
	if err != nil {
		t.Fatalf("operator-token: %v: %s", err, out)
	}
	return strings.TrimSpace(out)
}

// overRate: with --ingest-rate 1000 (burst 10,000 results), an agent sending
// 3 x 5,000 results gets two acks, then a Throttle and the session ends
// with RESOURCE_EXHAUSTED and a retry-after-ms trailer; the refused batch is
// not acked (the agent keeps it) and, sent again later, is stored once.
func overRate(t *testing.T, c *vkController, a vkAgent) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := c.bearer(ctx, c.admin)
	if _, err := c.ops(t).ApplyCampaign(admin, &vantagev1.ApplyCampaignRequest{SpecYaml: strings.Replace(vkCampaign, "PREFIX", "1.2.3.0/24", 1)}); err != nil {
		t.Fatal(err)
	}
	open := func(epoch uint64) (vantagev1.AgentService_SessionClient, []*vantagev1.Task) {
		s, err := vantagev1.NewAgentServiceClient(c.dial(t, a.cert)).Session(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(hello(epoch)); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if as := m.GetAssignment(); as != nil && len(as.GetTasks()) > 0 {
				return s, as.GetTasks()
			}
		}
	}
	batch := func(tasks []*vantagev1.Task, epoch, first uint64, n int) *vantagev1.AgentMessage {
		b := &vantagev1.ResultBatch{Epoch: epoch, FirstSeq: first, LastSeq: first + uint64(n) - 1}
		for i := range n {
			tk := tasks[i%len(tasks)]
			b.Results = append(b.Results, &vantagev1.ProbeResult{Seq: first + uint64(i), TaskId: tk.GetId(), Campaign: tk.GetCampaign(),
				Target: tk.GetTarget(), Kind: tk.GetKind(), SentAt: timestamppb.Now(), Outcome: vantagev1.Outcome_OUTCOME_TIMEOUT})
		}
		return &vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}
	}
	const epoch, n = 20, 5000
	s, tasks := open(epoch)
	var acks, throttles int
	var retryMs uint32
	for i := range 3 {
		if err := s.Send(batch(tasks, epoch, uint64(i*n+1), n)); err != nil {
			break
		}
	}
	var end error
	for end == nil {
		m, err := s.Recv()
		switch {
		case err != nil:
			end = err
		case m.GetAck() != nil:
			acks++
		case m.GetThrottle() != nil:
			throttles++
			retryMs = m.GetThrottle().GetRetryAfterMs()
		}
	}
	trailer := s.Trailer().Get("retry-after-ms")
	t.Logf("over rate: acks=%d throttles=%d (retry_after_ms=%d) end=%s trailer retry-after-ms=%v", acks, throttles, retryMs, fmtCode(end), trailer)
	if acks != 2 || throttles != 1 || statusCode(end) != codes.ResourceExhausted || len(trailer) != 1 || retryMs == 0 {
		t.Fatalf("want 2 acks, 1 throttle, RESOURCE_EXHAUSTED with a retry-after-ms trailer; got acks=%d throttles=%d end=%v trailer=%v", acks, throttles, end, trailer)
	}
	// After the retry-after (and the bucket refilling), the refused batch
	// goes through and is stored once.
	time.Sleep(time.Duration(retryMs)*time.Millisecond + 200*time.Millisecond)
	var stored uint64
	for try := 0; ; try++ {
		s2, _ := open(epoch)
		if err := s2.Send(batch(tasks, epoch, 2*n+1, n)); err != nil {
			t.Fatal(err)
		}
		m, err := s2.Recv()
		for err == nil && m.GetAck() == nil && m.GetThrottle() == nil {
			m, err = s2.Recv()
		}
		if err == nil && m.GetAck() != nil {
			break
		}
		if try == 5 {
			t.Fatalf("the refused batch was never accepted: %v %v", m, err)
		}
		time.Sleep(time.Duration(m.GetThrottle().GetRetryAfterMs()) * time.Millisecond)
	}
	l, err := c.ops(t).ListAgents(admin, &vantagev1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ag := range l.GetAgents() {
		if ag.GetId() == a.id {
			stored = ag.GetResultsStored()
		}
	}
	t.Logf("over rate: after the retry results_stored=%d (want %d)", stored, 3*n)
	if stored != 3*n {
		t.Errorf("results_stored %d, want %d", stored, 3*n)
	}
}

// TestControllerTokenRevocation: a revoked operator token and expired join
// tokens are refused by the running controller at once.
func TestControllerTokenRevocation(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the controller binary")
	}
	c := startVKController(t)
	ctx := context.Background()
	viewer := operatorToken(t, c, "vk-gone", "viewer")
	join := c.joinToken(t, &vantagev1.CreateJoinTokenRequest{TtlS: 3600})
	if _, err := c.ops(t).ListAgents(c.bearer(ctx, viewer), &vantagev1.ListAgentsRequest{}); err != nil {
		t.Fatalf("viewer before revocation: %v", err)
	}
	bin := filepath.Join(labBinaries(t), "vantage-controller")
	for _, args := range [][]string{{"--operator", "vk-gone"}, {"--join-tokens"}} {
		if out, err := execOut(bin, append([]string{"revoke-token", "--data", c.dir}, args...)...); err != nil {
			t.Fatalf("revoke-token %v: %v: %s", args, err, out)
		}
	}
	_, errOp := c.ops(t).ListAgents(c.bearer(ctx, viewer), &vantagev1.ListAgentsRequest{})
	_, errJoin := c.enroll(t, join, "vk-late", "vk-late")
	t.Logf("revoked operator token -> %s; expired join token -> %s", fmtCode(errOp), fmtCode(errJoin))
	if statusCode(errOp) != codes.Unauthenticated || statusCode(errJoin) != codes.Unauthenticated {
		t.Fatalf("after revocation: operator %v, join %v; want Unauthenticated for both", errOp, errJoin)
	}
}
