// Package rpcerr is where the controller's errors become gRPC statuses, and
// the only place one is built (as etcd's rpctypes). Each service has
// exactly one Table from the sentinel (and typed) errors that can reach its
// handlers to a code and a message policy, and converts once, at its
// handler's return: Operator below is OperatorService's (api), ingest's
// agentService is AgentService's (it lists ingest's own sentinels, and this
// package cannot import ingest, which converts through it). The packages
// doing the work return sentinels wrapped with context and never choose a
// code; a test of each table fails when a package it covers gains a
// sentinel without a row (rpcerrtest.Covered). Rows both services need
// (Identity, Common) are written once and joined into both tables.
package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/discovery"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict"
	"github.com/vantage-net/vantage/controller/verdict/live"
)

// Sentinels of OperatorService itself: the API's own checks of a request.
var (
	// ErrInvalid: a request or stream message is malformed.
	ErrInvalid = errors.New("invalid argument")
	// ErrPermission: the caller's role does not allow the method.
	ErrPermission = errors.New("permission denied")
	// ErrNotFound: what the request names is not known (a verdict, or the
	// campaign of one, that the live worker does not hold).
	ErrNotFound = errors.New("not found")
	// ErrUnimplemented: the method is not implemented yet.
	ErrUnimplemented = errors.New("not implemented")
	// ErrUnavailable: a dependency (the store) is failing; retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrFailedPrecondition: the object is not in a state that allows this.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrResourceExhausted: the caller is over a limit (e.g. its concurrent
	// queries); retry once it has fewer running.
	ErrResourceExhausted = errors.New("resource exhausted")
	// ErrInternal: the controller's own state is wrong (a stored campaign
	// that no longer parses); the client is told only "internal error".
	ErrInternal = errors.New("internal")
)

// Message is what a row tells the client besides the code.
type Message int

const (
	// Text: the error's text, which names the field and the reason.
	Text Message = iota
	// Prefixed: the row's Prefix, ": " and the error's text. For a
	// package's sentinel whose text does not say what kind of error the
	// client made (campaign.ErrInvalid: "invalid campaign" names the
	// campaign, not the argument).
	Prefixed
	// Hidden: "internal error"; the error is logged, the client sees no
	// detail of the controller's state.
	Hidden
)

// Row maps the errors matching Err (errors.Is) or Match to Code.
type Row struct {
	Err    error
	Match  func(error) bool // for a typed error: Type[*T]()
	Code   codes.Code
	Msg    Message
	Prefix string // with Prefixed
}

// reasonError is an error of a sentinel's class whose text is only its
// reason: for the messages that name the field or the subject without the
// class ("msg: hello sent twice in one session").
type reasonError struct {
	class  error
	reason string
}

func (e *reasonError) Error() string { return e.reason }
func (e *reasonError) Unwrap() error { return e.class }

// Reasonf returns an error that matches class (errors.Is) and whose text
// is the formatted reason alone.
func Reasonf(class error, format string, args ...any) error {
	return &reasonError{class: class, reason: fmt.Sprintf(format, args...)}
}

// Type matches the errors that errors.As finds a T in.
func Type[T error]() func(error) bool {
	return func(err error) bool {
		var t T
		return errors.As(err, &t)
	}
}

// Trailer is implemented by an error that carries details for the client
// in the stream's trailer (ingest's retry-after-ms).
type Trailer interface {
	Trailer() metadata.MD
}

// Table is one service's rows, checked in order; the first match wins.
type Table []Row

func (t Table) row(err error) (Row, bool) {
	for _, r := range t {
		if (r.Err != nil && errors.Is(err, r.Err)) || (r.Match != nil && r.Match(err)) {
			return r, true
		}
	}
	return Row{}, false
}

// Code returns the gRPC code for err (codes.Internal when no row matches).
func (t Table) Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	if r, ok := t.row(err); ok {
		return r.Code
	}
	return codes.Internal
}

// Status converts err into a gRPC status error. A status error passes as
// it is (a stream's own errors); errors that match a row carry what its
// Message says; unexpected errors are logged here and reach the client as
// a bare "internal error".
func (t Table) Status(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	r, ok := t.row(err)
	if !ok || r.Msg == Hidden {
		if log != nil {
			log.Warn("rpc failed", slog.String("method", method), slog.Any("error", err))
		}
		return status.Error(codes.Internal, "internal error")
	}
	if r.Msg == Prefixed {
		return status.Error(r.Code, r.Prefix+": "+err.Error())
	}
	return status.Error(r.Code, err.Error())
}

// StreamStatus is Status for a streaming method: an error carrying a
// Trailer sets the stream's trailer first.
func (t Table) StreamStatus(log *slog.Logger, method string, stream grpc.ServerStream, err error) error {
	var tr Trailer
	if errors.As(err, &tr) {
		stream.SetTrailer(tr.Trailer())
	}
	return t.Status(log, method, err)
}

