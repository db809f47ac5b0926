// Package schedule runs the agent's current assignment. Every task runs once
// per round (round n covers [schedule_start + n*round_ms, +round_ms)) at the
// round's start plus a random jitter, which spreads the agent's probes over
// the round and de-synchronises vantages. Results are stamped with the round
// so the controller can line up vantages without trusting their clocks to
// the second.
//
// An assignment replaces the previous one as a whole: tasks that are
// unchanged keep running undisturbed, changed and removed ones stop, new ones
// start. Everything stops when the assignment or a task expires. Triggers run
// their tasks once, immediately.
//
// Each (task, round) runs at most once, even across agent restarts: the
// round is written to a RoundLog before the probe is sent, and a restarted
// agent resumes at the next round. Rounds of a task that fell while the agent
// was down (up to the task's expiry then) are reported as ERROR results
// "missed: agent not running", so every round is either run or reported as
// missed. Every run also takes a token from the guard's per-target bucket.
package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Prober runs one probe (probe.Registry in the agent).
type Prober interface {
	Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult
}

// Guard is the part of the agent's guard the scheduler consults.
type Guard interface {
	CheckAssignment(a *vantagev1.Assignment) error
	CommitAssignment(version uint64)
	AssignmentVersion() uint64
	CheckTask(t *vantagev1.Task) error
	CheckSchedule(t *vantagev1.Task) error
	CheckTrigger(tr *vantagev1.Trigger) error
	AllowTarget(addr netip.Addr) error
}

// MissedReason is the error text of results standing for missed rounds.
const MissedReason = "missed: agent not running"

// maxMissedPerTask bounds the missed rounds reported per task at start.
const maxMissedPerTask = 100

// Fallbacker optionally tells which tasks run with another engine than asked.
type Fallbacker interface {
	Fallback(t *vantagev1.Task) (engine, reason string, ok bool)
}

// Config wires a Scheduler.
type Config struct {
	Prober Prober
	Guard  Guard
	// Emit receives every result; it must not block for long.
	Emit func(*vantagev1.ProbeResult)
	// Status receives task refusals and fallbacks, from Run's goroutine or a
	// task's; it must not block for long.
	Status func(*vantagev1.TaskStatus)
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Jitter picks a delay in [0, n); rand.N when nil.
	Jitter func(n time.Duration) time.Duration
	// Rounds remembers started rounds across restarts; nil keeps nothing.
	Rounds RoundLog
}

type running struct {
	task   *vantagev1.Task
	cancel context.CancelFunc
	done   chan struct{}
}

// Scheduler owns one goroutine per running task and per trigger task; Run
// is their owner and waits for them.
type Scheduler struct {
	cfg       Config
	applyCh   chan *vantagev1.Assignment
	trigCh    chan *vantagev1.Trigger
	tasks     map[string]*running // owned by Run
	oneShots  sync.WaitGroup
	roundWarn warnEvery // "round not recorded", shared by every task's loop
}

// RoundWarnEvery is how often the scheduler says that its round log
// refuses writes (a full disk fails every task's every round): once, then
// at most once per period with the count held back.
const RoundWarnEvery = 30 * time.Second

// warnEvery lets a warning through at most once per period and counts the
// ones it held back.
type warnEvery struct {
	mu   sync.Mutex
	last time.Time
	held int
}

// allow reports whether to log now, and how many were held back since the
// last one logged.
func (w *warnEvery) allow(now time.Time, period time.Duration) (bool, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.last.IsZero() && now.Sub(w.last) < period {
		w.held++
		return false, 0
	}
	held := w.held
	w.last, w.held = now, 0
	return true, held
}

// New returns a Scheduler; call Run to start it.
func New(cfg Config) *Scheduler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(n time.Duration) time.Duration {
			if n <= 0 {
				return 0
			}
			return rand.N(n)
		}
	}
	if cfg.Status == nil {
		cfg.Status = func(*vantagev1.TaskStatus) {}
	}
	return &Scheduler{
		cfg:     cfg,
		applyCh: make(chan *vantagev1.Assignment),
		trigCh:  make(chan *vantagev1.Trigger, 16),
		tasks:   make(map[string]*running),
	}
}

// AssignmentVersion is the version of the assignment in force (0 for none).
func (s *Scheduler) AssignmentVersion() uint64 { return s.cfg.Guard.AssignmentVersion() }

