// Package campaign turns a campaign file (YAML) into what the controller
// schedules: the expanded target list, the per-agent tasks and the stored
// campaign record.
//
// It exists so that one strict, well-tested place decides what a campaign
// means. A campaign names the networks of a scope (a country), the probes to
// run against every target, the round length and the politeness budget.
// Mistakes in such a file would send packets where nobody meant to, so the
// file is validated like blackbox_exporter's config: unknown fields are
// errors, every error names the field path and the reason (for example
// `targets.networks[1].prefix: "198.18.0.0/33" is not a valid CIDR prefix`),
// and nothing is guessed.
//
// Strictness: the file is parsed with go.yaml.in/yaml/v3 into a node tree
// and walked field by field. That is stricter than decoding into structs
// with KnownFields(true) (which only reports a line and a Go type name): the
// walker also rejects duplicate keys, wrongly typed scalars, anchors and
// aliases, a second document and trailing garbage, and it reports the full
// field path. Input is limited to MaxFileBytes and MaxTargets.
//
// Schema and defaults:
//
//	name: kp                       # required, [a-z0-9][a-z0-9-]{0,62}
//	scope: {country: KP, name: "North Korea"}  # country: ISO 3166-1 alpha-2 (upper case), required
//	targets:
//	  networks:                    # required, >= 1, names unique, prefixes canonical and non-overlapping
//	    - {name: net0, prefix: 198.18.0.0/24, hosts: [198.18.0.10]}  # hosts optional, inside prefix
//	  hosts: {per_network: 4, discover: false}  # for networks without hosts (see below)
//	  upstreams: [198.51.100.42]   # role UPSTREAM: the router just before the country's border; or "auto"
//	  borders: [198.51.100.50]     # role BORDER: the country's own border router (the hop just before the prefixes)
//	  controls: [192.0.2.1]        # role CONTROL, outside every network
//	  rir: {file: PATH, country: KP} # client side only: vantagectl expands it into networks (rirexpand.go)
//	probes:                        # >= 1, each exactly one of icmp, tcp, trace; each kind at most once
//	  - icmp: {retries: 0, timeout: 2s, payload_bytes: 16}           # retries 0..5
//	  - tcp: {ports: [80, 443], mode: connect, timeout: 2s}           # mode connect (default) | syn
//	  - trace: {protocol: icmp, paris: false, every: 10m, max_ttl: 30, gap_limit: 5, timeout: 2s, port: 0, on_change: false}
//	schedule: {round: 60s, jitter: 0s, start: 1970-01-01T00:00:00Z} # round required, 1s..24h; start in [1970, 2200)
//	vantages: {select: {role: vps}, quorum: 1}   # select: labels that must all match; empty = all agents
//	budget: {per_target_pps: 1, agent_pps: 500}
//
// Host expansion: a network without a hosts list gets targets.hosts.per_network
// consecutive addresses starting at the prefix address + 10 (198.18.0.0/24
// gives .10, .11, ...). Offset 10 skips the addresses that are usually
// routers, gateways and broadcast-adjacent infrastructure (.0 to .9), and it
// matches the lab. For IPv4 the expansion must stay below the broadcast
// address.
//
// Discovery (discovery.go): with `discover: true`, a network without a
// hosts list is swept instead (every address; at most MaxSweep in all,
// so IPv6 networks must be /112 or longer) and the per_network hosts
// that answer most reliably become its targets. `upstreams: auto` finds
// the routers before the prefixes by traceroute and labels them UPSTREAM
// or BORDER. The controller runs both after the apply (campaign state
// DISCOVERING) and calls WithTargets with what it found; until then such
// a spec has only its listed targets.
//
// Timing: every timeout is a whole number of milliseconds. jitter plus the
// longest probe (timeout x (1+retries) for icmp, timeout for tcp and for one
// TTL of a trace) must be less than round, so a round's results are in
// before the next round starts. A trace runs every ceil(every/round) rounds.
//
// Budget: packets per target per round are icmp 1+retries, tcp one per
// port, and a trace's max_ttl spread over its every_rounds. That must not
// exceed per_target_pps x round. The same per-target figure times the number
// of targets must not exceed agent_pps x round, because every selected agent
// probes every target.
package campaign

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vantage-net/vantage/internal/probecost"
	"github.com/vantage-net/vantage/internal/tracedefaults"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Limits on untrusted input.
