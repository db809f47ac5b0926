package bulk

// The sweep API (probe.Sweeper): a stream of tasks in, one result per task out.

import (
	"context"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Run is the sweep API: it submits every task from tasks (after prepare
// turns it into a job, or reports why it cannot run) and calls emit once
// per task, from the caller's goroutine. It returns when tasks is closed
// and every result is out, or when ctx ends.
func (mx *Mux) Run(ctx context.Context, tasks <-chan *vantagev1.Task,
	prepare func(t *vantagev1.Task, res *vantagev1.ProbeResult) (*Job, error),
	emit func(*vantagev1.ProbeResult)) error {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &batchRun{mx: mx, ctx: fctx, prepare: prepare,
		results: make(chan *vantagev1.ProbeResult, batchSize*8), fed: make(chan struct{})}
	var eg errgroup.Group
	eg.Go(func() error { r.feed(tasks); return nil })
	defer func() { cancel(); _ = eg.Wait() }()
	return r.collect(ctx, emit)
}

// batchRun is one Run: the feeder turns tasks into jobs, the caller's
// goroutine collects their results.
type batchRun struct {
	mx       *Mux
	ctx      context.Context // ends the feeder and the jobs' deliveries
	prepare  func(t *vantagev1.Task, res *vantagev1.ProbeResult) (*Job, error)
	results  chan *vantagev1.ProbeResult
	inflight atomic.Int64  // tasks taken whose result is not out yet
	fed      chan struct{} // closed when the feeder is done
}

// done is every job's result callback. Jobs still in the Mux when Run
// gives up end into the void.
func (r *batchRun) done(res *vantagev1.ProbeResult) {
	select {
	case r.results <- res:
	case <-r.ctx.Done():
	}
}

// feed submits the tasks' jobs in batches: one lock and at most one
// wake-up of the sender per batch, not per task. A batch goes as soon as
// the stream of tasks pauses.
func (r *batchRun) feed(tasks <-chan *vantagev1.Task) {
	defer close(r.fed)
	batch := make([]*Job, 0, batchSize*2)
	submit := func() {
		n, err := r.mx.submit(r.ctx, batch)
		for _, j := range batch[n:] {
			r.mx.finishErr(j, err)
		}
		clear(batch)
		batch = batch[:0]
	}
	for {
		var t *vantagev1.Task
		var ok bool
		if len(batch) == 0 {
			select {
			case <-r.ctx.Done():
				return
			case t, ok = <-tasks:
			}
		} else {
			select {
			case t, ok = <-tasks:
			default:
				submit() // the stream paused: send what we have
				continue
			}
		}
		if !ok {
			submit()
			return
		}
		if j := r.job(t); j != nil {
			if batch = append(batch, j); len(batch) == cap(batch) {
				submit()
			}
		}
	}
}

// job prepares t's job, or delivers its ERROR result (nil) when prepare
// refuses it.
func (r *batchRun) job(t *vantagev1.Task) *Job {
	r.inflight.Add(1)
	res := &vantagev1.ProbeResult{TaskId: t.GetId(), Target: t.GetTarget(), Kind: t.GetKind(), Engine: r.mx.cfg.EngineName}
	j, err := r.prepare(t, res)
	if err != nil {
		res.Outcome = vantagev1.Outcome_OUTCOME_ERROR
		res.Error = err.Error()
		r.done(res)
		return nil
	}
	j.done = r.done
	return j
}

// collect emits results until the feeder is done and every result is
// out, or ctx ends.
func (r *batchRun) collect(ctx context.Context, emit func(*vantagev1.ProbeResult)) error {
	fedDone := r.fed
	for {
		if fedDone == nil && r.inflight.Load() == 0 {
			return nil
		}
		select {
		case res := <-r.results: // the common case, without selectgo
			r.inflight.Add(-1)
			emit(res)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case res := <-r.results:
			r.inflight.Add(-1)
			emit(res)
		case <-fedDone:
			fedDone = nil
		}
	}
}
