package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Group commit and overload defaults.
const (
	// DefaultMaxQueuedResults is the soft bound on the work (results, and
	// GapWork per gap record) waiting for the writer across all sessions
	// (agents get Throttle); twice it is the hard bound
	// (RESOURCE_EXHAUSTED), which bounds ingest memory.
	DefaultMaxQueuedResults = 200_000
	// DefaultMaxCommitLatency: a commit running longer than this means the
	// store is overloaded (or the disk is failing); batches are refused
	// until it returns.
	DefaultMaxCommitLatency = 5 * time.Second
	// DefaultGroupResults caps the work committed in one transaction
	// (a single larger batch is committed alone).
	DefaultGroupResults = 5_000
	// DefaultRetryAfter is what an overloaded controller asks agents to
	// wait before sending again.
	DefaultRetryAfter = time.Second
	// DefaultStoreRetryAfter is what agents are asked to wait after a
	// commit failed (a full disk, an I/O error): a batch of every agent
	// retries the store this often, and the first commit that succeeds
	// ends the failure.
	DefaultStoreRetryAfter = 5 * time.Second
	// StoreLogEvery is how often a lasting store failure is logged again.
	StoreLogEvery = 30 * time.Second
	// RetryAfterKey is the trailer of a RESOURCE_EXHAUSTED session end.
	RetryAfterKey = "retry-after-ms"
)

// throttled ends a session with RESOURCE_EXHAUSTED (it is an ErrOverloaded)
// and a retry-after, in the trailer and in the Throttle message.
type throttled struct {
	retry  time.Duration
	reason string
}

func (t *throttled) Error() string {
	return fmt.Sprintf("%s: %s; retry after %s", ErrOverloaded, t.reason, t.retry)
}

func (t *throttled) Unwrap() error { return ErrOverloaded }

// Trailer is the session end's trailer (rpcerr.Trailer): retry-after-ms.
func (t *throttled) Trailer() metadata.MD {
	return metadata.Pairs(RetryAfterKey, strconv.FormatInt(max(1, t.retry.Milliseconds()), 10))
}

func (t *throttled) message() *vantagev1.ControllerMessage {
	return &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Throttle{Throttle: &vantagev1.Throttle{
		RetryAfterMs: uint32(min(max(1, t.retry.Milliseconds()), 1<<31)), Reason: t.reason}}}
}

type commitReq struct {
	b    store.Batch
	work int            // batchWork of b
	done chan commitRes // buffered 1
}

type commitRes struct {
	fresh []bool
	err   error
	at    time.Time // when the commit returned
}

// committer is the one writer goroutine: it takes every batch queued by any
// session, commits as many as fit (GroupResults of work: results and gap
// records alike, so that gap-only batches cannot pile into one huge
// transaction) in one transaction, and only then answers each session,
// which acks its agent. Many agents' batches thus share one commit.
func (s *Server) committer() {
	defer close(s.commitDone)
	gc, _ := s.commitStore.(store.GroupCommitter)
	var group []*commitReq
	for {
		var first *commitReq
		select {
		case first = <-s.commits:
		case <-s.commitStop:
			return
		}
		group = append(group[:0], first)
		n := first.work
	drain:
		for n < s.cfg.GroupResults {
			select {
			case r := <-s.commits:
				group = append(group, r)
				n += r.work
			default:
				break drain
			}
		}
		start := time.Now()
		s.commitStart.Store(int64(time.Since(s.clock)) + 1)
		res := make([]commitRes, len(group))
		if gc != nil {
			bs := make([]store.Batch, len(group))
			for i, r := range group {
				bs[i] = r.b
			}
			fresh, err := gc.CommitBatches(s.commitCtx, bs)
			at := time.Now()
			for i := range group {
				if err != nil {
					res[i] = commitRes{err: err}
				} else {
					res[i] = commitRes{fresh: fresh[i], at: at}
				}
			}
		} else {
			for i, r := range group {
				f, err := s.commitStore.CommitBatchFresh(s.commitCtx, r.b.AgentID, r.b.Epoch, r.b.Results, r.b.Gaps)
				res[i] = commitRes{fresh: f, err: err, at: time.Now()}
			}
		}
		// The counters first, the answers after: once a session acks,
		// its batch is no longer queued and its commit is counted.
		took := time.Since(start)
		s.commitStart.Store(0)
		s.stats.commitTook(took)
		s.queued.Add(-int64(n))
		s.health.wrote(s.log, opCommit, groupErr(res))
		for i, r := range group {
			r.done <- res[i]
		}
		for i := range group {
			group[i] = nil
		}
	}
}

