package spool

// The outbox: the agent's one ledger of what goes up to the controller.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Outbox defaults.
const (
	// DefaultBatchMax is the most results one batch carries.
	DefaultBatchMax = 500
	// DefaultStatusQueue bounds the task statuses waiting to be sent.
	DefaultStatusQueue = 1024
)

// OutboxOptions configure an Outbox; zero values take the defaults.
type OutboxOptions struct {
	// BatchMax is the most results Next hands out at once; Ready fires
	// once that many were submitted since the last Next.
	BatchMax int
	// StatusQueue bounds the task statuses waiting for the uplink.
	StatusQueue int
	Logger      *slog.Logger
}

// Outbox is the agent's one ledger of what it owes the controller. The
// scheduler submits results to it; it numbers each with the epoch's next
// sequence number and keeps it in its Store until acknowledged. The uplink
// takes batches from it (Next), which the Outbox remembers as in flight on
// the current stream, and hands it the controller's acks (Ack), which it
// matches against what is in flight before the Store forgets anything. A
// new stream starts with Resend: nothing sent before will be acked now, and
// everything unacknowledged goes again. Task statuses (refusals,
// fallbacks) queue beside the results, bounded and not kept on disk.
//
// Submit and ReportStatus may be called from any goroutine; Next, Ack and
// Resend come from the uplink's session (one stream at a time).
type Outbox struct {
	store    Store
	batchMax int
	log      *slog.Logger

	// submitMu makes "the store's last seq + 1" the seq of one result
	// at a time; the store checks the order too.
	submitMu sync.Mutex
	unsent   atomic.Int64  // results submitted since the last Next
	ready    chan struct{} // a full batch waits
	statuses chan *vantagev1.TaskStatus

	mu       sync.Mutex
	acked    Key          // highest key acknowledged
	inflight []sentBatch  // handed out on the current stream, not yet acked
	gapsSent map[Key]bool // (epoch, first_seq) of gaps handed out on the current stream
	ackedC   chan struct{}
}

// sentBatch is a batch handed out and not yet acknowledged.
type sentBatch struct {
	end  Key // the last result's key (zero for a gaps-only batch)
	gaps []*vantagev1.Gap
	at   time.Time
	// gapsOnly: a batch of gaps without results, acked with up_to_seq 0.
	gapsOnly bool
}

// NewOutbox keeps its results in store (a Disk in the daemon). The caller
// still owns store and closes it.
func NewOutbox(store Store, opts OutboxOptions) *Outbox {
	if opts.BatchMax <= 0 {
		opts.BatchMax = DefaultBatchMax
	}
	if opts.StatusQueue <= 0 {
		opts.StatusQueue = DefaultStatusQueue
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Outbox{
		store: store, batchMax: opts.BatchMax, log: opts.Logger,
		ready:    make(chan struct{}, 1),
		statuses: make(chan *vantagev1.TaskStatus, opts.StatusQueue),
		gapsSent: make(map[Key]bool),
		ackedC:   make(chan struct{}, 1),
	}
}

// Submit numbers r with the epoch's next sequence number and stores it.
// It never blocks on the network. A result the store refuses is logged and
// lost, and its seq stays free: the controller never sees a hole.
func (o *Outbox) Submit(r *vantagev1.ProbeResult) {
	o.submitMu.Lock()
	r.Seq = o.store.Last().Seq + 1
	err := o.store.Append(r)
	o.submitMu.Unlock()
	if err != nil {
		o.log.Error("spool append failed; result lost", slog.String("task_id", r.GetTaskId()), slog.Any("error", err))
		return
	}
	if o.unsent.Add(1) >= int64(o.batchMax) {
		signal(o.ready)
	}
}

// ReportStatus queues a TaskStatus (refusal or fallback) for the
// controller. Statuses are not kept: when the queue is full the newest is
// dropped.
func (o *Outbox) ReportStatus(s *vantagev1.TaskStatus) {
	select {
	case o.statuses <- s:
	default:
		o.log.Warn("task status dropped: queue full", slog.String("task_id", s.GetTaskId()))
	}
}

// Ready fires when a full batch waits to be sent.
func (o *Outbox) Ready() <-chan struct{} { return o.ready }

// Statuses delivers the queued task statuses.
func (o *Outbox) Statuses() <-chan *vantagev1.TaskStatus { return o.statuses }

// BatchMax is the most results one batch carries.
func (o *Outbox) BatchMax() int { return o.batchMax }

// Produced is the number of results numbered in this epoch (its last seq).
func (o *Outbox) Produced() uint64 { return o.store.Last().Seq }

// State describes the backlog for Hello and Heartbeat.
func (o *Outbox) State() *vantagev1.SpoolState { return o.store.State() }

// Acked is the highest (epoch, seq) the controller acknowledged.
func (o *Outbox) Acked() Key {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.acked
}

// Sent is the highest key handed out on the current stream, or the acked
// key when that is higher (nothing is ever sent again once acked).
func (o *Outbox) Sent() Key {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sentLocked()
}

func (o *Outbox) sentLocked() Key {
	k := o.acked
	for i := len(o.inflight) - 1; i >= 0; i-- {
		if b := o.inflight[i]; !b.gapsOnly {
			if b.end.Compare(k) > 0 {
				k = b.end
			}
			break
		}
	}
	return k
}

// Resend starts a new stream: nothing sent on an earlier one will be
// acked now, so everything unacknowledged is handed out again.
func (o *Outbox) Resend() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inflight = nil
	clear(o.gapsSent)
}

