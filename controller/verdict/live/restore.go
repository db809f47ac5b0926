package live

// How a new engine carries on from where the previous one left off, after a
// controller restart or an edit of its campaign:
//
//   - It is restored from the stored timeline (store.VerdictRestorer): every
//     verdict keeps its state, onset and location, so nothing is published
//     that the previous engine had already published.
//   - It resumes at the first round the previous engine may not have
//     evaluated: the one after the last round it closed (an edit), or, after
//     a restart, the round of the latest stored result less the grace, and
//     after every stored transition's round.
//   - It is fed the stored results from RefeedRounds rounds before that,
//     in sent_at order, closing each round once the stream has passed its
//     end + grace, as Replay does: rounds before the resume round are closed
//     silently (they rebuild beliefs, availability and flapping history),
//     later ones publish.
//   - After a restart, when rounds the controller missed are already due,
//     the agents that were reporting still hold those rounds' results in
//     their spools. The campaign then catches up: it waits (at most CatchUp)
//     until each of them has delivered a result of the round in progress at
//     the restart, and only then is its engine fed from the store, so the
//     missed rounds are evaluated with their data rather than closed empty
//     as UNKNOWN.

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// maxPending bounds the results held while an engine is fed from the store.
const maxPending = 1 << 20

// dedupeMargin: a result fed while an engine is built may also be in the
// store snapshot it reads if it was committed up to this long before the
// build began (commit comes before Feed).
const dedupeMargin = 5 * time.Second

// fedResult is one result fed while an engine was being built.
type fedResult struct {
	agent string
	res   *vantagev1.ProbeResult
}

type fedKey struct {
	agent string
	seq   uint64
	sent  int64
}

func keyOf(agent string, r *vantagev1.ProbeResult) fedKey {
	return fedKey{agent: agent, seq: r.GetSeq(), sent: r.GetSentAt().AsTime().UnixNano()}
}

// hold keeps a result fed during a build; r.mu is held.
func (r *running) hold(agentID string, res *vantagev1.ProbeResult) {
	if len(r.pending) >= maxPending {
		r.dropped++
		return
	}
	r.pending = append(r.pending, fedResult{agent: agentID, res: res})
}

// restorePlan is how an engine is restored: the stored verdicts and the
// first round it publishes.
type restorePlan struct {
	published map[string]verdict.Published
	resume    int64
}

// catchUp is a restarted campaign waiting for its agents' backlogs.
type catchUp struct {
	plan     restorePlan
	current  int64 // the round in progress at the restart
	started  time.Time
	deadline time.Time
	waiting  map[string]bool // agents that have not sent a result of current yet
}

// saw notes a result fed during the catch-up; c's running is locked.
func (c *catchUp) saw(agent string, round int64) {
	if round >= c.current {
		delete(c.waiting, agent)
	}
}

func (c *catchUp) over(now time.Time) bool { return len(c.waiting) == 0 || !now.Before(c.deadline) }

// roundAt is the round of cfg containing t (0 before the start).
func roundAt(cfg verdict.Config, t time.Time) int64 {
	if !t.After(cfg.Start) || cfg.Round <= 0 {
		return 0
	}
	return int64(t.Sub(cfg.Start) / cfg.Round)
}