// overloaded reports whether a batch of n work (batchWork) finds the
// controller overloaded: soft (more than MaxQueuedResults waiting for the
// writer: the batch is taken, and the agent is asked to slow down) or hard
// (twice that, or the commit running now has run longer than
// MaxCommitLatency: the batch is refused with RESOURCE_EXHAUSTED). why is
// "" when neither. Both are judged from work queued or in progress only,
// so they clear by themselves once the writer catches up: a commit that
// was slow and has returned refuses nothing.
func (s *Server) overloaded(n int) (why string, hard bool) {
	q := s.queued.Load()
	if st := s.commitStart.Load(); st != 0 {
		if d := time.Since(s.clock) - time.Duration(st-1); d > s.cfg.MaxCommitLatency {
			return fmt.Sprintf("store commit running for %s (bound %s)", d.Round(time.Millisecond), s.cfg.MaxCommitLatency), true
		}
	}
	if q > 0 && q+int64(n) > 2*int64(s.cfg.MaxQueuedResults) {
		return fmt.Sprintf("ingest queue full (%d results waiting, at most %d)", q, 2*s.cfg.MaxQueuedResults), true
	}
	if q > 0 && q+int64(n) > int64(s.cfg.MaxQueuedResults) {
		return fmt.Sprintf("ingest queue long (%d results waiting)", q), false
	}
	return "", false
}

// commit queues a batch of work (batchWork) for the writer and waits for
// its commit.
func (s *Server) commit(ctx context.Context, b store.Batch, work int) ([]bool, time.Time, error) {
	req := &commitReq{b: b, work: work, done: make(chan commitRes, 1)}
	s.queued.Add(int64(work))
	select {
	case s.commits <- req:
	case <-ctx.Done():
		s.queued.Add(-int64(work))
		return nil, time.Time{}, ctx.Err()
	case <-s.commitStop:
		s.queued.Add(-int64(work))
		return nil, time.Time{}, errors.New("ingest stopped")
	}
	// Once queued, the commit happens whatever the session does; wait for
	// it so the ack (if the session still lives) follows the commit.
	select {
	case res := <-req.done:
		if res.err != nil {
			// The batch stays with the agent, which is asked to wait:
			// a failing store (full disk) clears by itself, and the
			// agent's next try after the retry-after finds out.
			return nil, time.Time{}, &throttled{retry: DefaultStoreRetryAfter,
				reason: fmt.Sprintf("store commit failed (%s): %v", ClassifyStoreError(res.err), res.err)}
		}
		return res.fresh, res.at, nil
	case <-ctx.Done():
		return nil, time.Time{}, ctx.Err()
	}
}

// stopCommitter ends the writer goroutine once no session can queue more.
func (s *Server) stopCommitter() {
	s.stopOnce.Do(func() {
		close(s.commitStop)
		<-s.commitDone
		s.commitCancel()
	})
}

