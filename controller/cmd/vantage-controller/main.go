// Command vantage-controller is the vantage controller: it enrols agents,
// assigns them campaign tasks, stores their results in SQLite, runs the
// verdict engines and answers operators, all on one TLS port. This file is
// flags, signals and wiring only; the work is in controller/*.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vantage-net/vantage/internal/buildinfo"

	"github.com/vantage-net/vantage/controller/api"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/ingest"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		os.Exit(1)
	}
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level: want debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// addLimitFlags sets the operator API and transport limits
// (docs/OPERATIONS.md, "Operator API limits").
func addLimitFlags(cmd *cobra.Command, cfg *Config) {
	f := cmd.Flags()
	f.IntVar(&cfg.Streams.QueriesPerToken, "max-queries-per-token", api.DefaultQueriesPerToken, "QueryResults, WatchVerdicts, Explain, Replay, ListBgpUpdates and WatchBgp calls one operator token may have running at once; more get RESOURCE_EXHAUSTED")
	f.DurationVar(&cfg.Streams.SendIdle, "stream-send-idle", api.DefaultSendIdle, "end an operator stream (DEADLINE_EXCEEDED) whose client has read nothing for this long")
	f.DurationVar(&cfg.Streams.QueryMaxAge, "query-max-age", api.DefaultQueryMaxAge, "end a QueryResults stream (DEADLINE_EXCEEDED) this long after it began")
	f.DurationVar(&cfg.Streams.WatchMaxAge, "watch-max-age", api.DefaultWatchMaxAge, "end a WatchVerdicts stream cleanly this long after it began (vantagectl watch reopens it)")
	f.IntVar(&cfg.Transport.MaxConnections, "max-connections", DefaultMaxConnections, "connections served at once (agents, operators, health checks); more wait to be accepted")
	f.Uint32Var(&cfg.Transport.MaxStreamsPerConn, "max-streams-per-conn", DefaultMaxStreamsPerConn, "concurrent streams per connection (HTTP/2 MAX_CONCURRENT_STREAMS)")
	f.IntVar(&cfg.Transport.MaxPublicStreams, "max-public-streams", DefaultMaxPublicStreams, "health Watch and reflection streams (they need no credential) of all clients together; more get RESOURCE_EXHAUSTED")
	f.DurationVar(&cfg.Transport.MaxConnIdle, "max-conn-idle", DefaultMaxConnIdle, "close a connection that has had no stream for this long")
	f.DurationVar(&cfg.Transport.MaxConnAge, "max-conn-age", DefaultMaxConnAge, "send GOAWAY to a connection this old (+-10%); agents reconnect and re-send what was not acknowledged")
	f.DurationVar(&cfg.Transport.MaxConnAgeGrace, "max-conn-age-grace", DefaultMaxConnAgeGrace, "after --max-conn-age, close the connection with whatever streams it still has this much later")
}

