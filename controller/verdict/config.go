package verdict

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ErrConfig is wrapped by every NewEngine and WithParams error.
var ErrConfig = errors.New("verdict: invalid config")

// Limits.
const (
	// MaxOpenRounds bounds the rounds buffered before the engine knows the
	// time, and (with Grace) after.
	MaxOpenRounds = 16
	// futureRounds is how far ahead of now an observation's round may be.
	futureRounds = 2
	// maxAgents bounds the number of vantages tracked.
	maxAgents = 65535
	// maxHops bounds the hops kept per trace.
	maxHops = 64
)

// Defaults of Config; see the package comment for what each one does.
const (
	DefaultQuorumLabel     = "provider"
	DefaultBeliefUp        = 0.9
	DefaultBeliefDown      = 0.1
	DefaultMinAvailability = 0.1
	DefaultUnstableWindow  = 10
	DefaultUnstableFlips   = 4
	DefaultUnstableCalm    = 5
	DefaultFreshRounds     = 1
	DefaultUncertainHold   = 3
)

// Target is one subject at target level.
type Target struct {
	// Addr is the IP address as the tasks carry it.
	Addr    string
	Network string
	Role    vantagev1.TargetRole
	// Name is an UPSTREAM or BORDER router's campaign name (CampaignTarget.name).
	Name string
}

// Config describes one campaign for the engine. Zero values take the
// defaults named in the field comments.
type Config struct {
	Campaign string
	// Scope is the scope subject, e.g. the country code "KP".
	Scope string
	Start time.Time
	Round time.Duration
	// Grace: a round closes at its end + Grace at the latest. Default
	// Round/2.
	Grace  time.Duration
	Quorum int
	// FreshRounds: a vantage counts for round n only if it reported in one
	// of the rounds n-FreshRounds+1..n. Default 1.
	FreshRounds int
	Targets     []Target
	// Networks are the network names, in display order.
	Networks []string

	// QuorumLabel: vantages with the same value of this label count once
	// toward the quorum and once per target (e.g. two vantages at the same
	// provider). Vantages without the label count on their own. Default
	// "provider"; "-" counts every vantage on its own.
	QuorumLabel string
	// BeliefUp and BeliefDown: a (vantage, target) belief >= BeliefUp is
	// up, <= BeliefDown is down, in between uncertain. Defaults 0.9, 0.1.
	BeliefUp, BeliefDown float64
	// MinAvailability: a (vantage, target) pair whose learned availability
	// is below this is not evidence. Default 0.1.
	MinAvailability float64
	// UnstableWindow, UnstableFlips, UnstableCalm: a subject whose raw
	// state crossed the REACHABLE boundary >= UnstableFlips times in the
	// last UnstableWindow rounds (or went down again while a quick recovery
	// was held) is UNSTABLE until UnstableCalm rounds pass without a
	// crossing, or until it is UNREACHABLE for 2 rounds in a row (a
	// sustained outage, published at once). UnstableWindow also bounds the
	// per-subject history of published transitions an episode folds.
	// Defaults 10, 4, 5.
	UnstableWindow, UnstableFlips, UnstableCalm int
	// UncertainHold: a subject whose raw state is UNKNOWN for lack of firm
	// beliefs while the fleet has quorum (every vantage's belief in flux as
	// routes change mid-round) keeps its published state, and its flip
	// history, for up to this many such rounds in a row: they are no
	// evidence of a change (and, inside a flapping episode, part of it).
	// Quorum lost (fewer healthy groups than Quorum) is UNKNOWN at once.
	// Default 3.
	UncertainHold int
	// ResultsPerRound is how many scheduled (non-trace) results each
	// vantage sends per round. When > 0, a round closes as soon as every
	// vantage expected in it has sent that many, without waiting for Grace.
	ResultsPerRound int
	// Quality: when a REACHABLE network or scope is DEGRADED for loss or
	// latency (quality.go). Zero fields take the defaults.
	Quality QualityConfig
	// Routing is the BGP view joined to the verdicts (routing.go); nil:
	// no BGP evidence. Prefixes are each network's prefixes, which it
	// reads.
	Routing  Routing
	Prefixes map[string][]netip.Prefix
	// RouterASNs: the named routers' AS numbers (campaign asn:), by
	// name; locations name them, and BGP evidence that an AS withdrew
	// places the fault at its router.
	RouterASNs map[string]uint32
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	orDefault(&c.Grace, c.Round/2)
	orDefault(&c.FreshRounds, DefaultFreshRounds)
	orDefault(&c.QuorumLabel, DefaultQuorumLabel)
	orDefault(&c.BeliefUp, DefaultBeliefUp)
	orDefault(&c.BeliefDown, DefaultBeliefDown)
	orDefault(&c.MinAvailability, DefaultMinAvailability)
	orDefault(&c.UnstableWindow, DefaultUnstableWindow)
	orDefault(&c.UnstableFlips, DefaultUnstableFlips)
	orDefault(&c.UnstableCalm, DefaultUnstableCalm)
	orDefault(&c.UncertainHold, DefaultUncertainHold)
	c.Quality = c.Quality.withDefaults()
	return c
}

