package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// These tests run the whole CLI in-process against a real OperatorService
// on a loopback TLS 1.3 listener. The service is a small fake: the CLI is
// what is under test.

const goodToken = "s3cret-token"

// fakeOperator answers from fixtures and records what it was asked.
type fakeOperator struct {
	vantagev1.UnimplementedOperatorServiceServer

	mu    sync.Mutex
	auths []string
	reqs  []proto.Message

	// watch serves WatchVerdicts; attempt counts from 0.
	watch      func(attempt int, req *vantagev1.WatchVerdictsRequest, s grpc.ServerStreamingServer[vantagev1.VerdictUpdate]) error
	watchCalls int
}

func (f *fakeOperator) record(m proto.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, m)
}

func (f *fakeOperator) lastReq() proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return nil
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeOperator) lastAuth() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.auths) == 0 {
		return ""
	}
	return f.auths[len(f.auths)-1]
}

// authorize mirrors the controller: a bearer token or Unauthenticated.
func (f *fakeOperator) authorize(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	f.mu.Lock()
	f.auths = append(f.auths, strings.Join(vals, ","))
	f.mu.Unlock()
	if len(vals) != 1 || vals[0] != "Bearer "+goodToken {
		return status.Error(codes.Unauthenticated, "unknown token")
	}
	return nil
}

// ListAgents serves one agent a page, so that the CLI must follow pages.
func (f *fakeOperator) ListAgents(_ context.Context, req *vantagev1.ListAgentsRequest) (*vantagev1.ListAgentsResponse, error) {
	f.record(req)
	if req.GetPageToken() == "p2" {
		return &vantagev1.ListAgentsResponse{Agents: fixtureAgents()[1:2]}, nil
	}
	return &vantagev1.ListAgentsResponse{Agents: fixtureAgents()[:1], NextPageToken: "p2"}, nil
}

func (f *fakeOperator) ApproveAgent(_ context.Context, req *vantagev1.ApproveAgentRequest) (*vantagev1.AgentInfo, error) {
	f.record(req)
	return &vantagev1.AgentInfo{Id: req.GetId(), Name: "vps-fra1", State: vantagev1.AgentState_AGENT_STATE_ACTIVE}, nil
}

func (f *fakeOperator) RevokeAgent(_ context.Context, req *vantagev1.RevokeAgentRequest) (*vantagev1.AgentInfo, error) {
	f.record(req)
	return &vantagev1.AgentInfo{Id: req.GetId(), State: vantagev1.AgentState_AGENT_STATE_REVOKED}, nil
}

func (f *fakeOperator) CreateJoinToken(_ context.Context, req *vantagev1.CreateJoinTokenRequest) (*vantagev1.CreateJoinTokenResponse, error) {
	f.record(req)
	return &vantagev1.CreateJoinTokenResponse{Token: "jt-123", ExpiresAt: tsAt("2026-01-01T03:00:00Z"), CaHash: "sha256:abcd"}, nil
}

func (f *fakeOperator) ApplyCampaign(_ context.Context, req *vantagev1.ApplyCampaignRequest) (*vantagev1.Campaign, error) {
	f.record(req)
	if !strings.Contains(req.GetSpecYaml(), "name:") {
		return nil, status.Error(codes.InvalidArgument, "name: required")
	}
	if strings.Contains(req.GetSpecYaml(), "bogus:") { // the controller's own wording
		return nil, status.Error(codes.InvalidArgument, "invalid argument: campaign: line 2: field bogus not found in type campaign.Spec")
	}
	return fixtureCampaign(), nil
}

func (f *fakeOperator) ListCampaigns(_ context.Context, req *vantagev1.ListCampaignsRequest) (*vantagev1.ListCampaignsResponse, error) {
	f.record(req)
	return &vantagev1.ListCampaignsResponse{Campaigns: []*vantagev1.Campaign{fixtureCampaign()}}, nil
}

func (f *fakeOperator) GetCampaign(_ context.Context, req *vantagev1.GetCampaignRequest) (*vantagev1.Campaign, error) {
	f.record(req)
	if req.GetName() != "kp" {
		return nil, status.Errorf(codes.NotFound, "campaign %q not found", req.GetName())
	}
	return fixtureCampaign(), nil
}