func newRootCmd() *cobra.Command {
	var cfg Config
	var logLevel string
	root := &cobra.Command{
		Use:           "vantage-controller",
		Short:         "The vantage controller: agents, campaigns, results, verdicts, operators",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: false,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lvl, err := parseLevel(logLevel)
			if err != nil {
				return err
			}
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, cfg)
		},
	}
	f := root.Flags()
	f.StringVar(&cfg.DataDir, "data", "/var/lib/vantage", "data directory (created 0700): ca.pem, ca-key.pem, admin.token, vantage.db")
	f.StringVar(&cfg.Listen, "listen", ":7443", "TLS listen address for agents, operators, health and reflection")
	f.StringSliceVar(&cfg.TLSSANs, "tls-san", nil, "extra DNS name or IP for the server certificate (repeatable)")
	f.BoolVar(&cfg.ApproveAgents, "approve-agents", false, "new agents stay PENDING until an admin approves them (vantagectl agents approve)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&cfg.EvaluateEvery, "evaluate-every", 250*time.Millisecond, "how often the verdict engines are evaluated")
	f.DurationVar(&cfg.ShutdownGrace, "shutdown-grace", ingest.DefaultShutdownGrace, "at SIGTERM, how long agent sessions get to commit and acknowledge the batches they have taken before they are ended")
	f.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "after the agent sessions are drained, graceful stop deadline (operator calls and streams) before connections are cut")
	f.Float64Var(&cfg.SessionRate, "session-rate", ingest.DefaultSessionRate, "agent sessions that may start per second (a reconnect storm); beyond it agents get RESOURCE_EXHAUSTED with a retry-after spreading them (0: no limit)")
	f.IntVar(&cfg.SessionBurst, "session-burst", ingest.DefaultSessionBurst, "agent sessions that may start at once, within --session-rate")
	f.IntVar(&cfg.SessionStarts, "session-starts", ingest.DefaultSessionStarts, "agent session starts (Hello to first assignment) in progress at once; more are refused with a retry-after")
	f.Float64Var(&cfg.IngestRate, "ingest-rate", 50000, "results per second each agent may upload; above it the agent gets Throttle and RESOURCE_EXHAUSTED (0: no limit)")
	f.IntVar(&cfg.IngestQueue, "ingest-queue", ingest.DefaultMaxQueuedResults, "results waiting for the store across all agents before the controller answers RESOURCE_EXHAUSTED")
	f.IntVar(&cfg.IngestGapRows, "ingest-gap-rows", ingest.DefaultMaxGapRows, "gap records (lost results) stored per agent; past it gaps are only counted (-1: no cap)")
	f.Float64Var(&cfg.IngestGapRate, "ingest-gap-rate", ingest.DefaultGapSeqRate, "lost results per second each agent's gap records may claim, after --ingest-gap-burst; the rest of a gap is dropped")
	f.IntVar(&cfg.IngestGapBurst, "ingest-gap-burst", ingest.DefaultGapSeqBurst, "lost results an agent's gap records may claim at once")
	f.DurationVar(&cfg.IngestClockSkew, "ingest-clock-skew", ingest.DefaultMaxClockSkew, "how far after its receipt a result's sent_at may be (an agent clock ahead); later results are refused as gaps")
	f.BoolVar(&cfg.AllowSpecialRanges, "allow-special-ranges", false, "accept campaigns aimed at special-purpose ranges (RFC 1918, loopback, documentation, benchmarking...): the lab only")
	f.StringVar(&cfg.BlocklistFile, "blocklist", "", "file of CIDR prefixes (one a line, # comments) campaigns may never target")
	f.StringVar(&cfg.OptOutFile, "opt-out", "", "file of CIDR prefixes whose operators asked not to be probed; refused like the blocklist")
	f.Float64Var(&cfg.MaxPerTargetPPS, "max-per-target-pps", 10, "highest budget.per_target_pps a campaign may ask (0: no cap)")
	f.Float64Var(&cfg.MaxAgentPPS, "max-agent-pps", 10000, "highest budget.agent_pps a campaign may ask (0: no cap)")
	f.DurationVar(&cfg.ResultsRetention, "results-retention", 720*time.Hour, "delete raw probe results sent, and gap records received, longer ago than this (verdicts, transitions and the audit log are kept); 0 keeps them forever")
	f.DurationVar(&cfg.BGPRetention, "bgp-retention", 720*time.Hour, "delete stored BGP updates and peer session events older than this; 0 keeps them forever")
	f.DurationVar(&cfg.RetentionEvery, "retention-every", 10*time.Minute, "how often results older than --results-retention (and BGP updates older than --bgp-retention) are deleted")
	f.StringVar(&cfg.BGPListen, "bgp-listen", "", "listen for passive eBGP sessions from --bgp-peer routers (e.g. :1179 or 198.51.100.34:179); the collector announces nothing; off when empty")
	f.Uint32Var(&cfg.BGPAS, "bgp-as", 0, "the collector's own AS number (required with --bgp-listen)")
	f.StringVar(&cfg.BGPRouterID, "bgp-router-id", "", "the collector's BGP router id, an IPv4 address (required with --bgp-listen or --bmp-listen)")
	f.StringArrayVar(&cfg.BGPPeers, "bgp-peer", nil, "a BGP peer: ADDR,as=N[,multihop][,active|passive][,full|partial][,desc=TEXT] (repeatable); partial peers (say, monitor sessions with an upstream) do not count in visibility")
	f.StringVar(&cfg.BMPListen, "bmp-listen", "", "BMP station (RFC 7854) address routers export their Adj-RIB-In to (e.g. :11019); off when empty")
	f.StringVar(&cfg.StoreSync, "store-sync", string(sqlite.SyncFull), "full: fsync every commit, so an acked result survives a power cut; normal: fsync at checkpoints only, so it survives a controller crash but not a power cut")
	f.StringVar(&cfg.DebugAddr, "debug-addr", "", "serve Go pprof on this loopback address (e.g. 127.0.0.1:6060); off when empty")
	f.StringVar(&cfg.WebAddr, "web-addr", "", "serve the dashboard on this address (e.g. :8443), HTTPS with the controller's certificate; off when empty")
	f.BoolVar(&cfg.WebPlain, "web-plain", false, "serve the dashboard over plain HTTP instead (only on a loopback --web-addr, behind a proxy that terminates TLS)")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at /metrics over plain HTTP, unauthenticated, on this address (e.g. 127.0.0.1:9464 or :9464); off when empty")
	addLimitFlags(root, &cfg)
	root.SetVersionTemplate(buildinfo.String("vantage-controller") + "\n")
	root.AddCommand(newTokenCmd(), newRotateCACmd(), newRevokeTokenCmd())
	return root
}

