package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/vantage-net/vantage/controller/api"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/discoverer"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/ingest"
	"github.com/vantage-net/vantage/controller/metrics"
	"github.com/vantage-net/vantage/controller/retention"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	"github.com/vantage-net/vantage/controller/verdict/live"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Server-side transport limits.
const (
	MaxRecvMsgSize = 4 << 20
	// KeepaliveMinTime: clients pinging more often than this are cut off
	// (GOAWAY too_many_pings). Agents should ping every >= 15s.
	KeepaliveMinTime = 10 * time.Second
	// UnaryTimeout bounds every unary RPC on the server side.
	UnaryTimeout = time.Minute
)

// Config is everything the flags set.
type Config struct {
	DataDir       string
	Listen        string
	TLSSANs       []string
	ApproveAgents bool
	EvaluateEvery time.Duration
	// ShutdownGrace bounds the drain of agent sessions at shutdown (their
	// batches in progress committed and acked; 0: the default);
	// ShutdownTimeout then bounds the gRPC server's graceful stop.
	ShutdownGrace   time.Duration
	ShutdownTimeout time.Duration
	// SessionRate, SessionBurst and SessionStarts bound agent session
	// starts (a reconnect storm): per second (0: no limit), at once, and
	// in progress at once (0: the defaults); see ingest.Config.
	SessionRate   float64
	SessionBurst  int
	SessionStarts int
	// IngestRate is the per-agent upload limit in results/s (0: none);
	// IngestQueue bounds the results waiting for the store.
	IngestRate  float64
	IngestQueue int
	// IngestGapRows caps the gap rows stored per agent (0: the default,
	// negative: no cap); IngestGapRate and IngestGapBurst are each
	// agent's budget of seqs its gap records may claim; IngestClockSkew is
	// how far ahead of the controller a result's sent_at may be (0:
	// ingest's defaults).
	IngestGapRows   int
	IngestGapRate   float64
	IngestGapBurst  int
	IngestClockSkew time.Duration
	// Limits: campaign targets and rates the controller refuses.
	AllowSpecialRanges bool
	BlocklistFile      string
	OptOutFile         string
	MaxPerTargetPPS    float64
	MaxAgentPPS        float64
	// ResultsRetention: raw results sent longer ago are deleted, a pass
	// every RetentionEvery (0: kept forever).
	ResultsRetention time.Duration
	RetentionEvery   time.Duration
	// StoreSync is "full" (fsync every commit: acks survive a power cut)
	// or "normal" (acks survive a crash, not a power cut); "" is full.
	StoreSync string
	// DebugAddr serves net/http/pprof when set; it must be a loopback address.
	DebugAddr string
	// MetricsAddr serves Prometheus /metrics over plain HTTP when set (any
	// address; unauthenticated).
	MetricsAddr string
	// Streams bound each operator token's queries and streams; Transport
	// the connections and streams of every client (docs/OPERATIONS.md,
	// "Operator API limits"). Zero fields take the defaults.
	Streams   api.StreamLimits
	Transport TransportLimits
	// MetricsReady, if set, receives the bound metrics address (tests).
	MetricsReady func(addr net.Addr)
	Log          *slog.Logger
	// Ready, if set, receives the bound listen address once serving (tests).
	Ready func(addr net.Addr)
}

