package verdict

import (
	"cmp"
	"slices"
)

// Per (vantage, target, round) flags.
const (
	fSeen    byte = 1 << iota // a result that is evidence (not ERROR)
	fUp                       // some result was up
	fICMP                     // an ICMP echo result that is evidence
	fICMPUp                   // an ICMP echo reply
	fOtherUp                  // TCP answered
	fUnreach                  // an ICMP destination unreachable came back
)

// row is one vantage's results in one round. buf holds five per-target
// arrays: flags, then per probe family (ICMP, other) packets sent
// (attempts, saturating) and answered results.
type row struct {
	buf              []byte
	flags            []byte
	pk, rp           [2][]byte // [famICMP|famOther][target]
	hostSeen, hostUp int       // distinct host targets with a result / up
	results          uint32    // results accepted (early close)
}

// roundBuf is one open round: a row per vantage that reported in it, and
// the SentAt bounds per target. A row's buffer comes from the engine's
// pool (alloc, release), so buffers are reused from round to round.
type roundBuf struct {
	n                int64
	rows             []*row  // by agent index; nil: no report
	minSent, maxSent []int64 // per target, Unix ns; 0: none
	obs              uint64  // observations accepted
}

// buffer returns the open round n, creating it if n is acceptable.
func (e *Engine) buffer(n int64) *roundBuf {
	if c := e.cache; c != nil && c.n == n {
		return c
	}
	switch {
	case n < 0:
		e.stats.NegativeRound++
		return nil
	case e.started && n < e.next:
		e.stats.TooOld++
		return nil
	case n > e.maxRound() || (e.clockKnown && n > e.roundOf(e.now)+futureRounds):
		e.stats.TooNew++
		return nil
	}
	for _, rb := range e.open {
		if rb.n == n {
			e.cache = rb
			return rb
		}
	}
	if !e.started && len(e.open) >= MaxOpenRounds {
		// Re-feeding history before the first Evaluate: keep the newest
		// rounds, they are the ones about to close.
		oldest := slices.MinFunc(e.open, func(a, b *roundBuf) int { return cmp.Compare(a.n, b.n) })
		if oldest.n > n {
			e.stats.TooOld++
			return nil
		}
		e.take(oldest.n)
		e.stats.TooOld += oldest.obs
		e.drop(oldest)
	}
	if e.started && len(e.open) >= e.maxOpen() {
		e.stats.TooNew++
		return nil
	}
	rb := &roundBuf{n: n, minSent: make([]int64, len(e.targets)), maxSent: make([]int64, len(e.targets))}
	e.open = append(e.open, rb)
	e.cache = rb
	return rb
}

func (e *Engine) maxOpen() int {
	return min(MaxOpenRounds, int((e.grace+e.roundLen-1)/e.roundLen)+futureRounds+2)
}

func (e *Engine) alloc() *row {
	nt := len(e.targets)
	var b []byte
	if n := len(e.free); n > 0 {
		b = e.free[n-1]
		e.free = e.free[:n-1]
		clear(b)
	} else {
		b = make([]byte, 5*nt)
	}
	part := func(i int) []byte { return b[i*nt : (i+1)*nt : (i+1)*nt] }
	return &row{buf: b, flags: part(0), pk: [2][]byte{part(1), part(2)}, rp: [2][]byte{part(3), part(4)}}
}

// Probe families: availability is learned per family, so a port that never
// answers does not make echo misses look like noise.
const (
	famICMP = iota
	famOther
)

func fam(isICMP bool) int {
	if isICMP {
		return famICMP
	}
	return famOther
}

func (e *Engine) release(r *row) {
	if r != nil && len(e.free) < 2*MaxOpenRounds {
		e.free = append(e.free, r.buf)
	}
}

// take removes round n from the open rounds.
func (e *Engine) take(n int64) *roundBuf {
	for i, rb := range e.open {
		if rb.n == n {
			e.open = slices.Delete(e.open, i, i+1)
			if e.cache == rb {
				e.cache = nil
			}
			return rb
		}
	}
	return nil
}

func (e *Engine) drop(rb *roundBuf) {
	for _, r := range rb.rows {
		e.release(r)
	}
}

func (e *Engine) hasOpen(n int64) bool {
	for _, rb := range e.open {
		if rb.n == n {
			return true
		}
	}
	return false
}
