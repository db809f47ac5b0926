// Package live is the controller's live verdict worker. It owns one pure
// verdict.Engine per ACTIVE campaign, feeds it the results ingest commits
// and the agents' session state, evaluates all of them on a ticker, stores
// each transition and fans it out to watchers. It exists so that the pure
// verdict logic stays free of I/O, clocks and goroutines, and so that ingest
// never waits for verdicts: feeding is a short locked call, and a slow
// watcher is dropped rather than allowed to block anything.
package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Defaults for Options.
const (
	DefaultEvaluateEvery = 250 * time.Millisecond
	DefaultFreshRounds   = 3
	// DefaultRefeedRounds covers the flapping window (verdict's
	// UnstableWindow, 10 rounds) and most of the availability's memory.
	DefaultRefeedRounds  = 12
	DefaultWatcherBuffer = 256
	// DefaultCatchUp is how long a restarted controller waits for the
	// agents' backlogs before it evaluates the rounds it missed.
	DefaultCatchUp = time.Minute
)

// VerdictStore is what the worker reads and writes in the store: the
// campaigns' agents, results and task statuses to feed and judge its
// engines, and the transitions they publish. A store that is also a
// store.VerdictRestorer lets a restarted worker carry on (restore.go).
type VerdictStore interface {
	GetCampaign(ctx context.Context, name string) (store.Campaign, error)
	ListAgents(ctx context.Context) ([]store.Agent, error)
	TaskStatuses(ctx context.Context, agentID string) ([]store.TaskStatus, error)
	QueryResults(ctx context.Context, q store.ResultQuery, fn func(store.StoredResult) error) error
	AddTransitions(ctx context.Context, ts []*vantagev1.Transition) error
}

// Options configures a Worker. Zero fields take the defaults above.
type Options struct {
	Store VerdictStore
	// Campaigns is the campaign catalogue: the worker runs one engine per
	// entry (Reload).
	Campaigns *catalogue.Catalogue
	Log       *slog.Logger
	// EvaluateEvery is the ticker period.
	EvaluateEvery time.Duration
	// Grace is how long after a round ends its results are awaited; zero
	// means GraceFor(the campaign's round).
	Grace time.Duration
	// FreshRounds: data older than this many rounds is stale.
	FreshRounds int
	// RefeedRounds: how many rounds of stored results before the first
	// round it evaluates a new engine is fed (silently, to learn).
	RefeedRounds int
	// CatchUp bounds the wait, after a restart, for the backlogs of the
	// agents that were reporting (restore.go).
	CatchUp time.Duration
	// WatcherBuffer is each watcher's channel capacity.
	WatcherBuffer int
	// Now is the clock; time.Now when nil. Tests inject a fake.
	Now func() time.Time
	// QuorumLabel groups vantages for the quorum (verdict.Config); empty
	// means verdict.DefaultQuorumLabel ("provider").
	QuorumLabel string
	// OnTransitions, if set, is called with every stored batch of
	// transitions (ids assigned), e.g. to trigger localisation traces. It
	// runs on the ticker goroutine and must not block.
	OnTransitions func(ts []*vantagev1.Transition)
	// Routing is the BGP view (the controller's bgp.RIB) joined to every
	// engine's verdicts; nil: none.
	Routing verdict.Routing
	// ReplayRouting, if set, gives Replay the BGP view of its window
	// rebuilt from the stored updates (so a replay reads the routing as
	// recorded, MRT imports included, not the live view's memory); nil:
	// Replay uses Routing.
	ReplayRouting func(ctx context.Context, spec *campaign.Spec, from, to time.Time) (verdict.Routing, error)
}

type running struct {
	mu  sync.Mutex // guards eng, catch, building, pending
	eng *verdict.Engine
	// catch is set while the campaign catches up after a restart
	// (restore.go): eng is not evaluated, and fed results only tell which
	// agents have delivered their backlog; they are read back from the
	// store when it ends.
	catch *catchUp
	// building: a new engine is being fed from the store; results fed
	// meanwhile wait in pending (restore.go).
	building bool
	pending  []fedResult
	dropped  int // pending results dropped over maxPending
	spec     *campaign.Spec
	stored   store.Campaign
	key      string // catalogue.Key; a new key rebuilds the engine
	// tasks is the set of the spec's task ids (health.go).
	tasksOnce sync.Once
	tasks     map[string]bool
}

type agentConn struct {
	labels    map[string]string
	connected bool
	at        time.Time
}

