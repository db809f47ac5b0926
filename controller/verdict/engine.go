package verdict

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
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
	// last UnstableWindow rounds is UNSTABLE until UnstableCalm rounds pass
	// without a crossing. Defaults 10, 4, 5.
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
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Grace == 0 {
		c.Grace = c.Round / 2
	}
	if c.FreshRounds == 0 {
		c.FreshRounds = DefaultFreshRounds
	}
	if c.QuorumLabel == "" {
		c.QuorumLabel = DefaultQuorumLabel
	}
	if c.BeliefUp == 0 {
		c.BeliefUp = DefaultBeliefUp
	}
	if c.BeliefDown == 0 {
		c.BeliefDown = DefaultBeliefDown
	}
	if c.MinAvailability == 0 {
		c.MinAvailability = DefaultMinAvailability
	}
	if c.UnstableWindow == 0 {
		c.UnstableWindow = DefaultUnstableWindow
	}
	if c.UnstableFlips == 0 {
		c.UnstableFlips = DefaultUnstableFlips
	}
	if c.UnstableCalm == 0 {
		c.UnstableCalm = DefaultUnstableCalm
	}
	if c.UncertainHold == 0 {
		c.UncertainHold = DefaultUncertainHold
	}
	return c
}

// Hop is one TTL of a trace as the engine keeps it.
type Hop struct {
	TTL  uint32
	Addr string
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
	// Attempts is the number of probes sent for this result, adaptive
	// retries included (0 is read as 1).
	Attempts uint32
	// Traces only: the hops in TTL order, why the trace stopped, and the
	// trigger that asked for it ("" for a scheduled trace).
	Hops       []Hop
	StopReason vantagev1.TraceStopReason
	TriggerID  string
}

// Stats counts what Observe did with its input.
type Stats struct {
	Accepted      uint64
	UnknownTarget uint64
	NoAgent       uint64
	NegativeRound uint64
	TooOld        uint64
	TooNew        uint64
	// Traces counts trace results kept for localisation.
	Traces uint64
}

// Per (vantage, target, round) flags.
const (
	fSeen    byte = 1 << iota // a result that is evidence (not ERROR)
	fUp                       // some result was up
	fICMP                     // an ICMP echo result that is evidence
	fICMPUp                   // an ICMP echo reply
	fOtherUp                  // TCP answered
	fUnreach                  // an ICMP destination unreachable came back
)

// row is one vantage's results in one round. buf holds five per-target
// arrays: flags, then per probe family (ICMP, other) packets sent
// (attempts, saturating) and answered results.
type row struct {
	buf              []byte
	flags            []byte
	pk, rp           [2][]byte // [famICMP|famOther][target]
	hostSeen, hostUp int       // distinct host targets with a result / up
	results          uint32    // results accepted (early close)
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
	id, group    string
	connected    bool
	changedAt    time.Time
	view         *row // its latest reported round
	lastRound    int64
	lastResultAt int64 // Unix ns of its latest SentAt
	status       status
	reason       string
	excluded     string // SetAgentExcluded's reason; "" counts it
	bel          *beliefs
	traces       map[int]*trace // by target index
}

type subject struct {
	id, name, network string
	level             vantagev1.Level
	role              vantagev1.TargetRole
	target            int   // target index (target level)
	children          []int // target indices (network) or network indices (scope)

	state                      vantagev1.State // published (UNSTABLE included)
	raw                        vantagev1.State // this round's computed state
	stateRound                 int64
	onsetEarliest, onsetLatest int64 // Unix ns
	lastMaxSent                int64 // latest SentAt of the last evaluated round
	up, total                  int
	upG, downG                 int // target level: distinct vantage groups
	filtered                   int // ICMP-filtered: 1/0 for a target, children for others
	unknownGlobal              bool
	held                       int // rounds in a row the published state was kept while raw UNKNOWN (UncertainHold)
	location                   vantagev1.Location
	lastHop                    string
	locNotes                   []string
	// locTraced: location came from traces this round (not provisional);
	// pubLoc: the location of the last transition or refinement published.
	locTraced bool
	pubLoc    vantagev1.Location
	// candLoc, candRound: a trace-based location differing from pubLoc,
	// and the round it was first seen; published once it holds a second
	// closed round (one round's traces can be half in).
	candLoc   vantagev1.Location
	candRound int64
	badSince  int64 // first round of the current non-REACHABLE raw run; -1
	stab      stability
}

