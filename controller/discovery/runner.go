package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/trigger"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Defaults for Options.
const (
	DefaultTick       = 250 * time.Millisecond
	DefaultScan       = 2 * time.Second
	DefaultTraceHosts = 2
)

// Recorder is what the runner reads and writes in the store: the campaigns
// whose discovery is due, and each discovery's outcome.
type Recorder interface {
	ListCampaigns(ctx context.Context) ([]store.Campaign, error)
	PutDiscovery(ctx context.Context, name string, d store.Discovery, state vantagev1.CampaignState, now time.Time, audit store.AuditEntry) (store.Campaign, error)
}

// Options configures a Runner.
type Options struct {
	Store Recorder
	// Sessions sends the sweeps and traces (ingest.Server).
	Sessions trigger.Sender
	// Limits, when set, checks the discovered targets like an applied
	// campaign's (special-purpose ranges, blocklist, opt-out).
	Limits *campaign.Limits
	Log    *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Changed is called after a discovery finished and its campaign turned
	// ACTIVE: the campaign catalogue's Changed, which reloads the verdict
	// engines and reassigns.
	Changed func(ctx context.Context)
	// Tick paces the state machine; Scan how often the store is read for
	// campaigns to discover (Kick reads it at once).
	Tick, Scan time.Duration
	// TraceHosts is how many hosts per network upstream discovery traces to.
	TraceHosts int
	// QuorumLabel groups agents as the verdict engine's quorum does
	// (verdict.DefaultQuorumLabel when empty): a router is labelled only
	// when agents of min(quorum, 2) groups traced it in that role.
	QuorumLabel string
	// Settle is how long results are awaited after the last probe was
	// sent; zero means 2 rounds plus the probe timeout, at least 5s.
	Settle time.Duration
}

// Runner runs every campaign's discovery.
type Runner struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu       sync.Mutex // guards jobs and triggers (and every job's fields)
	jobs     map[string]*job
	triggers map[string]*job // trigger id -> job
	// begun is the status key of each campaign's last Begin: a job with
	// another key is superseded and its status writes are dropped. wmu
	// serializes status writes (Begin's and step's), so none of a
	// superseded job lands after Begin's (PutDiscovery checks only the
	// version, and an unchanged file applied again keeps it).
	begun map[string]string
	wmu   sync.Mutex

	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Runner; Start runs it.
func New(opts Options) *Runner {
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.Scan <= 0 {
		opts.Scan = DefaultScan
	}
	if opts.TraceHosts <= 0 {
		opts.TraceHosts = DefaultTraceHosts
	}
	if opts.QuorumLabel == "" {
		opts.QuorumLabel = verdict.DefaultQuorumLabel
	}
	r := &Runner{opts: opts, log: opts.Log, now: opts.Now, jobs: map[string]*job{}, triggers: map[string]*job{}, begun: map[string]string{},
		kick: make(chan struct{}, 1)}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Start runs the state machine until ctx ends or Close is called.
func (r *Runner) Start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(r.opts.Tick)
		defer tick.Stop()
		var lastScan time.Time
		for {
			scan := false
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
				scan = true
			case <-tick.C:
				scan = time.Since(lastScan) >= r.opts.Scan
			}
			if scan {
				lastScan = time.Now()
				if err := r.scan(ctx); err != nil && ctx.Err() == nil {
					r.log.Warn("discovery scan failed", slog.Any("error", err))
				}
			}
			r.step(ctx)
		}
	}()
}

// Close stops the state machine and waits for it.
func (r *Runner) Close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
}

// Kick makes the runner read the campaigns at once (after an apply).
func (r *Runner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Begin (re)starts the discovery of a stored campaign version: the
// campaign turns DISCOVERING with a fresh status, in one transaction with
// audit, and the runner picks it up at once.
func (r *Runner) Begin(ctx context.Context, name string, version uint64, audit store.AuditEntry) (store.Campaign, error) {
	st := &vantagev1.DiscoveryStatus{StartedAt: timestamppb.New(r.now()), Note: "starting"}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	c, err := r.opts.Store.PutDiscovery(ctx, name, store.Discovery{Version: version, Status: st},
		vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING, r.now(), audit)
	if err != nil {
		return c, fmt.Errorf("begin discovery: %w", err)
	}
	r.mu.Lock()
	r.begun[name] = statusKey(version, st)
	r.mu.Unlock()
	r.Kick()
	return c, nil
}

// Feed takes freshly stored results (ingest's Observer) and keeps those
// answering a discovery trigger.
func (r *Runner) Feed(agentID string, results []*vantagev1.ProbeResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.triggers) == 0 {
		return
	}
	for _, res := range results {
		j := r.triggers[res.GetTriggerId()]
		if j == nil || res.GetCampaign() != j.name {
			continue
		}
		a, err := netip.ParseAddr(res.GetTarget())
		if err != nil {
			continue
		}
		switch res.GetKind() {
		case vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:
			j.received[kSweep]++
			up := res.GetOutcome() == vantagev1.Outcome_OUTCOME_REPLY
			j.probes = append(j.probes, Probe{Agent: agentID, Target: a.Unmap(), Up: up, ReplyTTL: res.GetReplyTtl()})
		case vantagev1.ProbeKind_PROBE_KIND_TRACE:
			j.received[kTrace]++
			if res.GetOutcome() != vantagev1.Outcome_OUTCOME_ERROR {
				g, ok := j.groups[agentID]
				if !ok {
					g = QuorumGroup(agentID, nil, r.opts.QuorumLabel)
				}
				j.traces = append(j.traces, Trace{Group: g, Hops: res.GetHops()})
			}
		}
	}
}

