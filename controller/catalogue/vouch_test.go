package catalogue

import (
	"context"
	"testing"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestVouches: results of a stored campaign's tasks are vouched for even
// when the campaign is paused (not running), as long as the selection
// matches the agent and the task has that target; never for a deleted
// campaign, another target, an unknown task or an agent not selected.
func TestVouches(t *testing.T) {
	ctx := context.Background()
	cat, db := setup(t)
	selected := campaignAt(fixture.Campaign{Name: "p", Vantages: "{select: {role: vps}}"})
	if _, _, err := db.PutCampaign(ctx, "p", selected, start, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetCampaignState(ctx, "p", vantagev1.CampaignState_CAMPAIGN_STATE_PAUSED, start, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	vps := map[string]string{"role": "vps"}
	tests := []struct {
		name                   string
		campaign, task, target string
		labels                 map[string]string
		want                   bool
	}{
		{"paused campaign, selected agent", "p", "p/icmp/198.18.0.10", "198.18.0.10", vps, true},
		{"another target", "p", "p/icmp/198.18.0.10", "198.18.0.11", vps, false},
		{"a task the campaign does not have", "p", "p/icmp/198.18.0.99", "198.18.0.99", vps, false},
		{"an agent the campaign does not select", "p", "p/icmp/198.18.0.10", "198.18.0.10", map[string]string{"role": "home"}, false},
		{"no such campaign", "gone", "gone/icmp/198.18.0.10", "198.18.0.10", vps, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := cat.Vouches(ctx, tc.campaign, tc.task, tc.target, tc.labels); got != tc.want {
				t.Errorf("Vouches(%s, %s, %s) = %v, want %v", tc.campaign, tc.task, tc.target, got, tc.want)
			}
		})
	}
	if err := db.DeleteCampaign(ctx, "p", store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if cat.Vouches(ctx, "p", "p/icmp/198.18.0.10", "198.18.0.10", vps) {
		t.Error("a deleted campaign's task is still vouched for")
	}
}
