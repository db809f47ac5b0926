package ingest

// The recv side of a session: the agent's messages one at a time, and each
// batch validated, admitted, screened, committed and only then acked.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// recvLoop handles the agent's messages one at a time; once the server
// drains, a message read is dropped unhandled (drain.go).
func (ss *session) recvLoop(ctx context.Context) error {
	for {
		m, err := ss.stream.Recv()
		if err != nil {
			return err
		}
		if !ss.begin() {
			return errDraining
		}
		err = ss.handle(ctx, m)
		ss.finish()
		if err != nil {
			return err
		}
	}
}

func (ss *session) handle(ctx context.Context, m *vantagev1.AgentMessage) error {
	switch msg := m.GetMsg().(type) {
	case *vantagev1.AgentMessage_Results:
		return ss.handleBatch(ctx, msg.Results)
	case *vantagev1.AgentMessage_Heartbeat:
		if err := validateSpool("heartbeat.spool", msg.Heartbeat.GetSpool()); err != nil {
			return err
		}
		ss.spool.Store(msg.Heartbeat.GetSpool())
		if err := ss.s.cfg.Store.UpdateAgentSeen(ctx, ss.agent.ID, ss.s.now(), msg.Heartbeat.GetSpool()); err != nil {
			return fmt.Errorf("%w: heartbeat: %w", ErrStore, err)
		}
		return nil
	case *vantagev1.AgentMessage_TaskStatus:
		return ss.handleTaskStatus(ctx, msg.TaskStatus)
	case *vantagev1.AgentMessage_Hello:
		return rpcerr.Reasonf(ErrInvalid, "msg: hello sent twice in one session")
	default:
		return rpcerr.Reasonf(ErrInvalid, "msg: empty or unknown agent message")
	}
}

func (ss *session) handleTaskStatus(ctx context.Context, ts *vantagev1.TaskStatus) error {
	// An empty task_id is about the whole assignment (e.g. refused by the
	// agent's guard).
	if len(ts.GetTaskId()) > 256 {
		return rpcerr.Reasonf(ErrInvalid, "task_status.task_id: longer than 256")
	}
	if len(ts.GetReason()) > 1024 || len(ts.GetEngine()) > 64 {
		return rpcerr.Reasonf(ErrInvalid, "task_status: reason longer than 1024 or engine longer than 64")
	}
	ss.s.log.Info("agent task status", slog.String("agent", ss.agent.ID), slog.String("task", ts.GetTaskId()),
		slog.Bool("refused", ts.GetRefused()), slog.String("reason", ts.GetReason()), slog.String("engine", ts.GetEngine()))
	err := ss.s.cfg.Store.SetTaskStatus(ctx, store.TaskStatus{AgentID: ss.agent.ID, TaskID: ts.GetTaskId(),
		Refused: ts.GetRefused(), Reason: ts.GetReason(), Engine: ts.GetEngine(), At: ss.s.now()})
	if err != nil {
		return fmt.Errorf("%w: task status: %w", ErrStore, err)
	}
	return nil
}

// throttleHint reports whether a soft Throttle may be sent now.
func (ss *session) throttleHint() bool {
	now := ss.s.now().UnixNano()
	last := ss.lastHint.Load()
	return now-last >= int64(DefaultRetryAfter) && ss.lastHint.CompareAndSwap(last, now)
}

// throttle tells the agent to wait, then ends the session with
// RESOURCE_EXHAUSTED (trailer retry-after-ms); the batch is not acked, so
// the agent keeps it and sends it again.
func (ss *session) throttle(ctx context.Context, th *throttled) error {
	ss.enqueue(ctx, th.message())
	return th
}

// handleBatch validates, admits (rate and overload), screens, commits
// and only then acks one batch.
func (ss *session) handleBatch(ctx context.Context, b *vantagev1.ResultBatch) error {
	if err := ValidateBatch(b); err != nil {
		return err
	}
	// Admission first: screening may read the store (Voucher), and a
	// batch over the agent's rate or into an overloaded controller must
	// cost nothing more.
	if err := ss.admit(ctx, batchWork(len(b.GetResults()), len(b.GetGaps()))); err != nil {
		return err
	}
	results, refusedGaps, refused := ss.screen(ctx, b)
	ss.charge(GapWork * len(refusedGaps))
	// Encode here, in the session's goroutine, so the one writer only
	// writes.
	bodies := make([][]byte, len(results))
	for i, r := range results {
		var err error
		if bodies[i], err = proto.Marshal(r); err != nil {
			return fmt.Errorf("%w: results.results (seq %d): %w", ErrInvalid, r.GetSeq(), err)
		}
	}
	agentGaps := ss.clipGaps(b.GetEpoch(), b.GetGaps())
	gaps := agentGaps
	if refused > 0 {
		gaps = append(slices.Clip(gaps), refusedGaps...)
	}
	fresh, committedAt, err := ss.s.commit(ctx, store.Batch{AgentID: ss.agent.ID, Epoch: b.GetEpoch(), Results: results,
		Bodies: bodies, Gaps: gaps, MaxGapRows: ss.s.cfg.MaxGapRows}, batchWork(len(results), len(gaps)))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var th *throttled // the store failed: the agent waits and sends again
		if errors.As(err, &th) {
			ss.s.stats.throttled(ThrottleStore)
			return ss.throttle(ctx, th)
		}
		return fmt.Errorf("%w: commit batch: %w", ErrStore, err)
	}
	ss.s.stats.committedBatch(fresh, agentGaps)
	if ss.s.draining() {
		ss.s.drainBatches.Add(1)
	}
	if refused > 0 {
		ss.s.refused.Add(uint64(refused))
		ss.s.log.Warn("results refused", slog.String("agent", ss.agent.ID), slog.Uint64("epoch", b.GetEpoch()),
			slog.Int("refused", refused), slog.Int("accepted", len(results)), slog.Int("gaps", len(refusedGaps)),
			slog.Uint64("first_seq", refusedGaps[0].GetFirstSeq()), slog.String("reason", refusedGaps[0].GetReason()))
	}
	return ss.acked(ctx, b, results, fresh, committedAt)
}

// acked acks a committed batch and feeds its fresh results to the
// observer.
func (ss *session) acked(ctx context.Context, b *vantagev1.ResultBatch, results []*vantagev1.ProbeResult, fresh []bool, committedAt time.Time) error {
	// The commit returned: only now may the agent forget these results
	// (refused ones included: they are recorded as gaps).
	ack := &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Ack{Ack: &vantagev1.Ack{Epoch: b.GetEpoch(), UpToSeq: b.GetLastSeq()}}}
	select {
	case ss.ackTimes <- committedAt:
	default: // only a statistic
	}
	if !ss.enqueue(ctx, ack) {
		return ctx.Err()
	}
	if ss.s.cfg.Observer != nil {
		var feed []*vantagev1.ProbeResult
		for i, r := range results { // fresh is indexed like results
			if fresh[i] {
				feed = append(feed, r)
			}
		}
		if len(feed) > 0 {
			ss.s.cfg.Observer.Feed(ss.agent.ID, feed)
		}
	}
	return nil
}
