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
func callAndShow[Req any, Resp proto.Message](a *app, cmd *cobra.Command, method rpc[Req, Resp], req Req, render func(printer, io.Writer, Resp) error) error {
	resp, err := call(a, cmd, method, req)
	if err != nil {
		return err
	}
	return show(a, resp, render)
}

// unaryCmd gives c the body of a command that makes one unary call: req
// builds the request from the arguments, render prints the response.
func unaryCmd[Req any, Resp proto.Message](a *app, c *cobra.Command, method rpc[Req, Resp], req func(args []string) Req, render func(printer, io.Writer, Resp) error) *cobra.Command {
	c.RunE = func(cmd *cobra.Command, args []string) error {
		return callAndShow(a, cmd, method, req(args), render)
	}
	return c
}

// nameCmd is a campaign subcommand "use NAME" taking exactly the name,
// which completes to the controller's campaigns.
func (a *app) nameCmd(use, short string) *cobra.Command {
	return &cobra.Command{Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1), ValidArgsFunction: a.campaignArg}
}

// show prints m as indented JSON with -o json, else as render prints it.
func show[M proto.Message](a *app, m M, render func(printer, io.Writer, M) error) error {
	if a.json() {
		return writeJSON(a.env.stdout, m, true)
	}
	return render(a.printer(), a.env.stdout, m)
}
