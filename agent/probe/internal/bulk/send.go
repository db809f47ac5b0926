package bulk

// Sending: slots and cookies for queued jobs, the probes encoded and
// written in paced batches.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
)

// sendLoop takes jobs (retries first), gives each a slot and a cookie,
// and writes them in batches paced by the token bucket. It takes a whole
// batch under one lock, and waits only when there is nothing to send or
// no free slot.
func (mx *Mux) sendLoop(ctx context.Context, conns [2]Conn) error {
	s := mx.newSender(conns)
	for {
		s.take()
		for _, j := range s.unsendable {
			mx.finishErr(j, fmt.Errorf("target %s: %s has no socket for this address family", j.Addr, mx.cfg.EngineName))
		}
		if len(s.batch) == 0 {
			if len(s.unsendable) > 0 {
				continue
			}
			// Nothing queued, or no free slot: wait for either to change.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-mx.kick:
			}
			continue
		}
		n := s.encode()
		if n == 0 {
			continue
		}
		if err := mx.pace(ctx, n); err != nil {
			s.releaseAll(ErrClosed)
			return err
		}
		s.stamp(time.Now()) // send time: right before the write
		if err := s.write(ctx); err != nil {
			return err
		}
	}
}

// sender is the state of one send loop: its sockets, with the messages
// being written to each, and the batch in hand.
type sender struct {
	mx         *Mux
	fams       [2]*sendFamily // nil: no socket for the family
	batch      []taken
	unsendable []*Job // no socket for the family
}

// sendFamily is one family's socket and the jobs encoded for it.
type sendFamily struct {
	conn Conn
	msgs []rawsock.Message
	jobs []*Job
	idx  []uint32
}

// taken is a job given a slot and a cookie.
type taken struct {
	j      *Job
	idx    uint32
	cookie uint64
}

func (mx *Mux) newSender(conns [2]Conn) *sender {
	s := &sender{mx: mx, batch: make([]taken, 0, batchSize)}
	for i, c := range conns {
		if c == nil {
			continue
		}
		f := &sendFamily{conn: c, msgs: make([]rawsock.Message, batchSize), jobs: make([]*Job, 0, batchSize), idx: make([]uint32, 0, batchSize)}
		for k := range f.msgs {
			f.msgs[k].Buffers = [][]byte{make([]byte, txBufSize)}
			f.msgs[k].Addr = &net.IPAddr{IP: make(net.IP, 0, net.IPv6len)}
		}
		s.fams[i] = f
	}
	return s
}

// take takes up to a burst: retries first, then the queue, each with a
// free slot, under one lock. Jobs of a family without a socket go to
// unsendable instead.
func (s *sender) take() {
	mx := s.mx
	s.batch, s.unsendable = s.batch[:0], s.unsendable[:0]
	mx.mu.Lock()
	for len(s.batch) < mx.burst && len(mx.free) > 0 {
		var j *Job
		if len(mx.retry) > 0 {
			j = mx.retry[0]
			mx.retry[0] = nil
			if mx.retry = mx.retry[1:]; len(mx.retry) == 0 {
				mx.retry = nil // let the backing array go
			}
		} else if j = mx.queue.pop(); j == nil {
			break
		}
		if s.fams[familyOf(j.Addr)] == nil {
			s.unsendable = append(s.unsendable, j)
			continue
		}
		idx, cookie := mx.alloc(j)
		s.batch = append(s.batch, taken{j, idx, cookie})
	}
	room := mx.waiters > 0 && mx.queue.len() <= queueCap/2
	more := len(mx.sends) > 1 && len(mx.free) > 0 && (mx.queue.len() > 0 || len(mx.retry) > 0)
	mx.mu.Unlock()
	if room {
		signal(mx.space)
	}
	if more {
		signal(mx.kick) // another sender may take the rest
	}
}