const (
	// MaxFileBytes is the largest campaign file accepted.
	MaxFileBytes = 1 << 20
	// MaxTargets is the most targets a campaign may expand to.
	MaxTargets = 65536
	// HostOffset is where per_network expansion starts inside a prefix.
	HostOffset = 10
)

// Defaults, matching the comments in probe.proto.
const (
	defaultTimeout      = 2 * time.Second
	defaultPayloadBytes = 16
	defaultMaxTTL       = tracedefaults.MaxTTL
	defaultGapLimit     = tracedefaults.GapLimit
	defaultTraceEvery   = 10 * time.Minute
	defaultUDPPort      = 33434
	defaultTCPTracePort = 80
	defaultPerTargetPPS = 1
	defaultAgentPPS     = 500
	defaultQuorum       = 1
	maxTimeout          = 30 * time.Second
	maxRound            = 24 * time.Hour
	maxPorts            = 64
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

// Spec is a parsed, validated campaign file. Build it with Parse; treat it
// as immutable afterwards.
type Spec struct {
	name     string
	scope    scopeSpec
	targets  targetsSpec
	probes   []probeSpec
	schedule scheduleSpec
	vantages vantagesSpec
	budget   budgetSpec

	// present records which required sections the file had.
	present map[string]bool
	// expanded is filled by Validate (and extended by WithTargets).
	expanded []Target
	// discovered is set by WithTargets.
	discovered bool
}

type scopeSpec struct {
	country, name string
}

type networkSpec struct {
	name   string
	prefix netip.Prefix
	hosts  []netip.Addr
}

type targetsSpec struct {
	networks      []networkSpec
	perNetwork    int64
	discover      bool
	upstreams     []netip.Addr
	upstreamsAuto bool
	borders       []netip.Addr
	controls      []netip.Addr
}

type probeSpec struct {
	icmp  *icmpSpec
	tcp   *tcpSpec
	trace *traceSpec
}

type icmpSpec struct {
	retries      int64
	timeout      time.Duration
	payloadBytes int64
}

type tcpSpec struct {
	ports   []int64
	mode    string
	timeout time.Duration
}

type traceSpec struct {
	protocol string
	paris    bool
	every    time.Duration
	maxTTL   int64
	gapLimit int64
	timeout  time.Duration
	port     int64
	onChange bool
}

type scheduleSpec struct {
	round, jitter time.Duration
	start         time.Time
	hasStart      bool
}

type vantagesSpec struct {
	selector map[string]string
	quorum   int64
}

type budgetSpec struct {
	perTargetPPS, agentPPS float64
}

// Target is one probed address after expansion.
type Target struct {
	Addr netip.Addr
	// Network is the campaign network name for hosts, "" otherwise.
	Network string
	Role    vantagev1.TargetRole
}

// Parse decodes a campaign file, applies defaults and validates it. Every
// error wraps ErrInvalid and is a *FieldError naming the field.
func Parse(data []byte) (*Spec, error) {
	root, err := readDocument(data)
	if err != nil {
		return nil, err
	}
	s := &Spec{present: map[string]bool{}}
	if err := s.decode(root); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Spec) mark(path string) { s.present[path] = true }

func (s *Spec) decode(root *yaml.Node) error {
	return decodeMapping("", root, []field{
		{"name", func(p string, v *yaml.Node) error { s.mark(p); return decodeString(p, v, &s.name) }},
		{"scope", func(p string, v *yaml.Node) error {
			s.mark(p)
			return decodeMapping(p, v, []field{
				{"country", func(p string, v *yaml.Node) error { s.mark(p); return decodeString(p, v, &s.scope.country) }},
				{"name", func(p string, v *yaml.Node) error { return decodeString(p, v, &s.scope.name) }},
			})
		}},
		{"targets", func(p string, v *yaml.Node) error { s.mark(p); return s.decodeTargets(p, v) }},
		{"probes", func(p string, v *yaml.Node) error {
			s.mark(p)
			return decodeSequence(p, v, 16, func(p string, _ int, v *yaml.Node) error {
				pr, err := decodeProbe(p, v)
				if err != nil {
					return err
				}
				s.probes = append(s.probes, pr)
				return nil
			})
		}},
		{"schedule", func(p string, v *yaml.Node) error {
			s.mark(p)
			return decodeMapping(p, v, []field{
				{"round", func(p string, v *yaml.Node) error {
					s.mark(p)
					return decodeDuration(p, v, time.Second, maxRound, &s.schedule.round)
				}},
				{"jitter", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, 0, maxRound, &s.schedule.jitter)
				}},
				{"start", func(p string, v *yaml.Node) error {
					s.schedule.hasStart = true
					return decodeTime(p, v, &s.schedule.start)
				}},
			})
		}},
		{"vantages", func(p string, v *yaml.Node) error {
			return decodeMapping(p, v, []field{
				{"select", func(p string, v *yaml.Node) error { return decodeLabels(p, v, &s.vantages.selector) }},
				{"quorum", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, 1000, &s.vantages.quorum) }},
			})
		}},
		{"budget", func(p string, v *yaml.Node) error {
			return decodeMapping(p, v, []field{
				{"per_target_pps", func(p string, v *yaml.Node) error {
					return decodeFloat(p, v, 1000, &s.budget.perTargetPPS)
				}},
				{"agent_pps", func(p string, v *yaml.Node) error {
					return decodeFloat(p, v, 1e6, &s.budget.agentPPS)
				}},
			})
		}},
	})
}

