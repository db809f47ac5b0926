package verdict

import (
	"slices"
	"strings"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Evaluate closes, in order, every round whose end + Grace <= now, then
// every further round that has started and is complete (ResultsPerRound),
// and returns the transitions they caused (ids 0).
func (e *Engine) Evaluate(now time.Time) []*vantagev1.Transition {
	e.setNow(now)
	nowNs := now.UnixNano()
	if !e.started {
		e.started = true
		cur := max(e.roundOf(nowNs), 0)
		first := cur
		kept := e.open[:0]
		for _, rb := range e.open {
			if rb.n > cur+futureRounds || rb.n < cur-MaxOpenRounds {
				if rb.n > cur {
					e.stats.TooNew += rb.obs
				} else {
					e.stats.TooOld += rb.obs
				}
				e.drop(rb)
				continue
			}
			kept = append(kept, rb)
			first = min(first, rb.n)
		}
		clear(e.open[len(kept):])
		e.open = kept
		e.cache = nil
		e.next = first
	}
	var out []*vantagev1.Transition
	last := e.roundOf(nowNs-e.grace) - 1 // the last closable round
	for e.next <= last && e.next <= e.maxRound() {
		n := e.next
		if e.lastIdle && !e.hasOpen(n) {
			// Nothing can change until data arrives: jump.
			to := last
			for _, rb := range e.open {
				if rb.n > n && rb.n-1 < to {
					to = rb.n - 1
				}
			}
			e.lastClosed, e.next = to, to+1
			continue
		}
		e.closeRound(n, nowNs, &out)
	}
	for e.next <= e.roundOf(nowNs) && e.complete(e.next) {
		e.closeRound(e.next, nowNs, &out)
	}
	return out
}

// complete reports whether every vantage whose session is up, and every
// vantage that reported in round n, has sent ResultsPerRound results for
// it, and at least one has. A vantage that is connected but silent keeps
// the round open until Grace, so its results are never cut off.
func (e *Engine) complete(n int64) bool {
	if e.cfg.ResultsPerRound <= 0 {
		return false
	}
	var rb *roundBuf
	for _, o := range e.open {
		if o.n == n {
			rb = o
		}
	}
	if rb == nil {
		return false
	}
	want := uint32(e.cfg.ResultsPerRound)
	got := 0
	for ai, a := range e.agents {
		var r *row
		if ai < len(rb.rows) {
			r = rb.rows[ai]
		}
		if a.excluded != "" {
			continue // left out: never waited for, never enough
		}
		expected := a.connected
		if r != nil && r.results >= want {
			got++
			continue
		}
		if expected || r != nil {
			return false
		}
	}
	return got > 0
}

// closeRound evaluates round n, in named steps: the vantages adopt the
// round's rows as their views, they are rated and gated, the subjects'
// raw states are computed from targets up and located, networks and the
// scope are explained (router, upstreams, cause: causetrack.go), and the
// states settle into transitions.
func (e *Engine) closeRound(n int64, now int64, out *[]*vantagev1.Transition) {
	rb := e.take(n)
	e.adoptViews(rb, n)
	counted := e.rateAgents(n)
	healthy := e.gate(counted)
	e.healthy = len(healthy)
	e.groups = countGroups(healthy)
	e.lastIdle = rb == nil && len(counted) == 0
	global := e.groups < e.cfg.Quorum
	e.computeStates(healthy, global)
	e.locateAll(n, healthy, e.provisionalLocation())
	e.applyQuality(n, healthy)
	e.explainAll(n)
	k := len(*out)
	e.settleAll(rb, n, now, out)
	e.annotate(k, n, now, out)
	if rb != nil {
		// Rows now belong to the agents as their views.
		rb.rows = nil
	}
	e.lastClosed, e.next = n, n+1
	e.evalAt = now
}

// adoptViews makes each vantage's row in round n its view (returning the
// previous view to the pool) and updates its beliefs from it.
func (e *Engine) adoptViews(rb *roundBuf, n int64) {
	if rb == nil {
		return
	}
	for ai, r := range rb.rows {
		if r == nil {
			continue
		}
		a := e.agents[ai]
		e.release(a.view)
		a.view, a.lastRound = r, n
		if a.bel == nil {
			a.bel = newBeliefs(len(e.targets))
		}
		a.bel.update(r, e.cfg)
	}
}

// rateAgents sets every vantage's status and reason for round n and
// returns the ones that count (healthy before gating).
func (e *Engine) rateAgents(n int64) []*agent {
	end := e.roundEnd(n)
	fresh := n - int64(e.cfg.FreshRounds) + 1
	var counted []*agent
	for _, a := range e.agents {
		switch {
		case !a.connected && a.changedAt.UnixNano() <= end:
			a.status = stSessionDown
		case a.excluded != "":
			a.status = stUnhealthy
		case a.view == nil || a.lastRound < fresh:
			a.status = stStale
		default:
			a.status = stHealthy
			counted = append(counted, a)
		}
		if a.status == stUnhealthy {
			a.reason = a.excluded
		} else {
			a.reason = reasonNames[a.status]
		}
	}
	return counted
}

// computeStates sets the raw state of every target from the healthy
// vantages' views, then of every network from its targets and of the
// scope from its networks. global: quorum is lost, everything is UNKNOWN.
func (e *Engine) computeStates(healthy []*agent, global bool) {
	e.countTargets(healthy, global)
	for _, s := range e.targets {
		s.unknownGlobal = global
		s.raw = e.targetState(s, global)
	}
	for _, s := range e.networks {
		e.aggregate(s, func(i int) *subject { return e.targets[i] })
		s.unknownGlobal = global
	}
	e.aggregate(e.scope, func(i int) *subject { return e.networks[i] })
	e.scope.unknownGlobal = global
}

// locateAll locates every subject of round n: targets, networks, scope.
func (e *Engine) locateAll(n int64, healthy []*agent, prov provisional) {
	for _, s := range e.targets {
		e.locate(s, n, healthy, prov)
	}
	for _, s := range e.networks {
		e.locate(s, n, healthy, prov)
	}
	e.locate(e.scope, n, healthy, prov)
}

// settleAll sets the onset bounds and appends the transitions of round n:
// scope, networks, targets.
func (e *Engine) settleAll(rb *roundBuf, n, now int64, out *[]*vantagev1.Transition) {
	var allHosts []int
	for _, nw := range e.networks {
		allHosts = append(allHosts, nw.children...)
	}
	lo, hi := rb.sentBounds(allHosts)
	e.settle(e.scope, n, lo, hi, now, out)
	for _, s := range e.networks {
		lo, hi := rb.sentBounds(s.children)
		e.settle(s, n, lo, hi, now, out)
	}
	for t, s := range e.targets {
		lo, hi := rb.sentBounds([]int{t})
		e.settle(s, n, lo, hi, now, out)
	}
}

// sentBounds is the earliest and latest SentAt of targets ts in the
// round, 0 for none (and for no round).
func (rb *roundBuf) sentBounds(ts []int) (lo, hi int64) {
	if rb == nil || rb.minSent == nil {
		return 0, 0
	}
	for _, t := range ts {
		if m := rb.minSent[t]; m != 0 && (lo == 0 || m < lo) {
			lo = m
		}
		hi = max(hi, rb.maxSent[t])
	}
	return lo, hi
}

// countTargets fills gUp/gDown (distinct groups of healthy vantages that
// see each target up / down) and the ICMP-filtered counters.
func (e *Engine) countTargets(healthy []*agent, global bool) {
	clear(e.gUp)
	clear(e.gDown)
	clear(e.cFilt)
	clear(e.cICMPUp)
	if global {
		return
	}
	byGroup := slices.Clone(healthy)
	slices.SortStableFunc(byGroup, func(a, b *agent) int { return strings.Compare(a.group, b.group) })
	flush := func() {
		for t, b := range e.gBits {
			if b&1 != 0 {
				e.gUp[t]++
			}
			if b&2 != 0 {
				e.gDown[t]++
			}
		}
		clear(e.gBits)
	}
	for i, a := range byGroup {
		if i > 0 && a.group != byGroup[i-1].group {
			flush()
		}
		for t := range e.targets {
			switch e.view(a, t) {
			case viewUp:
				e.gBits[t] |= 1
			case viewDown:
				e.gBits[t] |= 2
			}
			if f := a.view.flags[t]; f&fICMPUp != 0 {
				e.cICMPUp[t]++
			} else if f&fICMP != 0 && f&fOtherUp != 0 {
				e.cFilt[t]++
			}
		}
	}
	flush()
}

// targetState applies the target rule (see the package comment).
func (e *Engine) targetState(s *subject, global bool) vantagev1.State {
	t := s.target
	s.upG, s.downG = int(e.gUp[t]), int(e.gDown[t])
	s.up, s.total = s.upG, s.upG+s.downG
	s.filtered = 0
	if e.cFilt[t] > 0 && e.cICMPUp[t] == 0 {
		s.filtered = 1
	}
	q := e.cfg.Quorum
	switch {
	case global || s.total < q:
		return vantagev1.State_STATE_UNKNOWN
	case s.downG == 0:
		return vantagev1.State_STATE_REACHABLE
	case s.upG == 0:
		return vantagev1.State_STATE_UNREACHABLE
	case s.upG >= q && s.downG < q:
		return vantagev1.State_STATE_REACHABLE
	default:
		return vantagev1.State_STATE_DEGRADED
	}
}

// aggregate derives a network or scope raw state from its children's raw
// states.
func (e *Engine) aggregate(s *subject, child func(int) *subject) {
	reach, degr, down, filt := 0, 0, 0, 0
	for _, c := range s.children {
		cs := child(c)
		switch cs.raw {
		case vantagev1.State_STATE_REACHABLE:
			reach++
		case vantagev1.State_STATE_DEGRADED:
			degr++
		case vantagev1.State_STATE_UNREACHABLE:
			down++
		}
		if cs.filtered > 0 && cs.raw == vantagev1.State_STATE_REACHABLE {
			filt++
		}
	}
	known := reach + degr + down
	s.up, s.total, s.filtered = reach+degr, len(s.children), filt
	switch {
	case known == 0:
		s.raw = vantagev1.State_STATE_UNKNOWN
	case reach == known:
		s.raw = vantagev1.State_STATE_REACHABLE
	case reach+degr == 0:
		s.raw = vantagev1.State_STATE_UNREACHABLE
	default:
		s.raw = vantagev1.State_STATE_DEGRADED
	}
}
