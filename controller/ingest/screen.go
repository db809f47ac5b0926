package ingest

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vantage-net/vantage/controller/trigger"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Screening limits (docs/OPERATIONS.md, "Ingest limits and overload").
const (
	// DefaultMaxResultAge: a result sent longer before it reaches the
	// controller is refused (Config.MaxResultAge; the controller passes
	// --results-retention, as such a result would be pruned at once).
	DefaultMaxResultAge = 30 * 24 * time.Hour
	// DefaultMaxClockSkew: a result sent later than this after it reached
	// the controller is refused: the agent's clock is ahead.
	DefaultMaxClockSkew = 5 * time.Minute
	// DefaultTriggerGrace: a trigger's results are accepted until its
	// expiry plus this. A triggered probe starts before the expiry; its
	// result may then wait in the agent's spool through reconnects (an
	// ack timeout of 60 s, backoff up to 10 s, a RESOURCE_EXHAUSTED
	// retry-after of up to 5 minutes, maybe several times). Later than
	// that, localisation and discovery have long moved on.
	DefaultTriggerGrace = 30 * time.Minute
	// MaxTriggersPerAgent bounds the triggers remembered per agent; past
	// it the one that expires first is forgotten.
	MaxTriggersPerAgent = 1024
	// MaxVouchMisses bounds the store lookups a batch may cause for
	// results whose task the agent was not given and that no stored
	// campaign vouches for; the rest of such results in the batch are
	// refused without a lookup.
	MaxVouchMisses = 64
)

// taskRef is what a result must match for a task given to an agent.
type taskRef struct {
	campaign, target string
	start            time.Time // round 0 (the Unix epoch when the task has none, as the agent does)
	round            time.Duration
}

func refOf(t *vantagev1.Task) taskRef {
	start := time.Unix(0, 0)
	if t.GetScheduleStart() != nil {
		start = t.GetScheduleStart().AsTime()
	}
	return taskRef{campaign: t.GetCampaign(), target: t.GetTarget(), start: start,
		round: time.Duration(t.GetRoundMs()) * time.Millisecond}
}

// triggerRef is a trigger sent to an agent: its tasks, accepted until.
type triggerRef struct {
	until time.Time
	tasks map[string]taskRef // shared by triggers that carry the same task list
}

// taskIndex indexes a trigger's task list. Localisation and discovery send
// one list to every agent (a sweep batch can hold thousands of tasks), so
// the index of the last list is kept and shared while the same list comes.
type taskIndex struct {
	tasks []*vantagev1.Task
	index map[string]taskRef
}

// indexOf returns the index of tasks. Call with s.mu held.
func (s *Server) indexOf(tasks []*vantagev1.Task) map[string]taskRef {
	last := s.lastIndex.tasks
	if len(tasks) > 0 && len(last) == len(tasks) && &last[0] == &tasks[0] {
		return s.lastIndex.index
	}
	index := make(map[string]taskRef, len(tasks))
	for _, t := range tasks {
		index[t.GetId()] = refOf(t)
	}
	s.lastIndex = taskIndex{tasks: tasks, index: index}
	return index
}

// rememberTrigger records tr as sent to agentID, forgetting the agent's
// triggers past their grace (and the one that expires first when there are
// MaxTriggersPerAgent). Call with s.mu held.
func (s *Server) rememberTrigger(agentID string, tr *vantagev1.Trigger, now time.Time) {
	exp := trigger.Expiry(now)
	if tr.GetExpiresAt() != nil {
		exp = tr.GetExpiresAt().AsTime()
	}
	m := s.triggers[agentID]
	if m == nil {
		m = map[string]*triggerRef{}
		s.triggers[agentID] = m
	}
	first := ""
	for id, t := range m {
		if now.After(t.until) {
			delete(m, id)
		} else if first == "" || t.until.Before(m[first].until) {
			first = id
		}
	}
	if len(m) >= MaxTriggersPerAgent {
		delete(m, first)
	}
	m[tr.GetId()] = &triggerRef{until: exp.Add(s.cfg.TriggerGrace), tasks: s.indexOf(tr.GetTasks())}
}

// triggerTask returns the task taskID of the agent's trigger trigID while
// the trigger's results are accepted.
func (s *Server) triggerTask(agentID, trigID, taskID string, now time.Time) (taskRef, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.triggers[agentID][trigID]
	if t == nil || now.After(t.until) {
		return taskRef{}, false
	}
	ref, ok := t.tasks[taskID]
	return ref, ok
}

// screenState is one batch's screening: its receive time and the store
// lookups its refused results made.
type screenState struct {
	now     time.Time
	vouched map[[3]string]bool // (campaign, task, target) -> vouched
	misses  int
}

