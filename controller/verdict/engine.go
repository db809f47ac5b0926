// Package verdict turns probe observations into reachability verdicts for a
// campaign's targets, networks and scope, and into the transitions that
// make up the timeline.
//
// It exists apart from ingest and storage so the rules that decide "is this
// country reachable?" can be tested to the second and replayed over stored
// history: it is pure logic. No I/O, no goroutines, no clock of its own (the
// caller passes now), and the same inputs always give the same outputs. An
// Engine is not safe for concurrent use; its owner serialises calls.
//
// Rounds. Round n covers [Start + n*Round, Start + (n+1)*Round). It closes
// when Evaluate is called with now >= its end + Grace (default Round/2), so
// results still in flight can arrive. Rounds close strictly in order; an
// observation for a closed round is dropped ("too old"), as is one for a
// negative round or for a round more than two rounds ahead of the latest
// now the engine has seen ("too new"), so the owner should call Evaluate
// (or SetAgentConnected) at least once per round. At most
// ceil(Grace/Round)+4 rounds (never more than MaxOpenRounds) are open at
// once. Before the first Evaluate (while history is re-fed) up to
// MaxOpenRounds rounds are kept, the oldest evicted first. The first
// Evaluate drops buffered rounds more than MaxOpenRounds behind or
// futureRounds ahead of now, and starts the
// timeline at the earliest buffered plausible round, or at the current
// round. Stretches where no vantage has fresh data are fast-forwarded in
// O(1) after one UNKNOWN round, so a long gap costs nothing.
//
// Per vantage, target and round: up if any observation was REPLY,
// TCP_SYNACK or TCP_RST; down if there were observations and none was up.
// ERROR (the probe could not be run) is not evidence about the target: it
// marks the vantage as having reported, but leaves the target without a
// result from that vantage. ICMP silent while TCP answers is up, and the
// target verdict gets location FILTERED and an "ICMP filtered" note.
//
// Vantages. A vantage reported in round n if it has any observation in n.
// For round n it counts only if it reported in one of the last FreshRounds
// rounds (default 1: round n itself; a larger value reuses its latest
// round's view) and its session was not down at the round's end
// (SetAgentConnected). Others are left out with reason "no fresh data" or
// "session down". Health gating: a counted vantage that sees >= 90% of the
// host targets it has results for down, while a strict majority of the
// other counted vantages with host results see < 50% down, is unhealthy
// ("sees nearly everything down while others don't") and left out. Every
// verdict's evidence lists every known vantage with its status and reason.
//
// States. Fewer healthy vantages than Quorum: everything is UNKNOWN. A
// target with results from fewer than Quorum healthy vantages is UNKNOWN;
// otherwise all see it up: REACHABLE, none: UNREACHABLE, some: DEGRADED
// (location PATH_SPECIFIC). A network over its ROLE_HOST targets, ignoring
// UNKNOWN ones: all REACHABLE: REACHABLE; none REACHABLE or DEGRADED:
// UNREACHABLE; otherwise DEGRADED; all UNKNOWN: UNKNOWN. The scope applies
// the same rule to its networks. Children that are REACHABLE or DEGRADED are
// listed as up, UNREACHABLE ones as down (target addresses for a network,
// network names for the scope, agent ids for a target). Upstream and
// control targets get target verdicts only.
//
// Location (first version; traceroute localisation comes later): REACHABLE
// is NONE (FILTERED for an ICMP-filtered target); an UNREACHABLE or
// DEGRADED network, scope or host target is TARGET_NETWORK while some
// upstream target answers and UPSTREAM when every upstream target with a
// verdict is down; an unreachable upstream target is UPSTREAM; without
// upstream verdicts it stays UNSPECIFIED. The rule used is in the notes.
//
// Transitions. Every state change at any level, including the first
// UNSPECIFIED -> X, yields a Transition for round n (the first round in the
// new state): onset_earliest is the latest SentAt in the last round in the
// old state (its start if it had none; round n's start for the first
// transition), onset_latest the earliest SentAt in round n (its end if
// none). SentAt values more than a round outside their round are ignored
// for onset bounds. Transition ids are left 0 for the store.
//
// Cost: Observe is two map lookups and a few stores; closing a round is
// O(vantages x targets), the size of the round's input. Memory is the open
// rounds plus one view per vantage (its latest round), so it is bounded by
// (open rounds + 1) x vantages x targets bytes.
package verdict

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ErrConfig is wrapped by every NewEngine error.
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
)

