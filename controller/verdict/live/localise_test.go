package live

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/trigger"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const triggerSpec = `
name: kp
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefix: 198.18.0.0/24, hosts: [198.18.0.10, 198.18.0.11]}
    - {name: net1, prefix: 198.18.1.0/24, hosts: [198.18.1.10]}
  upstreams: [198.51.100.42]
probes:
  - icmp: {retries: 1, timeout: 1s}
schedule: {round: 3s, jitter: 500ms}
vantages: {quorum: 1}
budget: {per_target_pps: 1, agent_pps: 500}
`

func TestLocaliseTasks(t *testing.T) {
	sp, err := campaign.Parse([]byte(triggerSpec))
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]*campaign.Spec{"kp": sp}
	exp := time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC)
	tr := func(level vantagev1.Level, subject string, to vantagev1.State) *vantagev1.Transition {
		from := vantagev1.State_STATE_REACHABLE
		if to == from {
			from = vantagev1.State_STATE_UNREACHABLE
		}
		return &vantagev1.Transition{Campaign: "kp", Level: level, Subject: subject, From: from, To: to, VerdictId: "kp/x/" + subject}
	}
	for _, c := range []struct {
		name string
		ts   []*vantagev1.Transition
		want []string
	}{
		{"scope unreachable: every host and the upstream", []*vantagev1.Transition{tr(vantagev1.Level_LEVEL_SCOPE, "KP", vantagev1.State_STATE_UNREACHABLE)},
			[]string{"198.18.0.10", "198.18.0.11", "198.18.1.10", "198.51.100.42"}},
		{"network degraded: its hosts and the upstream", []*vantagev1.Transition{tr(vantagev1.Level_LEVEL_NETWORK, "net1", vantagev1.State_STATE_DEGRADED)},
			[]string{"198.18.1.10", "198.51.100.42"}},
		{"target: itself and the upstream", []*vantagev1.Transition{tr(vantagev1.Level_LEVEL_TARGET, "198.18.0.11", vantagev1.State_STATE_UNREACHABLE)},
			[]string{"198.18.0.11", "198.51.100.42"}},
		{"recovery triggers nothing (no trace.on_change)", []*vantagev1.Transition{tr(vantagev1.Level_LEVEL_SCOPE, "KP", vantagev1.State_STATE_REACHABLE)}, nil},
		{"unstable triggers nothing (no trace.on_change)", []*vantagev1.Transition{tr(vantagev1.Level_LEVEL_SCOPE, "KP", vantagev1.State_STATE_UNSTABLE)}, nil},
		{"a location refinement (from == to) triggers nothing", []*vantagev1.Transition{func() *vantagev1.Transition {
			x := tr(vantagev1.Level_LEVEL_SCOPE, "KP", vantagev1.State_STATE_UNREACHABLE)
			x.From = x.To
			return x
		}()}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			plan := LocaliseTasks(specs, c.ts, exp)
			var got []string
			if p := plan["kp"]; p != nil {
				for _, tk := range p.Tasks {
					got = append(got, tk.GetTarget())
					if tk.GetKind() != vantagev1.ProbeKind_PROBE_KIND_TRACE || !tk.GetTrace().GetParis() || tk.GetId() != "kp/trace/"+tk.GetTarget() ||
						tk.GetRoundMs() != 3000 || tk.GetScheduleStart() == nil {
						t.Errorf("task %v", tk)
					}
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("targets %v, want %v", got, c.want)
			}
		})
	}
}

// TestTraceOnChange: probes[].trace.on_change adds traces on every other
// change of a published state: recoveries and UNSTABLE, not UNKNOWN, a
// first verdict or a refinement; localisation traces are sent either way.
func TestTraceOnChange(t *testing.T) {
	plain, err := campaign.Parse([]byte(triggerSpec))
	if err != nil {
		t.Fatal(err)
	}
	onChange, err := campaign.Parse([]byte(strings.Replace(triggerSpec, "probes:\n",
		"probes:\n  - trace: {protocol: icmp, paris: true, every: 10m, max_ttl: 8, on_change: true}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if plain.TraceOnChange() || !onChange.TraceOnChange() {
		t.Fatalf("TraceOnChange: plain %v, on_change %v", plain.TraceOnChange(), onChange.TraceOnChange())
	}
	exp := time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC)
	const (
		unspec, reach, degr = vantagev1.State_STATE_UNSPECIFIED, vantagev1.State_STATE_REACHABLE, vantagev1.State_STATE_DEGRADED
		unst, down, unk     = vantagev1.State_STATE_UNSTABLE, vantagev1.State_STATE_UNREACHABLE, vantagev1.State_STATE_UNKNOWN
	)
	for _, c := range []struct {
		name               string
		from, to           vantagev1.State
		wantPlain, wantOnC bool
	}{
		{"to UNREACHABLE", reach, down, true, true},
		{"to DEGRADED", reach, degr, true, true},
		{"recovery", down, reach, false, true},
		{"into UNSTABLE", down, unst, false, true},
		{"out of UNSTABLE", unst, reach, false, true},
		{"UNSTABLE to UNREACHABLE", unst, down, true, true},
		{"first verdict", unspec, reach, false, false},
		{"to UNKNOWN", reach, unk, false, false},
		{"from UNKNOWN", unk, reach, false, false},
		{"refinement", down, down, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := []*vantagev1.Transition{{Campaign: "kp", Level: vantagev1.Level_LEVEL_NETWORK, Subject: "net1", From: c.from, To: c.to, VerdictId: "kp/network/net1"}}
			for _, k := range []struct {
				sp   *campaign.Spec
				want bool
			}{{plain, c.wantPlain}, {onChange, c.wantOnC}} {
				plan := LocaliseTasks(map[string]*campaign.Spec{"kp": k.sp}, ts, exp)
				if got := plan["kp"] != nil; got != k.want {
					t.Errorf("on_change %v: traces %v, want %v", k.sp.TraceOnChange(), got, k.want)
				}
				if p := plan["kp"]; p != nil && (len(p.Tasks) != 2 || p.Tasks[0].GetTarget() != "198.18.1.10") {
					t.Errorf("on_change %v: tasks %v, want net1's host and the upstream", k.sp.TraceOnChange(), p.Tasks)
				}
			}
		})
	}
}

// fakeTriggers is a trigger.Sender over a fixed set of connected agents;
// full agents refuse every trigger, as a full send queue does.
type fakeTriggers struct {
	agents map[string]map[string]string
	full   map[string]bool
	sent   map[string][]*vantagev1.Trigger
}

func (f *fakeTriggers) ConnectedAgents() map[string]map[string]string { return f.agents }

func (f *fakeTriggers) SendTrigger(agentID string, tr *vantagev1.Trigger) bool {
	if _, ok := f.agents[agentID]; !ok || f.full[agentID] {
		return false
	}
	f.sent[agentID] = append(f.sent[agentID], tr)
	return true
}

type healthOf map[string][]string

func (h healthOf) HealthyVantages(c string) []string { return h[c] }

type activeSpecs []*campaign.Spec

func (a activeSpecs) Active() []*campaign.Spec { return a }

// TestLocaliserSends: the traces go, one trigger each with a fresh id and
// the trigger lifetime, to the connected vantages the campaign's verdicts
// count (with Health) or that it selects (without); an agent whose send
// queue is full is skipped; nothing goes for a recovery.
func TestLocaliserSends(t *testing.T) {
	sp, err := campaign.Parse([]byte(strings.Replace(triggerSpec, "vantages: {quorum: 1}", "vantages: {quorum: 1, select: {role: vps}}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	vps, db := map[string]string{"role": "vps"}, map[string]string{"role": "db"}
	down := []*vantagev1.Transition{{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, Subject: "KP", VerdictId: "kp/scope/KP",
		From: vantagev1.State_STATE_REACHABLE, To: vantagev1.State_STATE_UNREACHABLE}}
	for _, c := range []struct {
		name   string
		health HealthReporter
		ts     []*vantagev1.Transition
		want   []string
	}{
		{"healthy vantages only", healthOf{"kp": {"a", "d", "gone"}}, down, []string{"a"}},
		{"without health: the selected ones", nil, down, []string{"a", "b"}},
		{"a recovery sends nothing", nil, []*vantagev1.Transition{{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, Subject: "KP",
			From: vantagev1.State_STATE_UNREACHABLE, To: vantagev1.State_STATE_REACHABLE}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeTriggers{agents: map[string]map[string]string{"a": vps, "b": vps, "c": db, "d": vps}, full: map[string]bool{"d": true},
				sent: map[string][]*vantagev1.Trigger{}}
			l := NewLocaliser(LocaliserConfig{Campaigns: activeSpecs{sp}, Health: c.health, Triggers: f, Now: func() time.Time { return now }})
			l.Localise(c.ts)
			got := slices.Sorted(maps.Keys(f.sent))
			if !slices.Equal(got, c.want) {
				t.Fatalf("sent to %v, want %v", got, c.want)
			}
			ids := map[string]bool{}
			for _, trs := range f.sent {
				tr := trs[0]
				if len(trs) != 1 || ids[tr.GetId()] || !tr.GetExpiresAt().AsTime().Equal(trigger.Expiry(now)) || len(tr.GetTasks()) != 4 ||
					!strings.Contains(tr.GetReason(), "kp/scope/KP -> STATE_UNREACHABLE") {
					t.Errorf("triggers %v; want one each, a fresh id, expiring at %v, 4 traces, the transition as reason", trs, trigger.Expiry(now))
				}
				ids[tr.GetId()] = true
			}
		})
	}
}
