package bulk

// Deadlines: a heap of probe timeouts and retry times, expired by the
// timer loop.

import (
	"context"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// timerSlack is the least time between two runs of the timer loop.
const timerSlack = 2 * time.Millisecond

// timerLoop expires deadlines: a miss is retried (within the task's
// retries and budget) or ends the job with TIMEOUT.
func (mx *Mux) timerLoop(ctx context.Context) error {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var rb *rxBuf
	for {
		mx.mu.Lock()
		due := mx.dl.Len() > 0 && mx.dl[0].at <= mx.mono(time.Now())
		mx.mu.Unlock()
		if due {
			if rb == nil {
				rb = newRxBuf()
			}
			mx.drain(rb)
		}
		now := time.Now()
		var done []*Job
		mx.mu.Lock()
		for mx.dl.Len() > 0 && mx.dl[0].at <= mx.mono(now) {
			d := mx.dl.pop()
			s := &mx.slots[d.slot]
			if d.retry {
				mx.retry = append(mx.retry, s.job)
				*s = slot{}
				mx.putFree(d.slot)
				signal(mx.kick)
				continue
			}
			if !s.busy || s.cookie != d.cookie {
				continue // answered meanwhile
			}
			j := s.job
			if int(j.res.Attempts) <= j.Retries {
				mx.timedOut.Add(1)
				if gap := j.lastSent.Add(mx.cfg.MinGap); gap.After(now) {
					// Per-target budget: keep the slot until the retry may go.
					s.cookie = 0
					s.sent = time.Time{}
					mx.pushDeadline(gap, d.slot, 0, true)
					continue
				}
				mx.retry = append(mx.retry, j)
			} else {
				mx.timedOut.Add(1)
				j.res.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT
				done = append(done, j)
			}
			*s = slot{}
			mx.putFree(d.slot)
			signal(mx.kick)
		}
		next := time.Hour
		if mx.dl.Len() > 0 {
			// Deadlines of answered probes stay in the heap until their
			// time; on a long sweep they come microseconds apart, so
			// wake-ups are coalesced (a timeout may end timerSlack late).
			next = max(time.Duration(mx.dl[0].at-mx.mono(now)), timerSlack)
		}
		mx.mu.Unlock()
		for _, j := range done {
			j.done(j.res)
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-mx.tmo:
		}
	}
}

// mono is t as nanoseconds on the Mux's monotonic clock (cheap to
// compare in the deadline heap).
func (mx *Mux) mono(t time.Time) int64 { return int64(t.Sub(mx.epoch)) }

// pushDeadline adds a deadline; mx.mu is held.
func (mx *Mux) pushDeadline(at time.Time, idx uint32, cookie uint64, retry bool) {
	if n := len(mx.dl); n >= compactMin && n >= 4*int(mx.inflight.Load()) {
		mx.compactDeadlines()
	}
	d := deadline{at: mx.mono(at), slot: idx, cookie: cookie, retry: retry}
	mx.dl.push(d)
	if mx.dl[0].slot == idx && mx.dl[0].at == d.at {
		signal(mx.tmo)
	}
}

// compactMin is the heap size from which answered probes' deadlines are
// dropped, once they are three quarters of it.
const compactMin = 4096

// compactDeadlines drops the deadlines of probes that were answered (on a
// sweep nearly all of them, which would otherwise stay until their time:
// 65,536 for a /16) and restores the heap order; mx.mu is held.
func (mx *Mux) compactDeadlines() {
	live := mx.dl[:0]
	for _, d := range mx.dl {
		if s := &mx.slots[d.slot]; d.retry || s.busy && s.cookie == d.cookie {
			live = append(live, d)
		}
	}
	clear(mx.dl[len(live):])
	mx.dl = live
	mx.dl.heapify()
}

type deadline struct {
	at     int64 // Mux.mono
	slot   uint32
	cookie uint64
	retry  bool
}

// deadlines is a min-heap by time (typed, so that pushing and popping
// allocate nothing).
type deadlines []deadline

func (d deadlines) Len() int { return len(d) }

func (d *deadlines) push(x deadline) {
	h := append(*d, x)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[i].at >= h[p].at {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	*d = h
}

func (d *deadlines) pop() deadline {
	h := *d
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	h.down(0)
	*d = h
	return top
}

// heapify restores the heap order of any slice (Floyd).
func (d deadlines) heapify() {
	for i := len(d)/2 - 1; i >= 0; i-- {
		d.down(i)
	}
}

// down moves d[i] down to its place.
func (d deadlines) down(i int) {
	h := d
	for {
		l, m := 2*i+1, i
		if l < len(h) && h[l].at < h[m].at {
			m = l
		}
		if r := l + 1; r < len(h) && h[r].at < h[m].at {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