// SetAgentConnected (ingest's Observer): an agent arriving may unblock a
// waiting discovery.
func (r *Runner) SetAgentConnected(_ string, _ map[string]string, connected bool, _ time.Time) {
	if connected {
		r.Kick()
	}
}

func statusKey(version uint64, st *vantagev1.DiscoveryStatus) string {
	return fmt.Sprintf("%d/%d", version, st.GetStartedAt().AsTime().UnixNano())
}

// scan makes the jobs match the store: one per DISCOVERING campaign that
// needs discovery; an ACTIVE campaign that needs discovery but has none
// finished (a crash between apply and Begin) is begun.
func (r *Runner) scan(ctx context.Context) error {
	cs, err := r.opts.Store.ListCampaigns(ctx)
	if err != nil {
		return fmt.Errorf("list campaigns: %w", err)
	}
	want := map[string]store.Campaign{}
	for _, c := range cs {
		switch c.State {
		case vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING:
			want[c.Name] = c
		case vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE:
			if _, err := catalogue.SpecFor(c); errors.Is(err, catalogue.ErrNotDiscovered) {
				r.log.Warn("campaign active without discovered targets; discovering", slog.String("campaign", c.Name))
				if _, err := r.Begin(ctx, c.Name, c.Version, store.AuditEntry{}); err != nil {
					r.log.Warn("discovery not begun", slog.String("campaign", c.Name), slog.Any("error", err))
				}
			}
		}
	}
	r.mu.Lock()
	for name, j := range r.jobs {
		c, ok := want[name]
		if !ok || c.Discovery == nil || statusKey(c.Version, c.Discovery.Status) != j.key || r.supersededLocked(j) {
			r.dropLocked(j)
		}
	}
	var begin []store.Campaign
	for name, c := range want {
		if _, ok := r.jobs[name]; ok {
			continue
		}
		if c.Discovery == nil || c.Discovery.Version != c.Version {
			begin = append(begin, c) // Begin did not run for this version (crash)
			continue
		}
		spec, err := campaign.Parse([]byte(c.SpecYAML))
		if err != nil || !spec.NeedsDiscovery() {
			continue // the api turns such a campaign ACTIVE on apply
		}
		st := proto.Clone(c.Discovery.Status).(*vantagev1.DiscoveryStatus)
		j := &job{name: name, version: c.Version, key: statusKey(c.Version, st), spec: spec, status: st, saved: st.GetNote()}
		if r.supersededLocked(j) {
			continue // read before a Begin that ran meanwhile: the next scan reads it
		}
		r.jobs[name] = j
		r.log.Info("discovery started", slog.String("campaign", name), slog.Uint64("version", c.Version))
	}
	r.mu.Unlock()
	for _, c := range begin {
		if _, err := r.Begin(ctx, c.Name, c.Version, store.AuditEntry{}); err != nil && ctx.Err() == nil {
			r.log.Warn("discovery not begun", slog.String("campaign", c.Name), slog.Any("error", err))
		}
	}
	return nil
}

// supersededLocked reports whether a Begin since j's status was read
// started another discovery of its campaign.
func (r *Runner) supersededLocked(j *job) bool {
	b, ok := r.begun[j.name]
	return ok && b != j.key
}

func (r *Runner) dropLocked(j *job) {
	for _, id := range j.triggers {
		delete(r.triggers, id)
	}
	delete(r.jobs, j.name)
}

// save is a status write decided under the lock and done after it.
type save struct {
	j       *job
	status  *vantagev1.DiscoveryStatus
	targets []*vantagev1.CampaignTarget
	state   vantagev1.CampaignState
}

// step advances every job once.
func (r *Runner) step(ctx context.Context) {
	var saves []save
	r.mu.Lock()
	conn := r.opts.Sessions.ConnectedAgents()
	now := r.now()
	for _, name := range slices.Sorted(maps.Keys(r.jobs)) {
		j := r.jobs[name]
		if s, ok := r.advanceLocked(j, conn, now); ok {
			saves = append(saves, s)
		}
	}
	r.mu.Unlock()
	finished := false
	r.wmu.Lock()
	for _, s := range saves {
		r.mu.Lock()
		superseded := r.supersededLocked(s.j)
		r.mu.Unlock()
		if superseded {
			r.log.Info("discovery abandoned", slog.String("campaign", s.j.name), slog.String("reason", "begun again"))
			continue
		}
		_, err := r.opts.Store.PutDiscovery(ctx, s.j.name, store.Discovery{Version: s.j.version, Status: s.status, Targets: s.targets},
			s.state, r.now(), store.AuditEntry{})
		switch {
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			r.log.Info("discovery abandoned", slog.String("campaign", s.j.name), slog.String("reason", err.Error()))
			r.mu.Lock()
			if r.jobs[s.j.name] == s.j {
				r.dropLocked(s.j)
			}
			r.mu.Unlock()
		case err != nil:
			if ctx.Err() == nil {
				r.log.Warn("discovery status not stored", slog.String("campaign", s.j.name), slog.Any("error", err))
			}
			r.mu.Lock()
			s.j.saved = "" // try again at the next change
			r.mu.Unlock()
		case s.state == vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE:
			finished = true
			r.log.Info("discovery finished", slog.String("campaign", s.j.name),
				slog.Any("hosts", s.status.GetHostsSelected()), slog.Int("routers", len(s.status.GetRoutersFound())),
				slog.String("note", s.status.GetNote()))
		}
	}
	r.wmu.Unlock()
	if finished && r.opts.Changed != nil {
		r.opts.Changed(ctx)
	}
}
