package ingest

import (
	"maps"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Triggers: ingest is the controller's trigger.Sender. Localisation
// (controller/verdict/live) and discovery make their triggers with
// trigger.New and send them here; screen.go remembers each one's tasks for
// the agent, so their results are accepted (for those tasks only) until the
// trigger's expiry plus Config.TriggerGrace, across reconnects.

// SendTrigger queues tr on agentID's live session: the one way a trigger
// reaches an agent. The trigger and its tasks are remembered for the agent
// until its expiry plus Config.TriggerGrace, so results that arrive after a
// reconnect (from the agent's spool) are still accepted, with the trigger's
// campaign and target only. It returns false when the agent has no session
// or its send queue is full: the caller decides whether to try again.
func (s *Server) SendTrigger(agentID string, tr *vantagev1.Trigger) bool {
	s.mu.Lock()
	ss := s.sessions[agentID]
	if ss != nil {
		s.rememberTrigger(agentID, tr, s.now())
	}
	s.mu.Unlock()
	if ss == nil {
		return false
	}
	select {
	case ss.out <- &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Trigger{Trigger: tr}}:
		return true
	case <-ss.done:
		return false
	default:
		return false
	}
}

// ConnectedAgents returns the labels of every agent with a live session,
// by agent id.
func (s *Server) ConnectedAgents() map[string]map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]string, len(s.sessions))
	for id, ss := range s.sessions {
		out[id] = maps.Clone(ss.labels)
	}
	return out
}
