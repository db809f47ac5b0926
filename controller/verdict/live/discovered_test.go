package live

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// specD needs discovery: hosts and upstreams.
var specD = fixture.Campaign{Name: "d", PerNetwork: 2, Discover: true, Upstreams: true, Round: "10s", Start: startYAML}.YAML()

// TestReloadUsesDiscoveredTargets: a campaign that needs discovery gets an
// engine only once its discovery of the current version has finished, and
// that engine (and Active, hence the assignments) uses the discovered
// targets; a second discovery of the same version rebuilds it.
func TestReloadUsesDiscoveredTargets(t *testing.T) {
	ctx := context.Background()
	w, db, _ := setup(t)
	if _, _, err := db.PutCampaign(ctx, "d", specD, start, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	// ACTIVE but never discovered (e.g. a crash between apply and the
	// start of discovery): no engine, and the error says why.
	if err := reload(ctx, w); !errors.Is(err, catalogue.ErrNotDiscovered) || w.Running("d") {
		t.Fatalf("Reload = %v, running %v; want ErrNotDiscovered and no engine", err, w.Running("d"))
	}
	host := vantagev1.TargetRole_TARGET_ROLE_HOST
	finish := func(at int64, addrs ...string) {
		t.Helper()
		var ts []*vantagev1.CampaignTarget
		for _, a := range addrs {
			ts = append(ts, &vantagev1.CampaignTarget{Address: a, Network: "net0", Role: host})
		}
		ts = append(ts, &vantagev1.CampaignTarget{Address: "198.51.100.50", Role: vantagev1.TargetRole_TARGET_ROLE_BORDER})
		st := &vantagev1.DiscoveryStatus{StartedAt: timestamppb.New(start), FinishedAt: timestamppb.New(start.Add(timeSec(at)))}
		if _, err := db.PutDiscovery(ctx, "d", store.Discovery{Version: 1, Status: st, Targets: ts},
			vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE, start, store.AuditEntry{}); err != nil {
			t.Fatal(err)
		}
		if err := reload(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	targets := func() []string {
		r := w.get("d")
		if r == nil {
			t.Fatal("no engine for d")
		}
		sp := r.spec
		var out []string
		for _, tg := range sp.Targets() {
			out = append(out, tg.Addr.String()+" "+tg.Role.String())
		}
		return out
	}
	finish(1, "198.18.0.12", "198.18.0.10")
	want := []string{"198.18.0.12 TARGET_ROLE_HOST", "198.18.0.10 TARGET_ROLE_HOST", "198.51.100.50 TARGET_ROLE_BORDER"}
	if got := targets(); !slices.Equal(got, want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
	finish(2, "198.18.0.11")
	if got, want := targets(), []string{"198.18.0.11 TARGET_ROLE_HOST", "198.51.100.50 TARGET_ROLE_BORDER"}; !slices.Equal(got, want) {
		t.Fatalf("after re-discovery targets %v, want %v", got, want)
	}
	// Back to DISCOVERING (re-applied): the engine stops.
	if _, err := db.PutDiscovery(ctx, "d", store.Discovery{Version: 1, Status: &vantagev1.DiscoveryStatus{StartedAt: timestamppb.New(start)}},
		vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING, start, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if err := reload(ctx, w); err != nil || w.Running("d") {
		t.Fatalf("Reload = %v, running %v; want stopped while discovering", err, w.Running("d"))
	}
	if _, err := w.Replay(ctx, "d", start, start.Add(timeSec(60)), nil); !errors.Is(err, ErrReplay) {
		t.Errorf("Replay while discovering = %v; want ErrReplay", err)
	}
}

func timeSec(n int64) time.Duration { return time.Duration(n) * time.Second }
