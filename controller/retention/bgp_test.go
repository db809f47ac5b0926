package retention

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestPruneBGP: BGP updates and peer events age out with their own
// retention, with the results' or alone, in calls of BGPRowsPerCall.
func TestPruneBGP(t *testing.T) {
	tests := []struct {
		name    string
		results bool
		keep    time.Duration
		left    int
	}{
		{"with the results", true, 36 * time.Hour, 2},
		{"alone", false, 36 * time.Hour, 2},
		{"keep everything", false, 30 * 24 * time.Hour, BGPRowsPerCall + 3},
		{"everything", false, time.Minute, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			db := openStore(t)
			var us []*vantagev1.BgpUpdate
			// BGPRowsPerCall+1 updates 2 days old (two store calls), 2 fresh.
			for i := range BGPRowsPerCall + 3 {
				age := 48 * time.Hour
				if i >= BGPRowsPerCall+1 {
					age = time.Hour
				}
				us = append(us, &vantagev1.BgpUpdate{At: timestamppb.New(t0.Add(-age + time.Duration(i)*time.Millisecond)),
					Peer: "192.0.2.1", Prefix: "198.18.0.0/24", Withdraw: true})
			}
			if err := db.AddBGP(ctx, us, []store.BGPPeerEvent{{At: t0.Add(-48 * time.Hour), Peer: "192.0.2.1", Up: true}}, store.AuditEntry{}); err != nil {
				t.Fatal(err)
			}
			var logs syncbuf.Buffer
			cfg := Config{BGP: db, BGPKeep: tc.keep, Now: fixture.NewClock(t0).Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			if tc.results {
				cfg.Store, cfg.Keep = db, 6*24*time.Hour
			}
			if _, _, err := New(cfg).PruneOnce(ctx); err != nil {
				t.Fatal(err)
			}
			left, err := db.BGPUpdates(ctx, store.BGPQuery{})
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != tc.left {
				t.Errorf("%d updates left, want %d", len(left), tc.left)
			}
			if !strings.Contains(logs.String(), "bgp_rows=") || strings.Contains(logs.String(), "results=") != tc.results {
				t.Errorf("log line: %s", logs.String())
			}
			if got := count(t, db); got != 50 {
				t.Errorf("results left = %d, want 50", got)
			}
		})
	}
}

func TestBGPConfigErrors(t *testing.T) {
	db := openStore(t)
	p := New(Config{BGP: db})
	if _, _, err := p.PruneOnce(context.Background()); err == nil || err.Error() != "retention: BGPKeep: must be positive, got 0s" {
		t.Errorf("PruneOnce error = %v", err)
	}
}