// build makes the engine of campaign e, replacing prev (nil when none), and
// registers it. It returns the transitions the new engine published while
// it was fed (rounds the previous one had not evaluated).
func (w *Worker) build(ctx context.Context, e catalogue.Entry, prev *running) (ts []*vantagev1.Transition, err error) {
	c, spec := e.Campaign, e.Spec
	defer func() {
		if err != nil && prev != nil {
			w.mu.Lock()
			if w.campaigns[c.Name] == prev {
				delete(w.campaigns, c.Name)
			}
			w.mu.Unlock()
		}
	}()
	cfg := w.configFor(spec)
	var inherited *catchUp
	unlockEval := func() {}
	if prev != nil {
		// Until its successor is registered, prev closes no round whose
		// transitions the plan would not see.
		w.evalMu.Lock()
		unlockEval = sync.OnceFunc(w.evalMu.Unlock)
		defer unlockEval()
		prev.mu.Lock()
		if prev.catch != nil {
			cp := *prev.catch
			cp.waiting = maps.Clone(prev.catch.waiting)
			inherited = &cp
		}
		prev.mu.Unlock()
	}
	plan, err := w.plan(ctx, c.Name, cfg, prev, inherited)
	if err != nil {
		return nil, err
	}
	agents, err := w.storedLabels(ctx)
	if err != nil {
		return nil, err
	}
	display, err := newEngine(cfg, plan, agents)
	if err != nil {
		return nil, err
	}
	r := &running{eng: display, spec: spec, stored: c, key: e.Key, building: true}
	w.mu.Lock()
	w.campaigns[c.Name] = r // from here on results fed are held for it
	atStart := !w.started
	w.refusalsAt = time.Time{} // judge refusals for the new engine soon
	w.mu.Unlock()
	unlockEval()
	w.log.Info("verdict engine started", slog.String("campaign", c.Name), slog.Uint64("version", c.Version),
		slog.Int64("resume_round", plan.resume), slog.Int("verdicts_restored", len(plan.published)))
	if inherited != nil || atStart {
		waiting, err := w.startCatchUp(ctx, r, cfg, plan, agents, inherited)
		if err != nil || waiting {
			w.unregisterOnError(c.Name, r, err)
			return nil, err
		}
	}
	ts, err = w.rebuild(ctx, r, cfg, plan, agents)
	w.unregisterOnError(c.Name, r, err)
	return ts, err
}

func (w *Worker) unregisterOnError(name string, r *running, err error) {
	if err == nil {
		return
	}
	w.mu.Lock()
	if w.campaigns[name] == r {
		delete(w.campaigns, name)
	}
	w.mu.Unlock()
}

// plan finds the stored verdicts of campaign name and the round its new
// engine resumes at.
func (w *Worker) plan(ctx context.Context, name string, cfg verdict.Config, prev *running, inherited *catchUp) (restorePlan, error) {
	var p restorePlan
	rs, ok := w.opts.Store.(store.VerdictRestorer)
	if !ok {
		return p, nil // a store that cannot say: start afresh
	}
	states, err := rs.LatestVerdicts(ctx, name)
	if err != nil {
		return p, fmt.Errorf("stored verdicts: %w", err)
	}
	p.published = make(map[string]verdict.Published, len(states))
	var afterTransitions int64
	for id, vs := range states {
		p.published[id] = verdict.Published{Latest: vs.Latest, Changed: vs.Changed}
		afterTransitions = max(afterTransitions, vs.Latest.GetRound()+1)
	}
	if inherited != nil {
		p.resume = inherited.plan.resume
		return p, nil
	}
	if prev != nil {
		prev.mu.Lock()
		closed, prevCfg := prev.eng.ClosedRound(), prev.eng.Config()
		prev.mu.Unlock()
		if closed >= 0 {
			// Through the end of its last closed round, in this config's
			// rounds (an edit may change the schedule).
			p.resume = roundAt(cfg, prevCfg.Start.Add(time.Duration(closed+1)*prevCfg.Round))
			return p, nil
		}
	}
	p.resume = afterTransitions
	last, err := rs.LastResultSentAt(ctx, name)
	if err != nil {
		return p, fmt.Errorf("stored results: %w", err)
	}
	if !last.IsZero() {
		// The previous engine ran until at least the latest result it
		// stored, so it had closed every round ending a grace before.
		p.resume = max(p.resume, roundAt(cfg, last.Add(-cfg.Grace)))
	}
	return p, nil
}

// storedLabels returns the enrolled agents, for the quorum groups of
// re-fed results.
func (w *Worker) storedLabels(ctx context.Context) ([]store.Agent, error) {
	agents, err := w.opts.Store.ListAgents(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent labels: %w", err)
	}
	return agents, nil
}

// newEngine is a verdict engine for cfg restored by plan.
func newEngine(cfg verdict.Config, plan restorePlan, agents []store.Agent) (*verdict.Engine, error) {
	eng, err := verdict.NewEngine(cfg)
	if err != nil {
		return nil, fmt.Errorf("verdict engine: %w", err)
	}
	if _, err := eng.Restore(plan.resume, plan.published); err != nil {
		return nil, err
	}
	for _, a := range agents {
		eng.SetAgentLabels(a.ID, a.Labels)
	}
	return eng, nil
}

