package verdict

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func ts(ns int64) *timestamppb.Timestamp { return timestamppb.New(time.Unix(0, ns).UTC()) }

// children lists the up and down children of s: target addresses for a
// network, network names for the scope, agent ids for a target.
func (e *Engine) children(s *subject) (up, down []string) {
	switch s.level {
	case vantagev1.Level_LEVEL_TARGET:
		for _, a := range e.sortedAgents() {
			if a.status != stHealthy {
				continue
			}
			switch e.view(a, s.target) {
			case viewUp:
				up = append(up, a.id)
			case viewDown:
				down = append(down, a.id)
			}
		}
		return up, down
	case vantagev1.Level_LEVEL_NETWORK:
		for _, c := range s.children {
			up, down = classify(e.targets[c], up, down)
		}
	default:
		for _, c := range s.children {
			up, down = classify(e.networks[c], up, down)
		}
	}
	return up, down
}

// classify files a child by its raw state this round (parents settle
// first, so transitions list the scope first).
func classify(c *subject, up, down []string) ([]string, []string) {
	switch c.raw {
	case vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_DEGRADED:
		up = append(up, c.name)
	case vantagev1.State_STATE_UNREACHABLE:
		down = append(down, c.name)
	}
	return up, down
}

// notes explains the current state of s in words.
func (e *Engine) notes(s *subject) []string {
	var out []string
	switch {
	case s.held > 0:
		out = append(out, fmt.Sprintf("uncertain for %d round(s): no firm quorum of beliefs (the quorum of vantages holds): %s kept (at most %d rounds)",
			s.held, shortState(s.state), e.cfg.UncertainHold))
	case s.raw == vantagev1.State_STATE_UNKNOWN && s.unknownGlobal:
		out = append(out, fmt.Sprintf("unknown: %d healthy vantages in %d distinct %s groups with fresh data, quorum is %d",
			e.healthy, e.groups, e.cfg.QuorumLabel, e.cfg.Quorum))
	case s.raw == vantagev1.State_STATE_UNKNOWN && s.level == vantagev1.Level_LEVEL_TARGET:
		out = append(out, fmt.Sprintf("unknown: %d healthy vantage groups have a firm belief about this target (%d up, %d down), quorum is %d",
			s.total, s.upG, s.downG, e.cfg.Quorum))
	case s.raw == vantagev1.State_STATE_UNKNOWN:
		out = append(out, "unknown: no child has a verdict")
	}
	if s.state == vantagev1.State_STATE_UNSTABLE {
		out = append(out, e.unstableNote(s))
	}
	out = append(out, e.episodeNotes(s)...)
	if s.level == vantagev1.Level_LEVEL_TARGET && s.raw == vantagev1.State_STATE_REACHABLE && s.downG > 0 {
		out = append(out, fmt.Sprintf("%d vantage groups see it down, fewer than the quorum %d: outvoted (%d see it up)", s.downG, e.cfg.Quorum, s.upG))
	}
	switch {
	case s.location == vantagev1.Location_LOCATION_FILTERED && s.level == vantagev1.Level_LEVEL_TARGET:
		out = append(out, "ICMP filtered: echo requests go unanswered while TCP answers (counted as reachable)")
	case s.location == vantagev1.Location_LOCATION_FILTERED:
		out = append(out, fmt.Sprintf("ICMP filtered on every reachable child (%d): echo unanswered while TCP answers (counted as reachable)", s.filtered))
	case s.level != vantagev1.Level_LEVEL_TARGET && s.filtered > 0:
		out = append(out, fmt.Sprintf("ICMP filtered on %d children (counted as reachable)", s.filtered))
	}
	out = append(out, s.locNotes...)
	return out
}

// sortedAgents returns the agents ordered by id. Callers must not modify
// the slice.
func (e *Engine) sortedAgents() []*agent {
	if len(e.sorted) != len(e.agents) {
		e.sorted = slices.Clone(e.agents)
		slices.SortFunc(e.sorted, func(a, b *agent) int { return strings.Compare(a.id, b.id) })
	}
	return e.sorted
}

// Healthy returns the ids of the vantages counted in the last closed round
// (healthy, fresh, session up), sorted.
func (e *Engine) Healthy() []string {
	var out []string
	for _, a := range e.sortedAgents() {
		if a.status == stHealthy {
			out = append(out, a.id)
		}
	}
	return out
}

// Verdicts returns the current verdicts of every subject: the scope, then
// the networks and the targets in configuration order. Before the first
// round closes their state is UNSPECIFIED.
func (e *Engine) Verdicts() []*vantagev1.Verdict {
	return e.LevelVerdicts(vantagev1.Level_LEVEL_UNSPECIFIED)
}

