package live

import (
	"log/slog"
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

// Campaigns gives the parsed ACTIVE campaigns (the campaign catalogue).
type Campaigns interface {
	Active() []*campaign.Spec
}

// HealthReporter says which vantages a campaign's verdicts count now
// (Worker implements it).
type HealthReporter interface {
	HealthyVantages(campaign string) []string
}

// LocaliserConfig wires a Localiser.
type LocaliserConfig struct {
	Campaigns Campaigns
	// Health, when set, limits each campaign's traces to the vantages its
	// verdicts count; without it every connected vantage the campaign
	// selects is asked.
	Health HealthReporter
	// Triggers reaches the agents (ingest.Server).
	Triggers trigger.Sender
	Log      *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Localiser asks for the traces that localise a transition: whenever a
// verdict turns DEGRADED or UNREACHABLE (DESIGN §5), whatever the
// campaign's trace settings, and on every other change of a published
// state (a recovery, UNSTABLE in or out; not UNKNOWN) when the campaign
// sets probes[].trace.on_change, it sends a Trigger with one-off Paris
// traceroutes to every HEALTHY connected vantage of the campaign. The traces
// cover the subject's targets (every host for the scope, the network's
// hosts, or the target) plus the campaign's upstream and border routers. A
// campaign with a trace probe lends its settings; otherwise the traces are
// ICMP Paris traces (tracedefaults' max_ttl and gap_limit,
// trigger.TraceTimeout per TTL). The results come back like any result,
// carrying the trigger id, and feed the verdict engine's localisation.
// Triggers are best effort: a session whose send queue is full skips one.
type Localiser struct {
	cfg LocaliserConfig
	log *slog.Logger
	now func() time.Time
}

// NewLocaliser returns a Localiser.
func NewLocaliser(cfg LocaliserConfig) *Localiser {
	l := &Localiser{cfg: cfg, log: cfg.Log, now: cfg.Now}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l
}

// Localise sends the traces the transitions ts call for (see Localiser).
// It does not block: it runs on the worker's ticker (Options.OnTransitions).
func (l *Localiser) Localise(ts []*vantagev1.Transition) {
	if l.cfg.Campaigns == nil || l.cfg.Triggers == nil {
		return
	}
	specs := map[string]*campaign.Spec{}
	for _, sp := range l.cfg.Campaigns.Active() {
		specs[sp.Name()] = sp
	}
	now := l.now()
	plan := LocaliseTasks(specs, ts, trigger.Expiry(now))
	if len(plan) == 0 {
		return
	}
	conn := l.cfg.Triggers.ConnectedAgents()
	agents := slices.Sorted(maps.Keys(conn))
	for _, name := range slices.Sorted(maps.Keys(plan)) {
		p := plan[name]
		for _, id := range l.vantages(specs[name], agents, conn) {
			tr := trigger.New(now, p.Tasks, joinReasons(p.Reasons))
			if !l.cfg.Triggers.SendTrigger(id, tr) {
				l.log.Warn("trigger skipped", slog.String("agent", id), slog.String("campaign", name),
					slog.String("reason", "no session or send queue full"))
				continue
			}
			l.log.Info("localisation traces triggered", slog.String("agent", id), slog.String("campaign", name),
				slog.String("trigger", tr.GetId()), slog.Int("tasks", len(p.Tasks)))
		}
	}
}

// vantages lists, of the connected agents (sorted), those spec's traces go
// to: the ones its verdicts count, or without Health the ones it selects.
func (l *Localiser) vantages(spec *campaign.Spec, agents []string, conn map[string]map[string]string) []string {
	var out []string
	if l.cfg.Health == nil {
		for _, id := range agents {
			if spec.SelectsAgent(conn[id]) {
				out = append(out, id)
			}
		}
		return out
	}
	healthy := map[string]bool{}
	for _, id := range l.cfg.Health.HealthyVantages(spec.Name()) {
		healthy[id] = true
	}
	for _, id := range agents {
		if healthy[id] {
			out = append(out, id)
		}
	}
	return out
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
	want, reasons := affected(specs, ts)
	out := map[string]*TracePlan{}
	for name, set := range want {
		p := &TracePlan{Tasks: traceTasks(specs[name], set, expires), Reasons: reasons[name]}
		if len(p.Tasks) > 0 {
			out[name] = p
		}
	}
	return out
}

// affected returns, per campaign, the addresses to trace for the
// transitions to DEGRADED or UNREACHABLE among ts, and those transitions
// as reasons.
func affected(specs map[string]*campaign.Spec, ts []*vantagev1.Transition) (map[string]map[string]bool, map[string][]string) {
	want := map[string]map[string]bool{}
	reasons := map[string][]string{}
	for _, t := range ts {
		sp := specs[t.GetCampaign()]
		if sp == nil || !tracesFor(sp, t) {
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
	return want, reasons
}

// tracesFor reports whether transition t calls for traces: every change
// to DEGRADED or UNREACHABLE (localisation), and, when the campaign asks
// for traces on a change (probes[].trace.on_change), every other change of
// a published state too (a recovery, into or out of UNSTABLE), so the
// engine holds the path after the change as its baseline. Never a first
// verdict (from UNSPECIFIED), a change to or from UNKNOWN (no quorum of
// vantages to trace from) or a location refinement (from == to: the
// traces that made it exist).
func tracesFor(sp *campaign.Spec, t *vantagev1.Transition) bool {
	from, to := t.GetFrom(), t.GetTo()
	switch {
	case from == to:
		return false
	case to == vantagev1.State_STATE_DEGRADED || to == vantagev1.State_STATE_UNREACHABLE:
		return true
	case !sp.TraceOnChange(), from == vantagev1.State_STATE_UNSPECIFIED,
		from == vantagev1.State_STATE_UNKNOWN, to == vantagev1.State_STATE_UNKNOWN:
		return false
	}
	return true
}

// traceTasks is one trace task per address of set, in the campaign's target
// order: the campaign's own trace task when it has one, otherwise an ICMP
// Paris trace built on the address's first task.
func traceTasks(sp *campaign.Spec, set map[string]bool, expires time.Time) []*vantagev1.Task {
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
	var out []*vantagev1.Task
	for _, addr := range order {
		tk := traces[addr]
		if tk == nil {
			tk = proto.Clone(other[addr]).(*vantagev1.Task)
			tk.Id, tk.Kind = taskid.New(sp.Name(), taskid.Trace, addr), vantagev1.ProbeKind_PROBE_KIND_TRACE
			tk.Spec = &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{Protocol: vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP,
				Paris: true, MaxTtl: tracedefaults.MaxTTL, GapLimit: tracedefaults.GapLimit,
				TimeoutMs: uint32(trigger.TraceTimeout.Milliseconds())}}
		}
		tk.EveryRounds = 1
		out = append(out, tk)
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
