package taskid_test

// The controller's task builders all spell ids through this package: every
// task a campaign expands to names its campaign, its kind and its target.
// The agent's one-shot mode (package main of vantage-agent, which cannot be
// imported here) spells its ids through this package too; its half of the
// agreement is TestTaskIDsAgree in agent/cmd/vantage-agent: every one-shot
// id parses back into its campaign, kind and target, as a campaign's does.

import (
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/internal/taskid"
)

const spec = `name: agree
scope: {country: KP}
targets:
  networks:
    - {name: v4, prefix: 198.18.0.0/24, hosts: [198.18.0.10]}
    - {name: v6, prefix: "2001:db8::/64", hosts: ["2001:db8::10"]}
probes:
  - icmp: {}
  - tcp: {ports: [80, 443]}
  - trace: {}
schedule: {round: 60s}
`

func TestCampaignTaskIDs(t *testing.T) {
	s, err := campaign.Parse([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	tasks := s.Tasks(time.Now().Add(time.Minute))
	if len(tasks) != 8 {
		t.Fatalf("%d tasks, want 8 (2 targets x icmp, 2 tcp ports, trace)", len(tasks))
	}
	for _, tk := range tasks {
		camp, kind, target, ok := taskid.Parse(tk.GetId())
		want := tk.GetTarget()
		if kind == taskid.TCP {
			want = taskid.TCPTarget(tk.GetTarget(), int64(tk.GetTcp().GetPort()))
		}
		if !ok || camp != tk.GetCampaign() || kind != taskid.Kind(tk.GetKind()) || target != want {
			t.Errorf("task %q (campaign %s, kind %v, target %s): parsed %q, %q, %q, %v",
				tk.GetId(), tk.GetCampaign(), tk.GetKind(), tk.GetTarget(), camp, kind, target, ok)
		}
	}
}