// Worker runs the verdict engines.
type Worker struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time

	mu        sync.Mutex // guards campaigns, agents, watchers
	campaigns map[string]*running
	agents    map[string]agentConn
	watchers  map[*Watcher]struct{}
	reload    sync.Mutex // serialises Reload and the end of a catch-up
	// evalMu is held while engines are evaluated and their transitions
	// published, and while a changed campaign's successor reads where its
	// predecessor stands (restore.go), so nothing it publishes meanwhile
	// is missed and published twice. Taken after reload, never before.
	evalMu sync.Mutex
	// started: Start was called; engines built before it are built at a
	// controller start, and may catch up (restore.go). unpublished holds
	// the transitions they published, for the first Evaluate.
	started     bool
	unpublished []*vantagev1.Transition
	// refusalsAt is when the agents' task refusals were last read
	// (health.go); zero: at the next Evaluate.
	refusalsAt time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Worker; call Reload to load the campaigns and Start to run
// the ticker.
func New(opts Options) *Worker {
	if opts.EvaluateEvery <= 0 {
		opts.EvaluateEvery = DefaultEvaluateEvery
	}
	if opts.FreshRounds <= 0 {
		opts.FreshRounds = DefaultFreshRounds
	}
	if opts.RefeedRounds <= 0 {
		opts.RefeedRounds = DefaultRefeedRounds
	}
	if opts.WatcherBuffer <= 0 {
		opts.WatcherBuffer = DefaultWatcherBuffer
	}
	if opts.CatchUp <= 0 {
		opts.CatchUp = DefaultCatchUp
	}
	w := &Worker{opts: opts, log: opts.Log, now: opts.Now,
		campaigns: map[string]*running{}, agents: map[string]agentConn{}, watchers: map[*Watcher]struct{}{}}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.now == nil {
		w.now = time.Now
	}
	return w
}

// Start runs the evaluation ticker until ctx ends or Close is called.
func (w *Worker) Start(ctx context.Context) {
	w.mu.Lock()
	w.started = true
	w.mu.Unlock()
	ctx, w.cancel = context.WithCancel(ctx)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(w.opts.EvaluateEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := w.Evaluate(ctx); err != nil && ctx.Err() == nil {
					w.log.Warn("verdict evaluation failed", slog.Any("error", err))
				}
			}
		}
	}()
}

// Close stops the ticker, waits for it and drops every watcher.
func (w *Worker) Close() error {
	if w.cancel != nil {
		w.cancel()
	}
	w.wg.Wait()
	w.mu.Lock()
	for wa := range w.watchers {
		wa.drop(ErrWorkerClosed)
	}
	clear(w.watchers)
	w.mu.Unlock()
	return nil
}

// GraceFor is how long after a round ends the engine waits for that round's
// results when no grace is configured: a third of the round, at least 1s and
// at most 30s. Campaign validation guarantees that a round's probes (jitter,
// timeouts and retries) end before the round does, so what is left to wait
// for is the agent's batching (500ms) and clock skew. A longer grace only
// delays every verdict.
func GraceFor(round time.Duration) time.Duration {
	return min(max(round/3, time.Second), 30*time.Second)
}

// ConfigFor turns a campaign into the verdict engine's configuration. A
// grace of zero means GraceFor(spec.Round()). ResultsPerRound is the
// number of scheduled ICMP and TCP tasks every selected vantage runs each
// round, so a round closes as soon as every vantage has reported them all.
func ConfigFor(spec *campaign.Spec, grace time.Duration, freshRounds int) verdict.Config {
	if grace <= 0 {
		grace = GraceFor(spec.Round())
	}
	var targets []verdict.Target
	for _, t := range spec.Targets() {
		targets = append(targets, verdict.Target{Addr: t.Addr.String(), Network: t.Network, Role: t.Role, Name: t.Name})
	}
	perRound := 0
	for _, tk := range spec.Tasks(spec.Start()) {
		if tk.GetKind() != vantagev1.ProbeKind_PROBE_KIND_TRACE && tk.GetEveryRounds() <= 1 {
			perRound++
		}
	}
	return verdict.Config{
		Campaign: spec.Name(), Scope: spec.ScopeName(), Start: spec.Start(), Round: spec.Round(),
		Grace: grace, Quorum: spec.Quorum(), FreshRounds: freshRounds, Targets: targets, Networks: spec.NetworkNames(),
		ResultsPerRound: perRound, Quality: qualityFor(spec), Prefixes: networkPrefixes(spec),
		RouterASNs: spec.RouterASNs(),
	}
}

// QuorumLabel is the label that groups vantages for the quorum
// (Options.QuorumLabel, or verdict.DefaultQuorumLabel).
func (w *Worker) QuorumLabel() string {
	if w.opts.QuorumLabel == "" {
		return verdict.DefaultQuorumLabel
	}
	return w.opts.QuorumLabel
}

// configFor is ConfigFor with the worker's options.
func (w *Worker) configFor(spec *campaign.Spec) verdict.Config {
	cfg := ConfigFor(spec, w.opts.Grace, w.opts.FreshRounds)
	cfg.QuorumLabel = w.opts.QuorumLabel
	cfg.Routing = w.opts.Routing
	return cfg
}

