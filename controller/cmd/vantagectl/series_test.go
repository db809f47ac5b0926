package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func (f *fakeOperator) GetSeries(_ context.Context, req *vantagev1.GetSeriesRequest) (*vantagev1.GetSeriesResponse, error) {
	f.record(req)
	return &vantagev1.GetSeriesResponse{Points: fixturePoints()}, nil
}

func fixturePoints() []*vantagev1.QualityPoint {
	return []*vantagev1.QualityPoint{
		{Campaign: "kp", Network: "net0", AgentId: "agt-a", Round: 4, RoundStart: tsAt("2026-01-01T00:04:00Z"),
			Probes: 8, FirstTryAnswers: 5, Loss: 0.375, RttP50Ms: 1.25, RttP90Ms: 3.5, Answers: map[string]uint32{"tcp": 4, "icmp": 3, "trace": 1}},
		{Campaign: "kp", Network: "net1", AgentId: "agt-b", Round: 4, RoundStart: tsAt("2026-01-01T00:04:00Z"),
			Probes: 8, FirstTryAnswers: 0, Loss: 1},
	}
}

func TestSeriesCommand(t *testing.T) {
	f := &fakeOperator{}
	addr, ca := startServer(t, f)
	env := envFor(addr, ca)
	const table = `ROUND-START           ROUND  NETWORK  AGENT  PROBES  LOSS    RTT-P50  RTT-P90  ANSWERS
2026-01-01T00:04:00Z  4      net0     agt-a  5/8     37.5%   1.2ms    3.5ms    icmp=3,tcp=4,trace=1
2026-01-01T00:04:00Z  4      net1     agt-b  0/8     100.0%  -        -        -
`
	for _, tt := range []struct {
		name     string
		args     []string
		code     int
		stdout   string
		contains []string
		stderr   string
		req      proto.Message
	}{
		{name: "table", args: []string{"series", "--campaign", "kp", "--network", "net0", "--agent", "agt-a", "--since", "1h", "--limit", "10"},
			stdout: table,
			req:    &vantagev1.GetSeriesRequest{Campaign: "kp", Network: "net0", AgentId: "agt-a", From: tsAt("2026-01-01T00:00:00Z"), Limit: 10}},
		{name: "json", args: []string{"series", "--campaign", "kp", "-o", "json"},
			contains: []string{`"rtt_p90_ms": 3.5`, `"first_try_answers": 5`, `"trace": 1`},
			req:      &vantagev1.GetSeriesRequest{Campaign: "kp"}},
		{name: "campaign required", args: []string{"series"}, code: exitUsage, stderr: "--campaign: required"},
		{name: "bad since", args: []string{"series", "--campaign", "kp", "--since", "soon"}, code: exitUsage, stderr: "--since"},
		{name: "timeline with series", args: []string{"timeline", "--campaign", "kp", "--series"},
			contains: []string{"REACHABLE -> UNREACHABLE", "\n\n" + table},
			req:      &vantagev1.GetTimelineRequest{Campaign: "kp", IncludeSeries: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := runSync(t, cliRun{args: tt.args, env: env})
			if got.code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", got.code, tt.code, got.stdout, got.stderr)
			}
			if tt.stdout != "" && got.stdout != tt.stdout {
				t.Errorf("stdout\n got:\n%s\nwant:\n%s", got.stdout, tt.stdout)
			}
			for _, s := range tt.contains {
				if !strings.Contains(got.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, got.stdout)
				}
			}
			if !strings.Contains(got.stderr, tt.stderr) || (tt.stderr == "" && got.stderr != "") {
				t.Errorf("stderr %q, want %q", got.stderr, tt.stderr)
			}
			if tt.req != nil && !proto.Equal(f.lastReq(), tt.req) {
				t.Errorf("server got %v, want %v", f.lastReq(), tt.req)
			}
		})
	}
}

func TestChangeShowsReason(t *testing.T) {
	for _, c := range []struct {
		tr   *vantagev1.Transition
		want string
	}{
		{&vantagev1.Transition{From: vantagev1.State_STATE_REACHABLE, To: vantagev1.State_STATE_DEGRADED, Reason: vantagev1.Reason_REASON_LOSS}, "REACHABLE -> DEGRADED (loss)"},
		{&vantagev1.Transition{From: vantagev1.State_STATE_REACHABLE, To: vantagev1.State_STATE_DEGRADED, Reason: vantagev1.Reason_REASON_LATENCY}, "REACHABLE -> DEGRADED (latency)"},
		{&vantagev1.Transition{From: vantagev1.State_STATE_REACHABLE, To: vantagev1.State_STATE_DEGRADED, Reason: vantagev1.Reason_REASON_PARTIAL}, "REACHABLE -> DEGRADED"},
		{&vantagev1.Transition{From: vantagev1.State_STATE_DEGRADED, To: vantagev1.State_STATE_DEGRADED, Reason: vantagev1.Reason_REASON_LOSS,
			Notes: []string{"reason refined from PARTIAL to LOSS"}}, "DEGRADED (loss) (reason refined)"},
	} {
		if got := change(c.tr); got != c.want {
			t.Errorf("change = %q, want %q", got, c.want)
		}
	}
}
