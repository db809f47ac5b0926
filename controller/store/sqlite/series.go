package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var _ store.SeriesStore = (*DB)(nil)

// seriesPerChunk: PruneResults deletes at most this many series points
// per result chunk it may delete (maxChunks x seriesPerChunk per call).
const seriesPerChunk = 64

// AddQualityPoints stores quality points in one transaction; see
// store.SeriesStore.
func (db *DB) AddQualityPoints(ctx context.Context, ps []*vantagev1.QualityPoint) error {
	if len(ps) == 0 {
		return nil
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO quality_series (campaign, network, agent_id, round, round_start, body)
			VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (campaign, network, agent_id, round)
			DO UPDATE SET round_start = excluded.round_start, body = excluded.body`)
		if err != nil {
			return fmt.Errorf("add quality points: %w", err)
		}
		defer stmt.Close()
		for _, p := range ps {
			body, err := proto.Marshal(p)
			if err != nil {
				return fmt.Errorf("marshal quality point: %w", err)
			}
			if _, err := stmt.ExecContext(ctx, p.GetCampaign(), p.GetNetwork(), p.GetAgentId(), p.GetRound(),
				nanos(p.GetRoundStart().AsTime()), body); err != nil {
				return fmt.Errorf("add quality point: %w", err)
			}
		}
		return nil
	})
}

// Series returns stored quality points, oldest round first (then by
// network and vantage); see store.SeriesQuery.
func (db *DB) Series(ctx context.Context, q store.SeriesQuery) ([]*vantagev1.QualityPoint, error) {
	query, args := seriesSQL(q)
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	defer rows.Close()
	var out []*vantagev1.QualityPoint
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("series: %w", err)
		}
		p := &vantagev1.QualityPoint{}
		if err := proto.Unmarshal(body, p); err != nil {
			return nil, fmt.Errorf("series: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// pruneSeries deletes up to max quality points whose round started before
// before, oldest first (PruneResults calls it in its transaction: the
// series follow the results' retention).
func pruneSeries(ctx context.Context, tx *sql.Tx, before time.Time, max int) (int64, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM quality_series WHERE id IN (
		SELECT id FROM quality_series WHERE round_start < ? ORDER BY round_start LIMIT ?)`, before.UnixNano(), max)
	if err != nil {
		return 0, fmt.Errorf("prune series: %w", err)
	}
	return res.RowsAffected()
}

// seriesSQL is Series' query and its arguments. With a network, the
// (campaign, network, round_start, agent_id) index serves both the filter
// and the order, so it is the one used: one network's points, not a scan
// of every network's in the window.
func seriesSQL(q store.SeriesQuery) (string, []any) {
	var where []string
	var args []any
	for _, f := range []struct{ col, v string }{{"campaign", q.Campaign}, {"network", q.Network}, {"agent_id", q.AgentID}} {
		if f.v != "" {
			where, args = append(where, f.col+" = ?"), append(args, f.v)
		}
	}
	if !q.From.IsZero() {
		where, args = append(where, "round_start >= ?"), append(args, nanos(q.From))
	}
	if !q.To.IsZero() {
		where, args = append(where, "round_start < ?"), append(args, nanos(q.To))
	}
	query := `SELECT round_start, network, agent_id, body FROM quality_series`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	const order = " ORDER BY round_start, network, agent_id"
	if q.Limit > 0 {
		query = fmt.Sprintf("SELECT body FROM (%s ORDER BY round_start DESC, network DESC, agent_id DESC LIMIT %d)%s", query, q.Limit, order)
	} else {
		query = "SELECT body FROM (" + query + ")" + order
	}
	return query, args
}
