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
	// AvailabilityDecay weighs past packets per round (memory about 20
	// rounds).
	AvailabilityDecay = 0.95
	// AvailabilityMax caps the learned availability, so a miss is never
	// taken as certain proof.
	AvailabilityMax = 0.99
)

// beliefs holds one vantage's belief and learned availability per target.
type beliefs struct {
	b      []float32 // P(reachable)
	ar, an []float32 // decayed answered results and packets (Beta(1,1) prior)
	everUp []bool
}

func newBeliefs(n int) *beliefs {
	bs := &beliefs{b: make([]float32, n), ar: make([]float32, n), an: make([]float32, n), everUp: make([]bool, n)}
	for i := range n {
		bs.b[i], bs.ar[i], bs.an[i] = PriorBelief, 1, 2
	}
	return bs
}

// availability is the learned P(a probe packet is answered | reachable).
func (bs *beliefs) availability(t int) float64 {
	return min(float64(bs.ar[t])/float64(bs.an[t]), AvailabilityMax)
}

// Update returns the posterior belief after one round's evidence for one
// (vantage, target): answered tells whether any result answered; packets is
// the number of probe packets sent (adaptive retries included) and a the
// learned availability. It is exported for tests of the belief math.
func Update(prior, a float64, answered bool, packets int) float64 {
	a = clamp01(a, 0, AvailabilityMax)
	var lu, ld float64
	if answered {
		lu, ld = a, FalseReply
	} else {
		lu, ld = math.Pow(1-a, float64(max(packets, 1))), 1-FalseReply
	}
	num := prior * lu
	den := num + (1-prior)*ld
	if den <= 0 {
		return clamp01(prior, BeliefMin, BeliefMax)
	}
	return clamp01(num/den, BeliefMin, BeliefMax)
}

// update applies one closed round's row to the beliefs. Availability
// learns from every round except those believed down after the target was
// once seen up, so an outage does not erode it.
func (bs *beliefs) update(r *row, cfg Config) {
	for t, f := range r.flags {
		if f&fSeen == 0 {
			continue
		}
		answered := f&fUp != 0
		pk := max(int(r.pk[t]), 1)
		nb := Update(float64(bs.b[t]), bs.availability(t), answered, pk)
		bs.b[t] = float32(nb)
		if answered {
			bs.everUp[t] = true
		}
		if nb <= cfg.BeliefDown && bs.everUp[t] {
			continue
		}
		bs.ar[t] = bs.ar[t]*AvailabilityDecay + float32(min(int(r.rp[t]), pk))
		bs.an[t] = bs.an[t]*AvailabilityDecay + float32(pk)
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
	if bs == nil || bs.an[t] <= 2 { // never observed
		return viewNone
	}
	if bs.availability(t) < e.cfg.MinAvailability {
		return viewNone
	}
	b := float64(bs.b[t])
	switch {
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
	case bs == nil || bs.an[t] <= 2:
		return "no result for this target"
	case bs.availability(t) < e.cfg.MinAvailability:
		return "target availability below min_availability: not evidence"
	}
	return "belief uncertain"
}
