package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var _ store.VerdictRestorer = (*DB)(nil)

// LatestVerdicts returns where every verdict of campaign stood: the newest
// transition per verdict id (one grouped scan of the campaign's
// transitions), and for those whose newest is a location refinement the
// newest state change, found by a second scan newest first that decodes
// only their rows and stops once each is found.
func (db *DB) LatestVerdicts(ctx context.Context, campaign string) (map[string]store.VerdictState, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT t.verdict_id, t.body FROM transitions t
		JOIN (SELECT max(id) AS id FROM transitions WHERE campaign = ? GROUP BY verdict_id) m ON t.id = m.id`, campaign)
	if err != nil {
		return nil, fmt.Errorf("latest verdicts of %s: %w", campaign, err)
	}
	out := map[string]store.VerdictState{}
	refined := map[string]bool{}
	for rows.Next() {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			rows.Close()
			return nil, fmt.Errorf("latest verdicts of %s: %w", campaign, err)
		}
		t := &vantagev1.Transition{}
		if err := proto.Unmarshal(body, t); err != nil {
			rows.Close()
			return nil, fmt.Errorf("latest verdicts of %s: transition of %s: %w", campaign, id, err)
		}
		vs := store.VerdictState{Latest: t}
		if changesState(t) {
			vs.Changed = t
		} else {
			refined[id] = true
		}
		out[id] = vs
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("latest verdicts of %s: %w", campaign, err)
	}
	if len(refined) > 0 {
		if err := db.stateChanges(ctx, campaign, refined, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// changesState reports whether t changed its verdict's state (a refinement
// keeps it).
func changesState(t *vantagev1.Transition) bool {
	return t.GetFrom() != t.GetTo() || t.GetFrom() == vantagev1.State_STATE_UNSPECIFIED
}

// stateChanges fills Changed for the verdict ids in want, scanning the
// campaign's transitions newest first.
func (db *DB) stateChanges(ctx context.Context, campaign string, want map[string]bool, out map[string]store.VerdictState) error {
	rows, err := db.r.QueryContext(ctx, `SELECT verdict_id, body FROM transitions WHERE campaign = ? ORDER BY id DESC`, campaign)
	if err != nil {
		return fmt.Errorf("state changes of %s: %w", campaign, err)
	}
	defer rows.Close()
	for len(want) > 0 && rows.Next() {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return fmt.Errorf("state changes of %s: %w", campaign, err)
		}
		if !want[id] {
			continue
		}
		t := &vantagev1.Transition{}
		if err := proto.Unmarshal(body, t); err != nil {
			return fmt.Errorf("state changes of %s: transition of %s: %w", campaign, id, err)
		}
		if changesState(t) {
			vs := out[id]
			vs.Changed = t
			out[id] = vs
			delete(want, id)
		}
	}
	return rows.Err()
}

// LastResultSentAt is the latest sent_at of campaign's stored results,
// read from the chunks' max_sent through the (campaign, max_sent) index.
func (db *DB) LastResultSentAt(ctx context.Context, campaign string) (time.Time, error) {
	var n sql.NullInt64
	if err := db.r.QueryRowContext(ctx, `SELECT max(max_sent) FROM result_chunks WHERE campaign = ?`, campaign).Scan(&n); err != nil {
		return time.Time{}, fmt.Errorf("last result of %s: %w", campaign, err)
	}
	return fromNanos(n.Int64), nil
}