func (s *Spec) decodeTargets(path string, n *yaml.Node) error {
	t := &s.targets
	return decodeMapping(path, n, []field{
		{"networks", func(p string, v *yaml.Node) error {
			s.mark(p)
			return decodeSequence(p, v, MaxTargets, func(p string, _ int, v *yaml.Node) error {
				var nw networkSpec
				err := decodeMapping(p, v, []field{
					{"name", func(p string, v *yaml.Node) error { s.mark(p); return decodeString(p, v, &nw.name) }},
					{"prefix", func(p string, v *yaml.Node) error { s.mark(p); return decodePrefix(p, v, &nw.prefix) }},
					{"hosts", func(p string, v *yaml.Node) error { return decodeAddrList(p, v, MaxTargets, &nw.hosts) }},
				})
				t.networks = append(t.networks, nw)
				return err
			})
		}},
		{"hosts", func(p string, v *yaml.Node) error {
			return decodeMapping(p, v, []field{
				{"per_network", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, MaxTargets, &t.perNetwork) }},
				{"discover", func(p string, v *yaml.Node) error { return decodeBool(p, v, &t.discover) }},
			})
		}},
		{"upstreams", func(p string, v *yaml.Node) error {
			if v.Kind == yaml.ScalarNode {
				if v.Value == "auto" && v.ShortTag() == "!!str" {
					t.upstreamsAuto = true
					return nil
				}
				return fieldErr(p, "expected a list of addresses or \"auto\", got %s", kindName(v))
			}
			return decodeAddrList(p, v, MaxTargets, &t.upstreams)
		}},
		{"borders", func(p string, v *yaml.Node) error { return decodeAddrList(p, v, MaxTargets, &t.borders) }},
		{"controls", func(p string, v *yaml.Node) error { return decodeAddrList(p, v, MaxTargets, &t.controls) }},
		{"rir", func(p string, v *yaml.Node) error {
			return fieldErr(p, "must be expanded before the campaign reaches the controller: `vantagectl campaign apply` "+
				"reads the file and lists the country's networks instead (see ExpandRIR); the controller never opens files")
		}},
	})
}

