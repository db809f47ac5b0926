package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/vantage-net/vantage/controller/api"
	"github.com/vantage-net/vantage/controller/ingest"
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
	// BGPRetention: stored BGP updates and peer events older than this
	// are deleted in the same passes (0: kept forever).
	BGPRetention time.Duration
	// BGP sources (steps_bgp.go): the collector's passive eBGP listener
	// and peers, and its BMP station; off when both listens are empty.
	BGPListen   string
	BGPAS       uint32
	BGPRouterID string
	BGPPeers    []string
	BMPListen   string
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
	// WebAddr serves the dashboard when set: HTTPS with the controller's
	// certificate, or plain HTTP with WebPlain (loopback only, behind a
	// proxy that terminates TLS).
	WebAddr  string
	WebPlain bool
	// MetricsReady, if set, receives the bound metrics address (tests);
	// WebReady the dashboard's.
	MetricsReady func(addr net.Addr)
	WebReady     func(addr net.Addr)
	Log          *slog.Logger
	// Ready, if set, receives the bound listen address once serving (tests).
	Ready func(addr net.Addr)
}

// Run starts the controller and serves until ctx ends. Each step below
// builds one part in the order data flows through them (steps.go), and
// registers how to stop it; the parts stop in the reverse order.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	c := &controller{cfg: cfg, log: cfg.Log}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	defer c.stop()
	for _, step := range []func(context.Context) error{
		c.openStore,      // SQLite in --data
		c.loadLimits,     // --allow-special-ranges, --blocklist, --opt-out, rate caps
		c.loadIdentity,   // the CA, the fleet, the admin token, the server certificate
		c.loadCampaigns,  // the catalogue, the BGP view of its networks, the verdict engines of the ACTIVE campaigns
		c.wireIngest,     // AgentService, localisation, metrics, discovery
		c.serveSidecars,  // --metrics-addr, --debug-addr
		c.startLoops,     // verdict ticker, discovery, retention, the BGP recorder
		c.startBGP,       // the BGP sources feeding the recorder
		c.buildOperators, // OperatorService
	} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return c.serve(ctx)
}

// check refuses flag values no step could run with.
func (cfg Config) check() error {
	if cfg.ResultsRetention < 0 {
		return fmt.Errorf("--results-retention: must not be negative (0 keeps results forever), got %v", cfg.ResultsRetention)
	}
	if cfg.BGPRetention < 0 {
		return fmt.Errorf("--bgp-retention: must not be negative (0 keeps BGP updates forever), got %v", cfg.BGPRetention)
	}
	if _, err := cfg.collectorConfig(); err != nil {
		return err
	}
	if cfg.RetentionEvery < 0 || (cfg.ResultsRetention > 0 || cfg.BGPRetention > 0) && cfg.RetentionEvery == 0 {
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
	attrs := []any{slog.Int("sessions", d.Sessions), slog.Uint64("batches_committed", d.Batches),
		slog.Uint64("acks_sent", d.Acks), slog.Duration("took", d.Took)}
	if d.Cut {
		log.Warn("agent sessions not drained within the grace; cutting them",
			append(attrs, slog.Int("left", d.Left), slog.Duration("grace", grace))...)
		return
	}
	log.Info("agent sessions drained", attrs...)
}