// LevelVerdicts returns the current verdicts of one level, in Verdicts'
// order, building only those: a campaign of a country has one scope, a
// few hundred networks and tens of thousands of targets, and a caller
// after the scope (the agents' health, the overview) must not pay for
// every target's evidence. UNSPECIFIED is every level (Verdicts); a level
// the engine does not have gives none.
func (e *Engine) LevelVerdicts(level vantagev1.Level) []*vantagev1.Verdict {
	all := level == vantagev1.Level_LEVEL_UNSPECIFIED
	var subjects []*subject
	switch {
	case all:
		subjects = make([]*subject, 0, 1+len(e.networks)+len(e.targets))
		subjects = append(append(append(subjects, e.scope), e.networks...), e.targets...)
	case level == vantagev1.Level_LEVEL_SCOPE:
		subjects = []*subject{e.scope}
	case level == vantagev1.Level_LEVEL_NETWORK:
		subjects = e.networks
	case level == vantagev1.Level_LEVEL_TARGET:
		subjects = e.targets
	}
	agents := e.sortedAgents()
	out := make([]*vantagev1.Verdict, 0, len(subjects))
	for _, s := range subjects {
		out = append(out, e.verdict(s, agents))
	}
	return out
}

// Verdict returns the current verdict with this id
// ("<campaign>/<level>/<subject>").
func (e *Engine) Verdict(id string) (*vantagev1.Verdict, bool) {
	s, ok := e.byID[id]
	if !ok {
		return nil, false
	}
	return e.verdict(s, e.sortedAgents()), true
}

func (e *Engine) verdict(s *subject, agents []*agent) *vantagev1.Verdict {
	v := &vantagev1.Verdict{
		Id:                s.id,
		Campaign:          e.cfg.Campaign,
		Level:             s.level,
		Subject:           s.name,
		State:             s.state,
		Round:             e.lastClosed,
		HealthyVantages:   uint32(e.healthy),
		TotalVantages:     uint32(len(e.agents)),
		Quorum:            uint32(e.cfg.Quorum),
		Up:                uint32(s.up),
		Total:             uint32(s.total),
		Location:          s.location,
		LastResponsiveHop: s.lastHop,
		Network:           s.network,
		Reason:            e.reasonOf(s),
	}
	if s.state == vantagev1.State_STATE_UNSPECIFIED {
		return v
	}
	v.Since = ts(e.roundStart(s.stateRound))
	v.OnsetEarliest = ts(s.onsetEarliest)
	v.OnsetLatest = ts(s.onsetLatest)
	v.EvaluatedAt = ts(e.evalAt)
	v.UpChildren, v.DownChildren = e.children(s)
	v.Notes = e.notes(s)
	e.annotateVerdict(s, v)
	for _, a := range agents {
		v.Evidence = append(v.Evidence, e.evidence(s, a))
	}
	return v
}

// evidence is one vantage's view of s, from its latest reported round.
func (e *Engine) evidence(s *subject, a *agent) *vantagev1.VantageEvidence {
	ev := &vantagev1.VantageEvidence{
		AgentId:   a.id,
		Healthy:   a.status == stHealthy,
		Reason:    a.reason,
		LastRound: a.lastRound,
		State:     vantagev1.State_STATE_UNKNOWN,
	}
	if a.lastResultAt != 0 {
		ev.LastResultAt = ts(a.lastResultAt)
	}
	if a.bel == nil {
		if ev.Healthy {
			ev.Reason = "no result yet"
		}
		return ev
	}
	var up, seen int
	count := func(t int) {
		switch e.view(a, t) {
		case viewUp:
			up++
			seen++
		case viewDown:
			seen++
		}
	}
	switch s.level {
	case vantagev1.Level_LEVEL_TARGET:
		count(s.target)
		t := s.target
		belief := fmt.Sprintf("belief %.3f, availability icmp %.2f other %.2f", a.bel.b[t], a.bel.famAvailability(famICMP, t), a.bel.famAvailability(famOther, t))
		switch {
		case seen == 0 && ev.Healthy:
			ev.Reason = e.viewReason(a, t) + " (" + belief + ")"
		case ev.Reason == "":
			ev.Reason = belief
		default:
			ev.Reason += "; " + belief
		}
	case vantagev1.Level_LEVEL_NETWORK:
		for _, t := range s.children {
			count(t)
		}
	default:
		for _, nw := range e.networks {
			for _, t := range nw.children {
				count(t)
			}
		}
	}
	ev.TargetsUp, ev.TargetsDown = uint32(up), uint32(seen-up)
	switch {
	case seen == 0:
	case up == seen:
		ev.State = vantagev1.State_STATE_REACHABLE
	case up == 0:
		ev.State = vantagev1.State_STATE_UNREACHABLE
	default:
		ev.State = vantagev1.State_STATE_DEGRADED
	}
	return ev
}