// Next hands out the next batch to send and records it as in flight: up
// to BatchMax contiguous results of one epoch after everything sent or
// acked, with the gaps not yet sent on this stream riding along. With no
// result to send but gaps to report it is a gaps-only batch (first_seq =
// last_seq = 0), so the controller hears of them now. It returns nil when
// there is nothing to send, and more when the batch is full (another may
// follow at once).
func (o *Outbox) Next() (b *vantagev1.ResultBatch, more bool, err error) {
	o.unsent.Store(0)
	after := o.Sent()
	sb, err := o.store.Read(after, o.batchMax)
	if err != nil {
		return nil, false, fmt.Errorf("read spool: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var gaps []*vantagev1.Gap
	for _, g := range sb.Gaps {
		if k := gapKey(g); !o.gapsSent[k] {
			o.gapsSent[k] = true
			gaps = append(gaps, g)
		}
	}
	now := time.Now()
	if len(sb.Results) == 0 {
		if len(gaps) == 0 {
			return nil, false, nil
		}
		o.inflight = append(o.inflight, sentBatch{gaps: gaps, at: now, gapsOnly: true})
		return &vantagev1.ResultBatch{Epoch: o.store.Last().Epoch, Gaps: gaps}, false, nil
	}
	o.inflight = append(o.inflight, sentBatch{end: sb.End(), gaps: gaps, at: now})
	b = &vantagev1.ResultBatch{Epoch: sb.Epoch, Results: sb.Results,
		FirstSeq: sb.Results[0].GetSeq(), LastSeq: sb.Results[len(sb.Results)-1].GetSeq(), Gaps: gaps}
	return b, len(sb.Results) >= o.batchMax, nil
}

func gapKey(g *vantagev1.Gap) Key { return Key{g.GetEpoch(), g.GetFirstSeq()} }

// Ack applies a controller's Ack: the batches in flight up to (epoch,
// up_to_seq) are forgotten by the store, with the gaps they carried (the
// ack of a gaps-only batch has up_to_seq 0: acks come in the order batches
// were sent, so it is the oldest in flight). An ack matching nothing in
// flight changes nothing (matched false): the agent never trusts an ack
// beyond what it sent. err is the store's: the results stay and are sent
// again.
func (o *Outbox) Ack(a *vantagev1.Ack) (matched bool, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, upTo, gaps := o.covered(Key{a.GetEpoch(), a.GetUpToSeq()})
	if n == 0 {
		return false, nil
	}
	o.inflight = o.inflight[n:]
	if err = o.store.Ack(upTo, gaps); err != nil {
		err = fmt.Errorf("spool ack: %w", err)
	}
	if upTo.Compare(o.acked) > 0 {
		o.acked = upTo
	}
	signal(o.ackedC)
	return true, err
}

// covered is how many batches in flight an ack up to key covers, the last
// result key among them and their gaps; o.mu is held.
func (o *Outbox) covered(key Key) (n int, upTo Key, gaps []*vantagev1.Gap) {
	if key.Seq == 0 {
		if len(o.inflight) > 0 && o.inflight[0].gapsOnly {
			return 1, Key{}, o.inflight[0].gaps
		}
		return 0, Key{}, nil
	}
	for n < len(o.inflight) && !o.inflight[n].gapsOnly && o.inflight[n].end.Compare(key) <= 0 {
		upTo = o.inflight[n].end
		gaps = append(gaps, o.inflight[n].gaps...)
		n++
	}
	return n, upTo, gaps
}

// OldestInFlight is when the oldest batch in flight was handed out and its
// last key (zero for gaps only); ok is false when nothing is in flight.
func (o *Outbox) OldestInFlight() (at time.Time, end Key, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.inflight) == 0 {
		return time.Time{}, Key{}, false
	}
	return o.inflight[0].at, o.inflight[0].end, true
}

// WaitAcked waits until every result sent on this stream is acknowledged
// (true) or ctx ends (false).
func (o *Outbox) WaitAcked(ctx context.Context) bool {
	for {
		o.mu.Lock()
		done := o.acked.Compare(o.sentLocked()) >= 0
		o.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-o.ackedC:
		case <-ctx.Done():
			return false
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
