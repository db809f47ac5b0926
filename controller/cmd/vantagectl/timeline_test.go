package main

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// folded is the fake's timeline with its folded transitions: the first
// flap (fixtureTransition, id 7) folded into #8, REACHABLE -> UNSTABLE.
func folded() []*vantagev1.Transition {
	first := fixtureTransition()
	first.FoldedInto = 8
	in := &vantagev1.Transition{
		Id: 8, Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, Subject: "KP",
		From: vantagev1.State_STATE_REACHABLE, To: vantagev1.State_STATE_UNSTABLE, FoldsSinceRound: 5,
		OnsetEarliest: tsAt("2026-01-01T00:04:00Z"), OnsetLatest: tsAt("2026-01-01T00:05:00Z"),
		DetectedAt: tsAt("2026-01-01T00:07:02Z"), Round: 7, VerdictId: "kp/scope/KP",
		Notes: []string{"folds the UNREACHABLE published at round 5: the episode's first flap"},
	}
	return []*vantagev1.Transition{first, in}
}

func (f *fakeOperator) GetTimeline(_ context.Context, req *vantagev1.GetTimelineRequest) (*vantagev1.GetTimelineResponse, error) {
	f.record(req)
	resp := &vantagev1.GetTimelineResponse{Transitions: []*vantagev1.Transition{fixtureTransition()}}
	if req.GetIncludeFolded() {
		resp.Transitions = folded()
	}
	if req.GetIncludeSeries() {
		resp.Series = fixturePoints()
	}
	return resp, nil
}

func (f *fakeOperator) Replay(_ context.Context, req *vantagev1.ReplayRequest) (*vantagev1.ReplayResponse, error) {
	f.record(req)
	if q := req.GetParams()["quorum"]; q == "0" {
		return nil, status.Error(codes.InvalidArgument, `invalid replay request: verdict: invalid parameter: params["quorum"]: "0" is not an integer in [1, 65535]`)
	}
	if req.GetIncludeFolded() {
		return &vantagev1.ReplayResponse{Transitions: folded()}, nil
	}
	return &vantagev1.ReplayResponse{Transitions: []*vantagev1.Transition{fixtureTransition()}}, nil
}

// TestTimelineAll: timeline and replay print the folded view, unmarked;
// --all asks for the folded transitions and marks them.
func TestTimelineAll(t *testing.T) {
	f := &fakeOperator{}
	addr, ca := startServer(t, f)
	env := envFor(addr, ca)
	for _, tt := range []struct {
		name           string
		args           []string
		contains, lack []string
		req            proto.Message
	}{
		{name: "folded view", args: []string{"timeline", "--campaign", "kp"},
			contains: []string{"REACHABLE -> UNREACHABLE  "}, lack: []string{"folded", "#"},
			req: &vantagev1.GetTimelineRequest{Campaign: "kp"}},
		{name: "all", args: []string{"timeline", "--campaign", "kp", "--all"},
			contains: []string{"REACHABLE -> UNREACHABLE (folded into #8)  ", "REACHABLE -> UNSTABLE (#8, folds since round 5)  "},
			req:      &vantagev1.GetTimelineRequest{Campaign: "kp", IncludeFolded: true}},
		{name: "replay all", args: []string{"replay", "--campaign", "kp", "--from", "2025-12-31T23:00:00Z", "--to", "30m", "--all"},
			contains: []string{"REACHABLE -> UNREACHABLE (folded into #8)  "},
			req:      &vantagev1.ReplayRequest{Campaign: "kp", From: tsAt("2025-12-31T23:00:00Z"), To: tsAt("2026-01-01T00:30:00Z"), IncludeFolded: true}},
		{name: "help", args: []string{"timeline", "--help"},
			contains: []string{"the folded view", "--all", "(folded into #ID)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := runSync(t, cliRun{args: tt.args, env: env})
			if got.code != 0 {
				t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", got.code, got.stdout, got.stderr)
			}
			for _, s := range tt.contains {
				if !strings.Contains(got.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, got.stdout)
				}
			}
			for _, s := range tt.lack {
				if strings.Contains(got.stdout, s) {
					t.Errorf("stdout has %q:\n%s", s, got.stdout)
				}
			}
			if tt.req != nil && !proto.Equal(f.lastReq(), tt.req) {
				t.Errorf("server got %v, want %v", f.lastReq(), tt.req)
			}
		})
	}
}
