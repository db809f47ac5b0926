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
//	    - {name: net1, prefixes: [198.18.1.0/24, "2001:db8:18:1::/64"]}  # dual-stack: one IPv4 and one IPv6 prefix
//	  hosts: {per_network: 4, discover: false}  # for networks without hosts (see below)
//	  upstreams: [198.51.100.42]   # role UPSTREAM: the router just before the country's border; or "auto"
//	  # or named: upstreams: [{name: unicom, addrs: [198.51.100.42, 198.51.100.43]}]  (entries may mix both forms)
//	  borders: [198.51.100.50]     # role BORDER: the country's own border router (the hop just before the prefixes); same forms
//	  controls: [192.0.2.1]        # role CONTROL, outside every network
//	  rir: {file: PATH, country: KP} # client side only: vantagectl expands it into networks (rirexpand.go)
//	probes:                        # >= 1, each exactly one of icmp, tcp, trace; each kind at most once
//	  - icmp: {retries: 0, timeout: 2s, payload_bytes: 16}           # retries 0..5
//	  - tcp: {ports: [80, 443], mode: connect, timeout: 2s}           # mode connect (default) | syn
//	  - trace: {protocol: icmp, paris: false, every: 10m, max_ttl: 30, gap_limit: 5, timeout: 2s, port: 0, on_change: false}
//	schedule: {round: 60s, jitter: 0s, start: 1970-01-01T00:00:00Z} # round required, 1s..24h; start in [1970, 2200)
//	vantages: {select: {role: vps}, quorum: 1}   # select: labels that must all match; empty = all agents
//	budget: {per_target_pps: 1, agent_pps: 500}
//	verdict: {quality: {loss: 0.1, loss_clear: 0.05, latency_factor: 2.0, latency_clear_factor: 1.5,
//	          latency_min: 20ms, rounds: 2, clear_rounds: 2, off: false}}  # see quality.go
//
// Dual-stack networks: a network has one prefix (prefix) or, written as
// prefixes, at most one IPv4 and one IPv6 prefix (prefix and prefixes
// together are an error). It is still one network: its targets of both
// families carry its name, so the verdicts count it once. Its listed hosts
// may be in either prefix and must each be inside one of them. Every rule
// about a network's prefix applies to each of its prefixes: canonical, no
// overlap with any other network's, controls outside, the controller's
// special ranges, blocklist and opt-out (Limits), and the expansion,
// discovery and budget below, which work prefix by prefix. Errors name the
// field, e.g. targets.networks[0].prefixes[1]. The campaign record
// (Proto) carries the first prefix as CampaignNetwork.prefix.
//
// Host expansion: each prefix of a network with no listed host inside it
// gets targets.hosts.per_network consecutive addresses starting at the
// prefix address + 10 (198.18.0.0/24 gives .10, .11, ...), so a dual-stack
// network without hosts gets per_network of each family. Offset 10 skips
// the addresses that are usually routers, gateways and broadcast-adjacent
// infrastructure (.0 to .9), and it matches the lab. For IPv4 the
// expansion must stay below the broadcast address.
//
// Discovery (discovery.go): with `discover: true`, a prefix with no listed
// host inside it is swept instead (every address; at most MaxSweep in
// all, so IPv6 prefixes must be /112 or longer: a dual-stack network with
// an IPv6 /64 lists its IPv6 hosts and has its IPv4 prefix swept) and the
// per_network hosts of that prefix that answer most reliably become its
// targets. `upstreams: auto` finds
// the routers before the prefixes by traceroute and labels them UPSTREAM
// or BORDER. The controller runs both after the apply (campaign state
// DISCOVERING) and calls WithTargets with what it found; until then such
// a spec has only its listed targets.
//
// Router names: every UPSTREAM and BORDER target has a name, carried in
// CampaignTarget.name and in verdicts (the router where paths die, the
// upstream whose paths die). A named entry's addresses share its name
// (names are unique across upstreams and borders); a bare address, listed
// or discovered, gets RouterName(role, address), which depends on the
// address only and so is stable across re-discovery.
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
	"math"
	"net/netip"
	"slices"
	"time"

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
	quality  qualitySpec // verdict.quality (quality.go)

	// present records which required sections the file had.
	present map[string]bool
	// expanded is filled by Parse (and extended by WithTargets).
	expanded []Target
	// discovered is set by WithTargets.
	discovered bool
}

// Target is one probed address after expansion.
type Target struct {
	Addr netip.Addr
	// Network is the campaign network name for hosts, "" otherwise.
	Network string
	Role    vantagev1.TargetRole
	// Name is an UPSTREAM or BORDER router's name: the campaign's
	// ({name, addrs}) or RouterName's; "" for hosts and controls.
	Name string
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
