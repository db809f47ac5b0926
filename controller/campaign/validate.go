package campaign

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/vantage-net/vantage/internal/probecost"
)

// The window of schedule.start, [minStart, maxStart): the one the agents'
// guard accepts (agent/guard MinScheduleStart, MaxScheduleStart). Agents
// compute rounds with time.Duration, which spans 292 years; a start before
// about 1733 overflowed that arithmetic, and a test holds both sides to
// the same window.
var (
	minStart = time.Unix(0, 0).UTC()
	maxStart = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate checks the spec as a whole and only reads it. Parse calls it
// once the defaults are in (applyDefaults); calling it again on a parsed
// spec gives the same answer.
func (s *Spec) Validate() error {
	_, err := s.check()
	return err
}

// check is Validate, also returning the targets the target section
// expands to (Parse keeps them).
func (s *Spec) check() ([]Target, error) {
	for _, req := range []string{"name", "scope", "scope.country", "targets", "targets.networks", "probes", "schedule", "schedule.round"} {
		if !s.present[req] {
			return nil, fieldErr(req, "required")
		}
	}
	if !nameRE.MatchString(s.name) {
		return nil, fieldErr("name", "%q must match [a-z0-9][a-z0-9-]{0,62}", s.name)
	}
	if err := s.validateScope(); err != nil {
		return nil, err
	}
	if err := s.validateProbes(); err != nil {
		return nil, err
	}
	if err := s.validateSchedule(); err != nil {
		return nil, err
	}
	if err := s.quality.validate(); err != nil {
		return nil, err
	}
	targets, err := s.expandTargets()
	if err != nil {
		return nil, err
	}
	if err := s.validateBudget(targets); err != nil {
		return nil, err
	}
	return targets, nil
}

func (s *Spec) validateScope() error {
	c := s.scope.country
	switch {
	case len(c) != 2 || strings.ToUpper(c) != c || strings.ToLower(c) == c:
		return fieldErr("scope.country", "%q must be an ISO 3166-1 alpha-2 code in upper case, e.g. KP", c)
	case !iso3166[c]:
		return fieldErr("scope.country", "%q is not an assigned ISO 3166-1 alpha-2 code", c)
	case len(s.scope.name) > 128:
		return fieldErr("scope.name", "is %d bytes long, more than 128", len(s.scope.name))
	case strings.ContainsFunc(s.scope.name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fieldErr("scope.name", "contains control characters")
	}
	return nil
}

func (s *Spec) validateProbes() error {
	if len(s.probes) == 0 {
		return fieldErr("probes", "needs at least one probe")
	}
	seen := map[string]int{}
	for i, p := range s.probes {
		path := index("probes", i)
		kind := p.kind()
		if j, dup := seen[kind]; dup {
			return fieldErr(path, "a second %s probe (the first is probes[%d]); each kind may appear once", kind, j)
		}
		seen[kind] = i
		if err := p.validate(join(path, kind)); err != nil {
			return err
		}
	}
	return nil
}

// validate checks one probe with its defaults in; path names its kind's
// section, e.g. probes[1].tcp.
func (p probeSpec) validate(path string) error {
	switch {
	case p.tcp != nil:
		if len(p.tcp.ports) == 0 {
			return fieldErr(join(path, "ports"), "required, at least one port")
		}
		switch p.tcp.mode {
		case "connect", "syn":
		default:
			return fieldErr(join(path, "mode"), "%q must be connect or syn", p.tcp.mode)
		}
	case p.trace != nil:
		t := p.trace
		switch t.protocol {
		case "icmp", "udp", "tcp":
		default:
			return fieldErr(join(path, "protocol"), "%q must be icmp, udp or tcp", t.protocol)
		}
		if t.protocol == "icmp" && t.port != 0 {
			return fieldErr(join(path, "port"), "not used by icmp traces; remove it")
		}
		if t.gapLimit > t.maxTTL {
			return fieldErr(join(path, "gap_limit"), "%d is more than max_ttl %d", t.gapLimit, t.maxTTL)
		}
	}
	return nil
}

// probeDuration is how long one probe of p can take in a round.
func (p probeSpec) duration() time.Duration {
	switch {
	case p.icmp != nil:
		return p.icmp.timeout * time.Duration(1+p.icmp.retries)
	case p.tcp != nil:
		return p.tcp.timeout
	default:
		return p.trace.timeout
	}
}

func (s *Spec) validateSchedule() error {
	sc := &s.schedule
	if sc.hasStart && (sc.start.Before(minStart) || !sc.start.Before(maxStart)) {
		return fieldErr("schedule.start", "%s is outside %s..%s, the starts agents accept",
			sc.start.Format(time.RFC3339Nano), minStart.Format(time.RFC3339), maxStart.Format(time.RFC3339))
	}
	if sc.jitter >= sc.round {
		return fieldErr("schedule.jitter", "%s must be less than schedule.round %s", sc.jitter, sc.round)
	}
	longest, which := time.Duration(0), ""
	for i, p := range s.probes {
		if d := p.duration(); d > longest {
			longest, which = d, join(index("probes", i), p.kind())
		}
	}
	if sc.jitter+longest >= sc.round {
		return fieldErr("schedule.round", "%s must be more than schedule.jitter %s + the longest probe %s (%s)",
			sc.round, sc.jitter, longest, which)
	}
	for i, p := range s.probes {
		if p.trace != nil && p.trace.every < sc.round {
			return fieldErr(join(join(index("probes", i), "trace"), "every"),
				"%s must be at least schedule.round %s", p.trace.every, sc.round)
		}
	}
	return nil
}

// everyRounds is how many rounds apart a probe runs.
func (s *Spec) everyRounds(p probeSpec) uint32 {
	if p.trace == nil {
		return 1
	}
	r := s.schedule.round
	return uint32((p.trace.every + r - 1) / r)
}

// packetsPerRound is the per-target packet rate of one probe, per round.
func (s *Spec) packetsPerRound(p probeSpec) float64 {
	switch {
	case p.icmp != nil:
		return float64(1 + p.icmp.retries)
	case p.tcp != nil && p.tcp.mode == "connect":
		// The kernel may retransmit a connect probe's SYN within its
		// timeout, and the agent charges every one (probecost).
		return float64(len(p.tcp.ports) * probecost.ConnectSYNs(p.tcp.timeout))
	case p.tcp != nil:
		return float64(len(p.tcp.ports))
	default:
		return float64(p.trace.maxTTL) / float64(s.everyRounds(p))
	}
}

// validateBudget checks the probes' packet rates against the budget for
// the expanded targets, plus those discovery may still add.
func (s *Spec) validateBudget(expanded []Target) error {
	b := &s.budget
	round := s.schedule.round.Seconds()
	var total float64
	var parts []string
	for _, p := range s.probes {
		n := s.packetsPerRound(p)
		total += n
		parts = append(parts, fmt.Sprintf("%s %g", p.kind(), n))
	}
	const eps = 1e-9
	if allowed := b.perTargetPPS * round; total > allowed+eps {
		return fieldErr("budget.per_target_pps", "probes send %g packets per target per round (%s), more than per_target_pps %g x round %s = %g",
			total, strings.Join(parts, ", "), b.perTargetPPS, s.schedule.round, allowed)
	}
	targets := len(expanded) + s.pendingTargets()
	perRound := total * float64(targets)
	if allowed := b.agentPPS * round; perRound > allowed+eps {
		return fieldErr("budget.agent_pps", "%d targets x %g packets = %g packets per round, more than agent_pps %g x round %s = %g",
			targets, total, perRound, b.agentPPS, s.schedule.round, allowed)
	}
	return nil
}