// Target is one subject at target level.
type Target struct {
	// Addr is the IP address as the tasks carry it.
	Addr    string
	Network string
	Role    vantagev1.TargetRole
}

// Config describes one campaign for the engine.
type Config struct {
	Campaign string
	// Scope is the scope subject, e.g. the country code "KP".
	Scope string
	Start time.Time
	Round time.Duration
	// Grace: a round closes at its end + Grace. Default Round/2.
	Grace  time.Duration
	Quorum int
	// FreshRounds: a vantage counts for round n only if it reported in one
	// of the rounds n-FreshRounds+1..n. Default 1.
	FreshRounds int
	Targets     []Target
	// Networks are the network names, in display order.
	Networks []string
}

// Observation is one probe result as the engine needs it.
type Observation struct {
	Agent   string
	Target  string
	Round   int64
	SentAt  time.Time
	Kind    vantagev1.ProbeKind
	Outcome vantagev1.Outcome
	RTT     time.Duration
}

// Stats counts what Observe did with its input.
type Stats struct {
	Accepted      uint64
	UnknownTarget uint64
	NoAgent       uint64
	NegativeRound uint64
	TooOld        uint64
	TooNew        uint64
}

// Per (vantage, target, round) flags.
const (
	fSeen    byte = 1 << iota // a result that is evidence (not ERROR)
	fUp                       // some result was up
	fICMP                     // an ICMP echo result that is evidence
	fICMPUp                   // an ICMP echo reply
	fOtherUp                  // TCP or trace answered
)

// row is one vantage's results in one round.
type row struct {
	flags            []byte // per target
	hostSeen, hostUp int    // distinct host targets with a result / up
}

type roundBuf struct {
	n                int64
	rows             []*row  // by agent index; nil: no report
	minSent, maxSent []int64 // per target, Unix ns; 0: none
	obs              uint64  // observations accepted
}

type status uint8

const (
	stUnknown status = iota // never evaluated
	stHealthy
	stStale
	stSessionDown
	stUnhealthy
)

type agent struct {
	id           string
	connected    bool
	changedAt    time.Time
	view         *row // its latest reported round
	lastRound    int64
	lastResultAt int64 // Unix ns of its latest SentAt
	status       status
	reason       string
}

type subject struct {
	id, name, network string
	level             vantagev1.Level
	role              vantagev1.TargetRole
	target            int   // target index (target level)
	children          []int // target indices (network) or network indices (scope)

	state, pending              vantagev1.State
	stateRound                  int64
	onsetEarliest, onsetLatest  int64 // Unix ns
	lastMaxSent                 int64 // latest SentAt of the last evaluated round
	up, total                   int
	filtered                    int // ICMP-filtered: 1/0 for a target, children for others
	location                    vantagev1.Location
	unknownGlobal, noUpstreamLo bool
}

// Engine holds the verdict state of one campaign.
type Engine struct {
	cfg       Config
	start     int64 // Unix ns
	round     int64 // ns
	grace     int64 // ns
	targetIdx map[string]int
	isHost    []bool
	upstreams []int // target indices with role UPSTREAM

	agents   []*agent
	agentIdx map[string]int
	sorted   []*agent // agents by id; rebuilt when agents grow

	open  []*roundBuf
	cache *roundBuf
	free  [][]byte

	now        int64 // latest now seen, Unix ns
	clockKnown bool
	started    bool
	next       int64 // next round to close
	lastClosed int64
	lastIdle   bool
	evalAt     int64
	healthy    int

	scope    *subject
	networks []*subject
	targets  []*subject
	byID     map[string]*subject

	// scratch, per target
	cSeen, cUp, cFilt, cICMPUp []int32
	stats                      Stats
}

func cfgErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// NewEngine validates cfg, applies defaults and returns an engine with no
// rounds closed.
func NewEngine(cfg Config) (*Engine, error) {
	switch {
	case cfg.Campaign == "" || strings.Contains(cfg.Campaign, "/"):
		return nil, cfgErr("Campaign", "%q must be non-empty without '/'", cfg.Campaign)
	case cfg.Scope == "" || strings.Contains(cfg.Scope, "/"):
		return nil, cfgErr("Scope", "%q must be non-empty without '/'", cfg.Scope)
	case cfg.Start.Year() < 1970 || cfg.Start.Year() > 2200:
		return nil, cfgErr("Start", "%s must be between 1970 and 2200", cfg.Start.Format(time.RFC3339))
	case cfg.Round <= 0:
		return nil, cfgErr("Round", "%s must be positive", cfg.Round)
	case cfg.Grace < 0 || cfg.Grace > 8*cfg.Round:
		return nil, cfgErr("Grace", "%s must be in [0, 8 x Round]", cfg.Grace)
	case cfg.Quorum < 1:
		return nil, cfgErr("Quorum", "%d must be at least 1", cfg.Quorum)
	case cfg.FreshRounds < 0 || cfg.FreshRounds > MaxOpenRounds:
		return nil, cfgErr("FreshRounds", "%d must be in [0, %d]", cfg.FreshRounds, MaxOpenRounds)
	case len(cfg.Targets) == 0:
		return nil, cfgErr("Targets", "at least one target is required")
	case len(cfg.Networks) == 0:
		return nil, cfgErr("Networks", "at least one network is required")
	}
	if cfg.Grace == 0 {
		cfg.Grace = cfg.Round / 2
	}
	if cfg.FreshRounds == 0 {
		cfg.FreshRounds = 1
	}
	e := &Engine{
		cfg:        cfg,
		start:      cfg.Start.UnixNano(),
		round:      int64(cfg.Round),
		grace:      int64(cfg.Grace),
		targetIdx:  make(map[string]int, len(cfg.Targets)),
		isHost:     make([]bool, len(cfg.Targets)),
		agentIdx:   map[string]int{},
		lastClosed: -1,
		byID:       map[string]*subject{},
		cSeen:      make([]int32, len(cfg.Targets)),
		cUp:        make([]int32, len(cfg.Targets)),
		cFilt:      make([]int32, len(cfg.Targets)),
		cICMPUp:    make([]int32, len(cfg.Targets)),
	}
	netIdx := make(map[string]int, len(cfg.Networks))
	e.scope = e.newSubject(vantagev1.Level_LEVEL_SCOPE, "scope", cfg.Scope)
	for i, name := range cfg.Networks {
		if name == "" || strings.Contains(name, "/") {
			return nil, cfgErr(fmt.Sprintf("Networks[%d]", i), "%q must be non-empty without '/'", name)
		}
		if _, dup := netIdx[name]; dup {
			return nil, cfgErr(fmt.Sprintf("Networks[%d]", i), "%q is listed twice", name)
		}
		netIdx[name] = i
		n := e.newSubject(vantagev1.Level_LEVEL_NETWORK, "network", name)
		e.networks = append(e.networks, n)
		e.scope.children = append(e.scope.children, i)
	}
	for i, t := range cfg.Targets {
		field := fmt.Sprintf("Targets[%d]", i)
		a, err := netip.ParseAddr(t.Addr)
		if err != nil || a.Zone() != "" {
			return nil, cfgErr(field+".Addr", "%q is not an IP address", t.Addr)
		}
		addr := a.String()
		if _, dup := e.targetIdx[addr]; dup {
			return nil, cfgErr(field+".Addr", "%s is listed twice", addr)
		}
		e.targetIdx[addr] = i
		s := e.newSubject(vantagev1.Level_LEVEL_TARGET, "target", addr)
		s.network, s.role, s.target = t.Network, t.Role, i
		switch t.Role {
		case vantagev1.TargetRole_TARGET_ROLE_HOST:
			ni, ok := netIdx[t.Network]
			if !ok {
				return nil, cfgErr(field+".Network", "%q is not in Networks", t.Network)
			}
			e.isHost[i] = true
			e.networks[ni].children = append(e.networks[ni].children, i)
		case vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, vantagev1.TargetRole_TARGET_ROLE_BORDER:
			e.upstreams = append(e.upstreams, i)
		case vantagev1.TargetRole_TARGET_ROLE_CONTROL:
		default:
			return nil, cfgErr(field+".Role", "%s is not a target role", t.Role)
		}
		e.targets = append(e.targets, s)
	}
	for i, n := range e.networks {
		if len(n.children) == 0 {
			return nil, cfgErr(fmt.Sprintf("Networks[%d]", i), "%q has no ROLE_HOST targets", n.name)
		}
	}
	return e, nil
}