// Join returns the rows of ts in order: a service's table is made of its
// own rows and the shared ones below.
func Join(ts ...Table) Table {
	var out Table
	for _, t := range ts {
		out = append(out, t...)
	}
	return out
}

// Identity are the rows of credentials, which both services see: fleet's
// sentinels (enrolment, renewal, an agent's certificate, an operator's
// token) and the store's about tokens. They head both tables: fleet's
// renewal refusal wraps ErrAgentRevoked and store.ErrConflict.
var Identity = Table{
	{Err: store.ErrTokenInvalid, Code: codes.Unauthenticated},
	{Err: store.ErrRevoked, Code: codes.Unauthenticated},
	{Err: fleet.ErrBadOperatorToken, Code: codes.Unauthenticated},
	{Err: fleet.ErrNoClientCert, Code: codes.Unauthenticated},
	{Err: fleet.ErrUnknownAgent, Code: codes.Unauthenticated},
	{Err: fleet.ErrAgentRevoked, Code: codes.PermissionDenied},
	{Err: fleet.ErrAgentPending, Code: codes.FailedPrecondition},
	{Err: fleet.ErrBadCSR, Code: codes.InvalidArgument},
	{Err: fleet.ErrInvalid, Code: codes.InvalidArgument},
}

// Common are the rows that end both tables: the store's outcomes and the
// context's.
var Common = Table{
	{Err: store.ErrNotFound, Code: codes.NotFound},
	{Err: store.ErrExists, Code: codes.AlreadyExists},
	{Err: store.ErrConflict, Code: codes.Aborted},
	{Err: context.Canceled, Code: codes.Canceled},
	{Err: context.DeadlineExceeded, Code: codes.DeadlineExceeded},
}

// Operator is OperatorService's table: Identity, its own rows, Common.
// Rows for errors a package returns only wrapped in another listed here
// come after that one.
var Operator = Join(Table{{Err: ErrInternal, Code: codes.Internal, Msg: Hidden}}, Identity, operator, Common)

var operator = Table{
	{Err: ErrPermission, Code: codes.PermissionDenied},
	{Err: ErrInvalid, Code: codes.InvalidArgument},
	// ApplyCampaign: Parse, the limits and the quorum check.
	{Match: Type[*campaign.FieldError](), Code: codes.InvalidArgument, Msg: Prefixed, Prefix: ErrInvalid.Error()},
	{Err: campaign.ErrInvalid, Code: codes.InvalidArgument, Msg: Prefixed, Prefix: ErrInvalid.Error()},
	{Match: Type[*campaign.RIRError](), Code: codes.InvalidArgument, Msg: Prefixed, Prefix: ErrInvalid.Error()},
	{Err: campaign.ErrRIR, Code: codes.InvalidArgument, Msg: Prefixed, Prefix: ErrInvalid.Error()},
	// Replay's window and parameters (verdict's wrapped in live.ErrReplay).
	{Err: live.ErrReplay, Code: codes.InvalidArgument, Msg: Prefixed, Prefix: ErrInvalid.Error()},
	{Err: verdict.ErrParam, Code: codes.InvalidArgument, Msg: Prefixed, Prefix: ErrInvalid.Error()},
	{Err: verdict.ErrConfig, Code: codes.InvalidArgument, Msg: Prefixed, Prefix: ErrInvalid.Error()},
	{Err: discovery.ErrInvalid, Code: codes.InvalidArgument},
	// ImportBgpUpdates: each update (wrapped in ErrInvalid with its index).
	{Err: bgp.ErrInvalid, Code: codes.InvalidArgument, Msg: Prefixed, Prefix: ErrInvalid.Error()},
	{Err: ErrNotFound, Code: codes.NotFound},
	{Err: ErrUnimplemented, Code: codes.Unimplemented},
	{Err: ErrUnavailable, Code: codes.Unavailable},
	{Err: ErrFailedPrecondition, Code: codes.FailedPrecondition},
	{Err: ErrResourceExhausted, Code: codes.ResourceExhausted},
	{Err: live.ErrWatcherTooSlow, Code: codes.ResourceExhausted},
	{Err: live.ErrWorkerClosed, Code: codes.Unavailable},
	// Never a client's doing: a verdict engine that failed to restore,
	// a campaign read before its discovery finished.
	{Err: verdict.ErrRestore, Code: codes.Internal, Msg: Hidden},
	{Err: catalogue.ErrNotDiscovered, Code: codes.Internal, Msg: Hidden},
}

// Code returns OperatorService's code for err (Operator.Code).
func Code(err error) codes.Code { return Operator.Code(err) }

// Status converts err with OperatorService's table (Operator.Status).
func Status(log *slog.Logger, method string, err error) error {
	return Operator.Status(log, method, err)
}
