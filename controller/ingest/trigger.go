package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TriggerLifetime is how long an agent may start a triggered probe.
const TriggerLifetime = 2 * time.Minute

// Localise sends a Trigger with one-off traceroutes to every connected
// agent of a campaign when one of its verdicts turns DEGRADED or
// UNREACHABLE and the campaign asks for traces on change (DESIGN §5). The
// traces cover the subject's targets plus the campaign's upstream and
// border routers. Triggers are best effort: a session whose send queue is
// full skips it.
func (s *Server) Localise(ts []*vantagev1.Transition) {
	if s.cfg.Campaigns == nil {
		return
	}
	specs := map[string]*campaign.Spec{}
	for _, sp := range s.cfg.Campaigns.Active() {
		specs[sp.Name()] = sp
	}
	want := map[string]map[string]bool{} // campaign -> targets to trace
	reasons := map[string][]string{}
	for _, t := range ts {
		if t.GetTo() != vantagev1.State_STATE_DEGRADED && t.GetTo() != vantagev1.State_STATE_UNREACHABLE {
			continue
		}
		sp := specs[t.GetCampaign()]
		if sp == nil || !sp.TraceOnChange() {
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
				t.GetLevel() == vantagev1.Level_LEVEL_SCOPE,
				t.GetLevel() == vantagev1.Level_LEVEL_NETWORK && tg.Network == t.GetSubject(),
				t.GetLevel() == vantagev1.Level_LEVEL_TARGET && addr == t.GetSubject():
				set[addr] = true
			}
		}
		reasons[t.GetCampaign()] = append(reasons[t.GetCampaign()], t.GetVerdictId()+" -> "+t.GetTo().String())
	}
	if len(want) == 0 {
		return
	}
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	now := s.now()
	for _, ss := range sessions {
		for name, set := range want {
			ss.mu.Lock()
			var tasks []*vantagev1.Task
			for _, tk := range ss.tasks {
				if tk.GetCampaign() == name && tk.GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE && set[tk.GetTarget()] {
					tasks = append(tasks, tk)
				}
			}
			ss.mu.Unlock()
			if len(tasks) == 0 {
				continue
			}
			slices.SortFunc(tasks, func(a, b *vantagev1.Task) int { return strings.Compare(a.GetId(), b.GetId()) })
			tr := &vantagev1.Trigger{Id: newTriggerID(), IssuedAt: timestamppb.New(now),
				ExpiresAt: timestamppb.New(now.Add(TriggerLifetime)), Tasks: tasks, Reason: joinReasons(reasons[name])}
			ss.mu.Lock()
			ss.triggers[tr.GetId()] = true
			ss.mu.Unlock()
			select {
			case ss.out <- &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Trigger{Trigger: tr}}:
				s.log.Info("localisation traces triggered", "agent", ss.agent.ID, "campaign", name, "trigger", tr.GetId(), "tasks", len(tasks))
			case <-ss.done:
			default:
				s.log.Warn("trigger skipped", "agent", ss.agent.ID, "campaign", name, "reason", "send queue full")
			}
		}
	}
}

func joinReasons(rs []string) string {
	const most = 8
	if len(rs) > most {
		return strings.Join(rs[:most], "; ") + "; ..."
	}
	return strings.Join(rs, "; ")
}

func newTriggerID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "trg-" + hex.EncodeToString(b)
}
