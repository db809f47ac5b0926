package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	"github.com/vantage-net/vantage/controller/api/rpcerr/rpcerrtest"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/store"
)

// TestAgentServiceCovered: every sentinel and error type of the packages
// whose errors reach AgentService has a row in its table.
func TestAgentServiceCovered(t *testing.T) {
	rpcerrtest.Covered(t, []rpcerrtest.Rows{{File: "errors.go", Vars: []string{"agentService", "agentRows"}},
		{File: "../api/rpcerr/rpcerr.go", Vars: []string{"Identity", "Common"}}}, ".", "../fleet", "../store")
}

// TestAgentServiceStatus: the codes and messages agents are sent, as they
// were when ingest built the statuses itself.
func TestAgentServiceStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"bad field", fmt.Errorf("%w: results.epoch: must be > 0", ErrInvalid), codes.InvalidArgument, "invalid argument: results.epoch: must be > 0"},
		{"bad message", rpcerr.Reasonf(ErrInvalid, "msg: hello sent twice in one session"), codes.InvalidArgument, "msg: hello sent twice in one session"},
		{"bad labels", fmt.Errorf("%w: hello.labels: x", fleet.ErrInvalid), codes.InvalidArgument, "invalid argument: hello.labels: x"},
		{"no hello", fmt.Errorf("%w within %s of the session's start", ErrHelloTimeout, 30*time.Second), codes.DeadlineExceeded,
			"msg: no hello within 30s of the session's start"},
		{"throttled", &throttled{retry: time.Second, reason: "ingest rate"}, codes.ResourceExhausted, "overloaded: ingest rate; retry after 1s"},
		{"store", fmt.Errorf("%w: heartbeat: %w", ErrStore, fmt.Errorf("disk full")), codes.Unavailable, "unavailable: heartbeat: disk full"},
		{"replaced", ErrReplaced, codes.Aborted, "replaced by a newer session of the same agent"},
		{"not active", rpcerr.Reasonf(ErrNotActive, "agent %s is %s", "agt-1", "AGENT_STATE_REVOKED"), codes.PermissionDenied,
			"agent agt-1 is AGENT_STATE_REVOKED"},
		{"revoked", fmt.Errorf("%w: %s", fleet.ErrAgentRevoked, "agt-1"), codes.PermissionDenied, "agent revoked: agt-1"},
		{"renewal raced a revoke", fmt.Errorf("%w: agt-1: %w", fleet.ErrAgentRevoked, store.ErrConflict), codes.PermissionDenied,
			"agent revoked: agt-1: changed meanwhile"},
		{"stopping", ErrStopping, codes.Unavailable, "controller is stopping"},
		{"shutting down", ErrShuttingDown, codes.Unavailable, "controller shutting down"},
		{"bad join token", fmt.Errorf("enroll: %w", store.ErrTokenInvalid), codes.Unauthenticated, "enroll: join token unknown, expired or used up"},
		{"cancelled", context.Canceled, codes.Canceled, "context canceled"},
		{"a stream's own", status.Error(codes.Unavailable, "x"), codes.Unavailable, "x"},
		{"unexpected", fmt.Errorf("disk on fire"), codes.Internal, "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(agentService.Status(nil, "Session", tc.err))
			if st.Code() != tc.code || st.Message() != tc.msg {
				t.Fatalf("Status = %v %q; want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
}
