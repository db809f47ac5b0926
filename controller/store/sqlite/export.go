package sqlite

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TransitionsByVerdict returns one page of q.Campaign's unfolded
// transitions in verdict order (verdict id, detected_at, id); see
// store.VerdictPageQuery. A verdict id begins with its campaign and "/",
// so the campaign is a range of the (verdict_id, detected_at) index, whose
// entries end with the row id: the page is read in index order, with no
// sort of the window.
func (db *DB) TransitionsByVerdict(ctx context.Context, q store.VerdictPageQuery) ([]*vantagev1.Transition, error) {
	if q.Campaign == "" {
		return nil, fmt.Errorf("transitions by verdict: campaign: required")
	}
	// '0' is the byte after '/': every id of the campaign sorts in between.
	where := `verdict_id >= ? AND verdict_id < ? AND campaign = ? AND folded_into = 0`
	args := []any{q.Campaign + "/", q.Campaign + "0", q.Campaign}
	if q.Level != vantagev1.Level_LEVEL_UNSPECIFIED {
		where, args = where+` AND level = ?`, append(args, int32(q.Level))
	}
	if !q.From.IsZero() {
		where, args = where+` AND detected_at >= ?`, append(args, nanos(q.From))
	}
	if !q.To.IsZero() {
		where, args = where+` AND detected_at < ?`, append(args, nanos(q.To))
	}
	if q.AfterVerdictID != "" {
		where += ` AND (verdict_id, detected_at, id) > (?, ?, ?)`
		args = append(args, q.AfterVerdictID, nanos(q.AfterDetectedAt), q.AfterID)
	}
	query := `SELECT id, body FROM transitions INDEXED BY transitions_verdict_detected WHERE ` + where +
		` ORDER BY verdict_id, detected_at, id`
	if q.Limit > 0 {
		query += ` LIMIT ` + strconv.Itoa(q.Limit)
	}
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("transitions by verdict: %w", err)
	}
	defer rows.Close()
	var out []*vantagev1.Transition
	for rows.Next() {
		var id int64
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return nil, fmt.Errorf("transitions by verdict: %w", err)
		}
		t := &vantagev1.Transition{}
		if err := proto.Unmarshal(body, t); err != nil {
			return nil, fmt.Errorf("transitions by verdict: transition %d: %w", id, err)
		}
		t.Id = id
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("transitions by verdict: %w", err)
	}
	return out, nil
}