// expectAgents makes the active agents spec selects known to eng as
// connected from the start of its re-feed, as Replay does, so a round of
// the stream closes early only once each has sent its results.
func expectAgents(eng *verdict.Engine, spec *campaign.Spec, agents []store.Agent, from time.Time) {
	for _, a := range agents {
		if a.State == vantagev1.AgentState_AGENT_STATE_ACTIVE && spec.SelectsAgent(a.Labels) {
			eng.SetAgentConnected(a.ID, true, from)
		}
	}
}

// startCatchUp puts a campaign built at a controller start into catch-up
// when rounds the restart left unevaluated are already due and agents were
// reporting (or it inherits the catch-up of the engine it replaces). Its
// engine then holds what the rounds before the resume round taught it. It
// reports whether the campaign is catching up.
func (w *Worker) startCatchUp(ctx context.Context, r *running, cfg verdict.Config, plan restorePlan,
	agents []store.Agent, inherited *catchUp) (bool, error) {
	now := w.now()
	if inherited == nil && roundAt(cfg, now.Add(-cfg.Grace))-1 < plan.resume {
		return false, nil // nothing missed is due yet: the live feed brings it
	}
	eng, err := newEngine(cfg, plan, agents)
	if err != nil {
		return false, err
	}
	expectAgents(eng, r.spec, agents, w.refeedStart(cfg, plan))
	if _, err := w.refeed(ctx, eng, r.spec.Name(), plan, true, time.Time{}); err != nil {
		return false, err
	}
	if until := cfg.Start.Add(time.Duration(plan.resume)*cfg.Round + cfg.Grace); !until.After(now) {
		eng.Evaluate(until) // closes the rounds before resume, silently
	}
	cu := inherited
	if cu == nil {
		expected := eng.ReportedSince(plan.resume - int64(cfg.FreshRounds))
		if len(expected) == 0 {
			return false, nil
		}
		cu = &catchUp{plan: plan, current: roundAt(cfg, now), started: now, deadline: now.Add(w.opts.CatchUp),
			waiting: map[string]bool{}}
		for _, id := range expected {
			cu.waiting[id] = true
		}
	}
	r.mu.Lock()
	w.applySessions(eng, r.spec, nil)
	for _, f := range r.pending { // stored: only their rounds matter now
		cu.saw(f.agent, f.res.GetRound())
	}
	r.eng, r.catch, r.building, r.pending, r.dropped = eng, cu, false, nil, 0
	r.mu.Unlock()
	w.log.Info("verdict engine catching up after a restart", slog.String("campaign", r.spec.Name()),
		slog.Int64("resume_round", plan.resume), slog.Int64("current_round", cu.current),
		slog.Any("waiting_for", slices.Sorted(maps.Keys(cu.waiting))), slog.Time("until", cu.deadline))
	return true, nil
}

// finishCatchUp feeds a caught-up campaign's engine from the store, which
// evaluates the rounds the restart missed, and puts it live.
func (w *Worker) finishCatchUp(ctx context.Context, r *running) ([]*vantagev1.Transition, error) {
	w.reload.Lock()
	defer w.reload.Unlock()
	if w.get(r.spec.Name()) != r {
		return nil, nil // replaced meanwhile
	}
	r.mu.Lock()
	cu := r.catch
	if cu == nil {
		r.mu.Unlock()
		return nil, nil
	}
	r.catch, r.building = nil, true
	r.mu.Unlock()
	w.log.Info("verdict engine caught up", slog.String("campaign", r.spec.Name()),
		slog.Duration("waited", w.now().Sub(cu.started)),
		slog.Any("agents_missing", slices.Sorted(maps.Keys(cu.waiting))))
	agents, err := w.storedLabels(ctx)
	var ts []*vantagev1.Transition
	if err == nil {
		ts, err = w.rebuild(ctx, r, w.configFor(r.spec), cu.plan, agents)
	}
	if err != nil {
		r.mu.Lock()
		r.catch, r.building, r.pending = cu, false, nil // try again at the next tick
		r.mu.Unlock()
		return nil, err
	}
	return ts, nil
}