// orDefault sets *v to def when *v is the zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func cfgErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

func (c Config) validate() error {
	switch {
	case c.Campaign == "" || strings.Contains(c.Campaign, "/"):
		return cfgErr("Campaign", "%q must be non-empty without '/'", c.Campaign)
	case c.Scope == "" || strings.Contains(c.Scope, "/"):
		return cfgErr("Scope", "%q must be non-empty without '/'", c.Scope)
	case c.Start.Year() < 1970 || c.Start.Year() > 2200:
		return cfgErr("Start", "%s must be between 1970 and 2200", c.Start.Format(time.RFC3339))
	case c.Round <= 0:
		return cfgErr("Round", "%s must be positive", c.Round)
	case c.Grace < 0 || c.Grace > 8*c.Round:
		return cfgErr("Grace", "%s must be in [0, 8 x Round]", c.Grace)
	case c.Quorum < 1:
		return cfgErr("Quorum", "%d must be at least 1", c.Quorum)
	case c.FreshRounds < 0 || c.FreshRounds > MaxOpenRounds:
		return cfgErr("FreshRounds", "%d must be in [0, %d]", c.FreshRounds, MaxOpenRounds)
	case !(c.BeliefUp >= 0.5 && c.BeliefUp < 1):
		return cfgErr("BeliefUp", "%v must be in [0.5, 1)", c.BeliefUp)
	case !(c.BeliefDown > 0 && c.BeliefDown < c.BeliefUp && c.BeliefDown <= 0.5):
		return cfgErr("BeliefDown", "%v must be in (0, 0.5] and below BeliefUp", c.BeliefDown)
	case !(c.MinAvailability >= 0 && c.MinAvailability < 1):
		return cfgErr("MinAvailability", "%v must be in [0, 1)", c.MinAvailability)
	case c.UnstableWindow < 2 || c.UnstableWindow > 1000:
		return cfgErr("UnstableWindow", "%d must be in [2, 1000]", c.UnstableWindow)
	case c.UnstableFlips < 2 || c.UnstableFlips > c.UnstableWindow:
		return cfgErr("UnstableFlips", "%d must be in [2, UnstableWindow]", c.UnstableFlips)
	case c.UnstableCalm < 1 || c.UnstableCalm > c.UnstableWindow:
		return cfgErr("UnstableCalm", "%d must be in [1, UnstableWindow]", c.UnstableCalm)
	case c.UncertainHold < 1 || c.UncertainHold > 1000:
		return cfgErr("UncertainHold", "%d must be in [1, 1000]", c.UncertainHold)
	case c.ResultsPerRound < 0:
		return cfgErr("ResultsPerRound", "%d must not be negative", c.ResultsPerRound)
	case len(c.Targets) == 0:
		return cfgErr("Targets", "at least one target is required")
	case len(c.Networks) == 0:
		return cfgErr("Networks", "at least one network is required")
	}
	return c.Quality.validate()
}