// groupErr is the first error of a group's commits.
func groupErr(res []commitRes) error {
	for _, r := range res {
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

// StoreErrorClass says why a store commit failed, as counted in
// Stats.StoreFailures.
type StoreErrorClass int

// Store error classes.
const (
	// StoreDiskFull: no space left (SQLITE_FULL, ENOSPC, EDQUOT).
	StoreDiskFull StoreErrorClass = iota
	// StoreIO: the disk failed the I/O (SQLITE_IOERR, EIO, EROFS).
	StoreIO
	// StoreOther: anything else.
	StoreOther
	numStoreErrorClasses
)

func (c StoreErrorClass) String() string {
	switch c {
	case StoreDiskFull:
		return "disk_full"
	case StoreIO:
		return "io"
	case StoreOther:
		return "other"
	}
	return "unknown"
}

// SQLite primary result codes, as the driver's errors report them (the
// low byte of an extended code).
const (
	sqliteIOErr    = 10
	sqliteFull     = 13
	sqliteReadOnly = 8
)

// ClassifyStoreError names the class of a failed store write. It looks for
// an errno and for a driver error with a SQLite result code (any error
// with a Code() int method), so ingest needs no driver import.
func ClassifyStoreError(err error) StoreErrorClass {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return StoreDiskFull
	case errors.Is(err, syscall.EIO), errors.Is(err, syscall.EROFS):
		return StoreIO
	}
	var coded interface{ Code() int }
	if errors.As(err, &coded) {
		switch coded.Code() & 0xff {
		case sqliteFull:
			return StoreDiskFull
		case sqliteIOErr, sqliteReadOnly:
			return StoreIO
		}
	}
	return StoreOther
}

// Store writes ingest makes, as storeHealth names them.
const (
	opCommit     = "commit"
	opHello      = "hello"
	opHeartbeat  = "heartbeat"
	opTaskStatus = "task status"
)

// watchStore makes every store write ingest makes outside the committer
// (the agent row at Hello and heartbeat, task statuses) count in
// storeHealth, as commits do; the committer writes to the store as given.
func (s *Server) watchStore() {
	s.commitStore = s.cfg.Store
	s.cfg.Store = watchedStore{SessionStore: s.cfg.Store, s: s}
}

// watchedStore is the store as sessions write to it.
type watchedStore struct {
	SessionStore
	s *Server
}

func (w watchedStore) UpdateAgentHello(ctx context.Context, id string, h store.AgentHello) error {
	err := w.SessionStore.UpdateAgentHello(ctx, id, h)
	w.s.health.wrote(w.s.log, opHello, storeFault(ctx, err))
	return err
}

func (w watchedStore) UpdateAgentSeen(ctx context.Context, id string, at time.Time, sp *vantagev1.SpoolState) error {
	err := w.SessionStore.UpdateAgentSeen(ctx, id, at, sp)
	w.s.health.wrote(w.s.log, opHeartbeat, storeFault(ctx, err))
	return err
}

func (w watchedStore) SetTaskStatus(ctx context.Context, st store.TaskStatus) error {
	err := w.SessionStore.SetTaskStatus(ctx, st)
	w.s.health.wrote(w.s.log, opTaskStatus, storeFault(ctx, err))
	return err
}

// storeFault is err unless it says nothing about the store's health (the
// caller gave up; a row not found).
func storeFault(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return nil
	}
	return err
}

// storeHealth follows the outcome of ingest's store writes: failures by
// class, and whether (since when) the store is failing now. It logs a
// failure when it begins, every StoreLogEvery while it lasts, and its end,
// never once per batch. A successful commit ends a failure; another write
// does only if no commit failed meanwhile (a full disk may still take the
// small update of an agent row while refusing every batch).
type storeHealth struct {
	mu           sync.Mutex
	failures     [numStoreErrorClasses]uint64
	failing      bool
	commitFailed bool // a commit failed in this failure
	since        time.Time
	lastErr      string
	loggedAt     time.Time
	unlogged     uint64 // failed writes since the last log line
	failed       uint64 // failed writes in this failure
}

// wrote records the outcome of one store write op (err nil: it succeeded).
func (h *storeHealth) wrote(log *slog.Logger, op string, err error) {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		if h.failing && (op == opCommit || !h.commitFailed) {
			log.Info("store writes recovered", slog.String("op", op),
				slog.Duration("failed_for", now.Sub(h.since).Round(time.Millisecond)),
				slog.Uint64("failed_writes", h.failed), slog.String("last_error", h.lastErr))
			h.failing, h.commitFailed = false, false
		}
		return
	}
	class := ClassifyStoreError(err)
	h.failures[class]++
	h.lastErr = err.Error()
	h.commitFailed = h.commitFailed || op == opCommit
	if !h.failing {
		h.failing, h.since, h.loggedAt, h.unlogged, h.failed = true, now, now, 0, 1
		log.Warn("store writes failing; agents keep their results and retry", slog.String("op", op),
			slog.String("class", class.String()), slog.Any("error", err),
			slog.Duration("retry_after", DefaultStoreRetryAfter))
		return
	}
	h.failed++
	h.unlogged++
	if now.Sub(h.loggedAt) >= StoreLogEvery {
		log.Warn("store writes still failing", slog.String("op", op), slog.String("class", class.String()),
			slog.Any("error", err), slog.Duration("failing_for", now.Sub(h.since).Round(time.Second)),
			slog.Uint64("failed_writes", h.unlogged))
		h.loggedAt, h.unlogged = now, 0
	}
}

// snapshot fills Stats' store fields.
func (h *storeHealth) snapshot(st *Stats) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st.StoreFailures = h.failures
	if h.failing {
		st.StoreFailing, st.StoreFailingSince, st.StoreError = true, h.since, h.lastErr
	}
}