func (f *fakeOperator) PauseCampaign(_ context.Context, req *vantagev1.PauseCampaignRequest) (*vantagev1.Campaign, error) {
	f.record(req)
	c := fixtureCampaign()
	c.State = vantagev1.CampaignState_CAMPAIGN_STATE_PAUSED
	return c, nil
}

func (f *fakeOperator) DeleteCampaign(_ context.Context, req *vantagev1.DeleteCampaignRequest) (*vantagev1.DeleteCampaignResponse, error) {
	f.record(req)
	return &vantagev1.DeleteCampaignResponse{}, nil
}

func (f *fakeOperator) GetVerdicts(_ context.Context, req *vantagev1.GetVerdictsRequest) (*vantagev1.GetVerdictsResponse, error) {
	f.record(req)
	switch req.GetCampaign() {
	case "empty":
		return &vantagev1.GetVerdictsResponse{}, nil
	case "nope":
		return nil, status.Error(codes.NotFound, `campaign "nope" not found`)
	}
	return &vantagev1.GetVerdictsResponse{Verdicts: fixtureVerdicts()}, nil
}

func (f *fakeOperator) Explain(_ context.Context, req *vantagev1.ExplainRequest) (*vantagev1.ExplainResponse, error) {
	f.record(req)
	if req.GetVerdictId() == "kp/target/198.18.0.9" { // as the controller answers before a first round
		return &vantagev1.ExplainResponse{Verdict: &vantagev1.Verdict{Id: req.GetVerdictId(), Campaign: "kp",
			Level: vantagev1.Level_LEVEL_TARGET, Subject: "198.18.0.9", State: vantagev1.State_STATE_UNKNOWN, Round: -1}}, nil
	}
	return fixtureExplain(), nil
}

func (f *fakeOperator) ListAudit(_ context.Context, req *vantagev1.ListAuditRequest) (*vantagev1.ListAuditResponse, error) {
	f.record(req)
	return &vantagev1.ListAuditResponse{Entries: []*vantagev1.AuditEntry{{Id: 1, At: tsAt("2026-01-01T00:00:00Z"), Actor: "operator:admin", Action: "campaign.apply", Subject: "kp"}}}, nil
}

func (f *fakeOperator) QueryResults(req *vantagev1.QueryResultsRequest, s grpc.ServerStreamingServer[vantagev1.StoredResult]) error {
	f.record(req)
	switch req.GetCampaign() {
	case "nope": // as the controller answers since issue 14
		return status.Error(codes.NotFound, `campaign "nope" not found`)
	case "slow": // one result, then nothing until the client hangs up
		if err := s.Send(fixtureExplain().GetResults()[0]); err != nil {
			return err
		}
		<-s.Context().Done()
		return nil
	}
	for _, r := range fixtureExplain().GetResults() {
		if err := s.Send(r); err != nil {
			return err
		}
	}
	if req.GetTarget() == "fail" {
		return status.Error(codes.Internal, "store broke")
	}
	return nil
}

func (f *fakeOperator) WatchVerdicts(req *vantagev1.WatchVerdictsRequest, s grpc.ServerStreamingServer[vantagev1.VerdictUpdate]) error {
	f.record(req)
	f.mu.Lock()
	attempt := f.watchCalls
	f.watchCalls++
	f.mu.Unlock()
	if f.watch == nil {
		return status.Error(codes.Unimplemented, "no watch")
	}
	return f.watch(attempt, req, s)
}

// newCA makes a throwaway controller CA in a new directory and returns the
// path of its certificate, as --ca takes it.
func newCA(t *testing.T) (*fleet.CA, string) {
	t.Helper()
	dir := t.TempDir()
	return fixture.CA(t, dir), filepath.Join(dir, fleet.CACertFile)
}

// startServer serves f over TLS 1.3 on a loopback port until the test ends.
func startServer(t *testing.T, f *fakeOperator) (addr, caPath string) {
	t.Helper()
	ca, caPath := newCA(t)
	addr = fixture.ServeTLS(t, ca, func(srv *grpc.Server) { vantagev1.RegisterOperatorServiceServer(srv, f) }, nil,
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := f.authorize(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := f.authorize(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}))
	return addr, caPath
}

