package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vantage-net/vantage/controller/api"
	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/bgp/record"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/discovery"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/ingest"
	"github.com/vantage-net/vantage/controller/metrics"
	"github.com/vantage-net/vantage/controller/retention"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	"github.com/vantage-net/vantage/controller/verdict/live"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// controller is a running controller's parts. Run builds them step by step
// (the methods below, in data-flow order): store, limits and identity;
// the campaign catalogue and the verdict worker that follows it; ingest,
// which feeds results to the worker and to discovery and sends their
// triggers; the loops; the operator API.
type controller struct {
	cfg Config
	log *slog.Logger
	// stops are run in reverse by stop: each step registers its own.
	stops []func()

	store  *sqlite.DB
	limits *campaign.Limits

	ca           *fleet.CA
	fleet        *fleet.Fleet
	cert         tls.Certificate
	adminPath    string
	adminCreated bool

	// rib is the BGP view the verdicts, the API and the metrics read;
	// bgpRec applies what the BGP sources see to it and stores it.
	rib    *bgp.RIB
	bgpRec *record.Recorder

	campaigns *catalogue.Catalogue
	verdicts  *live.Worker
	localiser *live.Localiser
	ingest    *ingest.Server
	observers fanout // what ingest tells about results and sessions
	metrics   *metrics.Metrics
	discovery *discovery.Runner
	ops       *api.Server
}

// onStop registers f to run when the controller stops.
func (c *controller) onStop(f func()) { c.stops = append(c.stops, f) }

// stop stops the parts in the reverse order of their steps.
func (c *controller) stop() {
	for i := len(c.stops) - 1; i >= 0; i-- {
		c.stops[i]()
	}
}

