package ingest

import (
	"slices"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/campaign"
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
		return &vantagev1.Transition{Campaign: "kp", Level: level, Subject: subject, To: to, VerdictId: "kp/x/" + subject}
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
		{"recovery triggers nothing", []*vantagev1.Transition{tr(vantagev1.Level_LEVEL_SCOPE, "KP", vantagev1.State_STATE_REACHABLE)}, nil},
		{"unstable triggers nothing", []*vantagev1.Transition{tr(vantagev1.Level_LEVEL_SCOPE, "KP", vantagev1.State_STATE_UNSTABLE)}, nil},
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
