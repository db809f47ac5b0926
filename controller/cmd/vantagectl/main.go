// Command vantagectl is the operator's command line for a vantage controller.
//
// It exists so that operators and scripts can run the fleet without the
// dashboard: approve agents, mint join tokens, apply campaigns, and read
// verdicts, timelines and the raw evidence behind them. Every command is one
// OperatorService call (or stream) over TLS 1.3, authenticated with a bearer
// token, and renders either a table for people or protojson for jq.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Environment variables that stand in for the global flags.
const (
	envController = "VANTAGE_CONTROLLER"
	envToken      = "VANTAGE_TOKEN"
	envCA         = "VANTAGE_CA"

	defaultController = "127.0.0.1:7443"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		now:    time.Now,
		loc:    time.Local,
	})
	stop()
	os.Exit(code)
}

// env is the process's surroundings, injected so tests run the whole CLI
// in-process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	loc            *time.Location
	// reconnectBase and reconnectMax bound the --watch reconnect backoff;
	// settle is how long --watch waits for more current verdicts before it
	// prints their table. Zero means the defaults.
	reconnectBase, reconnectMax, settle time.Duration
}

// usageError marks a wrong command line: it exits exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, e env) int {
	if e.now == nil {
		e.now = time.Now
	}
	if e.loc == nil {
		e.loc = time.Local
	}
	if e.reconnectBase <= 0 {
		e.reconnectBase = time.Second
	}
	if e.reconnectMax <= 0 {
		e.reconnectMax = 30 * time.Second
	}
	if e.settle <= 0 {
		e.settle = 300 * time.Millisecond
	}
	a := &app{env: e}
	defer a.close()
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return a.report(cmd, err)
}

// report prints err the way scripts can rely on and picks the exit code.
// Errors cobra raises before our pre-run hook (unknown command, bad flag,
// wrong argument count) are usage errors.
func (a *app) report(cmd *cobra.Command, err error) int {
	var ue *usageError
	if !a.started || errors.As(err, &ue) {
		path := "vantagectl"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(a.env.stderr, "vantagectl: %v\nRun '%s --help' for usage.\n", err, path)
		return exitUsage
	}
	code, msg := classify(err)
	fmt.Fprintf(a.env.stderr, "vantagectl: %s\n", msg)
	return code
}

// app holds the merged global options and the lazily opened connection.
type app struct {
	env env

	// Global flags.
	controller, token, tokenFile, caPath, output string
	timeout                                      time.Duration

	// started is set once cobra has accepted the command line.
	started bool
	conn    *grpc.ClientConn
	client  vantagev1.OperatorServiceClient
}

func (a *app) close() {
	if a.conn != nil {
		_ = a.conn.Close()
	}
}

func (a *app) json() bool { return a.output == "json" }

func (a *app) printer() printer { return printer{now: a.env.now(), loc: a.env.loc} }

// api returns the OperatorService client, dialing on first use.
func (a *app) api() (vantagev1.OperatorServiceClient, error) {
	if a.client != nil {
		return a.client, nil
	}
	conn, client, err := dial(connSettings{controller: a.controller, caPath: a.caPath, token: a.token})
	if err != nil {
		return nil, err
	}
	a.conn, a.client = conn, client
	return client, nil
}

// unary bounds one unary call by --timeout.
func (a *app) unary(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// resolve merges flags, environment and defaults, and validates the global
// options. A flag always beats its environment variable.
func (a *app) resolve(cmd *cobra.Command) error {
	fl := cmd.Flags()
	if !fl.Changed("controller") {
		if v := a.env.getenv(envController); v != "" {
			a.controller = v
		}
	}
	if !fl.Changed("ca") {
		a.caPath = a.env.getenv(envCA)
	}
	switch {
	case fl.Changed("token") && fl.Changed("token-file"):
		return usageErrorf("--token and --token-file: give only one")
	case fl.Changed("token-file"):
		tok, err := readTokenFile(a.tokenFile)
		if err != nil {
			return err
		}
		a.token = tok
	case !fl.Changed("token"):
		a.token = a.env.getenv(envToken)
	}
	if a.output != "table" && a.output != "json" {
		return usageErrorf("--output: want table or json, got %q", a.output)
	}
	if a.timeout <= 0 {
		return usageErrorf("--timeout: must be positive, got %s", a.timeout)
	}
	return nil
}

// readTokenFile reads a token file such as <data>/admin.token.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--token-file: %s is empty", path)
	}
	return tok, nil
}