type cliRun struct {
	args  []string
	env   map[string]string
	stdin string
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs vantagectl in-process with a fixed clock and UTC times.
func runCLI(ctx context.Context, r cliRun, stdout, stderr *syncbuf.Buffer) int {
	return run(ctx, r.args, env{
		stdin:         strings.NewReader(r.stdin),
		stdout:        stdout,
		stderr:        stderr,
		getenv:        func(k string) string { return r.env[k] },
		now:           func() time.Time { return testNow },
		loc:           time.UTC,
		reconnectBase: 10 * time.Millisecond,
		reconnectMax:  50 * time.Millisecond,
		settle:        50 * time.Millisecond,
	})
}

func runSync(t *testing.T, r cliRun) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb syncbuf.Buffer
	code := runCLI(ctx, r, &out, &errb)
	return cliResult{code: code, stdout: out.String(), stderr: errb.String()}
}

// envFor is the environment that points the CLI at the test server.
func envFor(addr, ca string) map[string]string {
	return map[string]string{envController: addr, envToken: goodToken, envCA: ca}
}

func TestCommands(t *testing.T) {
	f := &fakeOperator{}
	addr, ca := startServer(t, f)
	_, otherCA := newCA(t) // a CA that did not sign the server
	goodEnv := envFor(addr, ca)
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte(goodToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// targets.rir is expanded on the client, relative to the campaign file.
	rirDir := t.TempDir()
	rirCampaign := filepath.Join(rirDir, "kp.yaml")
	if err := os.WriteFile(rirCampaign, []byte("name: kp\nscope: {country: KP}\ntargets: {rir: {file: delegated.txt}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rirDir, "delegated.txt"), []byte("apnic|KP|ipv4|198.18.0.0|256|20091104|allocated\napnic|KP|ipv4|198.18.1.0|lots|20091104|allocated\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		run        cliRun
		wantCode   int
		wantStdout string // exact, when set
		contains   []string
		wantStderr string // substring
		wantReq    proto.Message
	}{
		{
			name: "agents list from the environment",
			run:  cliRun{args: []string{"agents", "list"}, env: goodEnv},
			wantStdout: `ID                    NAME      STATE   CONNECTED  HEALTHY             LAST-SEEN  SPOOL  DROPPED  GAPS  LABELS
agt-0123456789abcdef  vps-fra1  ACTIVE  yes        yes                 3s ago     12     0        0     role=vps,site=fra1
agt-fedcba9876543210  vps-sin1  ACTIVE  no         no (no fresh data)  5m ago     -      -        2     -
`,
			wantReq: &vantagev1.ListAgentsRequest{PageToken: "p2"}, // the second page
		},
		{
			name: "flags override the environment",
			run: cliRun{args: []string{"--controller", addr, "--token", goodToken, "--ca", ca, "agents", "approve", "agt-1"},
				env: map[string]string{envController: "127.0.0.1:1", envToken: "wrong", envCA: "/nonexistent/ca.pem"}},
			wantStdout: "agent agt-1 (vps-fra1) is ACTIVE\n",
			wantReq:    &vantagev1.ApproveAgentRequest{Id: "agt-1"},
		},
		{
			name:       "token file",
			run:        cliRun{args: []string{"--token-file", tokenFile, "agents", "revoke", "agt-2", "--reason", "stolen"}, env: map[string]string{envController: addr, envCA: ca}},
			wantStdout: "agent agt-2 is REVOKED\n",
			wantReq:    &vantagev1.RevokeAgentRequest{Id: "agt-2", Reason: "stolen"},
		},
		{
			name:     "token create",
			run:      cliRun{args: []string{"token", "create", "--ttl", "2h", "--max-uses", "3", "--label", "role=vps", "--label", "site=fra1"}, env: goodEnv},
			contains: []string{"token:    jt-123\n", "ca hash:  sha256:abcd\n", "VANTAGE_JOIN_TOKEN=jt-123 vantage-agent --controller " + addr + " --ca-hash sha256:abcd \\\n    --state /var/lib/vantage-agent --name NAME --label provider=PROVIDER\n"},
			wantReq:  &vantagev1.CreateJoinTokenRequest{TtlS: 7200, MaxUses: 3, Labels: map[string]string{"role": "vps", "site": "fra1"}},
		},
		{
			name:       "campaign apply from stdin, dry run",
			run:        cliRun{args: []string{"campaign", "apply", "-f", "-", "--dry-run"}, env: goodEnv, stdin: "name: kp\n"},
			wantStdout: "campaign kp is valid (2 networks, 3 targets); dry run, nothing stored\n",
			wantReq:    &vantagev1.ApplyCampaignRequest{SpecYaml: "name: kp\n", DryRun: true},
		},
		{
			name:       "campaign apply rejected by the controller",
			run:        cliRun{args: []string{"campaign", "apply", "-f", "-"}, env: goodEnv, stdin: "scope: KP\n"},
			wantCode:   exitInvalid,
			wantStderr: "vantagectl: invalid argument: name: required\n",
		},
		{
			name:     "campaign get prints the spec",
			run:      cliRun{args: []string{"campaign", "get", "kp"}, env: goodEnv},
			contains: []string{"name:     kp\n", "\nspec:\nname: kp\nscope: {country: KP}\n"},
			wantReq:  &vantagev1.GetCampaignRequest{Name: "kp"},
		},
		{
			name:       "campaign pause",
			run:        cliRun{args: []string{"campaign", "pause", "kp"}, env: goodEnv},
			wantStdout: "campaign kp is PAUSED\n",
		},
		{
			name:       "campaign delete",
			run:        cliRun{args: []string{"campaign", "delete", "kp"}, env: goodEnv},
			wantStdout: "campaign kp deleted\n",
			wantReq:    &vantagev1.DeleteCampaignRequest{Name: "kp"},
		},
		{
			name:     "campaign list",
			run:      cliRun{args: []string{"campaign", "list"}, env: goodEnv},
			contains: []string{"NAME  STATE   VERSION", "kp    ACTIVE  3"},
		},
		{
			name:     "verdicts filtered",
			run:      cliRun{args: []string{"verdicts", "--campaign", "kp", "--level", "network"}, env: goodEnv},
			contains: []string{"LEVEL    SUBJECT     STATE", "network  star-jv     UNREACHABLE"},
			wantReq:  &vantagev1.GetVerdictsRequest{Campaign: "kp", Level: vantagev1.Level_LEVEL_NETWORK},
		},
		{
			name:     "timeline since a duration",
			run:      cliRun{args: []string{"timeline", "--campaign", "kp", "--since", "90m", "--level", "scope"}, env: goodEnv},
			contains: []string{"REACHABLE -> UNREACHABLE  00:04:30 ±30s"},
			wantReq:  &vantagev1.GetTimelineRequest{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, From: tsAt("2025-12-31T23:30:00Z")},
		},
		{
			name:    "timeline since an instant",
			run:     cliRun{args: []string{"timeline", "--since", "2025-12-30T00:00:00Z", "--until", "1d"}, env: goodEnv},
			wantReq: &vantagev1.GetTimelineRequest{From: tsAt("2025-12-30T00:00:00Z"), To: tsAt("2025-12-31T01:00:00Z")},
		},
		{
			name:     "explain",
			run:      cliRun{args: []string{"explain", "kp/network/star-jv", "--rounds", "5"}, env: goodEnv},
			contains: []string{"verdict:   kp/network/star-jv\n", "1 traces (localisation evidence):\n", "2 results:\n"},
			wantReq:  &vantagev1.ExplainRequest{VerdictId: "kp/network/star-jv", Rounds: 5},
		},
		{
			name:     "replay",
			run:      cliRun{args: []string{"replay", "--campaign", "kp", "--from", "2025-12-31T23:00:00Z", "--to", "30m", "--param", "quorum=3", "--param", "grace=2s"}, env: goodEnv},
			contains: []string{"REACHABLE -> UNREACHABLE"},
			wantReq: &vantagev1.ReplayRequest{Campaign: "kp", From: tsAt("2025-12-31T23:00:00Z"), To: tsAt("2026-01-01T00:30:00Z"),
				Params: map[string]string{"quorum": "3", "grace": "2s"}},
		},
		{
			name:     "results table",
			run:      cliRun{args: []string{"results", "--campaign", "kp", "--agent", "agt-1", "--limit", "10"}, env: goodEnv},
			contains: []string{"SENT      AGENT", "00:59:02  agt-1  56     tcp    198.18.0.1:443   unreachable  1.25ms"},
			wantReq:  &vantagev1.QueryResultsRequest{Campaign: "kp", AgentId: "agt-1", Limit: 10},
		},
		{
			name:       "results stream broken midway",
			run:        cliRun{args: []string{"results", "--target", "fail"}, env: goodEnv},
			wantCode:   exitError,
			contains:   []string{"198.18.0.1:443"},
			wantStderr: "vantagectl: internal: store broke\n",
		},
		{
			name:     "audit",
			run:      cliRun{args: []string{"audit", "--limit", "5"}, env: goodEnv},
			contains: []string{"operator:admin  campaign.apply  kp"},
			wantReq:  &vantagev1.ListAuditRequest{Limit: 5},
		},
		// Errors.
		{
			name:       "not found maps to its code",
			run:        cliRun{args: []string{"campaign", "get", "nope"}, env: goodEnv},
			wantCode:   exitNotFound,
			wantStderr: "vantagectl: campaign \"nope\" not found\n",
		},
		{
			name:       "wrong token",
			run:        cliRun{args: []string{"--token", "bad", "agents", "list"}, env: goodEnv},
			wantCode:   exitPermission,
			wantStderr: "vantagectl: unauthenticated: unknown token\n",
		},
		{
			name:       "unimplemented",
			run:        cliRun{args: []string{"campaign", "resume", "kp"}, env: goodEnv},
			wantCode:   exitError,
			wantStderr: "vantagectl: not implemented by this controller: method ResumeCampaign not implemented\n",
		},
		{
			name:       "CA that did not sign the server",
			run:        cliRun{args: []string{"--ca", otherCA, "agents", "list"}, env: goodEnv},
			wantCode:   exitUnavailable,
			wantStderr: "vantagectl: unavailable: ",
		},
		{
			name:       "missing CA",
			run:        cliRun{args: []string{"agents", "list"}, env: map[string]string{envController: addr, envToken: goodToken}},
			wantCode:   exitUsage,
			wantStderr: "vantagectl: no CA certificate: pass --ca or set VANTAGE_CA",
		},
		{
			name:       "missing token",
			run:        cliRun{args: []string{"agents", "list"}, env: map[string]string{envController: addr, envCA: ca}},
			wantCode:   exitUsage,
			wantStderr: "vantagectl: no token:",
		},
		{
			name:       "token and token file",
			run:        cliRun{args: []string{"--token", "x", "--token-file", tokenFile, "agents", "list"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: "--token and --token-file: give only one",
		},
		{
			name:       "unknown command",
			run:        cliRun{args: []string{"frobnicate"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: "unknown command \"frobnicate\"",
		},
		{
			name:       "unknown subcommand",
			run:        cliRun{args: []string{"agents", "frobnicate"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: "vantagectl: unknown command \"frobnicate\" for \"vantagectl agents\"\nRun 'vantagectl agents --help' for usage.\n",
		},
		{
			name:       "missing argument",
			run:        cliRun{args: []string{"campaign", "get"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: "accepts 1 arg(s), received 0",
		},
		{
			name:       "unknown flag",
			run:        cliRun{args: []string{"agents", "list", "--bogus"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: "unknown flag: --bogus",
		},
		{
			name:       "missing required flag",
			run:        cliRun{args: []string{"campaign", "apply"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: "campaign apply: no campaign file: give it as an argument",
		},
		{
			name:       "bad output format",
			run:        cliRun{args: []string{"-o", "yaml", "agents", "list"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: `--output: want table or json, got "yaml"`,
		},
		{
			name:       "bad level",
			run:        cliRun{args: []string{"verdicts", "--level", "planet"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: `--level: want scope, network or target, got "planet"`,
		},
		{
			name:       "bad since",
			run:        cliRun{args: []string{"timeline", "--since", "yesterday"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: `--since: want now, a duration`,
		},
		{
			name:       "bad label",
			run:        cliRun{args: []string{"token", "create", "--label", "novalue"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: `--label: want key=value, got "novalue"`,
		},
		{
			name:       "bad ttl",
			run:        cliRun{args: []string{"token", "create", "--ttl", "1000h"}, env: goodEnv},
			wantCode:   exitUsage,
			wantStderr: `--ttl: must be between 1s and 720h0m0s`,
		},
		{
			name:       "campaign file missing",
			run:        cliRun{args: []string{"campaign", "apply", "-f", "/nonexistent/kp.yaml"}, env: goodEnv},
			wantCode:   exitError,
			wantStderr: "vantagectl: campaign file: open /nonexistent/kp.yaml: no such file or directory\n",
		},
		{
			name:       "campaign rir file with a broken line is refused before sending",
			run:        cliRun{args: []string{"campaign", "apply", "-f", rirCampaign}, env: goodEnv},
			wantCode:   exitError,
			wantStderr: "targets.rir.file: delegated.txt: line 2: field value: \"lots\" is not a positive integer\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runSync(t, tt.run)
			if got.code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tt.wantCode, got.stdout, got.stderr)
			}
			if tt.wantStdout != "" && got.stdout != tt.wantStdout {
				t.Errorf("stdout mismatch\n got:\n%s\nwant:\n%s", got.stdout, tt.wantStdout)
			}
			for _, s := range tt.contains {
				if !strings.Contains(got.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, got.stdout)
				}
			}
			if tt.wantStderr != "" && !strings.Contains(got.stderr, tt.wantStderr) {
				t.Errorf("stderr %q lacks %q", got.stderr, tt.wantStderr)
			}
			if tt.wantStderr == "" && got.stderr != "" {
				t.Errorf("unexpected stderr: %s", got.stderr)
			}
			if tt.wantReq != nil && !proto.Equal(f.lastReq(), tt.wantReq) {
				t.Errorf("server got %v, want %v", f.lastReq(), tt.wantReq)
			}
			if tt.wantCode == exitOK {
				if a := f.lastAuth(); a != "Bearer "+goodToken {
					t.Errorf("authorization metadata %q, want the bearer token", a)
				}
			}
		})
	}
}

func TestJSONOutput(t *testing.T) {
	f := &fakeOperator{}
	addr, ca := startServer(t, f)
	goodEnv := envFor(addr, ca)

	t.Run("unary list is one object", func(t *testing.T) {
		got := runSync(t, cliRun{args: []string{"agents", "list", "-o", "json"}, env: goodEnv})
		if got.code != 0 {
			t.Fatalf("exit %d: %s", got.code, got.stderr)
		}
		var resp struct {
			Agents []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"agents"`
		}
		if err := json.Unmarshal([]byte(got.stdout), &resp); err != nil {
			t.Fatalf("stdout is not one JSON object: %v\n%s", err, got.stdout)
		}
		if len(resp.Agents) != 2 || resp.Agents[0].ID != fixtureAgents()[0].GetId() || resp.Agents[1].State != "active" {
			t.Errorf("got %+v", resp)
		}
	})
	t.Run("stream is one array", func(t *testing.T) {
		got := runSync(t, cliRun{args: []string{"--output", "json", "results"}, env: goodEnv})
		if got.code != 0 {
			t.Fatalf("exit %d: %s", got.code, got.stderr)
		}
		var rs []struct {
			AgentID string `json:"agent_id"`
			Result  struct {
				Target string `json:"target"`
				Round  int64  `json:"round"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(got.stdout), &rs); err != nil {
			t.Fatalf("stdout is not one JSON array: %v\n%s", err, got.stdout)
		}
		want := fixtureExplain().GetResults()
		if len(rs) != len(want) {
			t.Fatalf("%d results, want %d", len(rs), len(want))
		}
		for i, r := range rs {
			if r.AgentID != want[i].GetAgentId() || r.Result.Target != want[i].GetResult().GetTarget() || r.Result.Round != want[i].GetResult().GetRound() {
				t.Errorf("result %d: got %+v, want %v", i, r, want[i])
			}
		}
	})
}

// sendSnapshot sends the current verdicts as WatchVerdicts does first.
func sendSnapshot(s grpc.ServerStreamingServer[vantagev1.VerdictUpdate], vs []*vantagev1.Verdict) error {
	for _, v := range vs {
		if err := s.Send(&vantagev1.VerdictUpdate{Update: &vantagev1.VerdictUpdate_Verdict{Verdict: v}}); err != nil {
			return err
		}
	}
	return nil
}

func sendTransition(s grpc.ServerStreamingServer[vantagev1.VerdictUpdate], tr *vantagev1.Transition) error {
	return s.Send(&vantagev1.VerdictUpdate{Update: &vantagev1.VerdictUpdate_Transition{Transition: tr}})
}

// waitFor polls out until it contains want; the CLI is stopped (Ctrl-C) by
// the caller afterwards.
func waitFor(t *testing.T, out *syncbuf.Buffer, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output never contained %q:\n%s", want, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatch(t *testing.T) {
	scopeDown := fixtureTransition()
	back := fixtureTransition()
	back.From, back.To = vantagev1.State_STATE_UNREACHABLE, vantagev1.State_STATE_REACHABLE
	back.DetectedAt = tsAt("2026-01-01T00:40:00Z")

	tests := []struct {
		name  string
		args  []string
		watch func(attempt int, req *vantagev1.WatchVerdictsRequest, s grpc.ServerStreamingServer[vantagev1.VerdictUpdate]) error
		// waitFor, when set, is output after which the test presses Ctrl-C.
		waitFor    string
		wantCode   int
		contains   []string
		absent     []string
		wantStderr string
	}{
		{
			name: "snapshot table, then transitions until Ctrl-C",
			args: []string{"verdicts", "--watch", "--campaign", "kp"},
			watch: func(_ int, req *vantagev1.WatchVerdictsRequest, s grpc.ServerStreamingServer[vantagev1.VerdictUpdate]) error {
				if req.GetCampaign() != "kp" {
					return status.Error(codes.InvalidArgument, "campaign filter lost")
				}
				if err := sendSnapshot(s, fixtureVerdicts()); err != nil {
					return err
				}
				if err := sendTransition(s, scopeDown); err != nil {
					return err
				}
				<-s.Context().Done()
				return nil
			},
			waitFor: "kp/KP  REACHABLE -> UNREACHABLE",
			contains: []string{
				"LEVEL    SUBJECT     STATE        SINCE   UP/TOTAL  VANTAGES  LOCATION       NOTES\nscope    KP ",
				"\n00:05:02  scope  kp/KP  REACHABLE -> UNREACHABLE  00:04:30 ±30s  2s  upstream (unicom)  upstream 0.90  -  up=- down=net0,net1,net2,net3\n",
			},
		},
		{
			name: "json lines",
			args: []string{"verdicts", "-w", "-o", "json"},
			watch: func(_ int, _ *vantagev1.WatchVerdictsRequest, s grpc.ServerStreamingServer[vantagev1.VerdictUpdate]) error {
				if err := sendSnapshot(s, fixtureVerdicts()[:1]); err != nil {
					return err
				}
				if err := sendTransition(s, scopeDown); err != nil {
					return err
				}
				<-s.Context().Done()
				return nil
			},
			waitFor: `"transition":`,
			contains: []string{
				"{\"verdict\":{\"id\":\"kp/network/star-jv\",",
				"\n{\"transition\":{\"id\":7,\"campaign\":\"kp\",",
			},
		},
		{
			name: "reconnects after the stream breaks and prints only what changed",
			args: []string{"verdicts", "--watch"},
			watch: func(attempt int, _ *vantagev1.WatchVerdictsRequest, s grpc.ServerStreamingServer[vantagev1.VerdictUpdate]) error {
				vs := fixtureVerdicts()
				switch attempt {
				case 0:
					if err := sendSnapshot(s, vs); err != nil {
						return err
					}
					return status.Error(codes.Unavailable, "controller shutting down")
				case 1:
					return nil // a clean end: reconnect again
				}
				vs[0].State = vantagev1.State_STATE_REACHABLE // changed while away
				if err := sendSnapshot(s, vs); err != nil {
					return err
				}
				if err := sendTransition(s, back); err != nil {
					return err
				}
				<-s.Context().Done()
				return nil
			},
			waitFor: "UNREACHABLE -> REACHABLE",
			contains: []string{
				"\nverdict  network  kp/star-jv  REACHABLE  4m ago",
				"00:40:00  scope  kp/KP  UNREACHABLE -> REACHABLE",
			},
			absent:     []string{"verdict  scope  kp/KP"},
			wantStderr: "vantagectl: watch: stream lost (unavailable: controller shutting down); reconnecting in 10ms\nvantagectl: watch: stream lost (watch: the controller ended the stream); reconnecting in 20ms\nvantagectl: watch: reconnected\n",
		},
		{
			name: "reconnects after an empty stream that had stayed open",
			args: []string{"verdicts", "--watch"},
			watch: func(attempt int, _ *vantagev1.WatchVerdictsRequest, s grpc.ServerStreamingServer[vantagev1.VerdictUpdate]) error {
				if attempt == 0 {
					// Longer than the settle time: the stream worked.
					time.Sleep(500 * time.Millisecond)
					return status.Error(codes.Unavailable, "verdict worker shutting down")
				}
				if err := sendTransition(s, scopeDown); err != nil {
					return err
				}
				<-s.Context().Done()
				return nil
			},
			waitFor:    "kp/KP  REACHABLE -> UNREACHABLE",
			contains:   []string{"No verdicts yet; waiting for transitions.\n00:05:02  scope  kp/KP"},
			wantStderr: "vantagectl: watch: stream lost (unavailable: verdict worker shutting down); reconnecting in 10ms\nvantagectl: watch: reconnected\n",
		},
		{
			name: "stream end without reconnect is an error",
			args: []string{"verdicts", "--watch", "--no-reconnect"},
			watch: func(_ int, _ *vantagev1.WatchVerdictsRequest, s grpc.ServerStreamingServer[vantagev1.VerdictUpdate]) error {
				return sendSnapshot(s, fixtureVerdicts())
			},
			wantCode:   exitError,
			contains:   []string{"scope    KP"},
			wantStderr: "vantagectl: watch: the controller ended the stream\n",
		},
		{
			name: "a first stream that fails is not retried",
			args: []string{"verdicts", "--watch"},
			watch: func(int, *vantagev1.WatchVerdictsRequest, grpc.ServerStreamingServer[vantagev1.VerdictUpdate]) error {
				return status.Error(codes.PermissionDenied, "viewer role required")
			},
			wantCode:   exitPermission,
			wantStderr: "vantagectl: permission denied: viewer role required\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeOperator{watch: tt.watch}
			addr, ca := startServer(t, f)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errb syncbuf.Buffer
			code := make(chan int, 1)
			go func() { code <- runCLI(ctx, cliRun{args: tt.args, env: envFor(addr, ca)}, &out, &errb) }()
			if tt.waitFor != "" {
				waitFor(t, &out, tt.waitFor)
				cancel() // Ctrl-C
			}
			got := <-code
			if got != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", got, tt.wantCode, out.String(), errb.String())
			}
			for _, s := range tt.contains {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(out.String(), s) {
					t.Errorf("stdout has %q:\n%s", s, out.String())
				}
			}
			if errb.String() != tt.wantStderr {
				t.Errorf("stderr %q, want %q", errb.String(), tt.wantStderr)
			}
		})
	}
}

func (f *fakeOperator) ListJoinTokens(_ context.Context, req *vantagev1.ListJoinTokensRequest) (*vantagev1.ListJoinTokensResponse, error) {
	f.record(req)
	return &vantagev1.ListJoinTokensResponse{Tokens: []*vantagev1.JoinTokenInfo{
		{Id: "0123456789ab", CreatedAt: tsAt("2026-01-01T00:30:00Z"), CreatedBy: "operator:admin", ExpiresAt: tsAt("2026-01-01T01:30:00Z"),
			MaxUses: 3, Uses: 1, Labels: map[string]string{"provider": "hetzner"}, Usable: true},
		{Id: "ba9876543210", CreatedAt: tsAt("2025-12-31T10:00:00Z"), CreatedBy: "operator:alice", ExpiresAt: tsAt("2025-12-31T11:00:00Z")},
	}}, nil
}

func (f *fakeOperator) RevokeJoinToken(_ context.Context, req *vantagev1.RevokeJoinTokenRequest) (*vantagev1.JoinTokenInfo, error) {
	f.record(req)
	if req.GetId() != "0123456789ab" {
		return nil, status.Errorf(codes.NotFound, "join token %s: no unexpired token has this id: not found", req.GetId())
	}
	return &vantagev1.JoinTokenInfo{Id: req.GetId()}, nil
}

func (f *fakeOperator) CreateOperatorToken(_ context.Context, req *vantagev1.CreateOperatorTokenRequest) (*vantagev1.CreateOperatorTokenResponse, error) {
	f.record(req)
	if req.GetName() == "mallory" { // as the controller answers a token without role admin
		return nil, status.Error(codes.PermissionDenied, `permission denied: CreateOperatorToken needs role admin, token "ops" has operator`)
	}
	return &vantagev1.CreateOperatorTokenResponse{Token: "op-secret", Name: req.GetName(), Role: req.GetRole()}, nil
}
