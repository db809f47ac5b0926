package ingest

import (
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/trigger"
	"github.com/vantage-net/vantage/internal/taskid"
	"github.com/vantage-net/vantage/internal/tracedefaults"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Defaults of the Paris traceroutes a trigger asks for when the campaign
// has no trace probe of its own.
const (
	TriggerTraceMaxTTL    = tracedefaults.MaxTTL
	TriggerTraceGapLimit  = tracedefaults.GapLimit
	TriggerTraceTimeoutMs = uint32(trigger.TraceTimeout / time.Millisecond)
)

// HealthReporter says which vantages a campaign's verdicts count now
// (live.Worker implements it). Localise sends triggers only to those.
type HealthReporter interface {
	HealthyVantages(campaign string) []string
}

// Localise sends a Trigger with one-off Paris traceroutes to every HEALTHY
// connected vantage of a campaign whenever one of its verdicts turns
// DEGRADED or UNREACHABLE (DESIGN §5), whatever the campaign's trace
// settings. The traces cover the subject's targets (every host for the
// scope, the network's hosts, or the target) plus the campaign's upstream
// and border routers. A campaign with a trace probe lends its settings;
// otherwise the traces are ICMP Paris traces (max_ttl 30, gap_limit 5,
// 1s per TTL). The results come back like any result, carrying the
// trigger id, and feed the verdict engine's localisation (they are
// accepted until the trigger's expiry plus Config.TriggerGrace, with the
// trigger's campaign and targets only). Triggers are best effort: a
// session whose send queue is full skips it.
func (s *Server) Localise(ts []*vantagev1.Transition) {
	if s.cfg.Campaigns == nil {
		return
	}
	specs := map[string]*campaign.Spec{}
	for _, sp := range s.cfg.Campaigns.Active() {
		specs[sp.Name()] = sp
	}
	now := s.now()
	plan := LocaliseTasks(specs, ts, trigger.Expiry(now))
	if len(plan) == 0 {
		return
	}
	var health HealthReporter
	if h, ok := s.cfg.Campaigns.(HealthReporter); ok {
		health = h
	}
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	slices.SortFunc(sessions, func(a, b *session) int { return strings.Compare(a.agent.ID, b.agent.ID) })
	for _, name := range slices.Sorted(maps.Keys(plan)) {
		p := plan[name]
		var healthy map[string]bool
		if health != nil {
			healthy = map[string]bool{}
			for _, id := range health.HealthyVantages(name) {
				healthy[id] = true
			}
		}
		for _, ss := range sessions {
			if healthy != nil && !healthy[ss.agent.ID] {
				continue
			}
			if healthy == nil && !specs[name].SelectsAgent(ss.agent.Labels) {
				continue
			}
			tr := trigger.New(now, p.Tasks, joinReasons(p.Reasons))
			if !s.SendTrigger(ss.agent.ID, tr) {
				s.log.Warn("trigger skipped", "agent", ss.agent.ID, "campaign", name, "reason", "no session or send queue full")
				continue
			}
			s.log.Info("localisation traces triggered", "agent", ss.agent.ID, "campaign", name, "trigger", tr.GetId(), "tasks", len(p.Tasks))
		}
	}
}

// TracePlan is what one campaign's trigger asks of each healthy vantage.
type TracePlan struct {
	Tasks   []*vantagev1.Task
	Reasons []string
}

// LocaliseTasks returns, per campaign, the trace tasks a trigger carries
// for the transitions to DEGRADED or UNREACHABLE among ts: one per
// affected target and per upstream or border router, in target order.
func LocaliseTasks(specs map[string]*campaign.Spec, ts []*vantagev1.Transition, expires time.Time) map[string]*TracePlan {
	want := map[string]map[string]bool{} // campaign -> targets to trace
	reasons := map[string][]string{}
	for _, t := range ts {
		if t.GetTo() != vantagev1.State_STATE_DEGRADED && t.GetTo() != vantagev1.State_STATE_UNREACHABLE {
			continue
		}
		if t.GetFrom() == t.GetTo() {
			continue // a location refinement: the traces that made it exist
		}
		sp := specs[t.GetCampaign()]
		if sp == nil {
			continue
		}
		set := want[t.GetCampaign()]
		if set == nil {
			set = map[string]bool{}
			want[t.GetCampaign()] = set
		}
		for _, tg := range sp.Targets() {
			addr := tg.Addr.String()
			switch {
			case tg.Role == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || tg.Role == vantagev1.TargetRole_TARGET_ROLE_BORDER,
				t.GetLevel() == vantagev1.Level_LEVEL_SCOPE && tg.Role == vantagev1.TargetRole_TARGET_ROLE_HOST,
				t.GetLevel() == vantagev1.Level_LEVEL_NETWORK && tg.Network == t.GetSubject(),
				t.GetLevel() == vantagev1.Level_LEVEL_TARGET && addr == t.GetSubject():
				set[addr] = true
			}
		}
		reasons[t.GetCampaign()] = append(reasons[t.GetCampaign()], t.GetVerdictId()+" -> "+t.GetTo().String())
	}
	out := map[string]*TracePlan{}
	for name, set := range want {
		sp := specs[name]
		traces := map[string]*vantagev1.Task{}
		other := map[string]*vantagev1.Task{}
		var order []string
		for _, tk := range sp.Tasks(expires) {
			addr := tk.GetTarget()
			if !set[addr] {
				continue
			}
			if _, ok := other[addr]; !ok {
				other[addr] = tk
				order = append(order, addr)
			}
			if tk.GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE {
				traces[addr] = tk
			}
		}
		p := &TracePlan{Reasons: reasons[name]}
		for _, addr := range order {
			tk := traces[addr]
			if tk == nil {
				tk = proto.Clone(other[addr]).(*vantagev1.Task)
				tk.Id, tk.Kind = taskid.New(name, taskid.Trace, addr), vantagev1.ProbeKind_PROBE_KIND_TRACE
				tk.Spec = &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{Protocol: vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP,
					Paris: true, MaxTtl: TriggerTraceMaxTTL, GapLimit: TriggerTraceGapLimit, TimeoutMs: TriggerTraceTimeoutMs}}
			}
			tk.EveryRounds = 1
			p.Tasks = append(p.Tasks, tk)
		}
		if len(p.Tasks) > 0 {
			out[name] = p
		}
	}
	return out
}

func joinReasons(rs []string) string {
	const most = 8
	if len(rs) > most {
		return strings.Join(rs[:most], "; ") + "; ..."
	}
	return strings.Join(rs, "; ")
}

// SendTrigger queues tr on agentID's live session: the one way a trigger
// reaches an agent (localisation and discovery; trigger.Sender). The
// trigger and its tasks are
// remembered for the agent until its expiry plus Config.TriggerGrace, so
// results that arrive after a reconnect (from the agent's spool) are still
// accepted, with the trigger's campaign and target only. It returns false
// when the agent has no session or its send queue is full: the caller
// decides whether to try again.
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
