package verdict

import (
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// status is a vantage's health as of the last closed round.
type status uint8

const (
	stUnknown status = iota // never evaluated
	stHealthy
	stStale
	stSessionDown
	stUnhealthy
)

// agent is one vantage as the engine tracks it: its session, its view
// (the row of its latest closed round), its health and its beliefs.
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

// subject is one verdict subject (the scope, a network or a target) and
// its state across rounds.
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
	// pubs: the transitions it published in the last UnstableWindow
	// rounds, oldest first, for the episode that may fold them (fold.go).
	pubs []pubEntry
	cz   *causeTrack // networks and the scope: router, upstreams, cause (causetrack.go)

	// sig: the story its traces last told (locate.go).
	sig pathSig
}

var reasonNames = [...]string{
	stUnknown:     "not evaluated yet",
	stHealthy:     "",
	stStale:       "no fresh data",
	stSessionDown: "session down",
}

// levelNames are the levels as verdict ids spell them.
var levelNames = map[vantagev1.Level]string{
	vantagev1.Level_LEVEL_SCOPE:   "scope",
	vantagev1.Level_LEVEL_NETWORK: "network",
	vantagev1.Level_LEVEL_TARGET:  "target",
}

// ID is the id of the verdict on subject (the scope's name, a network's
// name, a target's address) at level in campaign:
// "<campaign>/<level>/<subject>", e.g. "kp/network/net0". ok is false for
// a level that has no verdicts (UNSPECIFIED).
func ID(campaign string, level vantagev1.Level, subject string) (id string, ok bool) {
	name, ok := levelNames[level]
	if !ok {
		return "", false
	}
	return campaign + "/" + name + "/" + subject, true
}

func (e *Engine) newSubject(level vantagev1.Level, name string) *subject {
	id, _ := ID(e.cfg.Campaign, level, name)
	s := &subject{
		id:         id,
		name:       name,
		level:      level,
		stateRound: -1,
		badSince:   -1,
	}
	e.byID[s.id] = s
	return s
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
