// Package discoverer runs target discovery for campaigns that ask for it
// (`targets.hosts.discover: true`, `targets.upstreams: auto`): it sends the
// sweep and the traceroutes to the agents as Triggers, collects the trigger
// results as ingest commits them, and stores what was found with the
// campaign, which then turns ACTIVE.
//
// It exists apart from controller/discovery, which is the pure logic (which
// addresses to sweep, how to pace them, which hosts to keep, which routers
// are the upstream and the border), so that the I/O - sessions, the store,
// timers - lives in one place with one owner goroutine.
//
// The state machine of one campaign (its state is DISCOVERING throughout):
//
//	waiting  no connected agent matches vantages.select: the note says so,
//	         and discovery starts when one connects.
//	sweep    one batch of ICMP echo tasks (discovery.Batches: what one agent
//	         may send in one round within budget.agent_pps) per round to
//	         every selected connected agent; then results are awaited until
//	         all are in or the settle time after the last batch has passed.
//	         No host answered: the campaign stays DISCOVERING with a note
//	         (failed) until it is applied again. Never an empty target set.
//	trace    with upstreams: auto, one Paris ICMP traceroute per vantage to
//	         the best TraceHosts hosts of each network; awaited the same way.
//	done     discovery.SelectHosts and discovery.Upstreams give the targets;
//	         campaign.Spec.WithTargets and the controller's limits check
//	         them; store.PutDiscovery stores them and sets ACTIVE in one
//	         transaction (refused if the campaign was re-applied meanwhile).
//
// A controller restart, a re-apply or a resume starts discovery again from
// the sweep: its results are not kept across runs.
package discoverer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/discovery"
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

// Options configures a Runner.
type Options struct {
	Store store.Store
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

type phase int

const (
	phaseWaiting phase = iota
	phaseSweep
	phaseTrace
	phaseFailed
)

// job is the discovery of one campaign version, started at started.
type job struct {
	name    string
	version uint64
	key     string
	spec    *campaign.Spec
	status  *vantagev1.DiscoveryStatus
	saved   string // the note last stored
	phase   phase
	agents  []string

	batches  [][]*vantagev1.Task
	next     int
	nextAt   time.Time
	deadline time.Time
	// expected and received count results per kind (sweep, trace).
	expected, received [2]int
	triggers           []string
	probes             []discovery.Probe
	traces             []discovery.Trace
	groups             map[string]string // agent id -> quorum group
	kept               map[string][]discovery.HostScore
	silent             []string
	// routers are addresses in the prefixes that answered for a router.
	routers []netip.Addr
}

const (
	kSweep = 0
	kTrace = 1
)

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
					r.log.Warn("discovery scan failed", "err", err)
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
			j.probes = append(j.probes, discovery.Probe{Agent: agentID, Target: a.Unmap(), Up: up, ReplyTTL: res.GetReplyTtl()})
		case vantagev1.ProbeKind_PROBE_KIND_TRACE:
			j.received[kTrace]++
			if res.GetOutcome() != vantagev1.Outcome_OUTCOME_ERROR {
				g, ok := j.groups[agentID]
				if !ok {
					g = discovery.QuorumGroup(agentID, nil, r.opts.QuorumLabel)
				}
				j.traces = append(j.traces, discovery.Trace{Group: g, Hops: res.GetHops()})
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
				r.log.Warn("campaign active without discovered targets; discovering", "campaign", c.Name)
				if _, err := r.Begin(ctx, c.Name, c.Version, store.AuditEntry{}); err != nil {
					r.log.Warn("discovery not begun", "campaign", c.Name, "err", err)
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
		r.log.Info("discovery started", "campaign", name, "version", c.Version)
	}
	r.mu.Unlock()
	for _, c := range begin {
		if _, err := r.Begin(ctx, c.Name, c.Version, store.AuditEntry{}); err != nil && ctx.Err() == nil {
			r.log.Warn("discovery not begun", "campaign", c.Name, "err", err)
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
			r.log.Info("discovery abandoned", "campaign", s.j.name, "reason", "begun again")
			continue
		}
		_, err := r.opts.Store.PutDiscovery(ctx, s.j.name, store.Discovery{Version: s.j.version, Status: s.status, Targets: s.targets},
			s.state, r.now(), store.AuditEntry{})
		switch {
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrNotFound):
			r.log.Info("discovery abandoned", "campaign", s.j.name, "reason", err.Error())
			r.mu.Lock()
			if r.jobs[s.j.name] == s.j {
				r.dropLocked(s.j)
			}
			r.mu.Unlock()
		case err != nil:
			if ctx.Err() == nil {
				r.log.Warn("discovery status not stored", "campaign", s.j.name, "err", err)
			}
			r.mu.Lock()
			s.j.saved = "" // try again at the next change
			r.mu.Unlock()
		case s.state == vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE:
			finished = true
			r.log.Info("discovery finished", "campaign", s.j.name, "hosts", s.status.GetHostsSelected(),
				"routers", len(s.status.GetRoutersFound()), "note", s.status.GetNote())
		}
	}
	r.wmu.Unlock()
	if finished && r.opts.Changed != nil {
		r.opts.Changed(ctx)
	}
}

