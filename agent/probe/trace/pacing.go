package trace

// Pacing: every probe waits in the queue of the router predicted to answer
// it, and the one sender releases them through a global token bucket and
// one bucket per router, lowest TTL first.

import (
	"net/netip"
	"slices"
	"time"

	"golang.org/x/time/rate"
)

// routerKey names a pacing bucket: a router address, or while the router
// is unknown, (destination prefix, TTL); TTL 1 is the first hop for all.
type routerKey struct {
	addr netip.Addr
	ttl  uint8
}

type routerQ struct {
	key    routerKey
	lim    *rate.Limiter // nil: unpaced
	items  []pending
	head   int
	queued bool // in Tracer.active
}

type pending struct {
	tr  *traceState
	ttl uint8
}

// enqueue queues tr's probes for TTL lo..hi in their routers' queues.
func (tc *Tracer) enqueue(tr *traceState, lo, hi int) {
	var ttls []int
	for ttl := lo; ttl <= hi; ttl++ {
		ttls = append(ttls, ttl)
	}
	tc.enqueueTTLs(tr, ttls)
}

func (tc *Tracer) enqueueTTLs(tr *traceState, ttls []int) {
	if len(ttls) == 0 {
		return
	}
	keys := make([]routerKey, len(ttls))
	tc.mu.Lock()
	for i, ttl := range ttls {
		keys[i] = tc.routerFor(tr.id.dst, uint8(ttl))
	}
	tr.nQueued += len(ttls)
	tc.mu.Unlock()

	tc.qmu.Lock()
	for i, ttl := range ttls {
		q := tc.queues[keys[i]]
		if q == nil {
			q = &routerQ{key: keys[i], lim: newLimiter(tc.cfg.RouterPPS, tc.cfg.RouterBurst)}
			tc.queues[keys[i]] = q
		}
		q.items = append(q.items, pending{tr: tr, ttl: uint8(ttl)})
		if !q.queued {
			q.queued = true
			tc.active = append(tc.active, q)
		}
	}
	tc.qmu.Unlock()
	select {
	case tc.wake <- struct{}{}:
	default:
	}
}

func prefixOf(a netip.Addr) netip.Prefix {
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, _ := a.Prefix(bits)
	return p
}

// routerFor predicts the pacing bucket of the probe to dst with ttl: the
// router seen at that TTL towards dst's prefix, the destination itself at or
// beyond its known distance, else (prefix, TTL). TTL 1 is the first-hop
// router for every destination of a family. Called with tc.mu held.
func (tc *Tracer) routerFor(dst netip.Addr, ttl uint8) routerKey {
	p := prefixOf(dst)
	if n, ok := tc.dist[dst]; ok && ttl >= n {
		return routerKey{addr: dst}
	}
	if a, ok := tc.path[pathKey{p, ttl}]; ok {
		return routerKey{addr: a}
	}
	if ttl == 1 {
		if dst.Is6() {
			return routerKey{addr: netip.IPv6Unspecified(), ttl: 1}
		}
		return routerKey{addr: netip.IPv4Unspecified(), ttl: 1}
	}
	return routerKey{addr: p.Addr(), ttl: ttl}
}

// learn remembers who answered at ttl towards dst. Called with tc.mu held.
func (tc *Tracer) learn(dst netip.Addr, ttl uint8, from netip.Addr, final uint8) {
	if len(tc.path) >= pathCacheCap {
		clear(tc.path)
	}
	if len(tc.dist) >= pathCacheCap {
		clear(tc.dist)
	}
	p := prefixOf(dst)
	if final == finalDest {
		tc.dist[dst] = ttl
		return
	}
	tc.path[pathKey{p, ttl}] = from
}

// sendLoop is the only sender: it releases queued probes as the global and
// per-router buckets allow, in batches.
func (tc *Tracer) sendLoop() {
	defer tc.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var bufs [2][batchSize][hdr6 + 64]byte
	var out [2][]outPacket
	var trs [2][]pending
	for {
		wait := tc.sendReady(&bufs, &out, &trs)
		if wait < 0 {
			select {
			case <-tc.wake:
			case <-tc.stop:
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-tc.wake:
		case <-timer.C:
		case <-tc.stop:
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// sendReady sends every probe the buckets allow now and returns how long
// until the next one may go (-1: nothing queued).
func (tc *Tracer) sendReady(bufs *[2][batchSize][hdr6 + 64]byte, out *[2][]outPacket, trs *[2][]pending) time.Duration {
	for {
		now := time.Now()
		var batch []pending
		wait := time.Duration(-1)
		tc.qmu.Lock()
		// Lowest TTLs first: when many traces start at once, the probes
		// near the vantage go first, and by the time the high TTLs' turn
		// comes, traces that reached their destination have dropped them.
		slices.SortStableFunc(tc.active, func(a, b *routerQ) int {
			return int(a.items[a.head].ttl) - int(b.items[b.head].ttl)
		})
		keep := tc.active[:0]
		for _, q := range tc.active {
			for q.head < len(q.items) && len(batch) < batchSize {
				p := q.items[q.head]
				if tc.isFinished(p.tr) {
					q.items[q.head] = pending{}
					q.head++
					tc.dropped(p.tr)
					continue
				}
				if d, ok := tokenWait(q.lim, now); !ok {
					wait = minWait(wait, d)
					break
				}
				if d, ok := tokenWait(tc.global, now); !ok {
					wait = minWait(wait, d)
					break
				}
				if q.lim != nil {
					q.lim.AllowN(now, 1)
				}
				if tc.global != nil {
					tc.global.AllowN(now, 1)
				}
				q.items[q.head] = pending{}
				q.head++
				batch = append(batch, p)
			}
			if q.head < len(q.items) {
				if len(batch) >= batchSize {
					wait = 0
				}
				if q.head > len(q.items)/2 { // a queue fed while it drains
					n := copy(q.items, q.items[q.head:])
					clear(q.items[n:])
					q.items, q.head = q.items[:n], 0
				}
				keep = append(keep, q)
				continue
			}
			q.items, q.head, q.queued = q.items[:0], 0, false
		}
		clear(tc.active[len(keep):])
		tc.active = keep
		if now.Sub(tc.swept) > time.Second {
			// Forget idle routers whose bucket is full again: they
			// would start from a full bucket anyway.
			tc.swept = now
			for k, q := range tc.queues {
				if !q.queued && (q.lim == nil || q.lim.TokensAt(now) >= float64(q.lim.Burst())) {
					delete(tc.queues, k)
				}
			}
		}
		tc.qmu.Unlock()
		if len(batch) == 0 {
			return wait
		}
		tc.write(batch, bufs, out, trs)
		if wait != 0 {
			return wait
		}
	}
}

// newLimiter is a token bucket, or nil (unpaced) for a negative rate.
func newLimiter(pps float64, burst int) *rate.Limiter {
	if pps < 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(pps), burst)
}

// tokenWait reports whether lim has a token now, else how long until it
// has one. A nil lim always has one.
func tokenWait(lim *rate.Limiter, now time.Time) (time.Duration, bool) {
	if lim == nil {
		return 0, true
	}
	tok := lim.TokensAt(now)
	if tok >= 1 {
		return 0, true
	}
	return time.Duration((1 - tok) / float64(lim.Limit()) * float64(time.Second)), false
}

func minWait(a, b time.Duration) time.Duration {
	b = max(b, time.Microsecond)
	if a < 0 || b < a {
		return b
	}
	return a
}
