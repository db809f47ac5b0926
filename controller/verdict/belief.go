package verdict

import "math"

// Belief model constants (see the package comment, "Belief").
const (
	// PriorBelief is a (vantage, target) belief before any result.
	PriorBelief = 0.5
	// BeliefMin and BeliefMax clamp beliefs so that one round of clear
	// evidence can always cross a threshold.
	BeliefMin = 0.01
	BeliefMax = 0.99
	// FalseReply is P(an answer | target unreachable).
	FalseReply = 1e-4
	// FalseUnreachable is P(an ICMP destination unreachable | target
	// reachable): an explicit "no route" weighs like two lost packets.
	FalseUnreachable = 0.01
	// AvailabilityDecay weighs past packets per round (memory about 20
	// rounds).
	AvailabilityDecay = 0.95
	// AvailabilityMax caps the learned availability, so a miss is never
	// taken as certain proof.
	AvailabilityMax = 0.99
)

// beliefs holds one vantage's belief and learned availability per target.
type beliefs struct {
	b      []float32    // P(reachable)
	ar, an [2][]float32 // per family: decayed answered results and packets (Beta(1,1) prior)
	seen   []bool
	everUp []bool
}

func newBeliefs(n int) *beliefs {
	bs := &beliefs{b: make([]float32, n), seen: make([]bool, n), everUp: make([]bool, n)}
	for f := range bs.ar {
		bs.ar[f], bs.an[f] = make([]float32, n), make([]float32, n)
	}
	for i := range n {
		bs.b[i] = PriorBelief
		for f := range bs.ar {
			bs.ar[f][i], bs.an[f][i] = 1, 2
		}
	}
	return bs
}

// famAvailability is the learned P(a packet of family f is answered |
// reachable).
func (bs *beliefs) famAvailability(f, t int) float64 {
	return min(float64(bs.ar[f][t])/float64(bs.an[f][t]), AvailabilityMax)
}

// availability is the target's learned availability: that of its best
// answering probe family.
func (bs *beliefs) availability(t int) float64 {
	return max(bs.famAvailability(famICMP, t), bs.famAvailability(famOther, t))
}

// Update returns the posterior belief after one round's evidence for one
// (vantage, target): answered tells whether any result answered; packets is
// the number of probe packets sent (adaptive retries included) and a the
// learned availability. It is exported for tests of the belief math.
func Update(prior, a float64, answered bool, packets int) float64 {
	a = clamp01(a, 0, AvailabilityMax)
	lu := a
	if !answered {
		lu = math.Pow(1-a, float64(max(packets, 1)))
	}
	return posterior(prior, lu, answered)
}

// posterior applies likelihood lu = P(evidence | reachable).
func posterior(prior, lu float64, answered bool) float64 {
	ld := 1 - FalseReply
	if answered {
		ld = FalseReply
	}
	num := prior * lu
	den := num + (1-prior)*ld
	if den <= 0 || math.IsNaN(den) {
		return clamp01(prior, BeliefMin, BeliefMax)
	}
	return clamp01(num/den, BeliefMin, BeliefMax)
}

// update applies one closed round's row to the beliefs. A miss weighs each
// family's packets by that family's availability: P(miss | reachable) =
// prod over families (1-A_f)^packets_f. Availability learns only from
// rounds that began with the target believed up and did not end believed
// down (or before it ever answered), so outages and uncertain stretches do
// not erode it.
func (bs *beliefs) update(r *row, cfg Config) {
	for t, f := range r.flags {
		if f&fSeen == 0 {
			continue
		}
		answered := f&fUp != 0
		var lu float64
		if answered {
			lu = 0
			for fm := range r.pk {
				if r.rp[fm][t] > 0 {
					lu = max(lu, bs.famAvailability(fm, t))
				}
			}
		} else {
			lu = 1
			for fm := range r.pk {
				if pk := int(r.pk[fm][t]); pk > 0 {
					lu *= math.Pow(1-bs.famAvailability(fm, t), float64(pk))
				}
			}
			if f&fUnreach != 0 {
				lu *= FalseUnreachable
			}
		}
		prior := float64(bs.b[t])
		nb := posterior(prior, lu, answered)
		learn := prior >= cfg.BeliefUp && nb > cfg.BeliefDown || !bs.everUp[t]
		bs.b[t] = float32(nb)
		bs.seen[t] = true
		if answered {
			bs.everUp[t] = true
		}
		if !learn {
			continue
		}
		for fm := range r.pk {
			if pk := int(r.pk[fm][t]); pk > 0 {
				bs.ar[fm][t] = bs.ar[fm][t]*AvailabilityDecay + float32(min(int(r.rp[fm][t]), pk))
				bs.an[fm][t] = bs.an[fm][t]*AvailabilityDecay + float32(pk)
			}
		}
	}
}

type viewState uint8

const (
	viewNone viewState = iota // no result, uncertain, or not evidence
	viewUp
	viewDown
)

// view is a vantage's current evidence about target t.
func (e *Engine) view(a *agent, t int) viewState {
	bs := a.bel
	if bs == nil || !bs.seen[t] {
		return viewNone
	}
	if bs.availability(t) < e.cfg.MinAvailability {
		return viewNone
	}
	b := float64(bs.b[t])
	switch {
	case b >= e.cfg.BeliefUp && a.view != nil && a.view.flags[t]&(fSeen|fUp) == fSeen:
		return viewNone // missed its latest round: not a firm "up"
	case b >= e.cfg.BeliefUp:
		return viewUp
	case b <= e.cfg.BeliefDown:
		return viewDown
	}
	return viewNone
}

// viewReason says why view(a, t) is viewNone.
func (e *Engine) viewReason(a *agent, t int) string {
	bs := a.bel
	switch {
	case bs == nil || !bs.seen[t]:
		return "no result for this target"
	case bs.availability(t) < e.cfg.MinAvailability:
		return "target availability below min_availability: not evidence"
	case a.view != nil && a.view.flags[t]&(fSeen|fUp) == fSeen && float64(bs.b[t]) >= e.cfg.BeliefUp:
		return "missed its latest round while believed up: not evidence this round"
	}
	return "belief uncertain"
}

// clamp01 keeps x in [lo, hi], mapping NaN to lo.
func clamp01(x, lo, hi float64) float64 {
	if math.IsNaN(x) || x < lo {
		return lo
	}
	return min(x, hi)
}
