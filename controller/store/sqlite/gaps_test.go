package sqlite

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// isolatedGaps returns n one-seq gaps of epoch 1 at seqs first, first+2, ...
func isolatedGaps(first uint64, n int) []*vantagev1.Gap {
	out := make([]*vantagev1.Gap, n)
	for i := range out {
		s := first + 2*uint64(i)
		out[i] = &vantagev1.Gap{Epoch: 1, FirstSeq: s, LastSeq: s, Reason: "spool full"}
	}
	return out
}

func countRows(t *testing.T, db *DB, table, agent string) int {
	t.Helper()
	var n int
	if err := db.r.QueryRow(`SELECT count(*) FROM `+table+` WHERE agent_id = ?`, agent).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGapRowsCap: past Batch.MaxGapRows an agent's gap next to seqs
// already accounted for is still claimed and counted, without a row; an
// isolated one (it would add a range row) is dropped. Other agents are not
// affected, and gaps sent again are not counted twice.
func TestGapRowsCap(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	a, b := "agt-000000000000000a", "agt-000000000000000b"
	enroll(t, db, a)
	enroll(t, db, b)
	tests := []struct {
		name                  string
		group                 []store.Batch
		rows, ranges, gaps    int // agent a
		rowsB, rangesB, gapsB int // agent b
	}{
		{"five isolated gaps: three rows, two dropped", []store.Batch{
			{AgentID: a, Epoch: 1, Gaps: isolatedGaps(1, 5), MaxGapRows: 3},
			{AgentID: b, Epoch: 1, Gaps: isolatedGaps(1, 2), MaxGapRows: 3},
		}, 3, 3, 3, 2, 2, 2},
		{"a gap joining two stored ones: counted, no row", []store.Batch{
			{AgentID: a, Epoch: 1, Gaps: isolatedGaps(2, 1), MaxGapRows: 3},
		}, 3, 2, 4, 2, 2, 2},
		{"everything again: nothing new", []store.Batch{
			{AgentID: a, Epoch: 1, Gaps: append(isolatedGaps(1, 5), isolatedGaps(2, 1)...), MaxGapRows: 3},
			{AgentID: b, Epoch: 1, Gaps: isolatedGaps(1, 2), MaxGapRows: 3},
		}, 3, 2, 4, 2, 2, 2},
	}
	for _, tc := range tests {
		if _, err := db.CommitBatches(ctx, tc.group); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			id                 string
			rows, ranges, gaps int
		}{{a, tc.rows, tc.ranges, tc.gaps}, {b, tc.rowsB, tc.rangesB, tc.gapsB}} {
			ag, err := db.GetAgent(ctx, c.id)
			if err != nil {
				t.Fatal(err)
			}
			rows, ranges := countRows(t, db, "gaps", c.id), countRows(t, db, "result_ranges", c.id)
			if rows != c.rows || ranges != c.ranges || ag.Gaps != uint64(c.gaps) {
				t.Errorf("%s: %s: %d gap rows, %d ranges, gaps counter %d; want %d, %d, %d", tc.name, c.id, rows, ranges, ag.Gaps, c.rows, c.ranges, c.gaps)
			}
		}
	}
}

