package live

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Replay limits.
const (
	// MaxReplaySpan is the longest window one Replay covers.
	MaxReplaySpan = 31 * 24 * time.Hour
	// MaxReplayTransitions bounds a replay's answer.
	MaxReplayTransitions = 100000
)

// ErrReplay is wrapped by Replay errors about the request (window, params);
// the api maps it to InvalidArgument.
var ErrReplay = errors.New("invalid replay request")

// HealthyVantages returns the ids of the vantages campaign's verdicts
// counted in the last closed round (healthy, fresh, session up), sorted;
// nil when the campaign has no engine.
func (w *Worker) HealthyVantages(campaignName string) []string {
	r := w.get(campaignName)
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.eng.Healthy()
}

// Replay recomputes campaign's timeline over [from, to) from the stored
// results, with params overriding the verdict parameters (verdict.
// ParamNames). It runs a fresh verdict engine: the live engines, verdicts
// and stored timeline are not touched. Results stream from the store in
// sent_at order (round order), so memory is the engine's, whatever the
// window. Replay knows no session events: every vantage counts as
// connected, and one that sent nothing is stale. DetectedAt is the replay's
// clock (the stream's sent_at), not the wall clock. The BGP evidence comes
// from Options.ReplayRouting (the stored updates of the window).
func (w *Worker) Replay(ctx context.Context, name string, from, to time.Time, params map[string]string) ([]*vantagev1.Transition, error) {
	switch {
	case from.IsZero():
		return nil, fmt.Errorf("%w: from: required", ErrReplay)
	case to.IsZero():
		return nil, fmt.Errorf("%w: to: required", ErrReplay)
	case !to.After(from):
		return nil, fmt.Errorf("%w: to: %s is not after from %s", ErrReplay, to.Format(time.RFC3339), from.Format(time.RFC3339))
	case to.Sub(from) > MaxReplaySpan:
		return nil, fmt.Errorf("%w: to: window of %s is longer than %s", ErrReplay, to.Sub(from), MaxReplaySpan)
	}
	c, err := w.opts.Store.GetCampaign(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("campaign %q: %w", name, err)
	}
	spec, err := catalogue.SpecFor(c) // with the discovered targets, if any
	if errors.Is(err, catalogue.ErrNotDiscovered) {
		return nil, fmt.Errorf("%w: campaign %s: no target to replay until its discovery has finished", ErrReplay, name)
	}
	if err != nil {
		return nil, err
	}
	cfg, err := verdict.WithParams(w.configFor(spec), params)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReplay, err)
	}
	if w.opts.ReplayRouting != nil {
		if cfg.Routing, err = w.opts.ReplayRouting(ctx, spec, from, to); err != nil {
			return nil, fmt.Errorf("replay routing: %w", err)
		}
	}
	rep, err := verdict.NewReplayer(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReplay, err)
	}
	agents, err := w.opts.Store.ListAgents(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent labels: %w", err)
	}
	for _, a := range agents {
		rep.Engine().SetAgentLabels(a.ID, a.Labels)
		if a.State == vantagev1.AgentState_AGENT_STATE_ACTIVE && spec.SelectsAgent(a.Labels) {
			// Known from the start, as live sessions make them known, so
			// early round closes wait for them alike.
			rep.Engine().SetAgentConnected(a.ID, true, from)
		}
	}
	var out []*vantagev1.Transition
	tooMany := fmt.Errorf("%w: to: more than %d transitions; narrow the window", ErrReplay, MaxReplayTransitions)
	err = w.opts.Store.QueryResults(ctx, store.ResultQuery{Campaign: name, From: from, To: to}, func(sr store.StoredResult) error {
		rep.Observe(observation(sr.AgentID, sr.Result))
		out = append(out, rep.Transitions()...)
		if len(out) > MaxReplayTransitions {
			return tooMany
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("replay results: %w", err)
	}
	out = append(out, rep.Finish(to)...)
	if len(out) > MaxReplayTransitions {
		return nil, tooMany
	}
	return out, nil
}
