package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vantage-net/vantage/controller/store"
)

// Gap records are bounded three ways, so that an enrolled agent that lies
// about lost results cannot grow the database or stall the one writer
// (ingest bounds the seqs a gap may claim; see docs/OPERATIONS.md, "Ingest
// limits and overload"):
//
//   - rows: store.Batch.MaxGapRows caps the gap rows per agent. Past it a
//     gap that adjoins or overlaps a stored range is still claimed in
//     result_ranges and counted in agents.gaps, but no row is written; an
//     isolated one (it would add a range row) is dropped, not counted.
//   - merges: a gap is claimed like results, by merging it into the stored
//     ranges it touches. One gap spanning seqs 1..2^62 over an agent's
//     450,000 isolated ranges would delete them all (and write a row per
//     hole between them) in one transaction: 8 s on the test machine, with
//     every agent's batches waiting. So a gap merges at most
//     freeGapMerges stored ranges (a spool drop touches the range before
//     it and the one after), and a batch's gaps share maxBatchGapMerges
//     more; a gap that would merge more is cut just before the first range
//     it may not merge (the rest of it is not recorded).
//   - age: PruneGaps deletes rows received before the retention cutoff.
const (
	freeGapMerges     = 2
	maxBatchGapMerges = 64
)

var _ store.GapPruner = (*DB)(nil)

// PruneGaps deletes up to maxRows gap rows received before receivedBefore,
// oldest first, in one transaction; see store.GapPruner. Rows are taken
// in insertion (rowid) order, which is receive order, and the pass stops
// at the first row received after the cutoff, so it reads at most maxRows
// rows however large the table is. (A row written while the wall clock
// stood later than now waits until the rows before it are old enough.)
// result_ranges keeps the seqs accounted for.
func (db *DB) PruneGaps(ctx context.Context, receivedBefore time.Time, maxRows int) (int64, error) {
	if maxRows <= 0 {
		return 0, fmt.Errorf("prune gaps: maxRows: must be positive, got %d", maxRows)
	}
	if receivedBefore.IsZero() {
		return 0, errors.New("prune gaps: receivedBefore: must be set")
	}
	cutoff := nanos(receivedBefore)
	var n int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT rowid, received_at FROM gaps ORDER BY rowid LIMIT ?`, maxRows)
		if err != nil {
			return fmt.Errorf("prune gaps: %w", err)
		}
		var upTo int64
		for rows.Next() {
			var id, at int64
			if err := rows.Scan(&id, &at); err != nil {
				rows.Close()
				return fmt.Errorf("prune gaps: %w", err)
			}
			if at >= cutoff {
				break
			}
			upTo = id
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("prune gaps: %w", err)
		}
		if n == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM gaps WHERE rowid <= ?`, upTo); err != nil {
			return fmt.Errorf("prune gaps: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// gapBudget tracks, within one transaction, how many gap rows each agent
// may still get and how many merges the current batch's gaps have left.
type gapBudget struct {
	count  *sql.Stmt
	rows   map[string]int // agent -> gap rows stored (read once per transaction)
	merges int            // left for the batch being written
}

// rowsLeft returns how many gap rows agentID may still get under max
// (a large number when max is 0, no cap).
func (g *gapBudget) rowsLeft(ctx context.Context, agentID string, max int) (int, error) {
	if max <= 0 {
		return int(^uint(0) >> 1), nil
	}
	n, ok := g.rows[agentID]
	if !ok {
		if err := g.count.QueryRowContext(ctx, agentID).Scan(&n); err != nil {
			return 0, fmt.Errorf("count gap rows: %w", err)
		}
		g.rows[agentID] = n
	}
	return max - n, nil
}
