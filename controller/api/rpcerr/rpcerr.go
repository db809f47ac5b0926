// Package rpcerr is the controller's one table from package sentinel errors
// to gRPC status codes (as etcd's rpctypes). Both services (AgentService in
// ingest, OperatorService in api) translate errors here and nowhere else, so
// a client sees the same code for the same cause whichever service it calls.
package rpcerr

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict/live"
)

// Sentinels of the gRPC layers themselves.
var (
	// ErrInvalid: a request or stream message is malformed.
	ErrInvalid = errors.New("invalid argument")
	// ErrPermission: the caller's role does not allow the method.
	ErrPermission = errors.New("permission denied")
	// ErrUnimplemented: the method is not implemented yet.
	ErrUnimplemented = errors.New("not implemented")
	// ErrUnavailable: a dependency (the store) is failing; retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrFailedPrecondition: the object is not in a state that allows this.
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrResourceExhausted: the caller is over a limit (e.g. its concurrent
	// queries); retry once it has fewer running.
	ErrResourceExhausted = errors.New("resource exhausted")
)

// table is checked in order with errors.Is; the first match wins.
var table = []struct {
	err  error
	code codes.Code
}{
	{store.ErrTokenInvalid, codes.Unauthenticated},
	{fleet.ErrBadOperatorToken, codes.Unauthenticated},
	{fleet.ErrNoClientCert, codes.Unauthenticated},
	{fleet.ErrUnknownAgent, codes.Unauthenticated},
	{fleet.ErrAgentRevoked, codes.PermissionDenied},
	{fleet.ErrAgentPending, codes.FailedPrecondition},
	{ErrPermission, codes.PermissionDenied},
	{fleet.ErrInvalid, codes.InvalidArgument},
	{ErrInvalid, codes.InvalidArgument},
	{store.ErrNotFound, codes.NotFound},
	{store.ErrExists, codes.AlreadyExists},
	{store.ErrConflict, codes.Aborted},
	{ErrUnimplemented, codes.Unimplemented},
	{ErrUnavailable, codes.Unavailable},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrResourceExhausted, codes.ResourceExhausted},
	{live.ErrWatcherTooSlow, codes.ResourceExhausted},
	{live.ErrWorkerClosed, codes.Unavailable},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// Code returns the gRPC code for err (codes.Internal when none matches).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return codes.Internal
}

// Status converts err into a gRPC status error. Errors that match the table
// carry their text (it names the field and the reason); unexpected errors
// are logged here and reach the client as a bare "internal error".
func Status(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	c := Code(err)
	if c == codes.Internal {
		if log != nil {
			log.Warn("rpc failed", "method", method, "err", err)
		}
		return status.Error(codes.Internal, "internal error")
	}
	return status.Error(c, err.Error())
}
