package campaign

import (
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vantage-net/vantage/controller/verdict"
)

// Defaults of the verdict.quality section: the verdict engine's own, so
// a campaign that says nothing gets what the engine does.
const (
	DefaultQualityLoss               = verdict.DefaultQualityLoss
	DefaultQualityLossClear          = verdict.DefaultQualityLossClear
	DefaultQualityLatencyFactor      = verdict.DefaultQualityLatencyFactor
	DefaultQualityLatencyClearFactor = verdict.DefaultQualityLatencyClearFactor
	DefaultQualityLatencyMin         = verdict.DefaultQualityLatencyMin
	DefaultQualityRounds             = verdict.DefaultQualityRounds
	DefaultQualityClearRounds        = verdict.DefaultQualityClearRounds
)

// Quality is the campaign's verdict.quality section with the defaults in:
// when a reachable network or the scope is DEGRADED for loss or latency.
//
//	verdict:
//	  quality:
//	    loss: 0.1                  # first-try loss above the baseline that is lossy, (0, 1)
//	    loss_clear: 0.05           # ... below which it is calm again, (0, loss]
//	    latency_factor: 2.0        # RTT p50 over baseline x this is slow, (1, 1000]
//	    latency_clear_factor: 1.5  # ... calm again below baseline x this, [1, latency_factor]
//	    latency_min: 20ms          # and slow only this far above the baseline, [1ms, 1m]
//	    rounds: 2                  # lossy/slow rounds in a row to turn DEGRADED, 1..100
//	    clear_rounds: 2            # calm rounds in a row to clear, 1..100
//	    off: false                 # true: keep the series, never DEGRADED for quality
type Quality struct {
	Off                               bool
	Loss, LossClear                   float64
	LatencyFactor, LatencyClearFactor float64
	LatencyMin                        time.Duration
	Rounds, ClearRounds               int
}

type qualitySpec struct {
	off                               bool
	loss, lossClear                   float64
	latencyFactor, latencyClearFactor float64
	latencyMin                        time.Duration
	rounds, clearRounds               int64
}

// Quality returns the verdict.quality settings, defaults applied.
func (s *Spec) Quality() Quality {
	q := s.quality
	return Quality{
		Off: q.off, Loss: q.loss, LossClear: q.lossClear,
		LatencyFactor: q.latencyFactor, LatencyClearFactor: q.latencyClearFactor, LatencyMin: q.latencyMin,
		Rounds: int(q.rounds), ClearRounds: int(q.clearRounds),
	}
}

// decodeVerdict reads the verdict section.
func (s *Spec) decodeVerdict(path string, n *yaml.Node) error {
	q := &s.quality
	return decodeMapping(path, n, []field{
		{"quality", func(p string, v *yaml.Node) error {
			return decodeMapping(p, v, []field{
				{"loss", func(p string, v *yaml.Node) error { return decodeFloat(p, v, 1, &q.loss) }},
				{"loss_clear", func(p string, v *yaml.Node) error { return decodeFloat(p, v, 1, &q.lossClear) }},
				{"latency_factor", func(p string, v *yaml.Node) error { return decodeFloat(p, v, 1000, &q.latencyFactor) }},
				{"latency_clear_factor", func(p string, v *yaml.Node) error {
					return decodeFloat(p, v, 1000, &q.latencyClearFactor)
				}},
				{"latency_min", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, time.Millisecond, time.Minute, &q.latencyMin)
				}},
				{"rounds", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, 100, &q.rounds) }},
				{"clear_rounds", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, 100, &q.clearRounds) }},
				{"off", func(p string, v *yaml.Node) error { return decodeBool(p, v, &q.off) }},
			})
		}},
	})
}

// applyDefaults fills the quality settings the file leaves out.
func (q *qualitySpec) applyDefaults() {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&q.loss, DefaultQualityLoss)
	def(&q.lossClear, DefaultQualityLossClear)
	def(&q.latencyFactor, DefaultQualityLatencyFactor)
	def(&q.latencyClearFactor, DefaultQualityLatencyClearFactor)
	if q.latencyMin == 0 {
		q.latencyMin = DefaultQualityLatencyMin
	}
	if q.rounds == 0 {
		q.rounds = DefaultQualityRounds
	}
	if q.clearRounds == 0 {
		q.clearRounds = DefaultQualityClearRounds
	}
}

// validate checks the quality settings against each other, defaults in.
func (q qualitySpec) validate() error {
	const p = "verdict.quality."
	switch {
	case q.loss >= 1:
		return fieldErr(p+"loss", "%g must be below 1", q.loss)
	case q.lossClear > q.loss:
		return fieldErr(p+"loss_clear", "%g must not exceed loss (%g)", q.lossClear, q.loss)
	case q.latencyFactor <= 1:
		return fieldErr(p+"latency_factor", "%g must be above 1", q.latencyFactor)
	case q.latencyClearFactor < 1:
		return fieldErr(p+"latency_clear_factor", "%g must be at least 1", q.latencyClearFactor)
	case q.latencyClearFactor > q.latencyFactor:
		return fieldErr(p+"latency_clear_factor", "%g must not exceed latency_factor (%g)", q.latencyClearFactor, q.latencyFactor)
	}
	return nil
}
