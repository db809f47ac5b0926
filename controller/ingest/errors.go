package ingest

// AgentService's errors: ingest's sentinels, and the service's one table
// from them (and from fleet's and store's) to gRPC codes. Ingest returns
// these wrapped with context and converts once, at the return of Enroll,
// Renew and Session (rpcerr builds the status); nothing deeper chooses a
// code. The table lives here, not in rpcerr beside OperatorService's,
// because it lists ingest's own sentinels and ingest converts through
// rpcerr: rpcerr cannot import ingest.

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
)

// Sentinel errors of AgentService; agentService maps each to its code.
var (
	// ErrInvalid: an agent message is malformed; the error names the
	// field (InvalidArgument).
	ErrInvalid = errors.New("invalid argument")
	// ErrHelloTimeout: the session's first message did not come in time
	// (DeadlineExceeded).
	ErrHelloTimeout = errors.New("msg: no hello")
	// ErrOverloaded: the controller refuses a batch or a session start for
	// now; the agent keeps it and sends it again after the retry-after
	// (ResourceExhausted, trailer retry-after-ms).
	ErrOverloaded = errors.New("overloaded")
	// ErrStore: a store write the session needs failed; the agent retries
	// (Unavailable).
	ErrStore = errors.New("unavailable")
	// ErrReplaced: a newer session of the same agent began (Aborted).
	ErrReplaced = errors.New("replaced by a newer session of the same agent")
	// ErrNotActive: the agent was revoked (or is no longer active) while
	// its session began (PermissionDenied).
	ErrNotActive = errors.New("agent not active")
	// ErrStopping: a session began after the controller began to stop
	// (Unavailable).
	ErrStopping = errors.New("controller is stopping")
	// ErrShuttingDown: the controller ended the session to shut down
	// (Unavailable).
	ErrShuttingDown = errors.New("controller shutting down")
)

// agentService is AgentService's table: rpcerr.Identity (fleet's and the
// store's credential rows, first: fleet's renewal refusal wraps
// ErrAgentRevoked and store.ErrConflict), ingest's own rows, rpcerr.Common.
var agentService = rpcerr.Join(rpcerr.Identity, agentRows, rpcerr.Common)

var agentRows = rpcerr.Table{
	{Err: ErrNotActive, Code: codes.PermissionDenied},
	{Err: ErrInvalid, Code: codes.InvalidArgument},
	{Err: ErrHelloTimeout, Code: codes.DeadlineExceeded},
	{Err: ErrOverloaded, Code: codes.ResourceExhausted},
	{Err: ErrStore, Code: codes.Unavailable},
	{Err: ErrReplaced, Code: codes.Aborted},
	{Err: ErrStopping, Code: codes.Unavailable},
	{Err: ErrShuttingDown, Code: codes.Unavailable},
}