// openStore opens the SQLite store in the data directory.
func (c *controller) openStore(ctx context.Context) error {
	if err := os.MkdirAll(c.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	sync := sqlite.SyncFull
	if c.cfg.StoreSync != "" {
		var err error
		if sync, err = sqlite.ParseSync(c.cfg.StoreSync); err != nil {
			return fmt.Errorf("--store-sync: %w", err)
		}
	}
	st, err := sqlite.OpenSync(ctx, c.cfg.DataDir, sync)
	if err != nil {
		return err
	}
	c.store = st
	c.onStop(func() { st.Close() })
	return nil
}

// loadLimits reads what campaign targets and rates the controller refuses.
func (c *controller) loadLimits(context.Context) error {
	cfg := c.cfg
	c.limits = &campaign.Limits{AllowSpecial: cfg.AllowSpecialRanges, MaxPerTargetPPS: cfg.MaxPerTargetPPS, MaxAgentPPS: cfg.MaxAgentPPS}
	var err error
	if cfg.BlocklistFile != "" {
		if c.limits.Blocklist, err = campaign.LoadPrefixFile(cfg.BlocklistFile); err != nil {
			return fmt.Errorf("--blocklist: %w", err)
		}
	}
	if cfg.OptOutFile != "" {
		if c.limits.OptOut, err = campaign.LoadPrefixFile(cfg.OptOutFile); err != nil {
			return fmt.Errorf("--opt-out: %w", err)
		}
	}
	if cfg.AllowSpecialRanges {
		c.log.Warn("special-purpose ranges allowed in campaigns (--allow-special-ranges): for the lab only")
	}
	return nil
}

// loadIdentity loads (or makes, at the first start) the controller's CA and
// admin token, and issues the server certificate.
func (c *controller) loadIdentity(ctx context.Context) error {
	now := time.Now()
	ca, created, err := fleet.LoadOrCreateCA(c.cfg.DataDir, now)
	if err != nil {
		return err
	}
	if created {
		c.log.Info("controller CA created", slog.String("dir", c.cfg.DataDir))
	}
	if ca.Rotating() {
		c.log.Warn("CA rotation in progress: new and renewed certificates come from the next CA, and agents are advised to renew; finish with rotate-ca --finish once every agent has renewed")
	}
	c.ca = ca
	c.fleet = fleet.New(c.store, ca, fleet.Options{ApproveAgents: c.cfg.ApproveAgents, Log: c.log})
	if c.adminPath, c.adminCreated, err = c.fleet.EnsureAdminToken(ctx, c.cfg.DataDir); err != nil {
		return err
	}
	c.cert, err = ca.IssueServerCert(fleet.HostSANs(c.cfg.TLSSANs), now)
	return err
}

// bgpReload is how much stored BGP evidence a start loads into the RIB
// (after the state before it): the RIB's own retention.
const bgpReload = 6 * time.Hour

// loadCampaigns loads the campaign catalogue, the BGP view of its networks
// (rebuilt from the store) and the verdict worker's engines for its ACTIVE
// campaigns (restored from the stored timeline), which read that view.
func (c *controller) loadCampaigns(ctx context.Context) error {
	c.campaigns = catalogue.New(catalogue.Options{Store: c.store, Log: c.log})
	c.rib = bgp.NewRIB(bgp.Options{})
	c.bgpRec = record.New(record.Options{Store: c.store, RIB: c.rib, Log: c.log})
	c.verdicts = live.New(live.Options{Store: c.store, Campaigns: c.campaigns, Log: c.log, EvaluateEvery: c.cfg.EvaluateEvery,
		OnTransitions: c.transitions, Routing: seenRouting{c.rib}, ReplayRouting: c.replayRouting})
	err := c.campaigns.Reload(ctx)
	c.monitorBGP(ctx) // before the engines' restore reads the view
	if err := record.Load(ctx, c.store, c.rib, time.Now().Add(-bgpReload), time.Time{}); err != nil {
		c.log.Warn("stored BGP evidence not fully loaded", slog.Any("error", err))
	}
	c.campaigns.OnChange(func(ctx context.Context) error { c.monitorBGP(ctx); return nil })
	if err := errors.Join(err, c.verdicts.Reload(ctx)); err != nil {
		c.log.Warn("some campaigns could not be loaded", slog.Any("error", err))
	}
	return nil
}

// monitorBGP makes the RIB monitor the ACTIVE campaigns' networks. A
// prefix two campaigns share is the first one's (by name).
func (c *controller) monitorBGP(context.Context) {
	m := map[netip.Prefix]bgp.Monitor{}
	for _, e := range c.campaigns.Entries() {
		addMonitors(m, e.Campaign.Name, e.Spec)
	}
	c.rib.SetMonitored(m)
	c.log.Debug("BGP view monitors the campaigns' networks", slog.Int("prefixes", len(m)))
}

// transitions is what follows each stored batch of transitions:
// localisation's traces and the transition metrics. The worker publishes
// none before Start (startLoops), when both are set.
func (c *controller) transitions(ts []*vantagev1.Transition) {
	c.localiser.Localise(ts)
	c.metrics.ObserveTransitions(ts)
}

// wireIngest builds AgentService and what hangs off it: results and session
// changes go to the verdict worker and to discovery; localisation and
// discovery send their triggers through it; the catalogue's changes
// rebuild the engines, then re-send every session's assignment.
func (c *controller) wireIngest(context.Context) error {
	cfg := c.cfg
	c.observers = fanout{c.verdicts}
	var _ ingest.Voucher = c.campaigns // results of paused or edited campaigns are vouched for, not refused
	// A result older than the retention would be pruned at once; the past
	// window is never shorter than ingest's default (a spool replay after
	// a long outage), also when results are kept forever.
	c.ingest = ingest.New(ingest.Config{Store: c.store, Fleet: c.fleet, Campaigns: c.campaigns, Observer: &c.observers, Log: c.log,
		RatePerAgent: cfg.IngestRate, MaxQueuedResults: cfg.IngestQueue, MaxGapRows: cfg.IngestGapRows,
		GapSeqRate: cfg.IngestGapRate, GapSeqBurst: cfg.IngestGapBurst, MaxClockSkew: cfg.IngestClockSkew,
		MaxResultAge: max(cfg.ResultsRetention, ingest.DefaultMaxResultAge),
		SessionRate:  sessionRate(cfg.SessionRate), SessionBurst: cfg.SessionBurst, SessionStarts: cfg.SessionStarts})
	c.localiser = live.NewLocaliser(live.LocaliserConfig{Campaigns: c.campaigns, Health: c.verdicts, Triggers: c.ingest, Log: c.log})
	// Metrics are counted whether served or not: they cost nothing unscraped.
	c.metrics = metrics.New(metrics.Config{Ingest: c.ingest, Verdicts: c.verdicts, BGP: c.rib, BGPRecorder: c.bgpRec, Log: c.log})
	c.discovery = discovery.New(discovery.Options{Store: c.store, Sessions: c.ingest, Limits: c.limits, Log: c.log,
		Changed: c.campaigns.Changed})
	c.observers = append(c.observers, c.discovery) // before serving: no session reads it yet
	c.campaigns.OnChange(c.verdicts.Reload)
	c.campaigns.OnChange(func(context.Context) error { c.ingest.Reassign(); return nil })
	return nil
}

// serveSidecars serves /metrics (--metrics-addr) and pprof (--debug-addr)
// when asked.
func (c *controller) serveSidecars(context.Context) error {
	if c.cfg.MetricsAddr != "" {
		bound, stopMetrics, err := serveMetrics(c.cfg.MetricsAddr, c.log, c.metrics.Handler())
		if err != nil {
			return err
		}
		c.onStop(stopMetrics)
		if c.cfg.MetricsReady != nil {
			c.cfg.MetricsReady(bound)
		}
	}
	if c.cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(c.cfg.DebugAddr, c.log, c.ingest.AckLatencyBuckets)
		if err != nil {
			return err
		}
		c.onStop(stopDebug)
	}
	return nil
}

