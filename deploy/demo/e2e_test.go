package demo

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/internal/testpki"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// binDir holds the binaries TestMain builds for the end-to-end test.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(RunWithBinaries(m, &binDir, AgentCmd, ControllerCmd, GrpcurlCmd))
}

// TestE2ELab runs the whole system in the namespace lab: real controller and
// agent processes, real sockets, real routes withdrawn. It asserts what the
// demo shows.
func TestE2ELab(t *testing.T) {
	SkipUnlessLab(t, "end-to-end lab test")
	spec, err := os.ReadFile("../examples/country.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	work := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	// A per-process prefix, so two runs of this test never share a lab.
	prefix := fmt.Sprintf("ve%d", os.Getpid()%100000)
	h, err := Start(ctx, Config{BinDir: binDir, Prefix: prefix, WorkDir: work, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	CloseAtCleanup(t, h, 4000)

	camp, err := h.Operator.ApplyCampaign(h.Authed(ctx), &vantagev1.ApplyCampaignRequest{SpecYaml: string(spec)})
	if err != nil {
		t.Fatalf("apply campaign: %v", err)
	}
	name := camp.GetName()
	round := time.Duration(camp.GetRoundMs()) * time.Millisecond
	scopeID := name + "/scope/" + camp.GetScope()
	waitScope := func(t *testing.T, rounds int, ok func(*vantagev1.Verdict) bool) *vantagev1.Verdict {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, time.Duration(rounds)*round)
		defer cancel()
		v, err := h.WaitVerdict(wctx, name, scopeID, ok)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	reachable3 := func(v *vantagev1.Verdict) bool {
		return v.GetState() == vantagev1.State_STATE_REACHABLE && v.GetHealthyVantages() == 3
	}
	waitScope(t, 20, reachable3)

	// firstScopeTransition returns the first scope transition into want
	// detected at or after since.
	firstScopeTransition := func(t *testing.T, since time.Time, want vantagev1.State) *vantagev1.Transition {
		t.Helper()
		tl, err := h.Timeline(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range tl {
			if tr.GetLevel() == vantagev1.Level_LEVEL_SCOPE && tr.GetTo() == want && tr.GetFrom() != want && !tr.GetDetectedAt().AsTime().Before(since) {
				return tr
			}
		}
		t.Fatalf("no scope transition to %s after %s in a timeline of %d", want, since.Format(time.TimeOnly), len(tl))
		return nil
	}

	t.Run("grpcurl lists OperatorService through reflection", func(t *testing.T) {
		caFile := filepath.Join(h.DataDir(), "ca.pem")
		out, err := h.Lab.Command(ctx, "controller", filepath.Join(binDir, "grpcurl"),
			"-cacert", caFile, h.ControllerAddr(), "list").CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl list: %v\n%s", err, out)
		}
		for _, svc := range []string{"vantage.v1.OperatorService", "vantage.v1.AgentService", "grpc.health.v1.Health"} {
			if !strings.Contains(string(out), svc) {
				t.Errorf("grpcurl list lacks %s:\n%s", svc, out)
			}
		}
	})

	t.Run("isolating one vantage does not make the country unreachable", func(t *testing.T) {
		if err := h.Lab.Isolate("vantage-b"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		seen := map[vantagev1.State]int{}
		for time.Since(start) < 5*round {
			resp, err := h.Operator.GetVerdicts(h.Authed(ctx), &vantagev1.GetVerdictsRequest{Campaign: name, Level: vantagev1.Level_LEVEL_SCOPE})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range resp.GetVerdicts() {
				seen[v.GetState()]++
				if v.GetState() == vantagev1.State_STATE_UNREACHABLE || v.GetState() == vantagev1.State_STATE_UNKNOWN {
					t.Fatalf("scope went %s with only vantage-b isolated: %v", v.GetState(), describe(v))
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("scope states seen while vantage-b was isolated for %s: %v", 5*round, seen)
		agents, err := h.Operator.ListAgents(h.Authed(ctx), &vantagev1.ListAgentsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range agents.GetAgents() {
			if a.GetName() == "vantage-b" {
				t.Logf("vantage-b: healthy=%v reason=%q", a.GetHealthy(), a.GetHealthReason())
				if a.GetHealthy() {
					t.Errorf("isolated vantage-b is listed as healthy")
				}
			}
		}
		if err := h.Lab.Unisolate("vantage-b"); err != nil {
			t.Fatal(err)
		}
		waitScope(t, 10, reachable3)
	})

	t.Run("blackout is UNREACHABLE within 3 rounds", func(t *testing.T) {
		at := time.Now()
		if err := h.Lab.Blackout(); err != nil {
			t.Fatal(err)
		}
		waitScope(t, 6, func(v *vantagev1.Verdict) bool { return v.GetState() == vantagev1.State_STATE_UNREACHABLE })
		tr := firstScopeTransition(t, at, vantagev1.State_STATE_UNREACHABLE)
		lat := tr.GetDetectedAt().AsTime().Sub(at)
		t.Logf("blackout detected after %s = %.2f rounds (onset window %s .. %s)", lat.Round(time.Millisecond),
			lat.Seconds()/round.Seconds(), tr.GetOnsetEarliest().AsTime().Format(time.TimeOnly), tr.GetOnsetLatest().AsTime().Format(time.TimeOnly))
		if lat > 3*round {
			t.Errorf("blackout detected after %s, more than 3 rounds of %s", lat, round)
		}
		if !tr.GetOnsetEarliest().AsTime().Before(tr.GetOnsetLatest().AsTime()) {
			t.Errorf("onset window is empty: %s .. %s", tr.GetOnsetEarliest().AsTime(), tr.GetOnsetLatest().AsTime())
		}
	})

	t.Run("partial restoration is DEGRADED with net0 and net1 up", func(t *testing.T) {
		at := time.Now()
		if err := h.Lab.Restore("net0", "net1"); err != nil {
			t.Fatal(err)
		}
		// The round in which routes come back may be half good; wait until
		// the networks settle, then check all four.
		wantNet := map[string]vantagev1.State{
			"net0": vantagev1.State_STATE_REACHABLE, "net1": vantagev1.State_STATE_REACHABLE,
			"net2": vantagev1.State_STATE_UNREACHABLE, "net3": vantagev1.State_STATE_UNREACHABLE,
		}
		var nets []*vantagev1.Verdict
		settled := func() bool {
			resp, err := h.Operator.GetVerdicts(h.Authed(ctx), &vantagev1.GetVerdictsRequest{Campaign: name, Level: vantagev1.Level_LEVEL_NETWORK})
			if err != nil {
				t.Fatal(err)
			}
			nets = resp.GetVerdicts()
			for _, nv := range nets {
				if nv.GetState() != wantNet[nv.GetSubject()] {
					return false
				}
			}
			return len(nets) == len(wantNet)
		}
		v := waitScope(t, 6, func(v *vantagev1.Verdict) bool {
			return v.GetState() == vantagev1.State_STATE_DEGRADED && settled()
		})
		up, down := slices.Sorted(slices.Values(v.GetUpChildren())), slices.Sorted(slices.Values(v.GetDownChildren()))
		if !slices.Equal(up, []string{"net0", "net1"}) || !slices.Equal(down, []string{"net2", "net3"}) {
			t.Errorf("partial restoration: up=%v down=%v, want up=[net0 net1] down=[net2 net3]", up, down)
		}
		for _, nv := range nets {
			t.Logf("network %s: %s", nv.GetSubject(), shortState(nv.GetState()))
		}
		tr := firstScopeTransition(t, at, vantagev1.State_STATE_DEGRADED)
		t.Logf("partial restoration detected after %.2f rounds", tr.GetDetectedAt().AsTime().Sub(at).Seconds()/round.Seconds())
	})

	t.Run("full restoration is REACHABLE", func(t *testing.T) {
		at := time.Now()
		if err := h.Lab.Restore(); err != nil {
			t.Fatal(err)
		}
		waitScope(t, 6, reachable3)
		tr := firstScopeTransition(t, at, vantagev1.State_STATE_REACHABLE)
		lat := tr.GetDetectedAt().AsTime().Sub(at)
		t.Logf("restoration detected after %s = %.2f rounds", lat.Round(time.Millisecond), lat.Seconds()/round.Seconds())
		if lat > 3*round {
			t.Errorf("restoration detected after %s, more than 3 rounds of %s", lat, round)
		}
	})

	t.Run("a replayed batch is stored once", func(t *testing.T) {
		testReplayedBatch(ctx, t, h, name)
	})
}

// testReplayedBatch enrols one more agent over the real AgentService, sends
// the same ResultBatch twice on its session, and checks both are acked and the
// results are stored once.
func testReplayedBatch(ctx context.Context, t *testing.T, h *Harness, campaign string) {
	tok, err := h.Operator.CreateJoinToken(h.Authed(ctx), &vantagev1.CreateJoinTokenRequest{TtlS: 600, MaxUses: 1})
	if err != nil {
		t.Fatal(err)
	}
	key, csr := testpki.AgentCSR(t, "replayer")
	enr, err := h.Agent.Enroll(ctx, &vantagev1.EnrollRequest{
		JoinToken: tok.GetToken(), CsrDer: csr, Name: "replayer", Labels: map[string]string{"role": "vps", "provider": "lab-test"},
	})
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	cert := testpki.KeyPair(t, enr.GetCertificatePem(), key)
	tlsCfg := h.TLSConfig()
	tlsCfg.Certificates = []tls.Certificate{cert}
	conn, err := h.Dial(tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := vantagev1.NewAgentServiceClient(conn).Session(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{
		AgentVersion: "e2e-replayer", Epoch: 1, Labels: map[string]string{"role": "vps"},
	}}}); err != nil {
		t.Fatal(err)
	}
	var tasks []*vantagev1.Task
	for tasks == nil {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for an assignment: %v", err)
		}
		if a := msg.GetAssignment(); a != nil && len(a.GetTasks()) > 0 {
			tasks = a.GetTasks()
		}
	}
	const n = 5
	batch := &vantagev1.ResultBatch{Epoch: 1, FirstSeq: 1, LastSeq: n}
	now := time.Now()
	for i := range n {
		task := tasks[i%len(tasks)]
		batch.Results = append(batch.Results, &vantagev1.ProbeResult{
			Seq: uint64(i + 1), TaskId: task.GetId(), Campaign: task.GetCampaign(), Target: task.GetTarget(),
			Kind: task.GetKind(), Round: now.Sub(task.GetScheduleStart().AsTime()).Milliseconds() / int64(task.GetRoundMs()),
			SentAt: timestamppb.New(now), Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: 100, Port: task.GetTcp().GetPort(),
		})
	}
	for attempt := 1; attempt <= 2; attempt++ {
		if err := stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: batch}}); err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := stream.Recv()
			if err != nil {
				t.Fatalf("waiting for ack %d: %v", attempt, err)
			}
			if ack := msg.GetAck(); ack != nil {
				if ack.GetEpoch() != 1 || ack.GetUpToSeq() != n {
					t.Fatalf("ack %d = epoch %d up to %d, want epoch 1 up to %d", attempt, ack.GetEpoch(), ack.GetUpToSeq(), n)
				}
				break
			}
		}
	}
	rs, err := h.Operator.QueryResults(h.Authed(ctx), &vantagev1.QueryResultsRequest{AgentId: enr.GetAgentId(), Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var stored int
	for {
		_, err := rs.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		stored++
	}
	t.Logf("batch of %d results sent twice, both acked; %d stored", n, stored)
	if stored != n {
		t.Errorf("stored %d results, want %d (the replay must not be stored again)", stored, n)
	}
}