// Reload makes the set of engines match the catalogue's ACTIVE campaigns
// (reload the catalogue first; catalogue.Changed does both): new or
// changed campaigns get a fresh engine that carries on from the stored
// verdicts and is fed the stored results it needs (restore.go); paused and
// deleted ones are dropped. Unchanged campaigns keep their engine and
// state.
func (w *Worker) Reload(ctx context.Context) error {
	w.reload.Lock()
	defer w.reload.Unlock()
	active := map[string]catalogue.Entry{}
	for _, e := range w.opts.Campaigns.Entries() {
		active[e.Campaign.Name] = e
	}
	w.mu.Lock()
	// A changed campaign's engine keeps running until its successor is
	// registered (build), so no result fed in between is lost.
	prevs := map[string]*running{}
	var build []catalogue.Entry
	for name, r := range w.campaigns {
		switch e, ok := active[name]; {
		case !ok:
			delete(w.campaigns, name)
			w.log.Info("verdict engine stopped", slog.String("campaign", name))
		case e.Key != r.key:
			prevs[name] = r
			build = append(build, e)
		default:
			r.stored = e.Campaign
		}
	}
	for name, e := range active {
		if _, ok := w.campaigns[name]; !ok {
			build = append(build, e)
		}
	}
	w.mu.Unlock()

	var errs []error
	var ts []*vantagev1.Transition
	for _, e := range build {
		out, err := w.build(ctx, e, prevs[e.Campaign.Name])
		if err != nil {
			errs = append(errs, fmt.Errorf("campaign %s: %w", e.Campaign.Name, err))
			continue
		}
		ts = append(ts, out...)
	}
	w.mu.Lock()
	started := w.started
	if !started {
		// At a controller start the consumers of transitions are not wired
		// yet (OnTransitions): the first Evaluate publishes them.
		w.unpublished = append(w.unpublished, ts...)
	}
	w.mu.Unlock()
	if started {
		if err := w.publish(ctx, ts); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func observation(agentID string, r *vantagev1.ProbeResult) verdict.Observation {
	o := verdict.Observation{
		Agent: agentID, Target: r.GetTarget(), Round: r.GetRound(), SentAt: r.GetSentAt().AsTime(),
		Kind: r.GetKind(), Outcome: r.GetOutcome(), RTT: time.Duration(r.GetRttUs()) * time.Microsecond,
		Attempts: r.GetAttempts(), StopReason: r.GetStopReason(), TriggerID: r.GetTriggerId(),
	}
	if hs := r.GetHops(); len(hs) > 0 {
		o.Hops = make([]verdict.Hop, len(hs))
		for i, h := range hs {
			o.Hops[i] = verdict.Hop{TTL: h.GetTtl(), Addr: h.GetAddr()}
		}
	}
	return o
}

func (w *Worker) get(name string) *running {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.campaigns[name]
}

func (w *Worker) all() []*running {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*running, 0, len(w.campaigns))
	for _, r := range w.campaigns {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].stored.Name < out[j].stored.Name })
	return out
}

// Feed gives freshly stored results of one agent to their campaigns'
// engines. Results of campaigns without an engine are ignored.
func (w *Worker) Feed(agentID string, results []*vantagev1.ProbeResult) {
	var cur *running
	curName := ""
	for _, res := range results {
		if res.GetCampaign() != curName || cur == nil {
			curName = res.GetCampaign()
			cur = w.get(curName)
		}
		if cur == nil {
			continue
		}
		cur.mu.Lock()
		switch {
		case cur.catch != nil:
			cur.catch.saw(agentID, res.GetRound())
		case cur.building:
			cur.hold(agentID, res)
		default:
			cur.eng.Observe(observation(agentID, res))
		}
		cur.mu.Unlock()
	}
}

// SetAgentConnected records an agent's session state and tells every engine
// whose campaign selects the agent.
func (w *Worker) SetAgentConnected(agentID string, labels map[string]string, connected bool, at time.Time) {
	w.mu.Lock()
	w.agents[agentID] = agentConn{labels: maps.Clone(labels), connected: connected, at: at}
	rs := make([]*running, 0, len(w.campaigns))
	for _, r := range w.campaigns {
		rs = append(rs, r)
	}
	w.mu.Unlock()
	for _, r := range rs {
		if !r.spec.SelectsAgent(labels) {
			continue
		}
		r.mu.Lock()
		r.eng.SetAgentLabels(agentID, labels)
		r.eng.SetAgentConnected(agentID, connected, at)
		r.mu.Unlock()
	}
}