// selected lists the connected agents the campaign selects, by id.
func selected(spec *campaign.Spec, conn map[string]map[string]string) []string {
	var out []string
	for id, labels := range conn {
		if spec.SelectsAgent(labels) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func networks(ns []campaign.Network) []discovery.Network {
	out := make([]discovery.Network, len(ns))
	for i, n := range ns {
		out[i] = discovery.Network{Name: n.Name, Prefix: n.Prefix}
	}
	return out
}

// settle is how long results are awaited after the last probe was sent.
func (r *Runner) settle(spec *campaign.Spec, probe time.Duration) time.Duration {
	if r.opts.Settle > 0 {
		return r.opts.Settle
	}
	return max(2*spec.Round()+probe, 5*time.Second)
}

// send sends tasks to every agent of j as one trigger each and counts the
// results to expect.
func (r *Runner) sendLocked(j *job, kind int, tasks []*vantagev1.Task, now time.Time, reason string) int {
	sent := 0
	for _, id := range j.agents {
		tr := trigger.New(now, tasks, reason)
		if !r.opts.Sessions.SendTrigger(id, tr) {
			r.log.Warn("discovery trigger not sent", "campaign", j.name, "agent", id, "reason", "no session or send queue full")
			continue
		}
		r.triggers[tr.GetId()] = j
		j.triggers = append(j.triggers, tr.GetId())
		j.expected[kind] += len(tasks)
		sent++
	}
	return sent
}

// advanceLocked moves j on; it returns a status to store when one changed.
func (r *Runner) advanceLocked(j *job, conn map[string]map[string]string, now time.Time) (save, bool) {
	spec := j.spec
	switch j.phase {
	case phaseWaiting:
		j.agents = selected(spec, conn)
		j.groups = map[string]string{}
		for _, id := range j.agents {
			j.groups[id] = discovery.QuorumGroup(id, conn[id], r.opts.QuorumLabel)
		}
		if len(j.agents) == 0 {
			j.status.Note = "waiting for agents: no connected agent matches vantages.select; discovery starts when one connects"
			break
		}
		nets := spec.SweepNetworks()
		if len(nets) == 0 { // no network to sweep: trace to the listed hosts
			j.kept = map[string][]discovery.HostScore{}
			for _, t := range spec.Targets() {
				if t.Role == vantagev1.TargetRole_TARGET_ROLE_HOST {
					j.kept[t.Network] = append(j.kept[t.Network], discovery.HostScore{Addr: t.Addr, Network: t.Network})
				}
			}
			if !spec.UpstreamsAuto() { // every network lists its hosts: nothing to find
				return r.finishLocked(j, now)
			}
			r.startTraceLocked(j, now)
			break
		}
		addrs, err := discovery.SweepAddrs(networks(nets))
		if err != nil { // campaign validation prevents it
			j.phase, j.status.Note = phaseFailed, "discovery failed: "+err.Error()
			break
		}
		timeout, retries := spec.SweepProbe()
		tasks := discovery.SweepTasks(j.name, addrs, uint32(timeout.Milliseconds()), uint32(retries), timestamppb.New(trigger.Expiry(now).Add(time.Duration(len(addrs))*time.Second)))
		j.batches = discovery.Batches(tasks, uint32(retries), spec.AgentPPS(), spec.Round().Seconds())
		j.phase, j.next, j.nextAt = phaseSweep, 0, now
		j.status.AddressesSwept = uint32(len(addrs))
		r.log.Info("discovery sweep", "campaign", j.name, "addresses", len(addrs), "batches", len(j.batches), "agents", len(j.agents))
		fallthrough
	case phaseSweep:
		timeout, retries := spec.SweepProbe()
		if j.next < len(j.batches) {
			if now.Before(j.nextAt) {
				break
			}
			// Tasks expire with the trigger.
			for _, t := range j.batches[j.next] {
				t.ExpiresAt = timestamppb.New(trigger.Expiry(now))
			}
			r.sendLocked(j, kSweep, j.batches[j.next], now, fmt.Sprintf("discovery sweep of %s, batch %d of %d", j.name, j.next+1, len(j.batches)))
			j.next++
			j.nextAt = now.Add(spec.Round())
			j.deadline = now.Add(r.settle(spec, timeout*time.Duration(1+retries)))
			j.status.Note = fmt.Sprintf("sweeping %d addresses from %d agent(s): batch %d of %d sent, %d of %d results in",
				j.status.GetAddressesSwept(), len(j.agents), j.next, len(j.batches), j.received[kSweep], j.expected[kSweep])
			break
		}
		if j.received[kSweep] < j.expected[kSweep] && now.Before(j.deadline) {
			j.status.Note = fmt.Sprintf("sweeping %d addresses from %d agent(s): all %d batches sent, %d of %d results in",
				j.status.GetAddressesSwept(), len(j.agents), len(j.batches), j.received[kSweep], j.expected[kSweep])
			break
		}
		nets := networks(spec.Networks())
		// The border's (or a gateway's) own addresses in the prefixes
		// answer for the router: not hosts.
		j.routers = discovery.RouterAddrs(nets, j.probes)
		hostProbes := slices.DeleteFunc(slices.Clone(j.probes), func(p discovery.Probe) bool { return slices.Contains(j.routers, p.Target) })
		j.kept, j.silent = discovery.SelectHosts(nets, hostProbes, spec.PerNetwork())
		responsive := map[netip.Addr]bool{}
		for _, p := range hostProbes {
			if p.Up {
				responsive[p.Target] = true
			}
		}
		j.status.HostsResponsive = uint32(len(responsive))
		n := 0
		for _, hs := range j.kept {
			n += len(hs)
		}
		j.status.HostsSelected = uint32(n)
		if n == 0 {
			j.phase = phaseFailed
			j.status.Note = fmt.Sprintf("nothing answered: %d addresses swept from %d agent(s) (%d of %d results in), no host replied to ICMP echo; "+
				"the campaign stays DISCOVERING - check the prefixes and the agents, then apply it again",
				j.status.GetAddressesSwept(), len(j.agents), j.received[kSweep], j.expected[kSweep])
			r.log.Warn("discovery found nothing", "campaign", j.name, "addresses", j.status.GetAddressesSwept(), "results", j.received[kSweep])
			break
		}
		if spec.UpstreamsAuto() {
			r.startTraceLocked(j, now)
			break
		}
		return r.finishLocked(j, now)
	case phaseTrace:
		if j.received[kTrace] < j.expected[kTrace] && now.Before(j.deadline) {
			j.status.Note = fmt.Sprintf("%s; tracing to %d host(s) from %d agent(s): %d of %d traces in",
				discovery.Describe(j.kept, j.silent), j.status.GetTraces(), len(j.agents), j.received[kTrace], j.expected[kTrace])
			break
		}
		return r.finishLocked(j, now)
	case phaseFailed:
	}
	if j.status.GetNote() == j.saved {
		return save{}, false
	}
	j.saved = j.status.GetNote()
	return save{j: j, status: proto.Clone(j.status).(*vantagev1.DiscoveryStatus), state: vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING}, true
}

func (r *Runner) startTraceLocked(j *job, now time.Time) {
	var all []netip.Addr
	for _, nw := range j.spec.Networks() {
		all = append(all, discovery.PickTraceHosts(j.kept, []discovery.Network{{Name: nw.Name, Prefix: nw.Prefix}}, r.opts.TraceHosts)...)
	}
	ttl := j.spec.DiscoveryTraceTTL()
	tasks := discovery.TraceTasks(j.name, all, uint32(ttl), uint32(trigger.TraceTimeout.Milliseconds()), timestamppb.New(trigger.Expiry(now)))
	j.phase = phaseTrace
	j.status.Traces = uint32(len(tasks))
	if len(tasks) > 0 {
		r.sendLocked(j, kTrace, tasks, now, "upstream discovery traces of "+j.name)
	}
	// The trace engine probes every TTL at once; a silent TTL costs two
	// timeouts. Give the slowest path that, plus the settle time.
	j.deadline = now.Add(r.settle(j.spec, 2*trigger.TraceTimeout*time.Duration(min(ttl, 4))))
	r.log.Info("discovery traces", "campaign", j.name, "hosts", len(all), "agents", len(j.agents))
}

// finishLocked turns what the job found into the campaign's targets.
func (r *Runner) finishLocked(j *job, now time.Time) (save, bool) {
	var found []campaign.Target
	for _, nw := range j.spec.SweepNetworks() {
		for _, h := range j.kept[nw.Name] {
			found = append(found, campaign.Target{Addr: h.Addr, Network: nw.Name, Role: vantagev1.TargetRole_TARGET_ROLE_HOST})
		}
	}
	note := discovery.Describe(j.kept, j.silent)
	if len(j.routers) > 0 {
		var rs []string
		for _, a := range j.routers {
			rs = append(rs, a.String())
		}
		note += fmt.Sprintf("; router interface(s) inside the prefixes not kept as hosts (fewer hops away than the hosts): %s", strings.Join(rs, ", "))
	}
	j.status.RoutersFound = nil
	if j.spec.UpstreamsAuto() {
		var prefixes []netip.Prefix
		for _, nw := range j.spec.Networks() {
			prefixes = append(prefixes, nw.Prefix)
		}
		need := min(j.spec.Quorum(), 2)
		routers, ignored := discovery.Upstreams(prefixes, j.traces, need)
		for _, rt := range routers {
			found = append(found, campaign.Target{Addr: rt.Addr, Role: rt.Role})
			j.status.RoutersFound = append(j.status.RoutersFound, &vantagev1.CampaignTarget{Address: rt.Addr.String(), Role: rt.Role})
		}
		j.status.Traces = uint32(len(j.traces))
		if len(routers) == 0 {
			note += fmt.Sprintf("; no upstream or border router found in %d traces (hops before the prefixes silent or absent)", len(j.traces))
		} else {
			var rs []string
			for _, rt := range routers {
				rs = append(rs, rt.Addr.String()+" "+strings.TrimPrefix(rt.Role.String(), "TARGET_ROLE_"))
			}
			note += fmt.Sprintf("; routers from %d traces: %s", len(j.traces), strings.Join(rs, ", "))
		}
		if len(ignored) > 0 {
			var rs []string
			for _, rt := range ignored {
				rs = append(rs, fmt.Sprintf("%s %s (%d traces)", rt.Addr, strings.TrimPrefix(rt.Role.String(), "TARGET_ROLE_"), rt.Traces))
			}
			note += fmt.Sprintf("; ignored, traced by agents of fewer than %d %s groups: %s", need, r.opts.QuorumLabel, strings.Join(rs, ", "))
		}
	}
	with, err := j.spec.WithTargets(found)
	if err == nil && r.opts.Limits != nil {
		err = r.opts.Limits.Check(with)
	}
	if err != nil {
		j.phase = phaseFailed
		j.status.Note = "discovered targets refused: " + err.Error() + "; the campaign stays DISCOVERING"
		j.saved = j.status.GetNote()
		return save{j: j, status: proto.Clone(j.status).(*vantagev1.DiscoveryStatus), state: vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING}, true
	}
	var targets []*vantagev1.CampaignTarget
	for _, t := range found {
		targets = append(targets, &vantagev1.CampaignTarget{Address: t.Addr.String(), Network: t.Network, Role: t.Role})
	}
	j.status.FinishedAt = timestamppb.New(now)
	j.status.Note = note
	r.dropLocked(j)
	return save{j: j, status: proto.Clone(j.status).(*vantagev1.DiscoveryStatus), targets: targets,
		state: vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE}, true
}
