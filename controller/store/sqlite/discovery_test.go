package sqlite

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestPutDiscovery(t *testing.T) {
	db, dir := openTest(t)
	ctx := context.Background()
	discovering, active := vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING, vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE
	if _, err := db.PutDiscovery(ctx, "kp", store.Discovery{Version: 1}, discovering, t0, store.AuditEntry{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("PutDiscovery of a missing campaign = %v; want ErrNotFound", err)
	}
	if _, _, err := db.PutCampaign(ctx, "kp", "a: 1", t0, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	c, err := db.GetCampaign(ctx, "kp")
	if err != nil || c.Discovery != nil {
		t.Fatalf("GetCampaign before discovery: %+v, %v", c.Discovery, err)
	}
	started := &vantagev1.DiscoveryStatus{StartedAt: timestamppb.New(t0), Note: "waiting for agents"}
	c, err = db.PutDiscovery(ctx, "kp", store.Discovery{Version: 1, Status: started}, discovering, t0,
		store.AuditEntry{At: t0, Actor: "admin", Action: "campaign.discover", Subject: "kp"})
	if err != nil || c.State != discovering || c.Discovery.Done(1) {
		t.Fatalf("start: state %v done %v err %v", c.State, c.Discovery.Done(1), err)
	}
	done := &vantagev1.DiscoveryStatus{StartedAt: timestamppb.New(t0), FinishedAt: timestamppb.New(t0), HostsSelected: 1}
	targets := []*vantagev1.CampaignTarget{{Address: "198.18.0.10", Network: "net0", Role: vantagev1.TargetRole_TARGET_ROLE_HOST}}
	if _, err := db.PutDiscovery(ctx, "kp", store.Discovery{Version: 1, Status: done, Targets: targets}, active, t0, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	// Persisted: reopen and read through both paths.
	db.Close()
	db2, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	c, err = db2.GetCampaign(ctx, "kp")
	if err != nil || c.State != active || !c.Discovery.Done(1) || c.Discovery.Done(2) || len(c.Discovery.Targets) != 1 ||
		c.Discovery.Targets[0].GetAddress() != "198.18.0.10" || c.Discovery.Status.GetHostsSelected() != 1 {
		t.Fatalf("GetCampaign after finish: %+v, %v", c, err)
	}
	cs, err := db2.ListCampaigns(ctx)
	if err != nil || len(cs) != 1 || !cs[0].Discovery.Done(1) {
		t.Fatalf("ListCampaigns: %+v, %v", cs, err)
	}
	// Re-applied meanwhile: a discovery for the old version is refused and changes nothing.
	if _, _, err := db2.PutCampaign(ctx, "kp", "a: 2", t0, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db2.PutDiscovery(ctx, "kp", store.Discovery{Version: 1, Status: done}, discovering, t0, store.AuditEntry{}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale PutDiscovery = %v; want ErrConflict", err)
	}
	if c, _ := db2.GetCampaign(ctx, "kp"); c.State != active || c.Discovery.Done(c.Version) {
		t.Fatalf("after stale put: state %v, done for v%d %v", c.State, c.Version, c.Discovery.Done(c.Version))
	}
	if err := db2.DeleteCampaign(ctx, "kp", store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db2.PutCampaign(ctx, "kp", "a: 1", t0, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if c, _ := db2.GetCampaign(ctx, "kp"); c.Discovery != nil {
		t.Fatalf("a deleted campaign's discovery came back: %+v", c.Discovery)
	}
	if es, _ := db2.ListAudit(ctx, 10); len(es) != 1 || es[0].Action != "campaign.discover" {
		t.Fatalf("audit %+v", es)
	}
}