// Evaluate runs every engine once at the current time, stores the
// transitions (the store assigns their ids) and broadcasts them. An engine
// catching up after a restart is not run; once its agents' backlogs are in
// (or CatchUp has passed) it is rebuilt from the store, which evaluates the
// rounds it missed (restore.go).
func (w *Worker) Evaluate(ctx context.Context) error {
	now := w.now()
	w.mu.Lock()
	ts := w.unpublished
	w.unpublished = nil
	w.mu.Unlock()
	var errs []error
	for _, r := range w.all() {
		r.mu.Lock()
		over := r.catch != nil && r.catch.over(now)
		r.mu.Unlock()
		if !over {
			continue
		}
		out, err := w.finishCatchUp(ctx, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("campaign %s: %w", r.spec.Name(), err))
		}
		ts = append(ts, out...)
	}
	w.evalMu.Lock()
	defer w.evalMu.Unlock()
	if err := w.checkRefusals(ctx, now); err != nil {
		errs = append(errs, err)
	}
	var points []*vantagev1.QualityPoint
	for _, r := range w.all() {
		r.mu.Lock()
		if !r.building && r.catch == nil {
			ts = append(ts, r.eng.Evaluate(now)...)
			points = append(points, r.eng.TakeQuality()...)
		}
		r.mu.Unlock()
	}
	if err := w.publish(ctx, ts); err != nil {
		errs = append(errs, err)
	}
	if err := w.storeSeries(ctx, points); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// publish stores transitions, logs and broadcasts them, and passes them to
// OnTransitions.
func (w *Worker) publish(ctx context.Context, ts []*vantagev1.Transition) error {
	if len(ts) == 0 {
		return nil
	}
	if err := w.opts.Store.AddTransitions(ctx, ts); err != nil {
		return fmt.Errorf("store transitions: %w", err)
	}
	for _, t := range ts {
		w.log.Info("verdict transition", slog.String("verdict", t.GetVerdictId()),
			slog.String("from", t.GetFrom().String()), slog.String("to", t.GetTo().String()),
			slog.Int64("round", t.GetRound()), slog.String("location", t.GetLocation().String()))
	}
	w.broadcast(ts)
	if w.opts.OnTransitions != nil {
		w.opts.OnTransitions(ts)
	}
	return nil
}

// Running reports whether campaign has an engine.
func (w *Worker) Running(name string) bool { return w.get(name) != nil }

func levelMatches(want, got vantagev1.Level) bool {
	return want == vantagev1.Level_LEVEL_UNSPECIFIED || want == got
}

// Verdicts returns the current verdicts of one campaign ("" for all) at
// one level (UNSPECIFIED for all). Only that level's are built: the scope
// of a campaign of 65,536 targets costs one verdict, not 65,793.
func (w *Worker) Verdicts(campaignName string, level vantagev1.Level) []*vantagev1.Verdict {
	var out []*vantagev1.Verdict
	for _, r := range w.all() {
		if campaignName != "" && r.stored.Name != campaignName {
			continue
		}
		r.mu.Lock()
		vs := r.eng.LevelVerdicts(level)
		r.mu.Unlock()
		out = append(out, vs...)
	}
	return out
}

// Verdict returns one current verdict by id ("<campaign>/<level>/<subject>").
func (w *Worker) Verdict(id string) (*vantagev1.Verdict, bool) {
	name, _, ok := strings.Cut(id, "/")
	if !ok {
		return nil, false
	}
	r := w.get(name)
	if r == nil {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng.Verdict(id)
}

// ClosedRound returns the last round the campaign's engine has closed.
func (w *Worker) ClosedRound(name string) (int64, bool) {
	r := w.get(name)
	if r == nil {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng.ClosedRound(), true
}

// AgentHealth summarises the evidence about one agent in the current
// scope verdicts: healthy when every campaign counts it, otherwise the
// first reason given. known is false when no verdict mentions the agent.
func (w *Worker) AgentHealth(agentID string) (healthy bool, reason string, known bool) {
	healthy = true
	var reasons []string
	for _, v := range w.Verdicts("", vantagev1.Level_LEVEL_SCOPE) {
		for _, ev := range v.GetEvidence() {
			if ev.GetAgentId() != agentID {
				continue
			}
			known = true
			if !ev.GetHealthy() {
				healthy = false
				if ev.GetReason() != "" {
					reasons = append(reasons, v.GetCampaign()+": "+ev.GetReason())
				}
			}
		}
	}
	slices.Sort(reasons)
	return healthy && known, strings.Join(slices.Compact(reasons), "; "), known
}

// networkPrefixes maps each network of spec to its prefixes (the BGP
// evidence reads their routing state).
func networkPrefixes(spec *campaign.Spec) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, nw := range spec.Networks() {
		out[nw.Name] = nw.Prefixes
	}
	return out
}
