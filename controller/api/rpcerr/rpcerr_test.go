package rpcerr

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vantage-net/vantage/controller/api/rpcerr/rpcerrtest"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict/live"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		msg  string
	}{
		{"bad join token", fmt.Errorf("enroll: %w", store.ErrTokenInvalid), codes.Unauthenticated, "enroll: join token unknown, expired or used up"},
		{"bad csr", fmt.Errorf("%w: csr_der: x", fleet.ErrBadCSR), codes.InvalidArgument, "invalid argument: bad csr: csr_der: x"},
		{"revoked", fleet.ErrAgentRevoked, codes.PermissionDenied, "agent revoked"},
		{"pending", fleet.ErrAgentPending, codes.FailedPrecondition, "agent awaiting approval"},
		{"not found", fmt.Errorf("campaign %q: %w", "kp", store.ErrNotFound), codes.NotFound, `campaign "kp": not found`},
		{"slow watcher", live.ErrWatcherTooSlow, codes.ResourceExhausted, live.ErrWatcherTooSlow.Error()},
		{"bad campaign", fmt.Errorf("%w (enrol the agents first)", &campaign.FieldError{Path: "vantages.quorum", Reason: "3 is more than 2"}),
			codes.InvalidArgument, "invalid argument: vantages.quorum: 3 is more than 2 (enrol the agents first)"},
		{"bad replay", fmt.Errorf("%w: to: required", live.ErrReplay), codes.InvalidArgument, "invalid argument: invalid replay request: to: required"},
		{"own state", fmt.Errorf("%w: stored campaign kp no longer parses: %w", ErrInternal, campaign.ErrInvalid), codes.Internal, "internal error"},
		{"already a status", status.Error(codes.Aborted, "x"), codes.Aborted, "x"},
		{"unexpected", fmt.Errorf("disk on fire"), codes.Internal, "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(Status(nil, "M", tc.err))
			if st.Code() != tc.code || st.Message() != tc.msg {
				t.Fatalf("Status = %v %q; want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
}

// TestOperatorCovered: every sentinel and error type of the packages whose
// errors reach OperatorService has a row.
func TestOperatorCovered(t *testing.T) {
	rows := []rpcerrtest.Rows{{File: "rpcerr.go", Vars: []string{"Operator", "Identity", "operator", "Common"}}}
	rpcerrtest.Covered(t, rows, ".", "../../store", "../../bgp", "../../fleet", "../../campaign", "../../catalogue", "../../discovery",
		"../../verdict", "../../verdict/live")
}
