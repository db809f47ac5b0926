// Command vantage-agent is the vantage measurement agent: it enrols with a
// controller, receives its assignment, probes, and streams the results back.
// This file only parses flags, handles signals and wires the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vantage-net/vantage/internal/buildinfo"
	"golang.org/x/sync/errgroup"

	"github.com/vantage-net/vantage/agent/guard"
	"github.com/vantage-net/vantage/agent/probe"
	"github.com/vantage-net/vantage/agent/schedule"
	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/agent/uplink"
)

type options struct {
	controller         string
	stateDir           string
	joinToken          string
	joinTokenFile      string
	caHash             string
	name               string
	labels             []string
	allowSpecialRanges bool
	maxPPS             int
	maxTargetRate      float64
	spoolBytes         int64
	ackTimeout         time.Duration
	logLevel           string
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		os.Exit(1)
	}
}

// newRootCmd builds the command tree. The root command runs the daemon;
// the one-shot `probe` subcommand (oneshot.go) attaches here.
func newRootCmd() *cobra.Command {
	var o options
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:           "vantage-agent",
		Short:         "vantage measurement agent: probes targets and streams results to a controller",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: false,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), o)
		},
	}
	cmd.SetVersionTemplate(buildinfo.String("vantage-agent") + "\n")
	cmd.AddCommand(newProbeCmd())
	f := cmd.Flags()
	f.StringVar(&o.controller, "controller", "127.0.0.1:7443", "controller address host:port")
	f.StringVar(&o.stateDir, "state", "/var/lib/vantage-agent", "state directory (key, certificates, epoch)")
	f.StringVar(&o.joinToken, "join-token", "", "join token for the first enrolment; visible to every local user in ps: prefer --join-token-file or "+joinTokenEnv)
	f.StringVar(&o.joinTokenFile, "join-token-file", "", "file holding the join token for the first enrolment (e.g. mode 0600); "+joinTokenEnv+" in the environment works too")
	f.StringVar(&o.caHash, "ca-hash", "", "controller CA pin sha256:<hex> for the first enrolment")
	f.StringVar(&o.name, "name", host, "name of this vantage (1..64 chars [a-zA-Z0-9._-])")
	f.StringArrayVar(&o.labels, "label", nil, "label k=v (repeatable)")
	f.BoolVar(&o.allowSpecialRanges, "allow-special-ranges", false, "allow probing loopback, RFC 1918 and other special-purpose ranges (labs only)")
	f.IntVar(&o.maxPPS, "max-pps", guard.DefaultMaxPPS, "cap on probe packets per second")
	f.Float64Var(&o.maxTargetRate, "max-target-rate", guard.DefaultMaxTargetRate, "cap on probe runs per second per target address")
	f.Int64Var(&o.spoolBytes, "spool-bytes", spool.DefaultMaxBytes, "cap on the result spool's bytes on disk (<state>/spool); when full the oldest results are dropped and reported as a gap")
	f.DurationVar(&o.ackTimeout, "ack-timeout", uplink.DefaultAckTimeout, "end a session whose oldest sent batch is unacknowledged this long, and re-send it on a new one")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func parseLabels(kvs []string) (map[string]string, error) {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--label %q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// joinTokenEnv is the environment variable that may hold the join token.
const joinTokenEnv = "VANTAGE_JOIN_TOKEN"

// maxJoinTokenFile bounds --join-token-file (a token is 64 hex characters).
const maxJoinTokenFile = 4 << 10

// resolveJoinToken returns the join token from --join-token,
// --join-token-file or $VANTAGE_JOIN_TOKEN (at most one of the flags;
// the variable when neither is given), "" when none is set.
func resolveJoinToken(o options, getenv func(string) string) (string, error) {
	if o.joinToken != "" && o.joinTokenFile != "" {
		return "", fmt.Errorf("--join-token and --join-token-file: give one, not both")
	}
	if o.joinToken != "" {
		return o.joinToken, nil
	}
	if o.joinTokenFile == "" {
		return strings.TrimSpace(getenv(joinTokenEnv)), nil
	}
	f, err := os.Open(o.joinTokenFile)
	if err != nil {
		return "", fmt.Errorf("--join-token-file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJoinTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("--join-token-file: %w", err)
	}
	if len(b) > maxJoinTokenFile {
		return "", fmt.Errorf("--join-token-file %s: larger than %d bytes; want the token alone", o.joinTokenFile, maxJoinTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--join-token-file %s: empty", o.joinTokenFile)
	}
	return tok, nil
}

// counters joins the agent-wide totals for heartbeats.
type counters struct {
	g *guard.Guard
	r *probe.Registry
}

func (c counters) ProbesSent() uint64     { return c.g.ProbesSent() }
func (c counters) PacketsIgnored() uint64 { return c.r.PacketsIgnored() }

// run is the daemon: limits and probes, identity, the outbox on disk, then
// the scheduler and the uplink on either side of the outbox. The scheduler
// submits results and task statuses to the outbox; the uplink takes
// batches from it and hands it the controller's acks; assignments and
// triggers reach the scheduler through the uplink (its Handler).
func run(ctx context.Context, o options) error {
	log, labels, err := o.validate()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	g, err := guard.Open(guard.Config{AllowSpecialRanges: o.allowSpecialRanges, MaxPPS: o.maxPPS,
		MaxTargetRate: o.maxTargetRate, VersionFile: filepath.Join(o.stateDir, "assignment.version")})
	if err != nil {
		return err
	}
	if o.allowSpecialRanges {
		log.Warn("special-purpose ranges allowed: use only in a lab")
	}
	reg := probe.NewRegistry(log, g)
	defer func() { _ = reg.Close() }()

	id, err := identity(ctx, o, labels, log)
	if err != nil || id == nil {
		return err // nil when ctx ended while enrolling
	}
	log.Info("agent starting", slog.String("agent_id", id.AgentID), slog.String("version", buildinfo.Version),
		slog.Uint64("epoch", id.Epoch), slog.String("controller", o.controller))

	disk, err := spool.OpenDisk(filepath.Join(o.stateDir, "spool"), id.Epoch, spool.Options{MaxBytes: o.spoolBytes, Logger: log})
	if err != nil {
		return err
	}
	defer func() { _ = disk.Close() }()
	out := spool.NewOutbox(disk, spool.OutboxOptions{Logger: log})
	rounds, err := schedule.OpenRoundLog(filepath.Join(o.stateDir, "rounds.log"))
	if err != nil {
		return err
	}
	defer func() { _ = rounds.Close() }()

	sched := schedule.New(schedule.Config{Prober: reg, Guard: g, Logger: log, Rounds: rounds,
		Emit: out.Submit, Status: out.ReportStatus})
	client, err := uplink.New(uplink.Config{
		Controller: o.controller, Identity: id, AgentVersion: buildinfo.Version, Labels: labels,
		Capabilities: reg.Capabilities(), Handler: sched, Counters: counters{g: g, r: reg}, Logger: log, Outbox: out,
		AckTimeout: o.ackTimeout, StateDir: o.stateDir,
	})
	if err != nil {
		return err
	}

	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return sched.Run(ctx) })
	eg.Go(func() error { return client.Run(ctx) })
	err = eg.Wait()
	log.Info("agent stopped", slog.Uint64("epoch", id.Epoch), slog.Uint64("results_produced", out.Produced()),
		slog.Uint64("pending", out.State().GetPendingResults()))
	return err
}

// validate checks the flags that need no I/O and returns the logger and
// the labels they ask for.
func (o options) validate() (*slog.Logger, map[string]string, error) {
	log, err := newLogger(o.logLevel, os.Stderr)
	if err != nil {
		return nil, nil, err
	}
	labels, err := parseLabels(o.labels)
	if err != nil {
		return nil, nil, err
	}
	if o.maxPPS <= 0 {
		return nil, nil, fmt.Errorf("--max-pps %d: must be positive", o.maxPPS)
	}
	if o.maxTargetRate <= 0 {
		return nil, nil, fmt.Errorf("--max-target-rate %g: must be positive", o.maxTargetRate)
	}
	if o.spoolBytes < spool.MinMaxBytes {
		return nil, nil, fmt.Errorf("--spool-bytes %d: at least %d", o.spoolBytes, spool.MinMaxBytes)
	}
	return log, labels, nil
}

// identity loads the agent's identity, enrolling first if needed. It
// returns nil and no error when ctx ends meanwhile.
func identity(ctx context.Context, o options, labels map[string]string, log *slog.Logger) (*uplink.Identity, error) {
	joinToken, err := resolveJoinToken(o, os.Getenv)
	if err != nil {
		return nil, err
	}
	id, err := uplink.EnsureIdentity(ctx, uplink.EnrollConfig{
		Controller: o.controller, StateDir: o.stateDir, JoinToken: joinToken, CAHash: o.caHash,
		Name: o.name, Labels: labels, Logger: log,
	})
	if errors.Is(err, context.Canceled) {
		return nil, nil
	}
	return id, err
}
