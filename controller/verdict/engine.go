package verdict

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Engine is one campaign's verdict state.
type Engine struct {
	cfg        Config
	start      int64 // Unix ns
	roundLen   int64 // the round length, ns
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
	qual           *quality      // quality.go
	routing        *roundRouting // routing.go: this round's prefix states, fetched once
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
		roundLen:   int64(cfg.Round),
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
	e.scope = e.newSubject(vantagev1.Level_LEVEL_SCOPE, cfg.Scope)
	for i, name := range cfg.Networks {
		if name == "" || strings.Contains(name, "/") {
			return nil, cfgErr(fmt.Sprintf("Networks[%d]", i), "%q must be non-empty without '/'", name)
		}
		if _, dup := netIdx[name]; dup {
			return nil, cfgErr(fmt.Sprintf("Networks[%d]", i), "%q is listed twice", name)
		}
		netIdx[name] = i
		n := e.newSubject(vantagev1.Level_LEVEL_NETWORK, name)
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
		s := e.newSubject(vantagev1.Level_LEVEL_TARGET, addr)
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

// ClosedRound is the last closed round, -1 if none.
func (e *Engine) ClosedRound() int64 { return e.lastClosed }

func (e *Engine) roundStart(n int64) int64 { return e.start + n*e.roundLen }
func (e *Engine) roundEnd(n int64) int64   { return e.start + (n+1)*e.roundLen }

// roundOf is the round containing t (floor division; negative before Start).
func (e *Engine) roundOf(t int64) int64 {
	d := t - e.start
	n := d / e.roundLen
	if d < 0 && d%e.roundLen != 0 {
		n--
	}
	return n
}

// maxRound keeps round arithmetic far from int64 overflow.
func (e *Engine) maxRound() int64 { return (1<<62)/e.roundLen - 1 }

func (e *Engine) setNow(t time.Time) {
	ns := t.UnixNano()
	if !e.clockKnown || ns > e.now {
		e.now = ns
	}
	e.clockKnown = true
}
