package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestIssue14Faults has one row per fault that issue 14 found in
// vantagectl, tried as a new user would. Each row runs the whole CLI
// against the loopback test server and fails if its fault comes back.
func TestIssue14Faults(t *testing.T) {
	f := &fakeOperator{}
	addr, ca := startServer(t, f)
	goodEnv := envFor(addr, ca)
	campaignFile := filepath.Join(t.TempDir(), "country.yaml")
	if err := os.WriteFile(campaignFile, []byte("name: kp\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	type check func(t *testing.T, got cliResult)
	tests := []struct {
		fault    string
		run      cliRun
		wantCode int
		contains []string // on stdout
		absent   []string // from stdout and stderr
		stderr   string   // substring; empty means no stderr
		wantReq  proto.Message
		check    check
	}{
		{
			fault:    "JSON prints {} for an empty list, so jq '.verdicts[]' breaks",
			run:      cliRun{args: []string{"verdicts", "--campaign", "empty", "-o", "json"}, env: goodEnv},
			contains: []string{`"verdicts": []`},
			check: func(t *testing.T, got cliResult) {
				var doc map[string]any
				if err := json.Unmarshal([]byte(got.stdout), &doc); err != nil {
					t.Fatal(err)
				}
				if l, ok := doc["verdicts"].([]any); !ok || l == nil {
					t.Errorf("verdicts is %#v, want an empty array", doc["verdicts"])
				}
			},
		},
		{
			fault:    "JSON enums come out raw (LEVEL_SCOPE)",
			run:      cliRun{args: []string{"verdicts", "-o", "json"}, env: goodEnv},
			contains: []string{`"level": "network"`, `"state": "unreachable"`, `"location": "upstream"`},
			absent:   []string{"LEVEL_", "STATE_", "LOCATION_"},
		},
		{
			fault:    "JSON int64 values come out as strings",
			run:      cliRun{args: []string{"timeline", "-o", "json"}, env: goodEnv},
			contains: []string{`"id": 7,`},
			absent:   []string{`"id": "7"`},
		},
		{
			fault: "JSON keys are camelCase, not snake_case as vantage-agent probe -o json",
			run:   cliRun{args: []string{"explain", "kp/network/star-jv", "-o", "json"}, env: goodEnv},
			check: func(t *testing.T, got cliResult) {
				var doc any
				if err := json.Unmarshal([]byte(got.stdout), &doc); err != nil {
					t.Fatal(err)
				}
				snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
				n := 0
				walkKeys(doc, func(k string) {
					n++
					if !snake.MatchString(k) {
						t.Errorf("key %q is not snake_case", k)
					}
				})
				if n < 20 {
					t.Errorf("only %d keys walked: %s", n, got.stdout)
				}
				if !strings.Contains(got.stdout, `"agent_id"`) {
					t.Errorf("no agent_id key:\n%s", got.stdout)
				}
			},
		},
		{
			fault: "results -o json prints one object per line, not one document",
			run:   cliRun{args: []string{"results", "-o", "json"}, env: goodEnv},
			check: func(t *testing.T, got cliResult) {
				var rs []map[string]any
				if err := json.Unmarshal([]byte(got.stdout), &rs); err != nil {
					t.Fatalf("not one JSON array: %v\n%s", err, got.stdout)
				}
				if len(rs) != len(fixtureExplain().GetResults()) {
					t.Errorf("%d results", len(rs))
				}
			},
		},
		{
			fault:    "JSON times are not RFC 3339",
			run:      cliRun{args: []string{"results", "-o", "json"}, env: goodEnv},
			contains: []string{`"sent_at":"2026-01-01T00:59:01Z"`},
		},
		{
			fault:    "errors repeat their code (InvalidArgument: invalid argument: ...)",
			run:      cliRun{args: []string{"campaign", "apply", "-"}, env: goodEnv, stdin: "name: kp\nbogus: 1\n"},
			wantCode: exitInvalid,
			stderr:   "vantagectl: invalid argument: campaign: line 2: field bogus not found in type campaign.Spec\n",
			absent:   []string{"InvalidArgument"},
		},
		{
			fault:    "NotFound exits 1, like every other error",
			run:      cliRun{args: []string{"campaign", "get", "nope"}, env: goodEnv},
			wantCode: exitNotFound,
			stderr:   "vantagectl: campaign \"nope\" not found\n",
			absent:   []string{"NotFound"},
		},
		{
			fault:    "PermissionDenied (an unknown token) exits 1",
			run:      cliRun{args: []string{"--token", "wrong", "campaign", "list"}, env: goodEnv},
			wantCode: exitPermission,
			stderr:   "vantagectl: unauthenticated: unknown token\n",
		},
		{
			fault:    "Unavailable (no controller) exits 1",
			run:      cliRun{args: []string{"--controller", "127.0.0.1:1", "--timeout", "5s", "campaign", "list"}, env: goodEnv},
			wantCode: exitUnavailable,
			stderr:   "vantagectl: unavailable: ",
		},
		{
			fault:    "the exit codes are not documented in --help",
			run:      cliRun{args: []string{"--help"}, env: goodEnv},
			contains: []string{"Exit codes:", "2  usage", "3  not found", "4  permission", "5  unavailable", "6  invalid"},
		},
		{
			fault:    "results --campaign nope says \"No results.\" and exits 0, while verdicts --campaign nope exits 1",
			run:      cliRun{args: []string{"results", "--campaign", "nope"}, env: goodEnv},
			wantCode: exitNotFound,
			stderr:   "vantagectl: campaign \"nope\" not found\n",
			absent:   []string{"No results."},
		},
		{
			fault:    "verdicts --campaign nope: the same class as results",
			run:      cliRun{args: []string{"verdicts", "--campaign", "nope"}, env: goodEnv},
			wantCode: exitNotFound,
			stderr:   "vantagectl: campaign \"nope\" not found\n",
		},
		{
			fault:   "--since 1w is refused",
			run:     cliRun{args: []string{"timeline", "--since", "1w"}, env: goodEnv},
			wantReq: &vantagev1.GetTimelineRequest{From: tsAt("2025-12-25T01:00:00Z")},
		},
		{
			fault:   "a date such as 2026-12-01 is refused",
			run:     cliRun{args: []string{"results", "--since", "2025-12-01", "--until", "2025-12-31"}, env: goodEnv},
			wantReq: &vantagev1.QueryResultsRequest{From: tsAt("2025-12-01T00:00:00Z"), To: tsAt("2025-12-31T00:00:00Z")},
		},
		{
			fault:   "--to now is refused",
			run:     cliRun{args: []string{"replay", "--campaign", "kp", "--from", "1d", "--to", "now"}, env: goodEnv},
			wantReq: &vantagev1.ReplayRequest{Campaign: "kp", From: tsAt("2025-12-31T01:00:00Z"), To: tsAt("2026-01-01T01:00:00Z")},
		},
		{
			fault:   "--from and --to on results and timeline are unknown flags",
			run:     cliRun{args: []string{"timeline", "--from", "2h", "--to", "now"}, env: goodEnv},
			wantReq: &vantagev1.GetTimelineRequest{From: tsAt("2025-12-31T23:00:00Z"), To: tsAt("2026-01-01T01:00:00Z")},
		},
		{
			fault:   "replay --to 0s fails",
			run:     cliRun{args: []string{"replay", "--campaign", "kp", "--from", "2h", "--to", "0s"}, env: goodEnv},
			wantReq: &vantagev1.ReplayRequest{Campaign: "kp", From: tsAt("2025-12-31T23:00:00Z"), To: tsAt("2026-01-01T01:00:00Z")},
		},
		{
			fault:    "an inverted range silently returns nothing",
			run:      cliRun{args: []string{"timeline", "--since", "1h", "--until", "2h"}, env: goodEnv},
			wantCode: exitUsage,
			stderr:   "vantagectl: --since 2026-01-01T00:00:00Z is not before --until 2025-12-31T23:00:00Z: the range is empty",
		},
		{
			fault:    "campaign apply FILE fails without -f and gives no hint (deploy/examples/country.yaml's comment)",
			run:      cliRun{args: []string{"campaign", "apply", campaignFile, "--dry-run"}, env: goodEnv},
			contains: []string{"campaign kp is valid"},
			wantReq:  &vantagev1.ApplyCampaignRequest{SpecYaml: "name: kp\n", DryRun: true},
		},
		{
			fault:    "campaign apply without a file gives no hint",
			run:      cliRun{args: []string{"campaign", "apply"}, env: goodEnv},
			wantCode: exitUsage,
			stderr:   "campaign apply: no campaign file: give it as an argument (vantagectl campaign apply country.yaml) or with -f",
		},
		{
			fault:    "the results cap (100,000) is learnt only from the error",
			run:      cliRun{args: []string{"results", "--help"}, env: goodEnv},
			contains: []string{"at most 100000"},
		},
		{
			fault:    "the transitions cap (10,000) is learnt only from the error",
			run:      cliRun{args: []string{"timeline", "--help"}, env: goodEnv},
			contains: []string{"at most 10000"},
		},
		{
			fault:    "no binary has --version",
			run:      cliRun{args: []string{"--version"}, env: goodEnv},
			contains: []string{"vantagectl dev (module "},
		},
		{
			fault:    "explain on an unevaluated verdict shows round: -1",
			run:      cliRun{args: []string{"explain", "kp/target/198.18.0.9"}, env: goodEnv},
			contains: []string{"round:     not evaluated yet (no round has covered it)\n"},
			absent:   []string{"-1"},
		},
		{
			fault:    "the timeline's ROUND column shows raw round numbers, and times are RFC 3339 in tables",
			run:      cliRun{args: []string{"timeline"}, env: goodEnv},
			contains: []string{"DETECTED  LEVEL  SUBJECT  CHANGE                    ONSET          LATENCY", "00:05:02  scope  KP       REACHABLE -> UNREACHABLE  00:04:30 ±30s  2s "},
			absent:   []string{"ROUND", "2026-01-01T"},
		},
		{
			fault: "token create prints an agent command without --state, --name or --label provider=",
			run:   cliRun{args: []string{"token", "create"}, env: goodEnv},
			contains: []string{"vantage-agent --controller " + addr + " --ca-hash sha256:abcd \\\n    --state /var/lib/vantage-agent --name NAME --label provider=PROVIDER\n",
				"Replace NAME"},
		},
		{
			fault:    "token create: a token that gives the provider label needs no placeholder for it",
			run:      cliRun{args: []string{"token", "create", "--label", "provider=hetzner"}, env: goodEnv},
			contains: []string{"--state /var/lib/vantage-agent --name NAME\n"},
			absent:   []string{"provider=PROVIDER"},
		},
		{
			fault:    "completion is static: campaign names complete to nothing",
			run:      cliRun{args: []string{"__complete", "campaign", "get", ""}, env: goodEnv},
			contains: []string{"kp\n:4\n"},
			stderr:   "Completion ended with directive: ShellCompDirectiveNoFileComp",
		},
		{
			fault:    "completion is static: --campaign completes to nothing",
			run:      cliRun{args: []string{"__complete", "results", "--campaign", "k"}, env: goodEnv},
			contains: []string{"kp\n:4\n"},
			stderr:   "Completion ended with directive",
		},
		{
			fault:    "completion is static: verdict ids complete to nothing",
			run:      cliRun{args: []string{"__complete", "explain", "kp/n"}, env: goodEnv},
			contains: []string{"kp/network/star-jv\n:4\n"},
			absent:   []string{"kp/scope/KP"},
			stderr:   "Completion ended with directive",
		},
		{
			fault:    "completion is static: --level completes to nothing",
			run:      cliRun{args: []string{"__complete", "timeline", "--level", ""}, env: goodEnv},
			contains: []string{"scope\nnetwork\ntarget\n:4\n"},
			stderr:   "Completion ended with directive",
		},
		{
			fault:    "completion is static: -o completes to nothing",
			run:      cliRun{args: []string{"__complete", "agents", "list", "-o", ""}, env: goodEnv},
			contains: []string{"table\njson\n:4\n"},
			stderr:   "Completion ended with directive",
		},
		{
			fault:    "agents list shows CONNECTED=yes for ~40 s after a vantage's link dies, while HEALTHY says no fresh data",
			run:      cliRun{args: []string{"agents", "list"}, env: goodEnv},
			contains: []string{"vps-fra1  ACTIVE  yes        yes"}, // a heartbeat 3 s ago
			check: func(t *testing.T, _ cliResult) {
				// The session is open (keepalive has not given up yet),
				// but no heartbeat came for 25 s.
				a := &vantagev1.AgentInfo{Id: "agt-1", Name: "vps-sin1", State: vantagev1.AgentState_AGENT_STATE_ACTIVE,
					Connected: true, HealthReason: "no fresh data", LastSeen: ago(25 * time.Second)}
				var b strings.Builder
				if err := testPrinter.agents(&b, []*vantagev1.AgentInfo{a}); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(b.String(), "vps-sin1  ACTIVE  stale (25s)  no (no fresh data)  25s ago") {
					t.Errorf("a silent session:\n%s", b.String())
				}
			},
		},
		{
			fault: "join tokens cannot be listed",
			run:   cliRun{args: []string{"token", "list"}, env: goodEnv},
			contains: []string{
				"ID            CREATED              BY              EXPIRES          USES  USABLE  LABELS\n",
				"0123456789ab  00:30:00             operator:admin  in 30m           1/3   yes     provider=hetzner\n",
				"ba9876543210  2025-12-31 10:00:00  operator:alice  expired 14h ago  0     no      -\n"},
			wantReq: &vantagev1.ListJoinTokensRequest{},
		},
		{
			fault:    "join tokens cannot be revoked one by one",
			run:      cliRun{args: []string{"token", "revoke", "0123456789ab"}, env: goodEnv},
			contains: []string{"join token 0123456789ab revoked\n"},
			wantReq:  &vantagev1.RevokeJoinTokenRequest{Id: "0123456789ab"},
		},
		{
			fault:    "token revoke of an unknown id: not found",
			run:      cliRun{args: []string{"token", "revoke", "ffffffffffff"}, env: goodEnv},
			wantCode: exitNotFound,
			stderr:   "vantagectl: join token ffffffffffff: no unexpired token has this id: not found\n",
		},
		{
			fault:    "operator tokens can only be made on the controller host",
			run:      cliRun{args: []string{"token", "create", "--operator", "alice", "--role", "operator"}, env: goodEnv},
			contains: []string{"operator token alice (role operator):\nop-secret\n"},
			wantReq:  &vantagev1.CreateOperatorTokenRequest{Name: "alice", Role: "operator"},
		},
		{
			fault:    "operator tokens over the API: only for admins",
			run:      cliRun{args: []string{"token", "create", "--operator", "mallory", "--role", "admin"}, env: goodEnv},
			wantCode: exitPermission,
			stderr:   "vantagectl: permission denied: CreateOperatorToken needs role admin",
		},
		{
			fault:    "operator tokens: a bad --role is named",
			run:      cliRun{args: []string{"token", "create", "--operator", "bob", "--role", "root"}, env: goodEnv},
			wantCode: exitUsage,
			stderr:   `vantagectl: --role: want viewer, operator or admin, got "root"`,
		},
		{
			fault:    "the quorum refusal names --allow-fewer-vantages (the controller's text: TestQuorumRefusedAtApply); the flag it names exists",
			run:      cliRun{args: []string{"campaign", "apply", "--help"}, env: goodEnv},
			contains: []string{"--allow-fewer-vantages"},
		},
		{
			fault:    "results and audit tables show RFC 3339 stamps, not times of day",
			run:      cliRun{args: []string{"results"}, env: goodEnv},
			contains: []string{"00:59:01  agt-1"},
			absent:   []string{"2026-01-01T"},
		},
		{
			fault: "results -o json keys are not those of vantage-agent probe -o json (protojson with proto names)",
			run:   cliRun{args: []string{"results", "-o", "json"}, env: goodEnv},
			check: func(t *testing.T, got cliResult) {
				var rs []struct {
					Result map[string]any `json:"result"`
				}
				if err := json.Unmarshal([]byte(got.stdout), &rs); err != nil || len(rs) == 0 {
					t.Fatalf("%v: %s", err, got.stdout)
				}
				agent, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(fixtureExplain().GetResults()[0].GetResult())
				if err != nil {
					t.Fatal(err)
				}
				var want map[string]any
				if err := json.Unmarshal(agent, &want); err != nil {
					t.Fatal(err)
				}
				for k := range want {
					if _, ok := rs[0].Result[k]; !ok {
						t.Errorf("the agent's key %q is missing", k)
					}
				}
				if len(rs[0].Result) != len(want) {
					t.Errorf("%d keys, the agent has %d", len(rs[0].Result), len(want))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			got := runSync(t, tt.run)
			if got.code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tt.wantCode, got.stdout, got.stderr)
			}
			for _, s := range tt.contains {
				if !strings.Contains(got.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, got.stdout)
				}
			}
			for _, s := range tt.absent {
				if strings.Contains(got.stdout+got.stderr, s) {
					t.Errorf("output has %q:\n%s%s", s, got.stdout, got.stderr)
				}
			}
			if tt.stderr == "" && got.stderr != "" {
				t.Errorf("unexpected stderr: %s", got.stderr)
			}
			if !strings.Contains(got.stderr, tt.stderr) {
				t.Errorf("stderr %q lacks %q", got.stderr, tt.stderr)
			}
			if tt.wantReq != nil && !proto.Equal(f.lastReq(), tt.wantReq) {
				t.Errorf("server got %v, want %v", f.lastReq(), tt.wantReq)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// TestIssue14ResultsStream is the fault "results in table form prints
// nothing until the whole stream ends": the first row must appear while the
// stream is still open.
func TestIssue14ResultsStream(t *testing.T) {
	f := &fakeOperator{}
	addr, ca := startServer(t, f)
	for _, tt := range []struct{ name, output, want string }{
		{"table", "table", "198.18.0.1       timeout"},
		{"json", "json", `"agent_id":"agt-1"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errb syncbuf.Buffer
			done := make(chan int, 1)
			go func() {
				done <- runCLI(ctx, cliRun{args: []string{"results", "--campaign", "slow", "-o", tt.output}, env: envFor(addr, ca)}, &out, &errb)
			}()
			waitFor(t, &out, tt.want) // the server holds the stream open
			cancel()
			<-done
		})
	}
}

// walkKeys calls fn with every object key in a decoded JSON document.
func walkKeys(v any, fn func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			fn(k)
			walkKeys(e, fn)
		}
	case []any:
		for _, e := range v {
			walkKeys(e, fn)
		}
	}
}