// Run starts the controller and serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ResultsRetention < 0 {
		return fmt.Errorf("--results-retention: must not be negative (0 keeps results forever), got %v", cfg.ResultsRetention)
	}
	if cfg.RetentionEvery < 0 || cfg.ResultsRetention > 0 && cfg.RetentionEvery == 0 {
		return fmt.Errorf("--retention-every: must be positive, got %v", cfg.RetentionEvery)
	}
	if cfg.SessionRate < 0 || cfg.SessionBurst < 0 || cfg.SessionStarts < 0 || cfg.ShutdownGrace < 0 {
		return fmt.Errorf("--session-rate %g, --session-burst %d, --session-starts %d, --shutdown-grace %v: must not be negative",
			cfg.SessionRate, cfg.SessionBurst, cfg.SessionStarts, cfg.ShutdownGrace)
	}
	if cfg.IngestGapRate < 0 || cfg.IngestGapBurst < 0 || cfg.IngestClockSkew < 0 {
		return fmt.Errorf("--ingest-gap-rate %g, --ingest-gap-burst %d, --ingest-clock-skew %v: must not be negative",
			cfg.IngestGapRate, cfg.IngestGapBurst, cfg.IngestClockSkew)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	sync := sqlite.SyncFull
	if cfg.StoreSync != "" {
		var err error
		if sync, err = sqlite.ParseSync(cfg.StoreSync); err != nil {
			return fmt.Errorf("--store-sync: %w", err)
		}
	}
	st, err := sqlite.OpenSync(ctx, cfg.DataDir, sync)
	if err != nil {
		return err
	}
	defer st.Close()
	limits := &campaign.Limits{AllowSpecial: cfg.AllowSpecialRanges, MaxPerTargetPPS: cfg.MaxPerTargetPPS, MaxAgentPPS: cfg.MaxAgentPPS}
	if cfg.BlocklistFile != "" {
		if limits.Blocklist, err = campaign.LoadPrefixFile(cfg.BlocklistFile); err != nil {
			return fmt.Errorf("--blocklist: %w", err)
		}
	}
	if cfg.OptOutFile != "" {
		if limits.OptOut, err = campaign.LoadPrefixFile(cfg.OptOutFile); err != nil {
			return fmt.Errorf("--opt-out: %w", err)
		}
	}
	if cfg.AllowSpecialRanges {
		log.Warn("special-purpose ranges allowed in campaigns (--allow-special-ranges): for the lab only")
	}
	now := time.Now()
	ca, created, err := fleet.LoadOrCreateCA(cfg.DataDir, now)
	if err != nil {
		return err
	}
	if created {
		log.Info("controller CA created", "dir", cfg.DataDir)
	}
	if ca.Rotating() {
		log.Warn("CA rotation in progress: new and renewed certificates come from the next CA, and agents are advised to renew; finish with rotate-ca --finish once every agent has renewed")
	}
	fl := fleet.New(st, ca, fleet.Options{ApproveAgents: cfg.ApproveAgents, Log: log})
	adminPath, adminCreated, err := fl.EnsureAdminToken(ctx, cfg.DataDir)
	if err != nil {
		return err
	}
	cert, err := ca.IssueServerCert(fleet.HostSANs(cfg.TLSSANs), now)
	if err != nil {
		return err
	}

	var loc *live.Localiser
	var met *metrics.Metrics // both set before the worker starts
	worker := live.New(live.Options{Store: st, Log: log, EvaluateEvery: cfg.EvaluateEvery,
		OnTransitions: func(ts []*vantagev1.Transition) { loc.Localise(ts); met.ObserveTransitions(ts) }})
	if err := worker.Reload(ctx); err != nil {
		log.Warn("some campaigns could not be loaded", "err", err)
	}
	// Results and session changes go to the verdict engines and to target
	// discovery (which keeps the results of its own triggers).
	observers := &fanout{worker}
	var _ ingest.Voucher = worker // results of paused or edited campaigns are vouched for, not refused
	// A result older than the retention would be pruned at once; the past
	// window is never shorter than ingest's default (a spool replay after
	// a long outage), also when results are kept forever.
	ing := ingest.New(ingest.Config{Store: st, Fleet: fl, Campaigns: worker, Observer: observers, Log: log,
		RatePerAgent: cfg.IngestRate, MaxQueuedResults: cfg.IngestQueue, MaxGapRows: cfg.IngestGapRows,
		GapSeqRate: cfg.IngestGapRate, GapSeqBurst: cfg.IngestGapBurst, MaxClockSkew: cfg.IngestClockSkew,
		MaxResultAge: max(cfg.ResultsRetention, ingest.DefaultMaxResultAge),
		SessionRate:  sessionRate(cfg.SessionRate), SessionBurst: cfg.SessionBurst, SessionStarts: cfg.SessionStarts})
	loc = live.NewLocaliser(live.LocaliserConfig{Campaigns: worker, Health: worker, Triggers: ing, Log: log})
	// Metrics are counted whether served or not: they cost nothing unscraped.
	met = metrics.New(metrics.Config{Ingest: ing, Verdicts: worker, Log: log})
	if cfg.MetricsAddr != "" {
		bound, stopMetrics, err := serveMetrics(cfg.MetricsAddr, log, met.Handler())
		if err != nil {
			return err
		}
		defer stopMetrics()
		if cfg.MetricsReady != nil {
			cfg.MetricsReady(bound)
		}
	}
	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log, ing.AckLatencyBuckets)
		if err != nil {
			return err
		}
		defer stopDebug()
	}
	disc := discoverer.New(discoverer.Options{Store: st, Sessions: ing, Limits: limits, Log: log,
		Changed: func(ctx context.Context) {
			if err := worker.Reload(ctx); err != nil {
				log.Warn("campaign reload failed", "err", err)
			}
			ing.Reassign()
		}})
	*observers = append(*observers, disc) // before serving: no session reads it yet
	worker.Start(ctx)
	defer worker.Close()
	disc.Start(ctx)
	defer disc.Close()
	// Background loops that need only ctx; they end with it (or at any
	// return) and are waited for before the store closes.
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg errgroup.Group
	defer func() {
		stopBg()
		if err := bg.Wait(); err != nil {
			log.Warn("background loop failed", "err", err)
		}
	}()
	if cfg.ResultsRetention > 0 {
		pruner := retention.New(retention.Config{Store: met.CountPruned(st), Gaps: st, Keep: cfg.ResultsRetention, Every: cfg.RetentionEvery, Logger: log})
		bg.Go(func() error { return pruner.Run(bgCtx) })
	}
	ops := api.New(api.Config{Store: st, Fleet: fl, Verdicts: worker, Sessions: ing, Limits: limits, Discovery: disc, Log: log,
		StreamLimits: cfg.Streams})
	transport := cfg.Transport.withDefaults()

	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
	}
	srv := grpc.NewServer(append(transport.serverOptions(),
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(api.DeadlineInterceptor(UnaryTimeout), ops.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(publicStreamLimit(transport.MaxPublicStreams), ops.StreamInterceptor()),
	)...)
	defer ops.Wait() // the stream senders end with their streams
	vantagev1.RegisterAgentServiceServer(srv, ing)
	vantagev1.RegisterOperatorServiceServer(srv, ops)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	for _, name := range []string{"", vantagev1.AgentService_ServiceDesc.ServiceName, vantagev1.OperatorService_ServiceDesc.ServiceName} {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	reflection.Register(srv)

	lis, err := transport.listen(cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	log.Info("controller listening", "addr", lis.Addr().String(), "ca_hash", ca.Hash(), "admin_token", adminPath,
		"admin_token_created", adminCreated, "data", cfg.DataDir, "approve_agents", cfg.ApproveAgents,
		"results_retention", cfg.ResultsRetention)
	if cfg.Ready != nil {
		cfg.Ready(lis.Addr())
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()

	select {
	case err := <-serveErr:
		srv.Stop()
		hs.Shutdown()
		ing.CloseAll()
		ing.Wait()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("controller stopping")
	hs.Shutdown()
	drain(ing, cfg.ShutdownGrace, log)
	worker.Close() // ends verdict watchers with Unavailable
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	timeout := cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	select {
	case <-stopped:
	case <-time.After(timeout):
		log.Warn("graceful stop timed out; closing connections", "timeout", timeout)
		srv.Stop()
		<-stopped
	}
	ing.Wait()
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("controller stopped")
	return nil
}

// sessionRate is ingest's SessionRate for the --session-rate flag, whose 0
// means no limit.
func sessionRate(flag float64) float64 {
	if flag == 0 {
		return -1
	}
	return flag
}

// drain ends every agent session once the batches it has taken are
// committed and acked (at most grace; 0: ingest.DefaultShutdownGrace), and
// logs what it did.
func drain(ing *ingest.Server, grace time.Duration, log *slog.Logger) {
	if grace <= 0 {
		grace = ingest.DefaultShutdownGrace
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	d := ing.Drain(ctx)
	attrs := []any{"sessions", d.Sessions, "batches_committed", d.Batches, "acks_sent", d.Acks, "took", d.Took}
	if d.Cut {
		log.Warn("agent sessions not drained within the grace; cutting them", append(attrs, "left", d.Left, "grace", grace)...)
		return
	}
	log.Info("agent sessions drained", attrs...)
}

// fanout passes ingest's results and session changes to several observers.
type fanout []ingest.Observer

func (f *fanout) Feed(agentID string, results []*vantagev1.ProbeResult) {
	for _, o := range *f {
		o.Feed(agentID, results)
	}
}

func (f *fanout) SetAgentConnected(agentID string, labels map[string]string, connected bool, at time.Time) {
	for _, o := range *f {
		o.SetAgentConnected(agentID, labels, connected, at)
	}
}
