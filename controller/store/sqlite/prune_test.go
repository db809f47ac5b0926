package sqlite

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const pruneAgent = "agt-00000000000000aa"

// pruneFixture stores three batches of ten results (seqs 1..10, 11..20,
// 21..30, result s sent at t0+s seconds: three chunks whose max_sent are
// t0+10s, t0+20s and t0+30s), a gap and a transition.
func pruneFixture(t *testing.T) *DB {
	t.Helper()
	db, _ := openTest(t)
	ctx := context.Background()
	enroll(t, db, pruneAgent)
	for first := uint64(1); first <= 21; first += 10 {
		var gaps []*vantagev1.Gap
		if first == 1 {
			gaps = []*vantagev1.Gap{{Epoch: 1, FirstSeq: 100, LastSeq: 109, Reason: "spool full"}}
		}
		if _, _, err := db.CommitBatch(ctx, pruneAgent, 1, results(first, first+9), gaps); err != nil {
			t.Fatal(err)
		}
	}
	tr := &vantagev1.Transition{Campaign: "kp", Level: vantagev1.Level_LEVEL_TARGET, VerdictId: "kp/target/192.0.2.1",
		DetectedAt: timestamppb.New(t0.Add(5 * time.Second))}
	if err := db.AddTransitions(ctx, []*vantagev1.Transition{tr}); err != nil {
		t.Fatal(err)
	}
	return db
}

// storedSeqs lists the seqs QueryResults returns, in its order.
func storedSeqs(t *testing.T, db *DB) []uint64 {
	t.Helper()
	var out []uint64
	err := db.QueryResults(context.Background(), store.ResultQuery{}, func(r store.StoredResult) error {
		out = append(out, r.Result.GetSeq())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func seqs(first, last uint64) []uint64 {
	var out []uint64
	for s := first; s <= last; s++ {
		out = append(out, s)
	}
	return out
}

func TestPruneResults(t *testing.T) {
	tests := []struct {
		name           string
		before         time.Time
		maxChunks      int
		chunks, result int64
		left           []uint64
	}{
		{"nothing older", t0, 10, 0, 0, seqs(1, 30)},
		{"cutoff is exclusive", t0.Add(10 * time.Second), 10, 0, 0, seqs(1, 30)},
		{"older chunks go", t0.Add(20*time.Second + 1), 10, 2, 20, seqs(21, 30)},
		{"a chunk straddling the cutoff stays whole", t0.Add(15 * time.Second), 10, 1, 10, seqs(11, 30)},
		{"maxChunks bounds one call, oldest first", t0.Add(time.Hour), 2, 2, 20, seqs(21, 30)},
		{"everything", t0.Add(time.Hour), 10, 3, 30, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := pruneFixture(t)
			ctx := context.Background()
			chunks, n, err := db.PruneResults(ctx, tc.before, tc.maxChunks)
			if err != nil {
				t.Fatal(err)
			}
			if chunks != tc.chunks || n != tc.result {
				t.Errorf("PruneResults = %d chunks, %d results; want %d, %d", chunks, n, tc.chunks, tc.result)
			}
			if got := storedSeqs(t, db); !slices.Equal(got, tc.left) {
				t.Errorf("stored seqs after prune = %v, want %v", got, tc.left)
			}

			// Every result sent again is still a duplicate, pruned or
			// not; a new seq is fresh.
			resend := append(results(1, 30), results(31, 31)...)
			fresh, err := db.CommitBatchFresh(ctx, pruneAgent, 1, resend, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range fresh {
				if want := resend[i].GetSeq() == 31; f != want {
					t.Errorf("re-sent seq %d: fresh = %v, want %v", resend[i].GetSeq(), f, want)
				}
			}
			if got, want := storedSeqs(t, db), append(slices.Clone(tc.left), 31); !slices.Equal(got, want) {
				t.Errorf("stored seqs after re-send = %v, want %v", got, want)
			}

			// Gaps and transitions are kept.
			var gaps int
			if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM gaps`).Scan(&gaps); err != nil {
				t.Fatal(err)
			}
			if gaps != 1 {
				t.Errorf("gaps rows = %d, want 1", gaps)
			}
			ts, err := db.Timeline(ctx, store.TimelineQuery{})
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) != 1 {
				t.Errorf("transitions = %d, want 1", len(ts))
			}
		})
	}
}

// TestPruneResultsLoop prunes in calls of one chunk, as the retention
// loop does, until a call deletes fewer than asked.
func TestPruneResultsLoop(t *testing.T) {
	db := pruneFixture(t)
	ctx := context.Background()
	var calls, total int64
	for {
		c, n, err := db.PruneResults(ctx, t0.Add(25*time.Second), 1)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		total += n
		if c < 1 {
			break
		}
	}
	if calls != 3 || total != 20 {
		t.Errorf("calls = %d, results = %d; want 3 calls (1, 1, 0 chunks), 20 results", calls, total)
	}
	if got := storedSeqs(t, db); !slices.Equal(got, seqs(21, 30)) {
		t.Errorf("stored seqs = %v, want 21..30", got)
	}
}

func TestPruneResultsBadInput(t *testing.T) {
	db, _ := openTest(t)
	tests := []struct {
		name      string
		before    time.Time
		maxChunks int
		want      string
	}{
		{"zero maxChunks", t0, 0, "maxChunks: must be positive, got 0"},
		{"negative maxChunks", t0, -1, "maxChunks: must be positive, got -1"},
		{"zero cutoff", time.Time{}, 10, "sentBefore: must be set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := db.PruneResults(context.Background(), tc.before, tc.maxChunks)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("PruneResults error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