// refusal says why a result cannot be stored for this agent, or "" when
// it was sent inside the window around its receipt, and its task is one
// the agent was given (in this session, earlier in this controller's life,
// or by a trigger whose results are still accepted) with the result's
// campaign and target and a round not after its sent_at, or one a stored
// campaign vouches for.
func (ss *session) refusal(ctx context.Context, r *vantagev1.ProbeResult, sc *screenState) string {
	if why := ss.s.sentAtRefusal(r, sc.now); why != "" {
		return why
	}
	if r.GetRound() < 0 {
		return fmt.Sprintf("refused by controller: round %d: negative", r.GetRound())
	}
	id := r.GetTaskId()
	ss.mu.Lock()
	ref, ok := ss.tasks[id]
	ss.mu.Unlock()
	if ok {
		return mismatch(id, ref, r)
	}
	if trig := r.GetTriggerId(); trig != "" {
		if ref, ok := ss.s.triggerTask(ss.agent.ID, trig, id, sc.now); ok {
			return mismatch(id, ref, r)
		}
		// An expired or forgotten trigger (a controller restart): its
		// task may still be one given or vouched for below.
	}
	ss.s.mu.Lock()
	ref, known := ss.s.known[ss.agent.ID][id]
	ss.s.mu.Unlock()
	if known {
		return mismatch(id, ref, r)
	}
	notAssigned := fmt.Sprintf("refused by controller: task %.128q is not assigned to this agent", id)
	v, ok := ss.s.cfg.Campaigns.(Voucher)
	if !ok {
		return notAssigned
	}
	key := [3]string{r.GetCampaign(), id, r.GetTarget()}
	vouched, asked := sc.vouched[key]
	if !asked {
		if sc.misses >= MaxVouchMisses {
			return fmt.Sprintf("refused by controller: task %.128q is not assigned to this agent (not looked up: %d refusals in this batch)", id, sc.misses)
		}
		vouched = v.Vouches(ctx, r.GetCampaign(), id, r.GetTarget(), ss.labels)
		sc.vouched[key] = vouched
		if !vouched {
			sc.misses++
		}
	}
	if !vouched {
		return notAssigned
	}
	return ""
}

// mismatch says why r does not fit task id (ref), or "" when it does.
func mismatch(id string, ref taskRef, r *vantagev1.ProbeResult) string {
	if ref.campaign != r.GetCampaign() || ref.target != r.GetTarget() {
		return fmt.Sprintf("refused by controller: task %.128q does not match the result's campaign and target", id)
	}
	return roundRefusal(ref, r)
}

// roundRefusal checks a result's round against its sent_at and the task's
// schedule: the agent runs round n in [start + n*round, start + (n+1)*round)
// and stamps sent_at when the probe leaves (the same or a later round), so
// n is never past the round of sent_at; DefaultMaxClockSkew more absorbs a
// clock step between the two. A round in the future is what does harm (a
// round that never closes, a chunk whose round range matches every
// round-bounded query); an earlier round is not refused: it only misplaces
// the agent's own observation, which a lying agent can falsify anyway. A
// task without rounds (a one-off trigger task) has round 0.
func roundRefusal(ref taskRef, r *vantagev1.ProbeResult) string {
	n := r.GetRound()
	if ref.round <= 0 {
		if n != 0 {
			return fmt.Sprintf("refused by controller: round %d: the task has no rounds, want 0", n)
		}
		return ""
	}
	sent := r.GetSentAt().AsTime()
	now := int64(0)
	if sent.After(ref.start) {
		now = int64(sent.Sub(ref.start) / ref.round)
	}
	if slack := int64((DefaultMaxClockSkew + ref.round - 1) / ref.round); n > now+slack {
		return fmt.Sprintf("refused by controller: round %d: after sent_at %s (round %d of the task's schedule)",
			n, sent.UTC().Format(time.RFC3339Nano), now)
	}
	return ""
}

// sentAtRefusal refuses a result sent more than MaxResultAge before now
// or more than MaxClockSkew after it.
func (s *Server) sentAtRefusal(r *vantagev1.ProbeResult, now time.Time) string {
	sent := r.GetSentAt().AsTime()
	switch {
	case sent.Before(now.Add(-s.cfg.MaxResultAge)):
		return fmt.Sprintf("refused by controller: sent_at %s: more than %s before it was received",
			sent.UTC().Format(time.RFC3339), s.cfg.MaxResultAge)
	case sent.After(now.Add(s.cfg.MaxClockSkew)):
		return fmt.Sprintf("refused by controller: sent_at %s: more than %s after it was received (agent clock ahead)",
			sent.UTC().Format(time.RFC3339), s.cfg.MaxClockSkew)
	}
	return ""
}

// screen splits a valid batch's results into those the agent may store and,
// for the rest, one Gap per contiguous run of refused seqs (reason: the
// first refused result's; refused is their count). Refused results are not
// stored, so an agent cannot inject results for tasks it was not given;
// they are acked and counted as a gap so that one stale result (a campaign
// deleted or edited while the agent was offline, a controller restart that
// forgot past assignments) never blocks the agent's stream behind it.
func (ss *session) screen(ctx context.Context, b *vantagev1.ResultBatch) (accepted []*vantagev1.ProbeResult, gaps []*vantagev1.Gap, refused int) {
	rs := b.GetResults()
	sc := &screenState{now: ss.s.now(), vouched: map[[3]string]bool{}}
	var cur *vantagev1.Gap // the run being extended
	for i, r := range rs {
		why := ss.refusal(ctx, r, sc)
		if why == "" {
			if refused > 0 {
				accepted = append(accepted, r)
			}
			cur = nil
			continue
		}
		if refused == 0 {
			accepted = slices.Clone(rs[:i])
		}
		refused++
		if cur != nil && cur.LastSeq+1 == r.GetSeq() {
			cur.LastSeq = r.GetSeq()
			continue
		}
		cur = &vantagev1.Gap{Epoch: b.GetEpoch(), FirstSeq: r.GetSeq(), LastSeq: r.GetSeq(), Reason: why}
		gaps = append(gaps, cur)
	}
	if refused == 0 {
		return rs, nil, 0
	}
	return accepted, gaps, refused
}