// rebuild feeds a new engine every stored result it needs, then makes it
// r's live engine, with the results fed meanwhile and the sessions of now.
func (w *Worker) rebuild(ctx context.Context, r *running, cfg verdict.Config, plan restorePlan,
	agents []store.Agent) ([]*vantagev1.Transition, error) {
	eng, err := newEngine(cfg, plan, agents)
	if err != nil {
		return nil, err
	}
	expectAgents(eng, r.spec, agents, w.refeedStart(cfg, plan))
	since := time.Now().Add(-dedupeMargin) // ingest stamps received_at with the wall clock
	fed, err := w.refeed(ctx, eng, r.spec.Name(), plan, false, since)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	w.applySessions(eng, r.spec, fed.agents)
	late := 0
	for _, f := range r.pending {
		if !fed.keys[keyOf(f.agent, f.res)] {
			eng.Observe(observation(f.agent, f.res))
			late++
		}
	}
	dropped := r.dropped
	r.eng, r.building, r.pending, r.dropped, r.catch = eng, false, nil, 0, nil
	r.mu.Unlock()
	w.mu.Lock()
	w.refusalsAt = time.Time{} // the new engine knows no refusal yet
	w.mu.Unlock()
	if dropped > 0 {
		w.log.Warn("results fed while the verdict engine was rebuilt were dropped",
			slog.String("campaign", r.spec.Name()), slog.Int("dropped", dropped))
	}
	now := timestamppb.New(w.now()) // detected now, whatever round they are for
	for _, t := range fed.out {
		t.DetectedAt = now
	}
	w.log.Info("verdict engine fed from the store", slog.String("campaign", r.spec.Name()),
		slog.Int("results", fed.results), slog.Int64("from_round", plan.resume-int64(w.opts.RefeedRounds)),
		slog.Int64("resume_round", plan.resume), slog.Int64("closed_round", eng.ClosedRound()),
		slog.Int("transitions", len(fed.out)), slog.Int("fed_meanwhile", late))
	return fed.out, nil
}

// applySessions tells eng the session state of every agent spec selects,
// and that agents seen only in stored results (agents) have none; r.mu is
// held.
func (w *Worker) applySessions(eng *verdict.Engine, spec *campaign.Spec, agents map[string]bool) {
	w.mu.Lock()
	conns := maps.Clone(w.agents)
	w.mu.Unlock()
	now := w.now()
	for id, a := range conns {
		if spec.SelectsAgent(a.labels) {
			eng.SetAgentLabels(id, a.labels)
			eng.SetAgentConnected(id, a.connected, a.at)
			delete(agents, id)
		}
	}
	for id := range agents {
		eng.SetAgentConnected(id, false, now)
	}
}

// refeedStart is the start of the first round refeed feeds.
func (w *Worker) refeedStart(cfg verdict.Config, plan restorePlan) time.Time {
	return cfg.Start.Add(time.Duration(max(plan.resume-int64(w.opts.RefeedRounds), 0)) * cfg.Round)
}

// refed is what refeed did.
type refed struct {
	out     []*vantagev1.Transition
	agents  map[string]bool
	keys    map[fedKey]bool // results received since the build began
	results int
}

// refeed streams campaign's stored results from RefeedRounds rounds before
// plan.resume on, in sent_at order, through eng, closing each round once
// the stream has passed its end + grace. warm stops before the resume
// round (its rounds and later ones are neither fed nor closed). Results
// received at or after since are remembered in keys.
func (w *Worker) refeed(ctx context.Context, eng *verdict.Engine, name string, plan restorePlan, warm bool, since time.Time) (refed, error) {
	cfg := eng.Config()
	res := refed{agents: map[string]bool{}, keys: map[fedKey]bool{}}
	q := store.ResultQuery{Campaign: name, HasMinRound: true, MinRound: plan.resume - int64(w.opts.RefeedRounds)}
	limit := cfg.Start.Add(time.Duration(plan.resume)*cfg.Round + cfg.Grace)
	if warm {
		q.To = limit.Add(cfg.Round) // later results are of later rounds
	}
	var at time.Time
	err := w.opts.Store.QueryResults(ctx, q, func(sr store.StoredResult) error {
		o := observation(sr.AgentID, sr.Result)
		if warm && o.Round >= plan.resume {
			return nil
		}
		if t := o.SentAt; t.After(at) {
			if warm && t.After(limit) {
				t = limit
			}
			if !at.IsZero() {
				res.out = append(res.out, eng.Evaluate(t)...)
			}
			at = t
		}
		eng.Observe(o)
		res.agents[sr.AgentID] = true
		res.results++
		if !since.IsZero() && !sr.ReceivedAt.Before(since) {
			res.keys[keyOf(sr.AgentID, sr.Result)] = true
		}
		return ctx.Err()
	})
	if err != nil {
		return res, fmt.Errorf("re-feed results: %w", err)
	}
	return res, nil
}