func decodeLabels(path string, n *yaml.Node, out *map[string]string) error {
	if n.Kind != yaml.MappingNode {
		return fieldErr(path, "expected a mapping of labels, got %s", kindName(n))
	}
	m := make(map[string]string, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" || k.Value == "" {
			return fieldErr(path, "line %d: label names must be non-empty strings", k.Line)
		}
		p := join(path, k.Value)
		if _, dup := m[k.Value]; dup {
			return fieldErr(p, "defined more than once (line %d)", k.Line)
		}
		var val string
		if err := decodeString(p, v, &val); err != nil {
			return fieldErr(p, "label values must be strings (quote numbers and booleans), got %s", kindName(v))
		}
		m[k.Value] = val
	}
	*out = m
	return nil
}

func decodeProbe(path string, n *yaml.Node) (probeSpec, error) {
	var pr probeSpec
	err := decodeMapping(path, n, []field{
		{"icmp", func(p string, v *yaml.Node) error {
			pr.icmp = &icmpSpec{}
			return decodeMapping(p, v, []field{
				{"retries", func(p string, v *yaml.Node) error { return decodeInt(p, v, 0, 5, &pr.icmp.retries) }},
				{"timeout", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, time.Millisecond, maxTimeout, &pr.icmp.timeout)
				}},
				{"payload_bytes", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, 1400, &pr.icmp.payloadBytes) }},
			})
		}},
		{"tcp", func(p string, v *yaml.Node) error {
			pr.tcp = &tcpSpec{}
			return decodeMapping(p, v, []field{
				{"ports", func(p string, v *yaml.Node) error {
					return decodeSequence(p, v, maxPorts, func(p string, _ int, v *yaml.Node) error {
						var port int64
						if err := decodeInt(p, v, 1, 65535, &port); err != nil {
							return err
						}
						if slices.Contains(pr.tcp.ports, port) {
							return fieldErr(p, "port %d is listed twice", port)
						}
						pr.tcp.ports = append(pr.tcp.ports, port)
						return nil
					})
				}},
				{"mode", func(p string, v *yaml.Node) error { return decodeString(p, v, &pr.tcp.mode) }},
				{"timeout", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, time.Millisecond, maxTimeout, &pr.tcp.timeout)
				}},
			})
		}},
		{"trace", func(p string, v *yaml.Node) error {
			pr.trace = &traceSpec{}
			tr := pr.trace
			return decodeMapping(p, v, []field{
				{"protocol", func(p string, v *yaml.Node) error { return decodeString(p, v, &tr.protocol) }},
				{"paris", func(p string, v *yaml.Node) error { return decodeBool(p, v, &tr.paris) }},
				{"every", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, time.Second, 7*24*time.Hour, &tr.every)
				}},
				{"max_ttl", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, tracedefaults.MaxTTLCap, &tr.maxTTL) }},
				{"gap_limit", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, tracedefaults.MaxTTLCap, &tr.gapLimit) }},
				{"timeout", func(p string, v *yaml.Node) error {
					return decodeDuration(p, v, time.Millisecond, maxTimeout, &tr.timeout)
				}},
				{"port", func(p string, v *yaml.Node) error { return decodeInt(p, v, 1, 65535, &tr.port) }},
				{"on_change", func(p string, v *yaml.Node) error { return decodeBool(p, v, &tr.onChange) }},
			})
		}},
	})
	if err != nil {
		return pr, err
	}
	var kinds []string
	for _, k := range []struct {
		name string
		set  bool
	}{{"icmp", pr.icmp != nil}, {"tcp", pr.tcp != nil}, {"trace", pr.trace != nil}} {
		if k.set {
			kinds = append(kinds, k.name)
		}
	}
	if len(kinds) != 1 {
		got := "none"
		if len(kinds) > 0 {
			got = strings.Join(kinds, ", ")
		}
		return pr, fieldErr(path, "must have exactly one of icmp, tcp, trace (got %s)", got)
	}
	return pr, nil
}

// kind names the probe kind for paths and task ids.
func (p probeSpec) kind() string {
	switch {
	case p.icmp != nil:
		return "icmp"
	case p.tcp != nil:
		return "tcp"
	default:
		return "trace"
	}
}

