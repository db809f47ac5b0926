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
	"quality_off", "quality_loss", "quality_loss_clear", "quality_latency_factor", "quality_latency_clear_factor",
	"quality_latency_min", "quality_rounds", "quality_clear_rounds",
}

// param is one replay parameter as given: its name and its value.
type param struct{ key, value string }

func (p param) bad(why string) error {
	return fmt.Errorf("%w: params[%q]: %q %s", ErrParam, p.key, p.value, why)
}

func (p param) integer(dst *int, lo, hi int) error {
	n, err := strconv.Atoi(p.value)
	if err != nil || n < lo || n > hi {
		return p.bad(fmt.Sprintf("is not an integer in [%d, %d]", lo, hi))
	}
	*dst = n
	return nil
}

// fraction takes a number in (0, 1).
func (p param) fraction(dst *float64) error {
	f, err := strconv.ParseFloat(p.value, 64)
	if err != nil || !(f > 0 && f < 1) {
		return p.bad("is not a number in (0, 1)")
	}
	*dst = f
	return nil
}

// number takes a finite number; the range is the config's validation.
func (p param) number(dst *float64) error {
	f, err := strconv.ParseFloat(p.value, 64)
	if err != nil || f != f || f > 1e9 || f < -1e9 {
		return p.bad("is not a number")
	}
	*dst = f
	return nil
}

func (p param) duration(dst *time.Duration, lo, hi time.Duration, what string) error {
	d, err := time.ParseDuration(p.value)
	if err != nil || d < lo || d > hi {
		return p.bad("is not a duration in " + what)
	}
	*dst = d
	return nil
}

func (p param) boolean(dst *bool) error {
	b, err := strconv.ParseBool(p.value)
	if err != nil {
		return p.bad("is not true or false")
	}
	*dst = b
	return nil
}

// setters sets each parameter of ParamNames on a config (defaults applied).
var setters = map[string]func(cfg *Config, p param) error{
	"quorum":            func(c *Config, p param) error { return p.integer(&c.Quorum, 1, maxAgents) },
	"fresh_rounds":      func(c *Config, p param) error { return p.integer(&c.FreshRounds, 1, MaxOpenRounds) },
	"unstable_window":   func(c *Config, p param) error { return p.integer(&c.UnstableWindow, 2, 1000) },
	"unstable_flips":    func(c *Config, p param) error { return p.integer(&c.UnstableFlips, 2, 1000) },
	"unstable_calm":     func(c *Config, p param) error { return p.integer(&c.UnstableCalm, 1, 1000) },
	"uncertain_hold":    func(c *Config, p param) error { return p.integer(&c.UncertainHold, 1, 1000) },
	"results_per_round": func(c *Config, p param) error { return p.integer(&c.ResultsPerRound, 0, 1<<20) },
	"belief_up":         func(c *Config, p param) error { return p.fraction(&c.BeliefUp) },
	"belief_down":       func(c *Config, p param) error { return p.fraction(&c.BeliefDown) },
	"min_availability":  func(c *Config, p param) error { return p.fraction(&c.MinAvailability) },
	"grace": func(c *Config, p param) error {
		if err := p.duration(&c.Grace, 0, 8*c.Round, "[0, 8 rounds]"); err != nil {
			return err
		}
		if c.Grace == 0 {
			c.Grace = 1 // zero would mean "default"
		}
		return nil
	},
	"quorum_label": func(c *Config, p param) error {
		if p.value == "" || strings.ContainsAny(p.value, " \t") {
			return p.bad("is not a label name (or - for none)")
		}
		c.QuorumLabel = p.value
		return nil
	},
	"quality_off":                  func(c *Config, p param) error { return p.boolean(&c.Quality.Off) },
	"quality_loss":                 func(c *Config, p param) error { return p.fraction(&c.Quality.Loss) },
	"quality_loss_clear":           func(c *Config, p param) error { return p.fraction(&c.Quality.LossClear) },
	"quality_latency_factor":       func(c *Config, p param) error { return p.number(&c.Quality.LatencyFactor) },
	"quality_latency_clear_factor": func(c *Config, p param) error { return p.number(&c.Quality.LatencyClearFactor) },
	"quality_latency_min": func(c *Config, p param) error {
		return p.duration(&c.Quality.LatencyMin, 0, time.Minute, "[0, 1m]")
	},
	"quality_rounds":       func(c *Config, p param) error { return p.integer(&c.Quality.Rounds, 1, 100) },
	"quality_clear_rounds": func(c *Config, p param) error { return p.integer(&c.Quality.ClearRounds, 1, 100) },
}

// WithParams returns cfg (defaults applied) with the named parameters
// overridden, validated as NewEngine would. Durations take Go syntax
// ("1.5s"); counts are integers; belief_*, min_availability and
// quality_loss* are fractions; quality_off is a boolean.
func WithParams(cfg Config, params map[string]string) (Config, error) {
	cfg = cfg.withDefaults()
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		set, ok := setters[k]
		if !ok {
			return cfg, fmt.Errorf("%w: params[%q]: unknown parameter; known: %s", ErrParam, k, strings.Join(ParamNames, ", "))
		}
		if err := set(&cfg, param{key: k, value: strings.TrimSpace(params[k])}); err != nil {
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