// startLoops starts the verdict ticker, discovery, retention and the BGP
// recorder's writer.
func (c *controller) startLoops(ctx context.Context) error {
	c.verdicts.Start(ctx)
	c.onStop(func() { c.verdicts.Close() })
	c.discovery.Start(ctx)
	c.onStop(c.discovery.Close)
	// Background loops that need only ctx; they end with it (or at any
	// return) and are waited for before the store closes.
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg errgroup.Group
	c.onStop(func() {
		stopBg()
		if err := bg.Wait(); err != nil {
			c.log.Warn("background loop failed", slog.Any("error", err))
		}
	})
	if c.cfg.ResultsRetention > 0 || c.cfg.BGPRetention > 0 {
		rc := retention.Config{Every: c.cfg.RetentionEvery, Logger: c.log}
		if c.cfg.ResultsRetention > 0 {
			rc.Store, rc.Gaps, rc.Keep = c.metrics.CountPruned(c.store), c.store, c.cfg.ResultsRetention
		}
		if c.cfg.BGPRetention > 0 {
			rc.BGP, rc.BGPKeep = c.store, c.cfg.BGPRetention
		}
		pruner := retention.New(rc)
		bg.Go(func() error { return pruner.Run(bgCtx) })
	}
	// Stopped after the BGP sources (startBGP registers their stop
	// later): it writes what they queued, then returns.
	bg.Go(func() error { return c.bgpRec.Run(bgCtx) })
	return nil
}

// startBGP starts the BGP sources, each feeding the recorder (a bgp.Sink:
// it applies to the RIB at once and stores in batches). This is the one
// hook for them: the collector (controller/bgp/collector: passive eBGP
// sessions, a BMP station) is started here from its flags, with its own
// errgroup stopped before the recorder's writer.
func (c *controller) startBGP(ctx context.Context) error {
	return c.startBGPSources(ctx, c.bgpRec)
}

// buildOperators builds OperatorService.
func (c *controller) buildOperators(context.Context) error {
	c.ops = api.New(api.Config{Store: c.store, Fleet: c.fleet, Campaigns: c.campaigns, Verdicts: c.verdicts, Sessions: c.ingest,
		Limits: c.limits, Discovery: c.discovery, Log: c.log, StreamLimits: c.cfg.Streams, RIB: c.rib})
	c.onStop(c.ops.Wait) // the stream senders end with their streams
	return nil
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
