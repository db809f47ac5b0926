package verdict

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Defaults of QualityConfig; see the package comment (# Quality).
const (
	DefaultQualityLoss               = 0.1
	DefaultQualityLossClear          = 0.05
	DefaultQualityLatencyFactor      = 2.0
	DefaultQualityLatencyClearFactor = 1.5
	DefaultQualityLatencyMin         = 20 * time.Millisecond
	DefaultQualityRounds             = 2
	DefaultQualityClearRounds        = 2
	// qualityAlpha is the weight of a calm round in the baselines (EWMA).
	qualityAlpha = 0.1
	// latencyWarmup: calm rounds with answers before the RTT baseline is
	// trusted.
	latencyWarmup = 3
)

// QualityConfig sets when a reachable network or scope is DEGRADED for
// loss (REASON_LOSS) or latency (REASON_LATENCY). Zero fields take the
// defaults above.
type QualityConfig struct {
	// Off turns the quality rules off: quality points are still kept.
	Off bool
	// Loss: the agreed first-try loss must exceed the baseline by more
	// than this to count as lossy; LossClear: it is calm below the
	// baseline plus this. Defaults 0.1 and 0.05.
	Loss, LossClear float64
	// LatencyFactor: the agreed RTT p50 must exceed the baseline times
	// this, and by more than LatencyMin, to count as slow; it is calm below
	// the baseline times LatencyClearFactor. Defaults 2.0, 1.5, 20ms.
	LatencyFactor, LatencyClearFactor float64
	LatencyMin                        time.Duration
	// Rounds: lossy (or slow) rounds in a row to turn DEGRADED; ClearRounds:
	// calm rounds in a row to clear. Defaults 2 and 2.
	Rounds, ClearRounds int
}

func (q QualityConfig) withDefaults() QualityConfig {
	orDefault(&q.Loss, DefaultQualityLoss)
	orDefault(&q.LossClear, DefaultQualityLossClear)
	orDefault(&q.LatencyFactor, DefaultQualityLatencyFactor)
	orDefault(&q.LatencyClearFactor, DefaultQualityLatencyClearFactor)
	orDefault(&q.LatencyMin, DefaultQualityLatencyMin)
	orDefault(&q.Rounds, DefaultQualityRounds)
	orDefault(&q.ClearRounds, DefaultQualityClearRounds)
	return q
}

func (q QualityConfig) validate() error {
	switch {
	case !(q.Loss > 0 && q.Loss < 1):
		return cfgErr("Quality.Loss", "%v must be in (0, 1)", q.Loss)
	case !(q.LossClear > 0 && q.LossClear <= q.Loss):
		return cfgErr("Quality.LossClear", "%v must be in (0, Quality.Loss]", q.LossClear)
	case !(q.LatencyFactor > 1 && q.LatencyFactor <= 1000):
		return cfgErr("Quality.LatencyFactor", "%v must be in (1, 1000]", q.LatencyFactor)
	case !(q.LatencyClearFactor >= 1 && q.LatencyClearFactor <= q.LatencyFactor):
		return cfgErr("Quality.LatencyClearFactor", "%v must be in [1, Quality.LatencyFactor]", q.LatencyClearFactor)
	case q.LatencyMin < 0 || q.LatencyMin > time.Minute:
		return cfgErr("Quality.LatencyMin", "%s must be in [0, 1m]", q.LatencyMin)
	case q.Rounds < 1 || q.Rounds > 100:
		return cfgErr("Quality.Rounds", "%d must be in [1, 100]", q.Rounds)
	case q.ClearRounds < 1 || q.ClearRounds > 100:
		return cfgErr("Quality.ClearRounds", "%d must be in [1, 100]", q.ClearRounds)
	}
	return nil
}

// measure is a subject's agreed quality in one round: the loss and RTT
// p50 that a majority of the healthy vantage groups with data, and at
// least Quorum of them, reach or exceed.
type measure struct {
	loss, p50     float64 // p50 in ms
	lossOK, rttOK bool
	groups        int // groups with probes
}

// qualSubject is one network's (or the scope's) quality state.
type qualSubject struct {
	lossBase, rttBase float64 // baselines (EWMA of calm rounds); RTT in ms
	rttN              int     // calm rounds in the RTT baseline
	lossRun, rttRun   int     // lossy / slow rounds in a row
	calmRun           int     // calm rounds in a row while active
	active            vantagev1.Reason
	last              measure
	// trend: the latest maxTrend rounds' per-vantage counts (cause.go's
	// QualityRound), oldest first.
	trend []QualityRound
}

// maxTrend bounds the rounds of quality trend kept per subject.
const maxTrend = 64

// step moves the state machine by one round whose raw reachability state
// is raw. A REACHABLE or DEGRADED round is quality evidence (a DEGRADED
// one learns no baseline); an UNREACHABLE one ends the episode (the
// outage supersedes it; baselines stand); UNKNOWN, or too few groups with
// data, changes nothing.
func (q *qualSubject) step(c QualityConfig, raw vantagev1.State, m measure) {
	q.last = m
	switch {
	case raw == vantagev1.State_STATE_UNREACHABLE:
		q.lossRun, q.rttRun, q.calmRun, q.active = 0, 0, 0, vantagev1.Reason_REASON_UNSPECIFIED
		return
	case raw != vantagev1.State_STATE_REACHABLE && raw != vantagev1.State_STATE_DEGRADED || !m.lossOK:
		return
	}
	lossOver := m.loss > q.lossBase+c.Loss
	lossCalm := m.loss < q.lossBase+c.LossClear
	ready := m.rttOK && q.rttN >= latencyWarmup
	minMs := float64(c.LatencyMin) / float64(time.Millisecond)
	rttOver := ready && m.p50 > q.rttBase*c.LatencyFactor && m.p50-q.rttBase > minMs
	rttCalm := !ready || m.p50 < q.rttBase*c.LatencyClearFactor || m.p50-q.rttBase <= minMs
	q.lossRun = runOf(q.lossRun, lossOver)
	q.rttRun = runOf(q.rttRun, rttOver)
	if q.active == vantagev1.Reason_REASON_UNSPECIFIED {
		switch {
		case q.lossRun >= c.Rounds:
			q.active = vantagev1.Reason_REASON_LOSS
		case q.rttRun >= c.Rounds:
			q.active = vantagev1.Reason_REASON_LATENCY
		}
		q.calmRun = 0
	} else {
		q.calmRun = runOf(q.calmRun, lossCalm && rttCalm)
		if q.calmRun >= c.ClearRounds {
			q.active, q.calmRun, q.lossRun, q.rttRun = vantagev1.Reason_REASON_UNSPECIFIED, 0, 0, 0
		}
	}
	if q.active != vantagev1.Reason_REASON_UNSPECIFIED || raw != vantagev1.State_STATE_REACHABLE {
		return // baselines learn from calm REACHABLE rounds only
	}
	if lossCalm {
		q.lossBase += qualityAlpha * (m.loss - q.lossBase)
	}
	if m.rttOK && (q.rttN < latencyWarmup || rttCalm) {
		q.rttN++
		w := max(qualityAlpha, 1/float64(q.rttN)) // a plain mean while warming up
		q.rttBase += w * (m.p50 - q.rttBase)
	}
}

func runOf(run int, hit bool) int {
	if hit {
		return run + 1
	}
	return 0
}

// note explains an active quality episode in words.
func (q *qualSubject) note(c QualityConfig) string {
	switch q.active {
	case vantagev1.Reason_REASON_LOSS:
		return fmt.Sprintf("loss: %.0f%% of probes without a first-try answer (agreed by %d vantage groups), baseline %.0f%%; DEGRADED above baseline + %.0f%% for %d rounds, clears below baseline + %.0f%% for %d rounds",
			100*q.last.loss, q.last.groups, 100*q.lossBase, 100*c.Loss, c.Rounds, 100*c.LossClear, c.ClearRounds)
	case vantagev1.Reason_REASON_LATENCY:
		return fmt.Sprintf("latency: RTT p50 %.1f ms (agreed by %d vantage groups), baseline %.1f ms; DEGRADED above %.1fx baseline (and +%s) for %d rounds, clears below %.1fx for %d rounds",
			q.last.p50, q.last.groups, q.rttBase, c.LatencyFactor, c.LatencyMin, c.Rounds, c.LatencyClearFactor, c.ClearRounds)
	}
	return ""
}

// applyQuality is the quality step of closing round n, after the raw
// states are computed and located: it turns round n's quality data into
// points, moves each network's and the scope's quality state, and makes a
// REACHABLE subject with an active quality episode DEGRADED (reason LOSS
// or LATENCY, location UNSPECIFIED: loss does not say where).
func (e *Engine) applyQuality(n int64, healthy []*agent) {
	q := e.quality()
	qr := e.takeQualityRound(n)
	e.emit(qr, n)
	c := e.cfg.Quality
	var netReason vantagev1.Reason
	for i, s := range e.networks {
		if !c.Off {
			q.nets[i].step(c, s.raw, e.measureOf(qr, n, healthy, []int{i}, &q.nets[i]))
			if r := q.nets[i].active; r != vantagev1.Reason_REASON_UNSPECIFIED {
				e.degradeFor(s, r, q.nets[i].note(c))
				netReason = strongerReason(netReason, r)
			}
		}
		q.noteReason(s)
	}
	if !c.Off {
		all := make([]int, len(e.networks))
		for i := range all {
			all[i] = i
		}
		q.scope.step(c, e.scope.raw, e.measureOf(qr, n, healthy, all, &q.scope))
		r := strongerReason(q.scope.active, netReason)
		if r != vantagev1.Reason_REASON_UNSPECIFIED {
			note := q.scope.note(c)
			if note == "" {
				note = fmt.Sprintf("%s: some networks are DEGRADED for %s", reasonWord(r), reasonWord(r))
			}
			e.degradeFor(e.scope, r, note)
		}
	}
	q.noteReason(e.scope)
	for _, s := range e.targets {
		q.noteReason(s)
	}
}

// degradeFor gives a subject with an active quality episode its reason:
// REACHABLE becomes DEGRADED (location UNSPECIFIED: loss does not say
// where); a DEGRADED one (some children down too) keeps its location and
// takes the quality reason. Other states are left alone.
func (e *Engine) degradeFor(s *subject, r vantagev1.Reason, note string) {
	switch s.raw {
	case vantagev1.State_STATE_REACHABLE:
		s.raw = vantagev1.State_STATE_DEGRADED
		s.location = vantagev1.Location_LOCATION_UNSPECIFIED
		s.locTraced = false
		s.locNotes = append(s.locNotes[:0:0], note)
	case vantagev1.State_STATE_DEGRADED:
		s.locNotes = append(slices.Clip(s.locNotes), note)
	default:
		return
	}
	e.quality().fresh[s] = r
}

// strongerReason prefers LOSS to LATENCY to none.
func strongerReason(a, b vantagev1.Reason) vantagev1.Reason {
	if a == vantagev1.Reason_REASON_LOSS || b == vantagev1.Reason_REASON_LOSS {
		return vantagev1.Reason_REASON_LOSS
	}
	if a == vantagev1.Reason_REASON_LATENCY || b == vantagev1.Reason_REASON_LATENCY {
		return vantagev1.Reason_REASON_LATENCY
	}
	return vantagev1.Reason_REASON_UNSPECIFIED
}

func reasonWord(r vantagev1.Reason) string {
	if r == vantagev1.Reason_REASON_LATENCY {
		return "latency"
	}
	return "loss"
}

// noteReason records why s's raw state is what it is this round: the
// quality reason degradeFor gave it, PARTIAL for another DEGRADED, none
// otherwise; UNKNOWN keeps the previous reason (the published state may
// be held).
func (q *quality) noteReason(s *subject) {
	switch s.raw {
	case vantagev1.State_STATE_UNKNOWN:
	case vantagev1.State_STATE_DEGRADED:
		if r, ok := q.fresh[s]; ok {
			q.reasons[s] = r
		} else {
			q.reasons[s] = vantagev1.Reason_REASON_PARTIAL
		}
	default:
		q.reasons[s] = vantagev1.Reason_REASON_UNSPECIFIED
	}
	delete(q.fresh, s)
}

// reasonOf is the reason of s's published state: LOSS, LATENCY or
// PARTIAL for DEGRADED, UNSPECIFIED otherwise.
func (e *Engine) reasonOf(s *subject) vantagev1.Reason {
	if s.state != vantagev1.State_STATE_DEGRADED {
		return vantagev1.Reason_REASON_UNSPECIFIED
	}
	if r := e.quality().reasons[s]; r != vantagev1.Reason_REASON_UNSPECIFIED {
		return r
	}
	return vantagev1.Reason_REASON_PARTIAL
}

// publishReason is reasonOf(s), remembered as the reason last published
// (transition calls it).
func (e *Engine) publishReason(s *subject) vantagev1.Reason {
	r := e.reasonOf(s)
	e.quality().published[s] = r
	return r
}

// reasonRefined reports whether a DEGRADED subject published as PARTIAL
// now has a quality reason: loss or latency found once some children
// were already down. It is published like a location refinement (From ==
// To), so the timeline says LOSS; the other way round is not news.
func (e *Engine) reasonRefined(s *subject) bool {
	r := e.reasonOf(s)
	return s.raw == s.state && (r == vantagev1.Reason_REASON_LOSS || r == vantagev1.Reason_REASON_LATENCY) &&
		e.quality().published[s] == vantagev1.Reason_REASON_PARTIAL
}

func (e *Engine) reasonNote(s *subject) string {
	return "reason refined from PARTIAL to " + strings.TrimPrefix(e.reasonOf(s).String(), "REASON_")
}

// qualityRounds is the quality trend of a network or the scope over
// rounds from..to (nil for a target or without data).
func (e *Engine) qualityRounds(s *subject, from, to int64) []QualityRound {
	q := e.quality()
	var qs *qualSubject
	switch s.level {
	case vantagev1.Level_LEVEL_SCOPE:
		qs = &q.scope
	case vantagev1.Level_LEVEL_NETWORK:
		for i, nw := range e.networks {
			if nw == s {
				qs = &q.nets[i]
			}
		}
	}
	if qs == nil {
		return nil
	}
	var out []QualityRound
	for _, r := range qs.trend {
		if r.Round >= from && r.Round <= to {
			out = append(out, r)
		}
	}
	return out
}

// noteTrend appends round n's per-vantage counts to q's trend: vantages
// with probes, and those whose own loss (RTT p50) is past the subject's
// lossy (slow) threshold against its baseline.
func (q *qualSubject) noteTrend(c QualityConfig, n int64, losses, p50s []float64) {
	r := QualityRound{Round: n, Vantages: len(losses)}
	minMs := float64(c.LatencyMin) / float64(time.Millisecond)
	for _, l := range losses {
		if l > q.lossBase+c.Loss {
			r.LossUp++
		}
	}
	if q.rttN >= latencyWarmup {
		for _, p := range p50s {
			if p > q.rttBase*c.LatencyFactor && p-q.rttBase > minMs {
				r.RTTUp++
			}
		}
	}
	if len(q.trend) == maxTrend {
		q.trend = slices.Delete(q.trend, 0, 1)
	}
	q.trend = append(q.trend, r)
}

// percentile is the p-quantile (nearest rank) of sorted xs; 0 for none.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
