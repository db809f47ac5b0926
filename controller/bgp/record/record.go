// Package record puts BGP evidence on disk, and back. The routing view
// (bgp.RIB) lives in memory and keeps hours; an operator asks what was
// withdrawn last week, a replay needs the updates of its window, and a
// restarted controller must not start blind. So every update and session
// event a source delivers goes to the RIB at once (the verdicts read it
// live) and to the store in batches, off the source's goroutine: a
// collector must never wait on SQLite, and when the store falls behind
// the recorder drops (and counts) rather than blocks. Load is the way
// back: the same stored updates give the same RIB.
package record

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Defaults for the zero values of Options.
const (
	DefaultQueue      = 10000
	DefaultFlushEvery = time.Second
	DefaultFlushItems = 1000
	// flushTimeout bounds the last flush after Run's ctx ended.
	flushTimeout = 10 * time.Second
)

// Store is where the recorder writes (store.BGPStore's AddBGP).
type Store interface {
	AddBGP(ctx context.Context, us []*vantagev1.BgpUpdate, es []store.BGPPeerEvent, audit store.AuditEntry) error
}

// Options configure a Recorder. Store and RIB are required.
type Options struct {
	Store Store
	RIB   *bgp.RIB
	Log   *slog.Logger
	// Queue bounds the updates and events waiting for the store; past it
	// they are dropped (counted, logged once per flush). Default 10,000.
	Queue int
	// A batch is written every FlushEvery, or as soon as FlushItems wait.
	// Defaults 1 s and 1,000.
	FlushEvery time.Duration
	FlushItems int
}

// Stats are the recorder's counters since it started.
type Stats struct {
	// Updates the RIB kept and the store wrote; Skipped: updates of no
	// monitored prefix (neither kept nor stored).
	Updates, Skipped uint64
	// PeerEvents written.
	PeerEvents uint64
	// Dropped: updates and events lost to a full queue or a failed write.
	Dropped uint64
	// WriteFailures: batches the store refused.
	WriteFailures uint64
}

// item is one update or one peer event.
type item struct {
	u *vantagev1.BgpUpdate
	e store.BGPPeerEvent
}

// Recorder is a bgp.Sink that applies to its RIB and records to its
// store; Run writes the batches. It is safe for concurrent use.
type Recorder struct {
	opts  Options
	log   *slog.Logger
	queue chan item

	updates, skipped, events, dropped, failures atomic.Uint64
	reported                                    uint64 // drops already logged; Run's
}

var _ bgp.Sink = (*Recorder)(nil)

// New returns a Recorder; call Run to write what it queues.
func New(opts Options) *Recorder {
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	if opts.FlushItems <= 0 {
		opts.FlushItems = DefaultFlushItems
	}
	r := &Recorder{opts: opts, log: opts.Log, queue: make(chan item, opts.Queue)}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// RIB is the routing view the recorder applies to.
func (r *Recorder) RIB() *bgp.RIB { return r.opts.RIB }

// Update applies u to the RIB and, if the RIB kept it, queues it for the
// store. It never blocks.
func (r *Recorder) Update(u bgp.Update) {
	if !r.opts.RIB.Apply(u) {
		r.skipped.Add(1)
		return
	}
	r.enqueue(item{u: u.Proto()})
}

// PeerState applies e to the RIB and queues it for the store.
func (r *Recorder) PeerState(e bgp.PeerEvent) {
	r.opts.RIB.PeerState(e)
	r.enqueue(item{e: PeerEvent(e)})
}

func (r *Recorder) enqueue(it item) {
	select {
	case r.queue <- it:
	default:
		r.dropped.Add(1)
	}
}

// Stats returns the counters.
func (r *Recorder) Stats() Stats {
	return Stats{Updates: r.updates.Load(), Skipped: r.skipped.Load(), PeerEvents: r.events.Load(),
		Dropped: r.dropped.Load(), WriteFailures: r.failures.Load()}
}

// Run writes the queued updates and events until ctx ends, then writes
// what is still queued and returns nil. Only one Run may run at a time.
func (r *Recorder) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.FlushEvery)
	defer t.Stop()
	batch := make([]item, 0, r.opts.FlushItems)
	for {
		select {
		case <-ctx.Done():
			r.drain(batch)
			return nil
		case it := <-r.queue:
			if batch = append(batch, it); len(batch) >= r.opts.FlushItems {
				batch = r.flush(ctx, batch)
			}
		case <-t.C:
			batch = r.flush(ctx, batch)
		}
	}
}

// drain writes batch and everything queued, in batches, under a fresh
// deadline: ctx has ended.
func (r *Recorder) drain(batch []item) {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	for {
		select {
		case it := <-r.queue:
			if batch = append(batch, it); len(batch) >= r.opts.FlushItems {
				batch = r.flush(ctx, batch)
			}
		default:
			r.flush(ctx, batch)
			return
		}
	}
}

// flush writes batch in one transaction and returns it emptied. A failed
// write is logged and its items counted as dropped: the RIB has them, and
// holding them would only grow the queue behind a failing disk.
func (r *Recorder) flush(ctx context.Context, batch []item) []item {
	if d := r.dropped.Load(); d > r.reported {
		r.log.Warn("BGP recorder queue full; updates dropped from the store", slog.Uint64("dropped", d-r.reported),
			slog.Int("queue", r.opts.Queue))
		r.reported = d
	}
	if len(batch) == 0 {
		return batch
	}
	var us []*vantagev1.BgpUpdate
	var es []store.BGPPeerEvent
	for _, it := range batch {
		if it.u != nil {
			us = append(us, it.u)
		} else {
			es = append(es, it.e)
		}
	}
	// A batch taken from the queue is written even if Run's ctx ends
	// meanwhile (a write cut short would lose it), within flushTimeout.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	if err := r.opts.Store.AddBGP(wctx, us, es, store.AuditEntry{}); err != nil {
		r.failures.Add(1)
		r.dropped.Add(uint64(len(batch)))
		r.reported += uint64(len(batch)) // logged here
		r.log.Warn("BGP recorder write failed", slog.Int("updates", len(us)), slog.Int("peer_events", len(es)), slog.Any("error", err))
	} else {
		r.updates.Add(uint64(len(us)))
		r.events.Add(uint64(len(es)))
	}
	clear(batch)
	return batch[:0]
}

// PeerEvent is e as stored.
func PeerEvent(e bgp.PeerEvent) store.BGPPeerEvent {
	return store.BGPPeerEvent{At: e.At, Peer: e.Peer.String(), PeerAS: e.PeerAS, Source: e.Source, Up: e.Up, FullFeed: e.FullFeed}
}

// FromStored is the stored event e as a bgp.PeerEvent.
func FromStored(e store.BGPPeerEvent) (bgp.PeerEvent, error) {
	a, err := netip.ParseAddr(e.Peer)
	if err != nil {
		return bgp.PeerEvent{}, fmt.Errorf("peer event: peer: %w", err)
	}
	return bgp.PeerEvent{At: e.At, Peer: a, PeerAS: e.PeerAS, Source: e.Source, Up: e.Up, FullFeed: e.FullFeed}, nil
}
