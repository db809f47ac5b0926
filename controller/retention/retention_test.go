package retention

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// openStore stores one batch of 10 results per day for days 1..5 before
// t0 (result i of day d sent at t0 - d*24h + i*s): five chunks.
func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	ctx := context.Background()
	db := fixture.Store(t)
	seq := uint64(0)
	for d := 5; d >= 1; d-- {
		var rs []*vantagev1.ProbeResult
		for i := range 10 {
			seq++
			rs = append(rs, &vantagev1.ProbeResult{Seq: seq, Campaign: "kp", TaskId: "kp/icmp/192.0.2.1", Target: "192.0.2.1",
				SentAt:  timestamppb.New(t0.Add(-time.Duration(d)*24*time.Hour + time.Duration(i)*time.Second)),
				Outcome: vantagev1.Outcome_OUTCOME_REPLY})
		}
		if _, _, err := db.CommitBatch(ctx, "agt-0000000000000001", 1, rs, nil); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func count(t *testing.T, st *sqlite.DB) int {
	t.Helper()
	n := 0
	if err := st.QueryResults(context.Background(), store.ResultQuery{}, func(store.StoredResult) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPruneOnce(t *testing.T) {
	tests := []struct {
		name           string
		keep           time.Duration
		batch          int
		chunks, result int64
		left           int
	}{
		{"keep everything", 6 * 24 * time.Hour, 0, 0, 0, 50},
		{"older than 2.5 days", 60 * time.Hour, 0, 3, 30, 20},
		{"in calls of one chunk", 60 * time.Hour, 1, 3, 30, 20},
		{"in calls of two chunks", 60 * time.Hour, 2, 3, 30, 20},
		{"in calls of exactly the count", 60 * time.Hour, 3, 3, 30, 20},
		{"everything", time.Hour, 2, 5, 50, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openStore(t)
			var logs syncbuf.Buffer
			clk := fixture.NewClock(t0)
			p := New(Config{Store: db, Keep: tc.keep, BatchChunks: tc.batch, Now: clk.Now,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			chunks, n, err := p.PruneOnce(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if chunks != tc.chunks || n != tc.result {
				t.Errorf("PruneOnce = %d chunks, %d results; want %d, %d", chunks, n, tc.chunks, tc.result)
			}
			if got := count(t, db); got != tc.left {
				t.Errorf("results left = %d, want %d", got, tc.left)
			}
			cutoff := t0.Add(-tc.keep).Format(time.RFC3339)
			want := []string{"level=INFO", `msg="results pruned"`, fmt.Sprintf("chunks=%d", tc.chunks), fmt.Sprintf("results=%d", tc.result), "cutoff=" + cutoff}
			line := logs.String()
			if strings.Count(line, "\n") != 1 {
				t.Errorf("want one log line per pass, got:\n%s", line)
			}
			for _, w := range want {
				if !strings.Contains(line, w) {
					t.Errorf("log line %q lacks %q", line, w)
				}
			}
		})
	}
}

// TestRun drives the loop with a fake clock: each advance of the clock
// lets the next pass delete one more day of results; cancelling ctx ends
// Run with nil.
func TestRun(t *testing.T) {
	db := openStore(t)
	clk := fixture.NewClock(t0)
	p := New(Config{Store: db, Keep: 4*24*time.Hour + time.Hour, Every: time.Millisecond, BatchChunks: 1, Now: clk.Now})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for count(t, db) != want {
			if time.Now().After(deadline) {
				t.Fatalf("results left = %d, want %d", count(t, db), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor(40) // the first pass, at start: day 5 goes
	clk.Set(t0.Add(24 * time.Hour))
	waitFor(30) // day 4
	clk.Set(t0.Add(3 * 24 * time.Hour))
	waitFor(10) // days 3 and 2
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestConfigErrors(t *testing.T) {
	db := openStore(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no store", Config{Keep: time.Hour}, "retention: Store: must be set"},
		{"zero keep", Config{Store: db}, "retention: Keep: must be positive, got 0s"},
		{"negative keep", Config{Store: db, Keep: -time.Hour}, "retention: Keep: must be positive, got -1h0m0s"},
		{"negative every", Config{Store: db, Keep: time.Hour, Every: -time.Second}, "retention: Every: must not be negative, got -1s"},
		{"negative batch", Config{Store: db, Keep: time.Hour, BatchChunks: -1}, "retention: BatchChunks: must not be negative, got -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(tc.cfg)
			if _, _, err := p.PruneOnce(context.Background()); err == nil || err.Error() != tc.want {
				t.Errorf("PruneOnce error = %v, want %q", err, tc.want)
			}
			if err := p.Run(context.Background()); err == nil || err.Error() != tc.want {
				t.Errorf("Run error = %v, want %q", err, tc.want)
			}
		})
	}
	if got := count(t, db); got != 50 {
		t.Errorf("an invalid pruner deleted results: %d left, want 50", got)
	}
}

// hidden wraps a store so that only ResultPruner shows, as the
// metrics wrapper does.
type hidden struct{ ResultPruner }

// TestPruneGaps: gap rows age out with the same cutoff as results, through
// the Store when it can, or through Config.Gaps when the Store given is a
// wrapper; the agent's gap counter stays.
func TestPruneGaps(t *testing.T) {
	const agent = "agt-0000000000000001"
	tests := []struct {
		name string
		cfg  func(db *sqlite.DB) Config
		now  time.Duration // after the gap was received
		left int
	}{
		{"young gaps stay", func(db *sqlite.DB) Config { return Config{Store: db} }, 0, 2},
		{"old gaps go", func(db *sqlite.DB) Config { return Config{Store: db} }, 2 * time.Hour, 0},
		{"through Config.Gaps", func(db *sqlite.DB) Config { return Config{Store: hidden{db}, Gaps: db} }, 2 * time.Hour, 0},
		{"a wrapper without Config.Gaps keeps them", func(db *sqlite.DB) Config { return Config{Store: hidden{db}} }, 2 * time.Hour, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			db := openStore(t)
			gaps := []*vantagev1.Gap{{Epoch: 2, FirstSeq: 1, LastSeq: 5, Reason: "spool full"}, {Epoch: 2, FirstSeq: 9, LastSeq: 9, Reason: "spool full"}}
			if _, _, err := db.CommitBatch(ctx, agent, 2, nil, gaps); err != nil {
				t.Fatal(err)
			}
			now := time.Now().Add(tc.now)
			var logs syncbuf.Buffer
			cfg := tc.cfg(db)
			cfg.Keep, cfg.Now, cfg.Logger = time.Hour, func() time.Time { return now }, slog.New(slog.NewTextHandler(&logs, nil))
			if _, _, err := New(cfg).PruneOnce(ctx); err != nil {
				t.Fatal(err)
			}
			left, err := db.Gaps(ctx, agent)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != tc.left {
				t.Errorf("%d gap rows left, want %d", len(left), tc.left)
			}
			if want := fmt.Sprintf("gaps=%d", 2-tc.left); !strings.Contains(logs.String(), want) {
				t.Errorf("log %q lacks %q", logs.String(), want)
			}
		})
	}
}