// TestGapMergesBounded: a gap over many isolated stored ranges merges at
// most freeGapMerges+maxBatchGapMerges of them per batch and is cut before
// the first it may not merge; the next batch goes on from there.
func TestGapMergesBounded(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	a := "agt-000000000000000a"
	enroll(t, db, a)
	// 200 ranges: seqs 1, 3, ..., 399.
	if _, err := db.CommitBatches(ctx, []store.Batch{{AgentID: a, Epoch: 1, Gaps: isolatedGaps(1, 200)}}); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "result_ranges", a); n != 200 {
		t.Fatalf("%d ranges after 200 isolated gaps; want 200", n)
	}
	giant := []*vantagev1.Gap{{Epoch: 1, FirstSeq: 1, LastSeq: 1 << 62, Reason: "spool full"}}
	merge := freeGapMerges + maxBatchGapMerges // 66: the ranges at 1..131
	tests := []struct {
		name         string
		ranges, rows int
		gaps         uint64
	}{
		// The 66 ranges 1..131 merge; the holes 2..130 (65) become rows,
		// the gap stops at 131 (133 is the first range it may not merge).
		{"first giant gap", 200 - merge + 1, 200 + 65, 200 + 65},
		// The merged range 1..131 and 65 more (133..261) merge: 66, with
		// the 65 holes 132..260 between them.
		{"sent again", 200 - 2*merge + 2, 200 + 65 + 65, 200 + 65 + 65},
	}
	for _, tc := range tests {
		start := time.Now()
		if _, err := db.CommitBatches(ctx, []store.Batch{{AgentID: a, Epoch: 1, Gaps: giant}}); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: commit took %s", tc.name, time.Since(start))
		ag, err := db.GetAgent(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		ranges, rows := countRows(t, db, "result_ranges", a), countRows(t, db, "gaps", a)
		if ranges != tc.ranges || rows != tc.rows || ag.Gaps != tc.gaps {
			t.Errorf("%s: %d ranges, %d gap rows, gaps counter %d; want %d, %d, %d", tc.name, ranges, rows, ag.Gaps, tc.ranges, tc.rows, tc.gaps)
		}
	}
}

// TestPruneGaps deletes old gap rows oldest first, bounded per call; the
// seqs stay accounted for, so a pruned gap sent again is not counted again.
func TestPruneGaps(t *testing.T) {
	tests := []struct {
		name    string
		before  time.Time
		maxRows int
		deleted int64
		left    int
	}{
		{"nothing older", t0.Add(time.Second), 10, 0, 3},
		{"cutoff is exclusive", t0.Add(2 * time.Second), 10, 1, 2},
		{"older rows go", t0.Add(3*time.Second + 1), 10, 3, 0},
		{"maxRows bounds one call", t0.Add(time.Hour), 2, 2, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := openTest(t)
			ctx := context.Background()
			a := "agt-000000000000000a"
			enroll(t, db, a)
			// Three gaps received at t0+1s, t0+2s, t0+3s.
			for i, g := range isolatedGaps(1, 3) {
				if _, err := db.CommitBatches(ctx, []store.Batch{{AgentID: a, Epoch: 1, Gaps: []*vantagev1.Gap{g}}}); err != nil {
					t.Fatal(err)
				}
				if _, err := db.w.Exec(`UPDATE gaps SET received_at = ? WHERE first_seq = ?`,
					nanos(t0.Add(time.Duration(i+1)*time.Second)), g.GetFirstSeq()); err != nil {
					t.Fatal(err)
				}
			}
			n, err := db.PruneGaps(ctx, tc.before, tc.maxRows)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.deleted || countRows(t, db, "gaps", a) != tc.left {
				t.Errorf("PruneGaps = %d, %d rows left; want %d, %d left", n, countRows(t, db, "gaps", a), tc.deleted, tc.left)
			}
			if _, err := db.CommitBatches(ctx, []store.Batch{{AgentID: a, Epoch: 1, Gaps: isolatedGaps(1, 3)}}); err != nil {
				t.Fatal(err)
			}
			ag, err := db.GetAgent(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if ag.Gaps != 3 || countRows(t, db, "gaps", a) != tc.left {
				t.Errorf("after re-sending the gaps: counter %d, %d rows; want 3, %d", ag.Gaps, countRows(t, db, "gaps", a), tc.left)
			}
		})
	}
}

func TestPruneGapsBadInput(t *testing.T) {
	db, _ := openTest(t)
	for _, tc := range []struct {
		name    string
		before  time.Time
		maxRows int
		want    string
	}{
		{"zero maxRows", t0, 0, "maxRows: must be positive, got 0"},
		{"zero cutoff", time.Time{}, 10, "receivedBefore: must be set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := db.PruneGaps(context.Background(), tc.before, tc.maxRows); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("PruneGaps error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