func (e *Engine) newSubject(level vantagev1.Level, levelName, name string) *subject {
	s := &subject{
		id:         e.cfg.Campaign + "/" + levelName + "/" + name,
		name:       name,
		level:      level,
		stateRound: -1,
	}
	e.byID[s.id] = s
	return s
}

func (e *Engine) roundStart(n int64) int64 { return e.start + n*e.round }
func (e *Engine) roundEnd(n int64) int64   { return e.start + (n+1)*e.round }

// roundOf is the round containing t (floor division; negative before Start).
func (e *Engine) roundOf(t int64) int64 {
	d := t - e.start
	n := d / e.round
	if d < 0 && d%e.round != 0 {
		n--
	}
	return n
}

// maxRound keeps round arithmetic far from int64 overflow.
func (e *Engine) maxRound() int64 { return (1<<62)/e.round - 1 }

func (e *Engine) setNow(t time.Time) {
	ns := t.UnixNano()
	if !e.clockKnown || ns > e.now {
		e.now = ns
	}
	e.clockKnown = true
}

func (e *Engine) agentIndex(id string) int {
	if i, ok := e.agentIdx[id]; ok {
		return i
	}
	if len(e.agents) >= maxAgents {
		return -1
	}
	e.agents = append(e.agents, &agent{id: id, connected: true, lastRound: -1})
	e.agentIdx[id] = len(e.agents) - 1
	return len(e.agents) - 1
}

// SetAgentConnected records a session opening or closing at at. A vantage
// whose session is down at a round's end is left out of that round.
func (e *Engine) SetAgentConnected(agent string, connected bool, at time.Time) {
	if agent == "" {
		return
	}
	ai := e.agentIndex(agent)
	if ai < 0 {
		return
	}
	a := e.agents[ai]
	a.connected, a.changedAt = connected, at
	e.setNow(at)
}

// Stats returns the counters of Observe.
func (e *Engine) Stats() Stats { return e.stats }

// Observe adds one result. Unknown targets, empty agent ids, negative
// rounds, rounds already closed and rounds too far ahead are ignored and
// counted in Stats.
func (e *Engine) Observe(o Observation) {
	ti, ok := e.targetIdx[o.Target]
	if !ok {
		a, err := netip.ParseAddr(o.Target)
		if err == nil {
			ti, ok = e.targetIdx[a.String()]
		}
		if !ok {
			e.stats.UnknownTarget++
			return
		}
	}
	if o.Agent == "" {
		e.stats.NoAgent++
		return
	}
	rb := e.buffer(o.Round)
	if rb == nil {
		return
	}
	ai := e.agentIndex(o.Agent)
	if ai < 0 {
		e.stats.NoAgent++
		return
	}
	for len(rb.rows) <= ai {
		rb.rows = append(rb.rows, nil)
	}
	r := rb.rows[ai]
	if r == nil {
		r = &row{flags: e.alloc()}
		rb.rows[ai] = r
	}
	var add byte
	isICMP := o.Kind == vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO
	switch o.Outcome {
	case vantagev1.Outcome_OUTCOME_REPLY, vantagev1.Outcome_OUTCOME_TCP_SYNACK, vantagev1.Outcome_OUTCOME_TCP_RST:
		add = fSeen | fUp
		if isICMP {
			add |= fICMP | fICMPUp
		} else {
			add |= fOtherUp
		}
	case vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.Outcome_OUTCOME_UNREACHABLE:
		add = fSeen
		if isICMP {
			add |= fICMP
		}
	}
	old := r.flags[ti]
	if nf := old | add; nf != old {
		r.flags[ti] = nf
		if e.isHost[ti] {
			if old&fSeen == 0 {
				r.hostSeen++
			}
			if old&fUp == 0 && nf&fUp != 0 {
				r.hostUp++
			}
		}
	}
	if !o.SentAt.IsZero() {
		ns := o.SentAt.UnixNano()
		// Onset bounds only trust SentAt near its round.
		if ns >= e.roundStart(o.Round)-e.round && ns <= e.roundEnd(o.Round)+e.round {
			if rb.minSent[ti] == 0 || ns < rb.minSent[ti] {
				rb.minSent[ti] = ns
			}
			if ns > rb.maxSent[ti] {
				rb.maxSent[ti] = ns
			}
			if a := e.agents[ai]; ns > a.lastResultAt {
				a.lastResultAt = ns
			}
		}
	}
	rb.obs++
	e.stats.Accepted++
}