// newRotateCACmd starts or finishes a CA rotation in the data directory
// (see docs/OPERATIONS.md); restart the controller after each step.
func newRotateCACmd() *cobra.Command {
	var dataDir string
	var finish bool
	cmd := &cobra.Command{
		Use:   "rotate-ca",
		Short: "Start a CA rotation (a next CA trusted beside the current one), or finish it with --finish",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if finish {
				if err := fleet.FinishCARotation(dataDir); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "CA rotation finished: the next CA is now current; restart the controller. Agents that have not renewed (or re-enrolled) since the rotation started are now refused.")
				return nil
			}
			if err := fleet.RotateCA(dataDir, time.Now()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "CA rotation started: restart the controller; connected agents are advised to renew their certificates. Once every agent has renewed (vantagectl audit: agent.renew), run rotate-ca --finish and restart again.")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "/var/lib/vantage", "the controller's data directory")
	cmd.Flags().BoolVar(&finish, "finish", false, "make the next CA current (after every agent re-enrolled)")
	return cmd
}

// newRevokeTokenCmd revokes an operator token by name, or expires every
// outstanding join token, offline and audited. A running controller sees
// it at the next request (tokens are looked up per call).
func newRevokeTokenCmd() *cobra.Command {
	var dataDir, operator string
	var joins bool
	cmd := &cobra.Command{
		Use:   "revoke-token",
		Short: "Revoke an operator token (--operator NAME) or expire every unexpired join token (--join-tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (operator == "") == !joins {
				return fmt.Errorf("give exactly one of --operator NAME and --join-tokens")
			}
			st, err := sqlite.Open(cmd.Context(), dataDir)
			if err != nil {
				return err
			}
			defer st.Close()
			now := time.Now()
			if joins {
				n, err := st.ExpireJoinTokens(cmd.Context(), now, store.AuditEntry{At: now, Actor: "controller", Action: "token.join.expire_all", Subject: "*"})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d join token(s) expired\n", n)
				return nil
			}
			if err := st.DeleteOperatorToken(cmd.Context(), operator, store.AuditEntry{At: now, Actor: "controller",
				Action: "token.operator.revoke", Subject: operator}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "operator token %s revoked\n", operator)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "/var/lib/vantage", "the controller's data directory")
	cmd.Flags().StringVar(&operator, "operator", "", "name of the operator token to revoke")
	cmd.Flags().BoolVar(&joins, "join-tokens", false, "expire every join token not yet expired")
	return cmd
}

// newTokenCmd creates operator tokens offline, straight in the database
// (OperatorService has no RPC for them; the admin token comes first).
func newTokenCmd() *cobra.Command {
	var dataDir, name, role string
	cmd := &cobra.Command{
		Use:   "operator-token",
		Short: "Create an operator bearer token (viewer, operator or admin) and print it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := store.ParseRole(role)
			if err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			st, err := sqlite.Open(cmd.Context(), dataDir)
			if err != nil {
				return err
			}
			defer st.Close()
			tok, err := fleet.New(st, nil, fleet.Options{}).CreateOperatorToken(cmd.Context(), name, r)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "/var/lib/vantage", "the controller's data directory")
	cmd.Flags().StringVar(&name, "name", "", "token name, shown in the audit log as operator:<name>")
	cmd.Flags().StringVar(&role, "role", "viewer", "viewer, operator or admin")
	cmd.MarkFlagRequired("name")
	return cmd
}
