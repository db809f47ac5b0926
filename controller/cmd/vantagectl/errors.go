package main

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes, one per class of error, so that scripts can tell "no such
// campaign" from "the controller is down". They are documented in
// vantagectl --help (exitCodesHelp); keep the two together.
const (
	exitOK          = 0
	exitError       = 1 // anything else: a local file, TLS, an internal error
	exitUsage       = 2 // the command line was wrong
	exitNotFound    = 3 // what the command names does not exist
	exitPermission  = 4 // the token is unknown or its role does not allow it
	exitUnavailable = 5 // the controller cannot be reached or is busy: retry later
	exitInvalid     = 6 // the controller refused the input (a campaign, a value)
)

const exitCodesHelp = `Exit codes:
  0  success
  1  other error (a local file, TLS, an internal error)
  2  usage: the command line is wrong
  3  not found: the campaign, verdict, agent or token does not exist
  4  permission: the token is unknown, or its role does not allow the command
  5  unavailable: the controller cannot be reached, timed out or is busy; retry later
  6  invalid: the controller refused the input (a campaign file, a value)`

// codeClass maps a gRPC code to an exit code and the words that name its
// class in a message.
func codeClass(c codes.Code) (exit int, words string) {
	switch c {
	case codes.NotFound:
		return exitNotFound, "not found"
	case codes.Unauthenticated:
		return exitPermission, "unauthenticated"
	case codes.PermissionDenied:
		return exitPermission, "permission denied"
	case codes.Unavailable:
		return exitUnavailable, "unavailable"
	case codes.DeadlineExceeded:
		return exitUnavailable, "deadline exceeded"
	case codes.ResourceExhausted:
		return exitUnavailable, "resource exhausted"
	case codes.InvalidArgument:
		return exitInvalid, "invalid argument"
	case codes.FailedPrecondition:
		return exitInvalid, "failed precondition"
	case codes.OutOfRange:
		return exitInvalid, "out of range"
	case codes.AlreadyExists:
		return exitInvalid, "already exists"
	case codes.Unimplemented:
		return exitError, "not implemented by this controller"
	case codes.Canceled:
		return exitError, "canceled"
	}
	return exitError, strings.ToLower(c.String())
}

// statusMessage is one clear message for a gRPC status: its text, said once.
// The controller's messages often start with their class already
// ("invalid argument: name: required"); those print as they are. A message
// that does not say its class gets it in front ("unauthenticated: unknown
// token"), except NotFound, whose messages name the missing thing.
func statusMessage(st *status.Status) (exit int, msg string) {
	exit, words := codeClass(st.Code())
	msg = st.Message()
	switch {
	case msg == "":
		msg = words
	case strings.HasPrefix(strings.ToLower(msg), words):
	case st.Code() == codes.NotFound && strings.Contains(msg, "not found"):
	default:
		msg = words + ": " + msg
	}
	return exit, msg
}

// classify picks the exit code and message for an error a command returned.
func classify(err error) (int, string) {
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage, err.Error()
	}
	if st, ok := status.FromError(err); ok {
		return statusMessage(st)
	}
	// A gRPC status wrapped with context (watch: stream lost ...).
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		exit, _ := statusMessage(se.GRPCStatus())
		return exit, err.Error()
	}
	return exitError, fmt.Sprint(err)
}