// Validate applies defaults and checks the spec as a whole. Parse calls it;
// it is idempotent.
func (s *Spec) Validate() error {
	for _, req := range []string{"name", "scope", "scope.country", "targets", "targets.networks", "probes", "schedule", "schedule.round"} {
		if !s.present[req] {
			return fieldErr(req, "required")
		}
	}
	if !nameRE.MatchString(s.name) {
		return fieldErr("name", "%q must match [a-z0-9][a-z0-9-]{0,62}", s.name)
	}
	if err := s.validateScope(); err != nil {
		return err
	}
	if err := s.validateProbes(); err != nil {
		return err
	}
	if err := s.validateSchedule(); err != nil {
		return err
	}
	if s.vantages.quorum == 0 {
		s.vantages.quorum = defaultQuorum
	}
	targets, err := s.expandTargets()
	if err != nil {
		return err
	}
	s.expanded = targets
	return s.validateBudget()
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
	for i := range s.probes {
		p := &s.probes[i]
		path := index("probes", i)
		kind := p.kind()
		if j, dup := seen[kind]; dup {
			return fieldErr(path, "a second %s probe (the first is probes[%d]); each kind may appear once", kind, j)
		}
		seen[kind] = i
		path = join(path, kind)
		switch kind {
		case "icmp":
			if p.icmp.timeout == 0 {
				p.icmp.timeout = defaultTimeout
			}
			if p.icmp.payloadBytes == 0 {
				p.icmp.payloadBytes = defaultPayloadBytes
			}
		case "tcp":
			if len(p.tcp.ports) == 0 {
				return fieldErr(join(path, "ports"), "required, at least one port")
			}
			switch p.tcp.mode {
			case "":
				p.tcp.mode = "connect"
			case "connect", "syn":
			default:
				return fieldErr(join(path, "mode"), "%q must be connect or syn", p.tcp.mode)
			}
			if p.tcp.timeout == 0 {
				p.tcp.timeout = defaultTimeout
			}
		case "trace":
			t := p.trace
			switch t.protocol {
			case "":
				t.protocol = "icmp"
			case "icmp", "udp", "tcp":
			default:
				return fieldErr(join(path, "protocol"), "%q must be icmp, udp or tcp", t.protocol)
			}
			switch {
			case t.protocol == "icmp" && t.port != 0:
				return fieldErr(join(path, "port"), "not used by icmp traces; remove it")
			case t.protocol == "udp" && t.port == 0:
				t.port = defaultUDPPort
			case t.protocol == "tcp" && t.port == 0:
				t.port = defaultTCPTracePort
			}
			if t.maxTTL == 0 {
				t.maxTTL = defaultMaxTTL
			}
			if t.gapLimit == 0 {
				t.gapLimit = min(defaultGapLimit, t.maxTTL)
			}
			if t.gapLimit > t.maxTTL {
				return fieldErr(join(path, "gap_limit"), "%d is more than max_ttl %d", t.gapLimit, t.maxTTL)
			}
			if t.timeout == 0 {
				t.timeout = tracedefaults.Timeout
			}
			if t.every == 0 {
				t.every = defaultTraceEvery
			}
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

func (s *Spec) validateBudget() error {
	b := &s.budget
	if b.perTargetPPS == 0 {
		b.perTargetPPS = defaultPerTargetPPS
	}
	if b.agentPPS == 0 {
		b.agentPPS = defaultAgentPPS
	}
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
	targets := len(s.expanded) + s.pendingTargets()
	perRound := total * float64(targets)
	if allowed := b.agentPPS * round; perRound > allowed+eps {
		return fieldErr("budget.agent_pps", "%d targets x %g packets = %g packets per round, more than agent_pps %g x round %s = %g",
			targets, total, perRound, b.agentPPS, s.schedule.round, allowed)
	}
	return nil
}

// expandTargets checks the target section and returns hosts, upstreams and
// controls in file order.
func (s *Spec) expandTargets() ([]Target, error) {
	t := &s.targets
	if t.discover && t.perNetwork == 0 {
		return nil, fieldErr("targets.hosts.per_network", "required with targets.hosts.discover: how many answering hosts to keep per network")
	}
	if len(t.networks) == 0 {
		return nil, fieldErr("targets.networks", "needs at least one network")
	}
	// Names, prefixes and the size of the expansion, before allocating it.
	names := map[string]int{}
	total := len(t.upstreams) + len(t.borders) + len(t.controls)
	swept := 0
	for i, nw := range t.networks {
		path := index("targets.networks", i)
		switch {
		case nw.name == "":
			return nil, fieldErr(join(path, "name"), "required")
		case !nameRE.MatchString(nw.name):
			return nil, fieldErr(join(path, "name"), "%q must match [a-z0-9][a-z0-9-]{0,62}", nw.name)
		case !nw.prefix.IsValid():
			return nil, fieldErr(join(path, "prefix"), "required")
		}
		if j, dup := names[nw.name]; dup {
			return nil, fieldErr(join(path, "name"), "%q is already used by targets.networks[%d]", nw.name, j)
		}
		names[nw.name] = i
		if len(nw.hosts) > 0 {
			total += len(nw.hosts)
			continue
		}
		if t.discover {
			n, err := sweepSize(join(path, "prefix"), nw.prefix)
			if err != nil {
				return nil, err
			}
			if swept += n; swept > MaxSweep {
				return nil, fieldErr(join(path, "prefix"), "the discovery sweep would probe %d addresses up to here, more than %d; list hosts for the largest networks",
					swept, MaxSweep)
			}
			total += int(t.perNetwork)
			continue
		}
		if t.perNetwork == 0 {
			return nil, fieldErr("targets.hosts.per_network", "required because %s lists no hosts", path)
		}
		if err := checkExpansion(join(path, "prefix"), nw.prefix, t.perNetwork); err != nil {
			return nil, err
		}
		total += int(t.perNetwork)
	}
	if total > MaxTargets {
		return nil, fieldErr("targets", "expands to %d targets, more than the limit of %d", total, MaxTargets)
	}
	if err := checkOverlaps(t.networks); err != nil {
		return nil, err
	}

	out := make([]Target, 0, total)
	where := make(map[netip.Addr]string, total)
	add := func(path string, a netip.Addr, network string, role vantagev1.TargetRole) error {
		if prev, dup := where[a]; dup {
			return fieldErr(path, "%s is already a target (%s)", a, prev)
		}
		where[a] = path
		out = append(out, Target{Addr: a, Network: network, Role: role})
		return nil
	}
	for i, nw := range t.networks {
		path := index("targets.networks", i)
		if len(nw.hosts) == 0 && t.discover {
			continue // hosts come from the sweep (WithTargets)
		}
		if len(nw.hosts) == 0 {
			a := offset(nw.prefix.Addr(), HostOffset)
			for range t.perNetwork {
				if err := add(join(path, "prefix"), a, nw.name, vantagev1.TargetRole_TARGET_ROLE_HOST); err != nil {
					return nil, err
				}
				a = a.Next()
			}
			continue
		}
		for j, h := range nw.hosts {
			hp := index(join(path, "hosts"), j)
			if !nw.prefix.Contains(h) {
				return nil, fieldErr(hp, "%s is not inside prefix %s", h, nw.prefix)
			}
			if err := add(hp, h, nw.name, vantagev1.TargetRole_TARGET_ROLE_HOST); err != nil {
				return nil, err
			}
		}
	}
	for i, a := range t.upstreams {
		if err := add(index("targets.upstreams", i), a, "", vantagev1.TargetRole_TARGET_ROLE_UPSTREAM); err != nil {
			return nil, err
		}
	}
	for i, a := range t.borders {
		if err := add(index("targets.borders", i), a, "", vantagev1.TargetRole_TARGET_ROLE_BORDER); err != nil {
			return nil, err
		}
	}
	for i, a := range t.controls {
		path := index("targets.controls", i)
		for j, nw := range t.networks {
			if nw.prefix.Contains(a) {
				return nil, fieldErr(path, "%s is inside targets.networks[%d] (%s); controls must be outside the scope", a, j, nw.prefix)
			}
		}
		if err := add(path, a, "", vantagev1.TargetRole_TARGET_ROLE_CONTROL); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkExpansion makes sure perNetwork addresses from HostOffset fit in p
// (for IPv4, below the broadcast address).
func checkExpansion(path string, p netip.Prefix, perNetwork int64) error {
	hostBits := p.Addr().BitLen() - p.Bits()
	need := uint64(HostOffset) + uint64(perNetwork) // offsets HostOffset..need-1
	if p.Addr().Is4() {
		need++ // the broadcast address
	}
	if hostBits < 63 && need > uint64(1)<<hostBits {
		return fieldErr(path, "%s is too small for targets.hosts.per_network %d starting at offset %d; list hosts explicitly",
			p, perNetwork, HostOffset)
	}
	return nil
}

// checkOverlaps reports the first pair of overlapping prefixes. Two CIDR
// prefixes overlap only if one contains the other, so after sorting by
// address (then shorter prefix first), checking neighbours is enough.
func checkOverlaps(nets []networkSpec) error {
	order := make([]int, len(nets))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		pa, pb := nets[a].prefix, nets[b].prefix
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c
		}
		if c := pa.Bits() - pb.Bits(); c != 0 {
			return c
		}
		return a - b
	})
	for k := 1; k < len(order); k++ {
		i, j := order[k-1], order[k]
		if nets[i].prefix.Overlaps(nets[j].prefix) {
			i, j = min(i, j), max(i, j)
			return fieldErr(index("targets.networks", j)+".prefix", "%s overlaps targets.networks[%d].prefix %s",
				nets[j].prefix, i, nets[i].prefix)
		}
	}
	return nil
}

// offset returns a + n; callers make sure it stays inside a's prefix.
func offset(a netip.Addr, n uint64) netip.Addr {
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	sum, carry := bits.Add64(lo, n, 0)
	binary.BigEndian.PutUint64(b[:8], hi+carry)
	binary.BigEndian.PutUint64(b[8:], sum)
	out := netip.AddrFrom16(b)
	if a.Is4() {
		return out.Unmap()
	}
	return out
}

// Round is the round length.
func (s *Spec) Round() time.Duration { return s.schedule.round }

// Jitter is the per-round random delay bound.
func (s *Spec) Jitter() time.Duration { return s.schedule.jitter }

// Start is the instant round 0 starts: schedule.start, or the Unix epoch so
// rounds line up across restarts and controllers.
func (s *Spec) Start() time.Time {
	if s.schedule.hasStart {
		return s.schedule.start
	}
	return time.Unix(0, 0).UTC()
}

// Quorum is the number of healthy vantages a verdict needs.
func (s *Spec) Quorum() int { return int(s.vantages.quorum) }

// Name is the campaign name.
func (s *Spec) Name() string { return s.name }

// ScopeName is the scope's country code, e.g. "KP".
func (s *Spec) ScopeName() string { return s.scope.country }

// ScopeTitle is the scope's optional human name, e.g. "North Korea".
func (s *Spec) ScopeTitle() string { return s.scope.name }

// NetworkNames lists the networks in file order.
func (s *Spec) NetworkNames() []string {
	out := make([]string, len(s.targets.networks))
	for i, nw := range s.targets.networks {
		out[i] = nw.name
	}
	return out
}

// SelectsAgent reports whether an agent with these labels runs the
// campaign: every label in vantages.select must be present and equal.
func (s *Spec) SelectsAgent(labels map[string]string) bool {
	for k, v := range s.vantages.selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Targets returns hosts (network by network, in file order), then
// upstreams, then borders, then controls. The slice is a copy.
func (s *Spec) Targets() []Target { return slices.Clone(s.expanded) }

// ms converts a validated duration to whole milliseconds.
func ms(d time.Duration) uint32 {
	v := d.Milliseconds()
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}