// Apply validates a and hands it to Run, which replaces the current task
// set. An error means the whole assignment was refused; tasks refused one by
// one are reported through Config.Status instead. Apply blocks until Run
// takes the assignment or ctx ends.
func (s *Scheduler) Apply(ctx context.Context, a *vantagev1.Assignment) error {
	if err := s.cfg.Guard.CheckAssignment(a); err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	select {
	case s.applyCh <- a:
		s.cfg.Guard.CommitAssignment(a.GetVersion())
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Trigger validates tr and runs its tasks once, now. Refused tasks become
// ERROR results carrying the trigger id and the reason.
func (s *Scheduler) Trigger(ctx context.Context, tr *vantagev1.Trigger) error {
	if err := s.cfg.Guard.CheckTrigger(tr); err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	select {
	case s.trigCh <- tr:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run runs assignments and triggers until ctx ends, then stops every task
// and waits for them. Results of probes cut short by the stop are dropped.
func (s *Scheduler) Run(ctx context.Context) error {
	expiry := time.NewTimer(time.Hour)
	expiry.Stop()
	defer func() {
		expiry.Stop()
		s.stopAll()
		s.oneShots.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case a := <-s.applyCh:
			s.apply(ctx, a)
			expiry.Stop()
			if a.GetExpiresAt() != nil {
				expiry.Reset(max(a.GetExpiresAt().AsTime().Sub(s.cfg.Now()), 0))
			}
		case <-expiry.C:
			s.cfg.Logger.Warn("assignment expired; stopping all tasks", slog.Uint64("version", s.cfg.Guard.AssignmentVersion()))
			s.stopAll()
		case tr := <-s.trigCh:
			s.trigger(ctx, tr)
		}
	}
}

func (s *Scheduler) apply(ctx context.Context, a *vantagev1.Assignment) {
	want := make(map[string]*vantagev1.Task, len(a.GetTasks()))
	for _, t := range a.GetTasks() {
		err := s.cfg.Guard.CheckTask(t)
		if err == nil {
			err = s.cfg.Guard.CheckSchedule(t)
		}
		if err == nil && want[t.GetId()] != nil {
			err = fmt.Errorf("task.id %s: duplicate in assignment %d", t.GetId(), a.GetVersion())
		}
		if err != nil {
			s.refuse(t, err)
			continue
		}
		want[t.GetId()] = t
	}
	for id, r := range s.tasks {
		if t, ok := want[id]; ok && proto.Equal(t, r.task) {
			delete(want, id) // unchanged: keep running
			continue
		}
		r.cancel()
		<-r.done
		delete(s.tasks, id)
	}
	for id, t := range want {
		if fb, ok := s.cfg.Prober.(Fallbacker); ok {
			if engine, reason, ok := fb.Fallback(t); ok {
				s.cfg.Status(&vantagev1.TaskStatus{TaskId: id, Engine: engine, Reason: reason})
			}
		}
		tctx, cancel := context.WithCancel(ctx)
		r := &running{task: t, cancel: cancel, done: make(chan struct{})}
		s.tasks[id] = r
		go func() {
			defer close(r.done)
			s.runTask(tctx, t)
		}()
	}
	s.cfg.Logger.Info("assignment applied", slog.Uint64("version", a.GetVersion()), slog.Int("tasks", len(s.tasks)))
}

func (s *Scheduler) stopAll() {
	for id, r := range s.tasks {
		r.cancel()
		<-r.done
		delete(s.tasks, id)
	}
}

// RoundAt is the round containing instant now (0 before the schedule
// starts, and when the round cannot be computed: see roundAt).
func RoundAt(start time.Time, round time.Duration, now time.Time) int64 {
	n, _ := roundAt(start, round, now)
	return n
}

// roundAt is the round containing now; false when it cannot be computed:
// round is not positive, or now is more than time.Duration's 292 years
// after start (now.Sub saturates, and the loop that caught up round by
// round from there spun forever).
func roundAt(start time.Time, round time.Duration, now time.Time) (int64, bool) {
	switch {
	case round <= 0:
		return 0, false
	case now.Before(start):
		return 0, true
	}
	d := now.Sub(start)
	if d == math.MaxInt64 {
		return 0, false
	}
	return int64(d / round), true
}

// roundStart is when round n starts; false when n*round overflows.
func roundStart(start time.Time, round time.Duration, n int64) (time.Time, bool) {
	if n < 0 || round <= 0 || n > math.MaxInt64/int64(round) {
		return time.Time{}, false
	}
	return start.Add(time.Duration(n) * round), true
}

// errUnschedulable is the refusal of a task whose rounds cannot be
// computed (the guard refuses such schedule starts first).
func errUnschedulable(t *vantagev1.Task, start time.Time) error {
	return fmt.Errorf("task.schedule_start %s: rounds of %d ms from it cannot be computed at the agent's clock (more than 292 years apart)",
		start.Format(time.RFC3339), t.GetRoundMs())
}

// refuse reports t as refused and logs why.
func (s *Scheduler) refuse(t *vantagev1.Task, err error) {
	s.cfg.Logger.Warn("task refused", slog.String("task_id", t.GetId()), slog.Any("error", err))
	s.cfg.Status(&vantagev1.TaskStatus{TaskId: t.GetId(), Refused: true, Reason: err.Error()})
}

func scheduleStart(t *vantagev1.Task) time.Time {
	if t.GetScheduleStart() != nil {
		return t.GetScheduleStart().AsTime()
	}
	return time.Unix(0, 0) // rounds aligned to the epoch
}

// runTask fires t once per eligible round until ctx ends or t expires. A
// task whose rounds cannot be computed is refused (Config.Status) and ends.
func (s *Scheduler) runTask(ctx context.Context, t *vantagev1.Task) {
	start := scheduleStart(t)
	round := time.Duration(t.GetRoundMs()) * time.Millisecond
	every := int64(max(t.GetEveryRounds(), 1))
	jitter := time.Duration(t.GetJitterMs()) * time.Millisecond
	var expires time.Time
	if t.GetExpiresAt() != nil {
		expires = t.GetExpiresAt().AsTime()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	n, ok := roundAt(start, round, s.cfg.Now())
	if !ok {
		s.refuse(t, errUnschedulable(t, start))
		return
	}
	if s.cfg.Rounds != nil {
		if last, lastExp, ok := s.cfg.Rounds.Last(t.GetId()); ok {
			s.reportMissed(t, start, round, every, last, lastExp, n)
			n = max(n, last+1)
		}
	}
	for ctx.Err() == nil {
		if rem := n % every; rem != 0 {
			n += every - rem
		}
		rs, ok := roundStart(start, round, n)
		if !ok {
			s.refuse(t, errUnschedulable(t, start))
			return
		}
		fire := rs.Add(quantize(s.cfg.Jitter(jitter), jitter))
		now := s.cfg.Now()
		if fire.Before(now) {
			if !now.Before(rs.Add(round)) {
				// This round is over: go on from the current one.
				cur, ok := roundAt(start, round, now)
				if !ok {
					s.refuse(t, errUnschedulable(t, start))
					return
				}
				n = max(n+1, cur)
				continue
			}
			fire = now // joined mid-round: run now, still in round n
		}
		if !expires.IsZero() && !fire.Before(expires) {
			s.cfg.Logger.Debug("task expired", slog.String("task_id", t.GetId()))
			return
		}
		timer.Reset(fire.Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if s.cfg.Rounds != nil {
			if err := s.cfg.Rounds.Start(t.GetId(), n, expires); err != nil {
				if ok, held := s.roundWarn.allow(s.cfg.Now(), RoundWarnEvery); ok {
					s.cfg.Logger.Warn("round not recorded; a restart may run it again", slog.String("task_id", t.GetId()),
						slog.Any("error", err), slog.Int("not_recorded_since_last_warning", held))
				}
			}
		}
		s.runOnce(ctx, t, n, fire, "")
		n = max(n+1, RoundAt(start, round, s.cfg.Now()))
	}
}

// maxJitterSlot bounds the grid that quantize puts jitter on.
const maxJitterSlot = 250 * time.Millisecond

// quantize rounds a jitter j drawn from [0, n) down to a grid of n/64
// (at most maxJitterSlot), so tasks whose jitter falls in one slot fire
// together: their timers expire at one instant and the probe engine sends
// them in one batch and reads their answers in one wake-up, instead of one
// wake-up per task (1,000 tasks a minute cost twice the CPU that way). The
// result stays in [0, n) and spread over 64 slots or more.
func quantize(j, n time.Duration) time.Duration {
	slot := min(n/64, maxJitterSlot)
	if slot < time.Millisecond {
		return j
	}
	return j - j%slot
}

// reportMissed emits an ERROR result for every round of t after last and
// before now that the agent was responsible for (it began before the task's
// expiry then), at most maxMissedPerTask (the latest), and records them.
func (s *Scheduler) reportMissed(t *vantagev1.Task, start time.Time, round time.Duration, every, last int64, lastExp time.Time, now int64) {
	var missed []int64
	// Only multiples of every are due: step over them, not every round.
	first := now - 1
	if first >= 0 {
		first -= first % every
	}
	for r := first; r > last && r >= 0 && len(missed) < maxMissedPerTask; r -= every {
		rs, ok := roundStart(start, round, r)
		if !ok || (!lastExp.IsZero() && !rs.Before(lastExp)) {
			continue
		}
		missed = append(missed, r)
	}
	if len(missed) == 0 {
		return
	}
	for i := len(missed) - 1; i >= 0; i-- {
		r := missed[i]
		res := &vantagev1.ProbeResult{Outcome: vantagev1.Outcome_OUTCOME_ERROR, Error: MissedReason}
		rs, _ := roundStart(start, round, r)
		stamp(res, t, r, rs, "")
		s.cfg.Emit(res)
	}
	if err := s.cfg.Rounds.Start(t.GetId(), missed[0], lastExp); err != nil {
		s.cfg.Logger.Warn("missed rounds not recorded", slog.String("task_id", t.GetId()), slog.Any("error", err))
	}
	s.cfg.Logger.Info("missed rounds reported", slog.String("task_id", t.GetId()), slog.Int("rounds", len(missed)))
}

// runOnce runs t and emits the stamped result, unless ctx ended meanwhile.
// A run the per-target rate refuses becomes an ERROR result.
func (s *Scheduler) runOnce(ctx context.Context, t *vantagev1.Task, n int64, fired time.Time, triggerID string) {
	if addr, err := netip.ParseAddr(t.GetTarget()); err == nil {
		if err := s.cfg.Guard.AllowTarget(addr.Unmap()); err != nil {
			res := &vantagev1.ProbeResult{Outcome: vantagev1.Outcome_OUTCOME_ERROR, Error: "refused by agent guard: " + err.Error()}
			stamp(res, t, n, fired, triggerID)
			s.cfg.Emit(res)
			return
		}
	}
	res := s.cfg.Prober.Probe(ctx, t)
	if ctx.Err() != nil {
		return
	}
	stamp(res, t, n, fired, triggerID)
	s.cfg.Emit(res)
}

func stamp(res *vantagev1.ProbeResult, t *vantagev1.Task, n int64, fired time.Time, triggerID string) {
	res.TaskId = t.GetId()
	res.Campaign = t.GetCampaign()
	res.Round = n
	res.TriggerId = triggerID
	if res.Target == "" {
		res.Target = t.GetTarget()
	}
	if res.Kind == vantagev1.ProbeKind_PROBE_KIND_UNSPECIFIED {
		res.Kind = t.GetKind()
	}
	if res.SentAt == nil {
		res.SentAt = timestamppb.New(fired)
	}
}

func (s *Scheduler) trigger(ctx context.Context, tr *vantagev1.Trigger) {
	s.cfg.Logger.Info("trigger", slog.String("trigger_id", tr.GetId()), slog.Int("tasks", len(tr.GetTasks())), slog.String("reason", tr.GetReason()))
	for _, t := range tr.GetTasks() {
		now := s.cfg.Now()
		var n int64
		if t.GetRoundMs() > 0 {
			n = RoundAt(scheduleStart(t), time.Duration(t.GetRoundMs())*time.Millisecond, now)
		}
		if err := s.cfg.Guard.CheckTask(t); err != nil {
			res := &vantagev1.ProbeResult{Outcome: vantagev1.Outcome_OUTCOME_ERROR, Error: "refused by agent guard: " + err.Error()}
			stamp(res, t, n, now, tr.GetId())
			s.cfg.Emit(res)
			continue
		}
		s.oneShots.Add(1)
		go func() {
			defer s.oneShots.Done()
			s.runOnce(ctx, t, n, now, tr.GetId())
		}()
	}
}