// buffer returns the open round n, creating it if n is acceptable.
func (e *Engine) buffer(n int64) *roundBuf {
	if c := e.cache; c != nil && c.n == n {
		return c
	}
	switch {
	case n < 0:
		e.stats.NegativeRound++
		return nil
	case e.started && n < e.next:
		e.stats.TooOld++
		return nil
	case n > e.maxRound() || (e.clockKnown && n > e.roundOf(e.now)+futureRounds):
		e.stats.TooNew++
		return nil
	}
	for _, rb := range e.open {
		if rb.n == n {
			e.cache = rb
			return rb
		}
	}
	if !e.started && len(e.open) >= MaxOpenRounds {
		// Re-feeding history before the first Evaluate: keep the newest
		// rounds, they are the ones about to close.
		oldest := slices.MinFunc(e.open, func(a, b *roundBuf) int { return cmp.Compare(a.n, b.n) })
		if oldest.n > n {
			e.stats.TooOld++
			return nil
		}
		e.take(oldest.n)
		e.stats.TooOld += oldest.obs
		e.drop(oldest)
	}
	if e.started && len(e.open) >= e.maxOpen() {
		e.stats.TooNew++
		return nil
	}
	rb := &roundBuf{n: n, minSent: make([]int64, len(e.targets)), maxSent: make([]int64, len(e.targets))}
	e.open = append(e.open, rb)
	e.cache = rb
	return rb
}

func (e *Engine) maxOpen() int {
	return min(MaxOpenRounds, int((e.grace+e.round-1)/e.round)+futureRounds+2)
}

func (e *Engine) alloc() []byte {
	if n := len(e.free); n > 0 {
		b := e.free[n-1]
		e.free = e.free[:n-1]
		clear(b)
		return b
	}
	return make([]byte, len(e.targets))
}

func (e *Engine) release(r *row) {
	if r != nil && len(e.free) < 2*MaxOpenRounds {
		e.free = append(e.free, r.flags)
	}
}

// take removes round n from the open rounds.
func (e *Engine) take(n int64) *roundBuf {
	for i, rb := range e.open {
		if rb.n == n {
			e.open = slices.Delete(e.open, i, i+1)
			if e.cache == rb {
				e.cache = nil
			}
			return rb
		}
	}
	return nil
}

func (e *Engine) drop(rb *roundBuf) {
	for _, r := range rb.rows {
		e.release(r)
	}
}

// ClosedRound is the last closed round, -1 if none.
func (e *Engine) ClosedRound() int64 { return e.lastClosed }

// Evaluate closes, in order, every round whose end + Grace <= now and
// returns the transitions they caused (ids 0).
func (e *Engine) Evaluate(now time.Time) []*vantagev1.Transition {
	e.setNow(now)
	nowNs := now.UnixNano()
	if !e.started {
		e.started = true
		cur := max(e.roundOf(nowNs), 0)
		first := cur
		kept := e.open[:0]
		for _, rb := range e.open {
			if rb.n > cur+futureRounds || rb.n < cur-MaxOpenRounds {
				if rb.n > cur {
					e.stats.TooNew += rb.obs
				} else {
					e.stats.TooOld += rb.obs
				}
				e.drop(rb)
				continue
			}
			kept = append(kept, rb)
			first = min(first, rb.n)
		}
		clear(e.open[len(kept):])
		e.open = kept
		e.cache = nil
		e.next = first
	}
	var out []*vantagev1.Transition
	last := e.roundOf(nowNs-e.grace) - 1 // the last closable round
	for e.next <= last && e.next <= e.maxRound() {
		n := e.next
		if e.lastIdle && !e.hasOpen(n) {
			// Nothing can change until data arrives: jump.
			to := last
			for _, rb := range e.open {
				if rb.n > n && rb.n-1 < to {
					to = rb.n - 1
				}
			}
			e.lastClosed, e.next = to, to+1
			continue
		}
		e.closeRound(n, nowNs, &out)
	}
	return out
}

func (e *Engine) hasOpen(n int64) bool {
	for _, rb := range e.open {
		if rb.n == n {
			return true
		}
	}
	return false
}

var reasonNames = [...]string{
	stUnknown:     "not evaluated yet",
	stHealthy:     "",
	stStale:       "no fresh data",
	stSessionDown: "session down",
}

