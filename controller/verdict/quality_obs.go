package verdict

import (
	"cmp"
	"slices"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Limits of the quality data.
const (
	// maxPendingPoints bounds the quality points kept until TakeQuality.
	maxPendingPoints = 1 << 16
	// maxRTTs bounds the RTTs kept per vantage, network and round.
	maxRTTs = 4096
)

// Answer kinds of a QualityPoint's answers map.
const (
	ansICMP = iota
	ansTCP
	ansTrace
)

var answerNames = [...]string{ansICMP: "icmp", ansTCP: "tcp", ansTrace: "trace"}

// quality is the engine's quality state: the open rounds' data, the
// points not yet taken, and each network's and the scope's state.
type quality struct {
	rounds  []*qRound
	cache   *qRound // the round of the latest observation
	pending []*vantagev1.QualityPoint
	nets    []qualSubject
	scope   qualSubject
	netOf   []int // by target index: the network index of a host, -1 otherwise
	reasons map[*subject]vantagev1.Reason
	fresh   map[*subject]vantagev1.Reason // set by degradeFor this round
	// published: the reason of each subject's last transition.
	published map[*subject]vantagev1.Reason
}

// qRound is one open round's quality data.
type qRound struct {
	n    int64
	rows []*qRow // by agent index; nil: no data
	// any: per family and target, some vantage got an answer this round.
	// A (target, family) nobody gets an answer from (a filtered ICMP, a
	// closed port, a target down) is not loss evidence.
	any [2][]bool
}

// qRow is one vantage's quality data in one round.
type qRow struct {
	probes, first [2][]uint8  // per family and target (saturating)
	answers       [][3]uint32 // per network
	rtt           [][]float64 // per network, ms
	// per network, set by emit: probes and first-try answers (counts)
	netProbes, netFirst []int
}

func (e *Engine) quality() *quality {
	if e.qual != nil {
		return e.qual
	}
	q := &quality{
		nets:      make([]qualSubject, len(e.networks)),
		netOf:     make([]int, len(e.targets)),
		reasons:   map[*subject]vantagev1.Reason{},
		fresh:     map[*subject]vantagev1.Reason{},
		published: map[*subject]vantagev1.Reason{},
	}
	for i := range q.netOf {
		q.netOf[i] = -1
	}
	for ni, nw := range e.networks {
		for _, t := range nw.children {
			q.netOf[t] = ni
		}
	}
	e.qual = q
	return q
}

// observeQuality adds one accepted result for target ti from vantage ai
// (-1: look it up) to its round's quality data: a first-try answer is an
// up outcome with Attempts <= 1; every other result that is evidence (not
// ERROR) is a first-try miss. Traces only count as "trace" answers, and
// only in an open round.
func (e *Engine) observeQuality(ti, ai int, o Observation) {
	q := e.quality()
	ni := q.netOf[ti]
	isTrace := o.Kind == vantagev1.ProbeKind_PROBE_KIND_TRACE
	if ni < 0 || (isTrace && !e.hasOpen(o.Round)) {
		return
	}
	if ai < 0 {
		i, ok := e.agentIdx[o.Agent]
		if !ok {
			return
		}
		ai = i
	}
	qr := q.round(o.Round, len(e.targets))
	r := q.row(qr, ai, len(e.targets), len(e.networks))
	if isTrace {
		if o.Outcome != vantagev1.Outcome_OUTCOME_ERROR && o.StopReason == vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED {
			r.answers[ni][ansTrace]++
		}
		return
	}
	up := false
	switch o.Outcome {
	case vantagev1.Outcome_OUTCOME_REPLY, vantagev1.Outcome_OUTCOME_TCP_SYNACK, vantagev1.Outcome_OUTCOME_TCP_RST:
		up = true
	case vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.Outcome_OUTCOME_UNREACHABLE:
	default:
		return // not evidence
	}
	isICMP := o.Kind == vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO
	f := fam(isICMP)
	if r.probes[f][ti] == 255 {
		return // saturated: a vantage sends a few results per target and round
	}
	r.probes[f][ti]++
	if !up {
		return
	}
	if o.Attempts <= 1 {
		r.first[f][ti]++
	}
	qr.any[f][ti] = true
	kind := ansTCP
	if isICMP {
		kind = ansICMP
	}
	r.answers[ni][kind]++
	if o.RTT > 0 && len(r.rtt[ni]) < maxRTTs {
		r.rtt[ni] = append(r.rtt[ni], float64(o.RTT)/float64(time.Millisecond))
	}
}

// round returns the open quality round n, creating it.
func (q *quality) round(n int64, targets int) *qRound {
	if c := q.cache; c != nil && c.n == n {
		return c
	}
	for _, r := range q.rounds {
		if r.n == n {
			q.cache = r
			return r
		}
	}
	r := &qRound{n: n}
	q.cache = r
	for f := range r.any {
		r.any[f] = make([]bool, targets)
	}
	q.rounds = append(q.rounds, r)
	return r
}

func (q *quality) row(qr *qRound, ai, targets, networks int) *qRow {
	for len(qr.rows) <= ai {
		qr.rows = append(qr.rows, nil)
	}
	if r := qr.rows[ai]; r != nil {
		return r
	}
	r := &qRow{answers: make([][3]uint32, networks), rtt: make([][]float64, networks)}
	for f := range r.probes {
		r.probes[f] = make([]uint8, targets)
		r.first[f] = make([]uint8, targets)
	}
	qr.rows[ai] = r
	return r
}

func (qr *qRound) rowOf(ai int) *qRow {
	if ai < len(qr.rows) {
		return qr.rows[ai]
	}
	return nil
}

// take removes and returns round n's data (nil if none), dropping every
// older round and every newer one the engine no longer has open.
func (e *Engine) takeQualityRound(n int64) *qRound {
	q := e.quality()
	var got *qRound
	kept := q.rounds[:0]
	for _, r := range q.rounds {
		switch {
		case r.n == n:
			got = r
		case r.n > n && e.hasOpen(r.n):
			kept = append(kept, r)
		}
	}
	clear(q.rounds[len(kept):])
	q.rounds = kept
	q.cache = nil
	return got
}

// counts sums a vantage's probes and first-try answers over the hosts of
// network ni, leaving out (target, family) pairs nobody got an answer from.
func (e *Engine) counts(qr *qRound, r *qRow, ni int) (probes, first int) {
	for _, t := range e.networks[ni].children {
		for f := range r.probes {
			if r.probes[f][t] > 0 && qr.any[f][t] {
				probes += int(r.probes[f][t])
				first += int(r.first[f][t])
			}
		}
	}
	return probes, first
}

// emit appends round n's points: one per vantage (by id) and network with
// probes or answers. It also leaves each row's per-network counts for
// measureOf.
func (e *Engine) emit(qr *qRound, n int64) {
	if qr == nil {
		return
	}
	q := e.quality()
	start := ts(e.roundStart(n))
	for _, a := range e.sortedAgents() {
		r := qr.rowOf(e.agentIdx[a.id])
		if r == nil {
			continue
		}
		r.netProbes, r.netFirst = make([]int, len(e.networks)), make([]int, len(e.networks))
		for ni, nw := range e.networks {
			probes, first := e.counts(qr, r, ni)
			r.netProbes[ni], r.netFirst[ni] = probes, first
			ans := r.answers[ni]
			if probes == 0 && ans == [3]uint32{} {
				continue
			}
			p := &vantagev1.QualityPoint{
				Campaign: e.cfg.Campaign, Network: nw.name, AgentId: a.id, Round: n, RoundStart: start,
				Probes: uint32(probes), FirstTryAnswers: uint32(first), Answers: map[string]uint32{},
			}
			if probes > 0 {
				p.Loss = 1 - float64(first)/float64(probes)
			}
			rtt := r.rtt[ni]
			slices.Sort(rtt) // in place: measureOf only merges them
			p.RttP50Ms, p.RttP90Ms = percentile(rtt, 0.5), percentile(rtt, 0.9)
			for k, c := range ans {
				if c > 0 {
					p.Answers[answerNames[k]] = c
				}
			}
			q.pending = append(q.pending, p)
		}
	}
	if over := len(q.pending) - maxPendingPoints; over > 0 {
		q.pending = slices.Delete(q.pending, 0, over)
	}
}

// TakeQuality returns the quality points of the rounds closed since the
// last call (the newest maxPendingPoints at most), in round order, then by
// vantage id and network order.
func (e *Engine) TakeQuality() []*vantagev1.QualityPoint {
	q := e.quality()
	out := q.pending
	q.pending = nil
	return out
}

// measureOf is the agreed quality of networks nets among the healthy
// vantages in round n: per group (QuorumLabel) the pooled loss and the
// RTT p50, then the k-th largest over the groups with data, k =
// max(Quorum, a strict majority of them). Fewer than Quorum groups with
// data: not OK. It also notes round n's per-vantage trend in qs.
func (e *Engine) measureOf(qr *qRound, n int64, healthy []*agent, nets []int, qs *qualSubject) measure {
	if qr == nil {
		qs.noteTrend(e.cfg.Quality, n, nil, nil)
		return measure{}
	}
	var vLoss, vP50 []float64 // per vantage, for the trend
	type acc struct {
		probes, first int
		rtt           []float64
	}
	groups := map[string]*acc{}
	for _, a := range healthy {
		r := qr.rowOf(e.agentIdx[a.id])
		if r == nil {
			continue
		}
		g := groups[a.group]
		if g == nil {
			g = &acc{}
			groups[a.group] = g
		}
		probes, first, from := 0, 0, len(g.rtt)
		for _, ni := range nets {
			probes, first = probes+r.netProbes[ni], first+r.netFirst[ni]
			g.rtt = append(g.rtt, r.rtt[ni]...)
		}
		g.probes, g.first = g.probes+probes, g.first+first
		if probes > 0 {
			vLoss = append(vLoss, 1-float64(first)/float64(probes))
		}
		if mine := slices.Clone(g.rtt[from:]); len(mine) > 0 {
			slices.Sort(mine)
			vP50 = append(vP50, percentile(mine, 0.5))
		}
	}
	qs.noteTrend(e.cfg.Quality, n, vLoss, vP50)
	var losses, p50s []float64
	for _, g := range groups {
		if g.probes > 0 {
			losses = append(losses, 1-float64(g.first)/float64(g.probes))
		}
		if len(g.rtt) > 0 {
			slices.Sort(g.rtt)
			p50s = append(p50s, percentile(g.rtt, 0.5))
		}
	}
	m := measure{groups: len(losses)}
	m.loss, m.lossOK = e.agreed(losses)
	m.p50, m.rttOK = e.agreed(p50s)
	return m
}

// agreed is the value that at least k groups reach or exceed, k =
// max(Quorum, len(xs)/2+1); false with fewer than Quorum values.
func (e *Engine) agreed(xs []float64) (float64, bool) {
	if len(xs) == 0 || len(xs) < e.cfg.Quorum {
		return 0, false
	}
	k := max(e.cfg.Quorum, len(xs)/2+1)
	slices.SortFunc(xs, func(a, b float64) int { return cmp.Compare(b, a) })
	return xs[k-1], true
}
