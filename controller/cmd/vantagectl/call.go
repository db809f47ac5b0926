package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// rpc is a unary OperatorService method as a method expression, such as
// vantagev1.OperatorServiceClient.ListAgents.
type rpc[Req, Resp any] func(vantagev1.OperatorServiceClient, context.Context, Req, ...grpc.CallOption) (Resp, error)

// call connects on first use and makes one unary call, bounded by --timeout.
func call[Req, Resp any](a *app, cmd *cobra.Command, method rpc[Req, Resp], req Req) (Resp, error) {
	c, err := a.api()
	if err != nil {
		var zero Resp
		return zero, err
	}
	ctx, cancel := a.unary(cmd.Context())
	defer cancel()
	return method(c, ctx, req)
}

// callAndShow is the body of a command that makes one unary call and prints
// its response.
func callAndShow[Req any, Resp proto.Message](a *app, cmd *cobra.Command, method rpc[Req, Resp], req Req, table func(printer, io.Writer, Resp) error) error {
	resp, err := call(a, cmd, method, req)
	if err != nil {
		return err
	}
	return show(a, resp, table)
}

// show prints m as indented JSON with -o json, else as table prints it.
func show[M proto.Message](a *app, m M, table func(printer, io.Writer, M) error) error {
	if a.json() {
		return writeJSON(a.env.stdout, m, true)
	}
	return table(a.printer(), a.env.stdout, m)
}
