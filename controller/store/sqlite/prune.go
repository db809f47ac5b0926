package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PruneResults deletes up to maxChunks result chunks whose latest result
// was sent before sentBefore, oldest first, in one transaction; see
// store.Store. result_ranges is left alone: it is the dedupe record, and
// dropping it would let a result re-sent after pruning be stored again.
// A chunk goes only once all of its results are older than the cutoff, so
// a chunk straddling it waits for a later pass. The quality series follow
// the same retention: up to maxChunks x seriesPerChunk points whose round
// started before sentBefore go in the same transaction (series.go).
func (db *DB) PruneResults(ctx context.Context, sentBefore time.Time, maxChunks int) (chunks, results int64, err error) {
	if maxChunks <= 0 {
		return 0, 0, fmt.Errorf("prune results: maxChunks: must be positive, got %d", maxChunks)
	}
	if sentBefore.IsZero() {
		return 0, 0, errors.New("prune results: sentBefore: must be set")
	}
	err = db.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM result_chunks WHERE id IN (
			SELECT id FROM result_chunks WHERE max_sent < ? ORDER BY max_sent LIMIT ?) RETURNING n`,
			sentBefore.UnixNano(), maxChunks)
		if err != nil {
			return fmt.Errorf("prune results: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var n int64
			if err := rows.Scan(&n); err != nil {
				return fmt.Errorf("prune results: %w", err)
			}
			chunks++
			results += n
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("prune results: %w", err)
		}
		rows.Close()
		_, err = pruneSeries(ctx, tx, sentBefore, maxChunks*seriesPerChunk)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	return chunks, results, nil
}