// encode writes the batch's probes into their families' messages and
// returns how many there are; a job that does not encode ends in ERROR.
func (s *sender) encode() int {
	n := 0
	for _, t := range s.batch {
		f := s.fams[familyOf(t.j.Addr)]
		m := &f.msgs[len(f.jobs)]
		buf := m.Buffers[0][:cap(m.Buffers[0])]
		k, err := s.mx.cfg.Encode(buf, t.j, t.idx, t.cookie)
		if err != nil {
			s.mx.release(t.idx, t.j, err)
			continue
		}
		m.Buffers[0] = buf[:k]
		ip := m.Addr.(*net.IPAddr)
		if t.j.Addr.Is4() {
			a := t.j.Addr.As4()
			ip.IP = append(ip.IP[:0], a[:]...)
		} else {
			a := t.j.Addr.As16()
			ip.IP = append(ip.IP[:0], a[:]...)
		}
		f.jobs = append(f.jobs, t.j)
		f.idx = append(f.idx, t.idx)
		n++
	}
	return n
}

// releaseAll ends every encoded job with err and frees its slot.
func (s *sender) releaseAll(err error) {
	for _, f := range s.fams {
		if f == nil {
			continue
		}
		for k, j := range f.jobs {
			s.mx.release(f.idx[k], j, err)
		}
		f.jobs, f.idx = f.jobs[:0], f.idx[:0]
	}
}

// stamp records now as the send time of every encoded job, and its
// deadline.
func (s *sender) stamp(now time.Time) {
	mx := s.mx
	mx.mu.Lock()
	defer mx.mu.Unlock()
	for _, f := range s.fams {
		if f == nil {
			continue
		}
		for k, j := range f.jobs {
			sl := &mx.slots[f.idx[k]]
			sl.sent = now
			j.lastSent = now
			j.res.Attempts++
			if j.res.SentAt == nil {
				j.res.SentAt = j.sentAt(now)
			}
			mx.pushDeadline(now.Add(j.Timeout), f.idx[k], sl.cookie, false)
		}
	}
}

// write sends every family's messages; a packet the socket refuses (e.g.
// no route) ends its probe in ERROR and the rest of the batch goes on.
func (s *sender) write(ctx context.Context) error {
	for _, f := range s.fams {
		if f == nil || len(f.jobs) == 0 {
			continue
		}
		ms := f.msgs[:len(f.jobs)]
		for off := 0; off < len(ms); {
			n, err := f.conn.WriteBatch(ms[off:])
			s.mx.sent.Add(uint64(max(n, 0)))
			off += max(n, 0)
			if err == nil && n <= 0 {
				err = errors.New("sendmmsg sent nothing")
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.mx.release(f.idx[off], f.jobs[off], fmt.Errorf("send to %s: %w", f.jobs[off].Addr, err))
				off++
			}
		}
		f.jobs, f.idx = f.jobs[:0], f.idx[:0]
	}
	return nil
}

// familyOf indexes the send sockets: 0 for IPv4, 1 for IPv6.
func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func (mx *Mux) pace(ctx context.Context, n int) error {
	if mx.lim != nil {
		if err := mx.lim.WaitN(ctx, n); err != nil {
			return err
		}
	}
	if mx.cfg.Limiter != nil {
		for range n {
			if err := mx.cfg.Limiter.Wait(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// alloc takes a free slot for j and draws its cookie; mx.mu is held and
// a slot is free.
func (mx *Mux) alloc(j *Job) (uint32, uint64) {
	idx := mx.free[len(mx.free)-1]
	mx.free = mx.free[:len(mx.free)-1]
	mx.inflight.Add(1)
	mx.ctr++
	c := mx.key.Cookie(j.Addr, j.Port, idx, mx.ctr)
	mx.slots[idx] = slot{job: j, cookie: c, busy: true}
	return idx, c
}

// putFree returns a slot to the free list; mx.mu is held.
func (mx *Mux) putFree(idx uint32) {
	mx.free = append(mx.free, idx)
	mx.inflight.Add(-1)
}

// release frees a slot whose probe failed locally and ends the job.
func (mx *Mux) release(idx uint32, j *Job, err error) {
	mx.mu.Lock()
	mx.slots[idx] = slot{}
	mx.putFree(idx)
	mx.mu.Unlock()
	signal(mx.kick)
	mx.finishErr(j, err)
}
