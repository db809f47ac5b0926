package bulk

// The queue: jobs submitted and not yet given a slot, bounded, with
// submitters waiting for room.

import (
	"context"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Submit queues j; it blocks while the queue is full.
func (mx *Mux) Submit(ctx context.Context, j *Job) error {
	one := [1]*Job{j}
	_, err := mx.submit(ctx, one[:])
	return err
}

// Probe runs j alone (a kind's per-task Prober) and waits for its result.
// On an error, taken says whether the Mux had queued j: if so it still
// owns j's result, which it finishes and drops, and the caller reports
// the error on a result of its own.
func (mx *Mux) Probe(ctx context.Context, j *Job) (res *vantagev1.ProbeResult, taken bool, err error) {
	ch := make(chan *vantagev1.ProbeResult, 1)
	j.SetDone(func(r *vantagev1.ProbeResult) { ch <- r })
	if err := mx.Submit(ctx, j); err != nil {
		return nil, false, err
	}
	select {
	case r := <-ch:
		return r, true, nil
	case <-ctx.Done():
		return nil, true, ctx.Err()
	}
}

// queueCap bounds jobs submitted but not yet sent.
const queueCap = 1024

// submit queues jobs in order, blocking while the queue is full. It
// returns how many it queued: all of them unless it fails.
func (mx *Mux) submit(ctx context.Context, jobs []*Job) (int, error) {
	n := 0
	for {
		mx.mu.Lock()
		if mx.closed {
			mx.mu.Unlock()
			signal(mx.space) // pass the news on to the next waiter
			return n, ErrClosed
		}
		for n < len(jobs) && mx.queue.len() < queueCap {
			mx.queue.push(jobs[n])
			n++
		}
		roomLeft := mx.queue.len() < queueCap && mx.waiters > 0
		if n == len(jobs) {
			mx.mu.Unlock()
			signal(mx.kick)
			if roomLeft {
				signal(mx.space)
			}
			return n, nil
		}
		mx.waiters++
		mx.mu.Unlock()
		signal(mx.kick)
		select {
		case <-mx.space:
		case <-ctx.Done():
		}
		mx.mu.Lock()
		mx.waiters--
		mx.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return n, err
		}
	}
}

// jobRing is a FIFO of up to queueCap jobs.
type jobRing struct {
	buf     [queueCap]*Job
	head, n int
}

func (r *jobRing) len() int { return r.n }

func (r *jobRing) push(j *Job) {
	r.buf[(r.head+r.n)%queueCap] = j
	r.n++
}

func (r *jobRing) pop() *Job {
	if r.n == 0 {
		return nil
	}
	j := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % queueCap
	r.n--
	return j
}
