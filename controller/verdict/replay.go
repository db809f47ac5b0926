package verdict

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ErrParam is wrapped by every WithParams error; the message names the
// parameter.
var ErrParam = errors.New("verdict: invalid parameter")

// ParamNames lists the parameters WithParams accepts (replay --param k=v).
var ParamNames = []string{
	"quorum", "grace", "fresh_rounds", "quorum_label", "belief_up", "belief_down", "min_availability",
	"unstable_window", "unstable_flips", "unstable_calm", "uncertain_hold", "results_per_round",
}

// WithParams returns cfg (defaults applied) with the named parameters
// overridden, validated as NewEngine would. Durations take Go syntax
// ("1.5s"); counts are integers; belief_* and min_availability are
// fractions.
func WithParams(cfg Config, params map[string]string) (Config, error) {
	cfg = cfg.withDefaults()
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := strings.TrimSpace(params[k])
		bad := func(why string) error {
			return fmt.Errorf("%w: params[%q]: %q %s", ErrParam, k, v, why)
		}
		integer := func(dst *int, lo, hi int) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < lo || n > hi {
				return bad(fmt.Sprintf("is not an integer in [%d, %d]", lo, hi))
			}
			*dst = n
			return nil
		}
		fraction := func(dst *float64) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || !(f > 0 && f < 1) {
				return bad("is not a number in (0, 1)")
			}
			*dst = f
			return nil
		}
		var err error
		switch k {
		case "quorum":
			err = integer(&cfg.Quorum, 1, maxAgents)
		case "fresh_rounds":
			err = integer(&cfg.FreshRounds, 1, MaxOpenRounds)
		case "unstable_window":
			err = integer(&cfg.UnstableWindow, 2, 1000)
		case "unstable_flips":
			err = integer(&cfg.UnstableFlips, 2, 1000)
		case "unstable_calm":
			err = integer(&cfg.UnstableCalm, 1, 1000)
		case "uncertain_hold":
			err = integer(&cfg.UncertainHold, 1, 1000)
		case "results_per_round":
			err = integer(&cfg.ResultsPerRound, 0, 1<<20)
		case "belief_up":
			err = fraction(&cfg.BeliefUp)
		case "belief_down":
			err = fraction(&cfg.BeliefDown)
		case "min_availability":
			err = fraction(&cfg.MinAvailability)
		case "grace":
			d, perr := time.ParseDuration(v)
			if perr != nil || d < 0 || d > 8*cfg.Round {
				err = bad("is not a duration in [0, 8 rounds]")
			}
			cfg.Grace = d
			if d == 0 {
				cfg.Grace = 1 // zero would mean "default"
			}
		case "quorum_label":
			if v == "" || strings.ContainsAny(v, " \t") {
				err = bad("is not a label name (or - for none)")
			}
			cfg.QuorumLabel = v
		default:
			err = fmt.Errorf("%w: params[%q]: unknown parameter; known: %s", ErrParam, k, strings.Join(ParamNames, ", "))
		}
		if err != nil {
			return cfg, err
		}
	}
	if err := cfg.validate(); err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrParam, err)
	}
	return cfg, nil
}

// Replayer drives an Engine over stored history: feed it observations in
// SentAt order (as the store returns them) and it closes each round once
// the stream has moved past its end + Grace, exactly as the live engine
// closes it once the clock has. Memory is the engine's: bounded by the open
// rounds, whatever the length of the history.
type Replayer struct {
	e   *Engine
	out []*vantagev1.Transition
	at  time.Time
}

// NewReplayer returns a Replayer over a fresh engine for cfg.
func NewReplayer(cfg Config) (*Replayer, error) {
	e, err := NewEngine(cfg)
	if err != nil {
		return nil, err
	}
	return &Replayer{e: e}, nil
}

// Engine returns the engine being driven (e.g. to set agent labels).
func (r *Replayer) Engine() *Engine { return r.e }

// Observe feeds one observation; observations must come in non-decreasing
// SentAt order (small disorder within a round is harmless).
func (r *Replayer) Observe(o Observation) {
	if t := o.SentAt; !t.IsZero() && t.After(r.at) {
		if !r.at.IsZero() {
			r.out = append(r.out, r.e.Evaluate(t)...)
		}
		r.at = t
	}
	r.e.Observe(o)
}

// Finish closes every round that ends before until and returns all the
// transitions of the replay, in order.
func (r *Replayer) Finish(until time.Time) []*vantagev1.Transition {
	r.out = append(r.out, r.e.Evaluate(until.Add(r.e.cfg.Grace))...)
	out := r.out
	r.out = nil
	return out
}

// Transitions returns and forgets the transitions produced so far, so a
// long replay can stream them.
func (r *Replayer) Transitions() []*vantagev1.Transition {
	out := r.out
	r.out = nil
	return out
}