// closeRound evaluates round n.
func (e *Engine) closeRound(n int64, now int64, out *[]*vantagev1.Transition) {
	rb := e.take(n)
	if rb != nil {
		for ai, r := range rb.rows {
			if r == nil {
				continue
			}
			a := e.agents[ai]
			e.release(a.view)
			a.view, a.lastRound = r, n
		}
	}
	end := e.roundEnd(n)
	fresh := n - int64(e.cfg.FreshRounds) + 1
	var counted []*agent
	for _, a := range e.agents {
		switch {
		case !a.connected && a.changedAt.UnixNano() <= end:
			a.status = stSessionDown
		case a.view == nil || a.lastRound < fresh:
			a.status = stStale
		default:
			a.status = stHealthy
			counted = append(counted, a)
		}
		a.reason = reasonNames[a.status]
	}
	// Health gating: nearly everything down while most others see little down.
	withHosts, mostlyUp := 0, 0
	for _, a := range counted {
		if v := a.view; v.hostSeen > 0 {
			withHosts++
			if 2*(v.hostSeen-v.hostUp) < v.hostSeen {
				mostlyUp++
			}
		}
	}
	healthy := counted[:0]
	for _, a := range counted {
		v := a.view
		down := v.hostSeen - v.hostUp
		if v.hostSeen > 0 && 10*down >= 9*v.hostSeen && 2*mostlyUp > withHosts-1 {
			a.status = stUnhealthy
			a.reason = fmt.Sprintf("sees nearly everything down while others don't (%d of %d hosts down; %d of %d other vantages see < 50%% down)",
				down, v.hostSeen, mostlyUp, withHosts-1)
			continue
		}
		healthy = append(healthy, a)
	}
	e.healthy = len(healthy)
	e.lastIdle = rb == nil && len(counted) == 0
	global := len(healthy) < e.cfg.Quorum

	// Target counts over healthy vantages.
	clear(e.cSeen)
	clear(e.cUp)
	clear(e.cFilt)
	clear(e.cICMPUp)
	if !global {
		for _, a := range healthy {
			for t, f := range a.view.flags {
				if f&fSeen == 0 {
					continue
				}
				e.cSeen[t]++
				if f&fUp != 0 {
					e.cUp[t]++
				}
				if f&fICMPUp != 0 {
					e.cICMPUp[t]++
				} else if f&fICMP != 0 && f&fOtherUp != 0 {
					e.cFilt[t]++
				}
			}
		}
	}
	for t, s := range e.targets {
		s.up, s.total, s.unknownGlobal = int(e.cUp[t]), int(e.cSeen[t]), global
		s.filtered = 0
		if e.cFilt[t] > 0 && e.cICMPUp[t] == 0 {
			s.filtered = 1
		}
		switch {
		case global || s.total < e.cfg.Quorum:
			s.pending = vantagev1.State_STATE_UNKNOWN
		case s.up == s.total:
			s.pending = vantagev1.State_STATE_REACHABLE
		case s.up == 0:
			s.pending = vantagev1.State_STATE_UNREACHABLE
		default:
			s.pending = vantagev1.State_STATE_DEGRADED
		}
	}
	// Upstream status for the location rule.
	upAnswer, upDown := false, 0
	for _, t := range e.upstreams {
		switch e.targets[t].pending {
		case vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_DEGRADED:
			upAnswer = true
		case vantagev1.State_STATE_UNREACHABLE:
			upDown++
		}
	}
	locDown := vantagev1.Location_LOCATION_UNSPECIFIED
	switch {
	case upAnswer:
		locDown = vantagev1.Location_LOCATION_TARGET_NETWORK
	case upDown > 0:
		locDown = vantagev1.Location_LOCATION_UPSTREAM
	}
	for _, s := range e.targets {
		s.location = vantagev1.Location_LOCATION_UNSPECIFIED
		switch s.pending {
		case vantagev1.State_STATE_REACHABLE:
			s.location = vantagev1.Location_LOCATION_NONE
			if s.filtered > 0 {
				s.location = vantagev1.Location_LOCATION_FILTERED
			}
		case vantagev1.State_STATE_DEGRADED:
			s.location = vantagev1.Location_LOCATION_PATH_SPECIFIC
		case vantagev1.State_STATE_UNREACHABLE:
			switch s.role {
			case vantagev1.TargetRole_TARGET_ROLE_HOST:
				s.location = locDown
			case vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, vantagev1.TargetRole_TARGET_ROLE_BORDER:
				s.location = vantagev1.Location_LOCATION_UPSTREAM
			}
		}
	}
	for _, s := range e.networks {
		e.aggregate(s, func(i int) *subject { return e.targets[i] }, locDown)
		s.unknownGlobal = global
	}
	e.aggregate(e.scope, func(i int) *subject { return e.networks[i] }, locDown)
	e.scope.unknownGlobal = global

	// Onset bounds and transitions: scope, networks, targets.
	var minS, maxS []int64
	if rb != nil {
		minS, maxS = rb.minSent, rb.maxSent
	}
	sent := func(ts []int) (lo, hi int64) {
		if minS == nil {
			return 0, 0
		}
		for _, t := range ts {
			if m := minS[t]; m != 0 && (lo == 0 || m < lo) {
				lo = m
			}
			hi = max(hi, maxS[t])
		}
		return lo, hi
	}
	var allHosts []int
	for _, nw := range e.networks {
		allHosts = append(allHosts, nw.children...)
	}
	lo, hi := sent(allHosts)
	e.settle(e.scope, n, lo, hi, now, out)
	for _, s := range e.networks {
		lo, hi := sent(s.children)
		e.settle(s, n, lo, hi, now, out)
	}
	for t, s := range e.targets {
		lo, hi := sent([]int{t})
		e.settle(s, n, lo, hi, now, out)
	}
	if rb != nil {
		// Rows now belong to the agents as their views; recycle the rest.
		rb.rows = nil
	}
	e.lastClosed, e.next = n, n+1
	e.evalAt = now
}

