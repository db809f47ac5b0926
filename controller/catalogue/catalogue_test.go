package catalogue

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// specA, specB and specD are campaigns starting at start, with 10s
// rounds: a over two hosts of 198.18.0.0/24, b over one of 198.18.1.0/24,
// and d, which needs discovery (hosts and upstreams).
var (
	specA = campaignAt(fixture.Campaign{Name: "a", PerNetwork: 2})
	specB = campaignAt(fixture.Campaign{Name: "b", Networks: []string{"198.18.1.0/24"}})
	specD = campaignAt(fixture.Campaign{Name: "d", PerNetwork: 2, Discover: true, Upstreams: true})
)

// campaignAt is c's YAML with 10s rounds from start.
func campaignAt(c fixture.Campaign) string {
	c.Round, c.Start = "10s", "2026-01-01T00:00:00Z"
	return c.YAML()
}

func setup(t *testing.T) (*Catalogue, *sqlite.DB) {
	t.Helper()
	db := fixture.Store(t)
	return New(Options{Store: db}), db
}

func names(cat *Catalogue) []string {
	var out []string
	for _, sp := range cat.Active() {
		out = append(out, sp.Name())
	}
	return out
}

// TestReloadFollowsCampaignState: the catalogue holds the ACTIVE campaigns,
// by name, as the store has them at the last Reload.
func TestReloadFollowsCampaignState(t *testing.T) {
	ctx := context.Background()
	cat, db := setup(t)
	fixture.PutCampaign(t, db, "b", specB, start)
	fixture.PutCampaign(t, db, "a", specA, start)
	for _, s := range fixture.PauseResumeDelete(db, start) {
		t.Run(s.Name, func(t *testing.T) {
			s.Do(t)
			if err := cat.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			if got := names(cat); !slices.Equal(got, s.Want) {
				t.Fatalf("active = %v; want %v", got, s.Want)
			}
			for _, n := range s.Want {
				if sp, ok := cat.Spec(n); !ok || sp.Name() != n {
					t.Errorf("Spec(%s) = %v, %v", n, sp, ok)
				}
			}
		})
	}
	if _, ok := cat.Spec("a"); ok {
		t.Error("Spec of a deleted campaign found")
	}
}

// TestReloadUsesDiscoveredTargets: a campaign that needs discovery is
// active only once its discovery of the current version has finished, with
// the discovered targets, and a second discovery of the same version gives
// it a new key (so the verdict worker rebuilds its engine).
func TestReloadUsesDiscoveredTargets(t *testing.T) {
	ctx := context.Background()
	cat, db := setup(t)
	if _, _, err := db.PutCampaign(ctx, "d", specD, start, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if err := cat.Reload(ctx); !errors.Is(err, ErrNotDiscovered) || len(cat.Active()) != 0 {
		t.Fatalf("Reload = %v, active %v; want ErrNotDiscovered and nothing active", err, names(cat))
	}
	finish := func(at time.Duration, addrs ...string) Entry {
		t.Helper()
		var ts []*vantagev1.CampaignTarget
		for _, a := range addrs {
			ts = append(ts, &vantagev1.CampaignTarget{Address: a, Network: "net0", Role: vantagev1.TargetRole_TARGET_ROLE_HOST})
		}
		st := &vantagev1.DiscoveryStatus{StartedAt: timestamppb.New(start), FinishedAt: timestamppb.New(start.Add(at))}
		if _, err := db.PutDiscovery(ctx, "d", store.Discovery{Version: 1, Status: st, Targets: ts},
			vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE, start, store.AuditEntry{}); err != nil {
			t.Fatal(err)
		}
		if err := cat.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		es := cat.Entries()
		if len(es) != 1 {
			t.Fatalf("%d entries, want 1", len(es))
		}
		var got []string
		for _, tg := range es[0].Spec.Targets() {
			got = append(got, tg.Addr.String())
		}
		if !slices.Equal(got, addrs) {
			t.Fatalf("targets %v, want %v", got, addrs)
		}
		return es[0]
	}
	first := finish(time.Second, "198.18.0.12", "198.18.0.10")
	second := finish(2*time.Second, "198.18.0.11")
	if first.Key == second.Key || first.Key != Key(first.Campaign) {
		t.Errorf("keys %q and %q; want two, each Key of its campaign", first.Key, second.Key)
	}
}

// TestChanged: Changed reloads, then runs the subscribers in order, each
// seeing the reloaded catalogue; a failing subscriber does not stop the
// next.
func TestChanged(t *testing.T) {
	ctx := context.Background()
	cat, db := setup(t)
	var calls []string
	cat.OnChange(func(context.Context) error {
		calls = append(calls, "first:"+strings.Join(names(cat), ","))
		return errors.New("boom")
	})
	cat.OnChange(func(context.Context) error {
		calls = append(calls, "second:"+strings.Join(names(cat), ","))
		return nil
	})
	if _, _, err := db.PutCampaign(ctx, "a", specA, start, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	cat.Changed(ctx)
	if want := []string{"first:a", "second:a"}; !slices.Equal(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
}
