package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// CommitBatch stores a batch in one transaction; see store.Store.
func (db *DB) CommitBatch(ctx context.Context, agentID string, epoch uint64, results []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) (int, int, error) {
	fresh, err := db.CommitBatchFresh(ctx, agentID, epoch, results, gaps)
	if err != nil {
		return 0, 0, err
	}
	stored := 0
	for _, f := range fresh {
		if f {
			stored++
		}
	}
	return stored, len(fresh) - stored, nil
}

// CommitBatchFresh stores results and gaps with INSERT ... ON CONFLICT DO
// NOTHING on (agent_id, epoch, seq) and updates the agent's counters, all in
// one transaction. fresh[i] reports whether results[i] was new. It is
// CommitBatches with a group of one.
func (db *DB) CommitBatchFresh(ctx context.Context, agentID string, epoch uint64, results []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) ([]bool, error) {
	return db.commitOne(ctx, agentID, epoch, results, gaps)
}

// QueryResults calls fn for each matching result, oldest first. It stops
// at the first error fn returns and returns it.
func (db *DB) QueryResults(ctx context.Context, q store.ResultQuery, fn func(store.StoredResult) error) error {
	var where []string
	var args []any
	if q.Campaign != "" {
		where, args = append(where, "campaign = ?"), append(args, q.Campaign)
	}
	if q.AgentID != "" {
		where, args = append(where, "agent_id = ?"), append(args, q.AgentID)
	}
	if q.Target != "" {
		where, args = append(where, "target = ?"), append(args, q.Target)
	}
	if len(q.Targets) > 0 {
		where = append(where, "target IN (?"+strings.Repeat(", ?", len(q.Targets)-1)+")")
		for _, t := range q.Targets {
			args = append(args, t)
		}
	}
	if !q.From.IsZero() {
		where, args = append(where, "sent_at >= ?"), append(args, nanos(q.From))
	}
	if !q.To.IsZero() {
		where, args = append(where, "sent_at < ?"), append(args, nanos(q.To))
	}
	if q.HasMinRound {
		where, args = append(where, "round >= ?"), append(args, q.MinRound)
	}
	query := `SELECT agent_id, epoch, received_at, body FROM results`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY sent_at, agent_id, epoch, seq"
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("query results: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var sr store.StoredResult
		var recv int64
		var body []byte
		if err := rows.Scan(&sr.AgentID, &sr.Epoch, &recv, &body); err != nil {
			return fmt.Errorf("query results: %w", err)
		}
		sr.ReceivedAt = fromNanos(recv)
		sr.Result = &vantagev1.ProbeResult{}
		if err := proto.Unmarshal(body, sr.Result); err != nil {
			return fmt.Errorf("query results: body of %s/%d: %w", sr.AgentID, sr.Epoch, err)
		}
		if err := fn(sr); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query results: %w", err)
	}
	return nil
}

// AddTransitions stores transitions in one transaction, setting each one's
// Id to the autoincrement id the database gave it.
func (db *DB) AddTransitions(ctx context.Context, ts []*vantagev1.Transition) error {
	if len(ts) == 0 {
		return nil
	}
	ids := make([]int64, len(ts))
	err := db.tx(ctx, func(tx *sql.Tx) error {
		for i, t := range ts {
			res, err := tx.ExecContext(ctx, `INSERT INTO transitions (campaign, level, verdict_id, detected_at, body) VALUES (?, ?, ?, ?, x'')`,
				t.GetCampaign(), int32(t.GetLevel()), t.GetVerdictId(), nanos(t.GetDetectedAt().AsTime()))
			if err != nil {
				return fmt.Errorf("insert transition: %w", err)
			}
			if ids[i], err = res.LastInsertId(); err != nil {
				return fmt.Errorf("insert transition: %w", err)
			}
			c := proto.Clone(t).(*vantagev1.Transition)
			c.Id = ids[i]
			body, err := proto.Marshal(c)
			if err != nil {
				return fmt.Errorf("marshal transition: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE transitions SET body = ? WHERE id = ?`, body, ids[i]); err != nil {
				return fmt.Errorf("insert transition: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, t := range ts {
		t.Id = ids[i]
	}
	return nil
}

// Timeline returns stored transitions, oldest first.
func (db *DB) Timeline(ctx context.Context, q store.TimelineQuery) ([]*vantagev1.Transition, error) {
	var where []string
	var args []any
	if q.Campaign != "" {
		where, args = append(where, "campaign = ?"), append(args, q.Campaign)
	}
	if q.Level != vantagev1.Level_LEVEL_UNSPECIFIED {
		where, args = append(where, "level = ?"), append(args, int32(q.Level))
	}
	if !q.From.IsZero() {
		where, args = append(where, "detected_at >= ?"), append(args, nanos(q.From))
	}
	if !q.To.IsZero() {
		where, args = append(where, "detected_at < ?"), append(args, nanos(q.To))
	}
	// With a limit, the newest transitions are kept, still returned oldest first.
	query := `SELECT id, body FROM transitions`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	if q.Limit > 0 {
		query = fmt.Sprintf("SELECT body FROM (%s ORDER BY id DESC LIMIT %d) ORDER BY id", query, q.Limit)
	} else {
		query = "SELECT body FROM (" + query + ") ORDER BY id"
	}
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	defer rows.Close()
	var out []*vantagev1.Transition
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("timeline: %w", err)
		}
		t := &vantagev1.Transition{}
		if err := proto.Unmarshal(body, t); err != nil {
			return nil, fmt.Errorf("timeline: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