// Engine is one campaign's verdict state.
type Engine struct {
	cfg        Config
	start      int64 // Unix ns
	round      int64 // ns
	grace      int64 // ns
	targetIdx  map[string]int
	isHost     []bool
	upstreams  []int // UPSTREAM and BORDER targets
	controls   []int // CONTROL targets
	agentIdx   map[string]int
	agents     []*agent
	sorted     []*agent
	labels     map[string]map[string]string
	open       []*roundBuf
	cache      *roundBuf
	free       [][]byte
	now        int64 // latest now seen, Unix ns
	clockKnown bool
	started    bool
	next       int64 // next round to close
	lastClosed int64
	lastIdle   bool
	evalAt     int64
	healthy    int   // healthy vantages
	groups     int   // distinct groups among them
	resume     int64 // rounds before it publish nothing (Restore)

	scope    *subject
	networks []*subject
	targets  []*subject
	byID     map[string]*subject

	// scratch, per target
	cFilt, cICMPUp []int32
	gUp, gDown     []int32
	gBits          []byte
	stats          Stats
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
	return nil
}

// NewEngine validates cfg, applies defaults and returns an engine with no
// rounds closed.
func NewEngine(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	nt := len(cfg.Targets)
	e := &Engine{
		cfg:        cfg,
		start:      cfg.Start.UnixNano(),
		round:      int64(cfg.Round),
		grace:      int64(cfg.Grace),
		targetIdx:  make(map[string]int, nt),
		isHost:     make([]bool, nt),
		agentIdx:   map[string]int{},
		labels:     map[string]map[string]string{},
		lastClosed: -1,
		byID:       map[string]*subject{},
		cFilt:      make([]int32, nt),
		cICMPUp:    make([]int32, nt),
		gUp:        make([]int32, nt),
		gDown:      make([]int32, nt),
		gBits:      make([]byte, nt),
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
			e.controls = append(e.controls, i)
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

// Config returns the engine's configuration with defaults applied.
func (e *Engine) Config() Config { return e.cfg }

func (e *Engine) newSubject(level vantagev1.Level, levelName, name string) *subject {
	s := &subject{
		id:         e.cfg.Campaign + "/" + levelName + "/" + name,
		name:       name,
		level:      level,
		stateRound: -1,
		badSince:   -1,
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
	a := &agent{id: id, connected: true, lastRound: -1}
	a.group = e.groupOf(id, e.labels[id])
	e.agents = append(e.agents, a)
	e.agentIdx[id] = len(e.agents) - 1
	return len(e.agents) - 1
}

func (e *Engine) groupOf(id string, labels map[string]string) string {
	if e.cfg.QuorumLabel != "-" {
		if v, ok := labels[e.cfg.QuorumLabel]; ok && v != "" {
			return "label:" + v
		}
	}
	return "agent:" + id
}

// SetAgentLabels records a vantage's labels; QuorumLabel groups vantages
// by one of them. It may be called before the vantage's first result.
func (e *Engine) SetAgentLabels(agent string, labels map[string]string) {
	if agent == "" {
		return
	}
	var keep map[string]string
	if v, ok := labels[e.cfg.QuorumLabel]; ok {
		keep = map[string]string{e.cfg.QuorumLabel: v}
	}
	e.labels[agent] = keep
	if i, ok := e.agentIdx[agent]; ok {
		e.agents[i].group = e.groupOf(agent, keep)
	}
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
// counted in Stats. Traces are kept for localisation whatever their round.
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
	if o.Kind == vantagev1.ProbeKind_PROBE_KIND_TRACE {
		e.observeTrace(ti, o)
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
		r = e.alloc()
		rb.rows[ai] = r
	}
	r.results++
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
		if rp := r.rp[fam(isICMP)]; rp[ti] < 255 {
			rp[ti]++
		}
	case vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.Outcome_OUTCOME_UNREACHABLE:
		add = fSeen
		if isICMP {
			add |= fICMP
		}
		if o.Outcome == vantagev1.Outcome_OUTCOME_UNREACHABLE {
			add |= fUnreach
		}
	}
	if add != 0 {
		att := min(max(o.Attempts, 1), 16)
		pk := r.pk[fam(isICMP)]
		pk[ti] = byte(min(int(pk[ti])+int(att), 255))
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

func (e *Engine) alloc() *row {
	nt := len(e.targets)
	var b []byte
	if n := len(e.free); n > 0 {
		b = e.free[n-1]
		e.free = e.free[:n-1]
		clear(b)
	} else {
		b = make([]byte, 5*nt)
	}
	part := func(i int) []byte { return b[i*nt : (i+1)*nt : (i+1)*nt] }
	return &row{buf: b, flags: part(0), pk: [2][]byte{part(1), part(2)}, rp: [2][]byte{part(3), part(4)}}
}

// Probe families: availability is learned per family, so a port that never
// answers does not make echo misses look like noise.
const (
	famICMP = iota
	famOther
)

func fam(isICMP bool) int {
	if isICMP {
		return famICMP
	}
	return famOther
}

func (e *Engine) release(r *row) {
	if r != nil && len(e.free) < 2*MaxOpenRounds {
		e.free = append(e.free, r.buf)
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

// Evaluate closes, in order, every round whose end + Grace <= now, then
// every further round that has started and is complete (ResultsPerRound),
// and returns the transitions they caused (ids 0).
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
	for e.next <= e.roundOf(nowNs) && e.complete(e.next) {
		e.closeRound(e.next, nowNs, &out)
	}
	return out
}

// complete reports whether every vantage whose session is up, and every
// vantage that reported in round n, has sent ResultsPerRound results for
// it, and at least one has. A vantage that is connected but silent keeps
// the round open until Grace, so its results are never cut off.
func (e *Engine) complete(n int64) bool {
	if e.cfg.ResultsPerRound <= 0 {
		return false
	}
	var rb *roundBuf
	for _, o := range e.open {
		if o.n == n {
			rb = o
		}
	}
	if rb == nil {
		return false
	}
	want := uint32(e.cfg.ResultsPerRound)
	got := 0
	for ai, a := range e.agents {
		var r *row
		if ai < len(rb.rows) {
			r = rb.rows[ai]
		}
		if a.excluded != "" {
			continue // left out: never waited for, never enough
		}
		expected := a.connected
		if r != nil && r.results >= want {
			got++
			continue
		}
		if expected || r != nil {
			return false
		}
	}
	return got > 0
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
			if a.bel == nil {
				a.bel = newBeliefs(len(e.targets))
			}
			a.bel.update(r, e.cfg)
		}
	}
	end := e.roundEnd(n)
	fresh := n - int64(e.cfg.FreshRounds) + 1
	var counted []*agent
	for _, a := range e.agents {
		switch {
		case !a.connected && a.changedAt.UnixNano() <= end:
			a.status = stSessionDown
		case a.excluded != "":
			a.status = stUnhealthy
		case a.view == nil || a.lastRound < fresh:
			a.status = stStale
		default:
			a.status = stHealthy
			counted = append(counted, a)
		}
		if a.status == stUnhealthy {
			a.reason = a.excluded
		} else {
			a.reason = reasonNames[a.status]
		}
	}
	healthy := e.gate(counted)
	e.healthy = len(healthy)
	e.groups = countGroups(healthy)
	e.lastIdle = rb == nil && len(counted) == 0
	global := e.groups < e.cfg.Quorum

	e.countTargets(healthy, global)
	for _, s := range e.targets {
		s.unknownGlobal = global
		s.raw = e.targetState(s, global)
	}
	upAlive, upDown := false, 0
	for _, t := range e.upstreams {
		switch e.targets[t].raw {
		case vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_DEGRADED:
			upAlive = true
		case vantagev1.State_STATE_UNREACHABLE:
			upDown++
		}
	}
	prov := vantagev1.Location_LOCATION_UNSPECIFIED
	switch {
	case upAlive:
		prov = vantagev1.Location_LOCATION_TARGET_NETWORK
	case upDown > 0:
		prov = vantagev1.Location_LOCATION_UPSTREAM
	}
	for _, s := range e.networks {
		e.aggregate(s, func(i int) *subject { return e.targets[i] })
		s.unknownGlobal = global
	}
	e.aggregate(e.scope, func(i int) *subject { return e.networks[i] })
	e.scope.unknownGlobal = global
	for _, s := range e.targets {
		e.locate(s, n, healthy, prov)
	}
	for _, s := range e.networks {
		e.locate(s, n, healthy, prov)
	}
	e.locate(e.scope, n, healthy, prov)

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
		// Rows now belong to the agents as their views.
		rb.rows = nil
	}
	e.lastClosed, e.next = n, n+1
	e.evalAt = now
}

// gate applies vantage-health gating to the counted vantages and returns
// the healthy ones.
func (e *Engine) gate(counted []*agent) []*agent {
	// Nearly everything down while most others see little down (raw
	// results of the vantage's latest round).
	withHosts, mostlyUp := 0, 0
	for _, a := range counted {
		if v := a.view; v.hostSeen > 0 {
			withHosts++
			if 2*(v.hostSeen-v.hostUp) < v.hostSeen {
				mostlyUp++
			}
		}
	}
	// Control targets: a control is dead (and ignored) when no counted
	// vantage sees it up.
	alive := make([]bool, len(e.controls))
	for ci, t := range e.controls {
		for _, a := range counted {
			if e.view(a, t) == viewUp {
				alive[ci] = true
				break
			}
		}
	}
	healthy := make([]*agent, 0, len(counted))
	for _, a := range counted {
		v := a.view
		down := v.hostSeen - v.hostUp
		if v.hostSeen > 0 && 10*down >= 9*v.hostSeen && 2*mostlyUp > withHosts-1 {
			a.status = stUnhealthy
			a.reason = fmt.Sprintf("sees nearly everything down while others don't (%d of %d hosts down; %d of %d other vantages see < 50%% down)",
				down, v.hostSeen, mostlyUp, withHosts-1)
			continue
		}
		viewed, failed := 0, 0
		for ci, t := range e.controls {
			switch e.view(a, t) {
			case viewUp:
				viewed++
			case viewDown:
				if alive[ci] {
					viewed++
					failed++
				}
			}
		}
		if failed > 0 && 2*failed >= viewed {
			a.status = stUnhealthy
			a.reason = fmt.Sprintf("control targets fail (%d of %d down while other vantages reach them)", failed, viewed)
			continue
		}
		healthy = append(healthy, a)
	}
	return healthy
}

// countGroups is the number of distinct quorum groups among as.
func countGroups(as []*agent) int {
	gs := make([]string, len(as))
	for i, a := range as {
		gs[i] = a.group
	}
	slices.Sort(gs)
	return len(slices.Compact(gs))
}

// countTargets fills gUp/gDown (distinct groups of healthy vantages that
// see each target up / down) and the ICMP-filtered counters.
func (e *Engine) countTargets(healthy []*agent, global bool) {
	clear(e.gUp)
	clear(e.gDown)
	clear(e.cFilt)
	clear(e.cICMPUp)
	if global {
		return
	}
	byGroup := slices.Clone(healthy)
	slices.SortStableFunc(byGroup, func(a, b *agent) int { return strings.Compare(a.group, b.group) })
	flush := func() {
		for t, b := range e.gBits {
			if b&1 != 0 {
				e.gUp[t]++
			}
			if b&2 != 0 {
				e.gDown[t]++
			}
		}
		clear(e.gBits)
	}
	for i, a := range byGroup {
		if i > 0 && a.group != byGroup[i-1].group {
			flush()
		}
		for t := range e.targets {
			switch e.view(a, t) {
			case viewUp:
				e.gBits[t] |= 1
			case viewDown:
				e.gBits[t] |= 2
			}
			if f := a.view.flags[t]; f&fICMPUp != 0 {
				e.cICMPUp[t]++
			} else if f&fICMP != 0 && f&fOtherUp != 0 {
				e.cFilt[t]++
			}
		}
	}
	flush()
}

// targetState applies the target rule (see the package comment).
func (e *Engine) targetState(s *subject, global bool) vantagev1.State {
	t := s.target
	s.upG, s.downG = int(e.gUp[t]), int(e.gDown[t])
	s.up, s.total = s.upG, s.upG+s.downG
	s.filtered = 0
	if e.cFilt[t] > 0 && e.cICMPUp[t] == 0 {
		s.filtered = 1
	}
	q := e.cfg.Quorum
	switch {
	case global || s.total < q:
		return vantagev1.State_STATE_UNKNOWN
	case s.downG == 0:
		return vantagev1.State_STATE_REACHABLE
	case s.upG == 0:
		return vantagev1.State_STATE_UNREACHABLE
	case s.upG >= q && s.downG < q:
		return vantagev1.State_STATE_REACHABLE
	default:
		return vantagev1.State_STATE_DEGRADED
	}
}

// aggregate derives a network or scope raw state from its children's raw
// states.
func (e *Engine) aggregate(s *subject, child func(int) *subject) {
	reach, degr, down, filt := 0, 0, 0, 0
	for _, c := range s.children {
		cs := child(c)
		switch cs.raw {
		case vantagev1.State_STATE_REACHABLE:
			reach++
		case vantagev1.State_STATE_DEGRADED:
			degr++
		case vantagev1.State_STATE_UNREACHABLE:
			down++
		}
		if cs.filtered > 0 && cs.raw == vantagev1.State_STATE_REACHABLE {
			filt++
		}
	}
	known := reach + degr + down
	s.up, s.total, s.filtered = reach+degr, len(s.children), filt
	switch {
	case known == 0:
		s.raw = vantagev1.State_STATE_UNKNOWN
	case reach == known:
		s.raw = vantagev1.State_STATE_REACHABLE
	case reach+degr == 0:
		s.raw = vantagev1.State_STATE_UNREACHABLE
	default:
		s.raw = vantagev1.State_STATE_DEGRADED
	}
}

// clamp01 keeps x in [lo, hi], mapping NaN to lo.
func clamp01(x, lo, hi float64) float64 {
	if math.IsNaN(x) || x < lo {
		return lo
	}
	return min(x, hi)
}