// aggregate derives a network or scope state from its children's pending
// states.
func (e *Engine) aggregate(s *subject, child func(int) *subject, locDown vantagev1.Location) {
	reach, degr, down, filt := 0, 0, 0, 0
	for _, c := range s.children {
		cs := child(c)
		switch cs.pending {
		case vantagev1.State_STATE_REACHABLE:
			reach++
		case vantagev1.State_STATE_DEGRADED:
			degr++
		case vantagev1.State_STATE_UNREACHABLE:
			down++
		}
		if cs.location == vantagev1.Location_LOCATION_FILTERED {
			filt++
		}
	}
	known := reach + degr + down
	s.up, s.total, s.filtered = reach+degr, len(s.children), filt
	s.location = vantagev1.Location_LOCATION_UNSPECIFIED
	switch {
	case known == 0:
		s.pending = vantagev1.State_STATE_UNKNOWN
	case reach == known:
		s.pending = vantagev1.State_STATE_REACHABLE
		s.location = vantagev1.Location_LOCATION_NONE
		if filt > 0 && filt == reach {
			s.location = vantagev1.Location_LOCATION_FILTERED
		}
	case reach+degr == 0:
		s.pending = vantagev1.State_STATE_UNREACHABLE
		s.location = locDown
	default:
		s.pending = vantagev1.State_STATE_DEGRADED
		s.location = locDown
	}
}

// settle moves s to its pending state for round n and emits a transition
// if it changed. lo/hi are the earliest and latest SentAt in round n.
func (e *Engine) settle(s *subject, n, lo, hi, now int64, out *[]*vantagev1.Transition) {
	if s.pending != s.state {
		earliest := e.roundStart(n)
		if s.state != vantagev1.State_STATE_UNSPECIFIED {
			earliest = s.lastMaxSent
			if earliest == 0 {
				earliest = e.roundStart(max(e.lastClosed, 0))
			}
		}
		latest := lo
		if latest == 0 {
			latest = e.roundEnd(n)
		}
		from := s.state
		s.state, s.stateRound = s.pending, n
		s.onsetEarliest, s.onsetLatest = earliest, latest
		up, down := e.children(s)
		*out = append(*out, &vantagev1.Transition{
			Campaign:      e.cfg.Campaign,
			Level:         s.level,
			Subject:       s.name,
			From:          from,
			To:            s.state,
			OnsetEarliest: ts(earliest),
			OnsetLatest:   ts(latest),
			DetectedAt:    ts(now),
			Round:         n,
			Location:      s.location,
			VerdictId:     s.id,
			UpChildren:    up,
			DownChildren:  down,
			Notes:         e.notes(s),
		})
	}
	s.lastMaxSent = hi
}
