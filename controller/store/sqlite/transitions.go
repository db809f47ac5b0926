package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// AddTransitions stores transitions in one transaction, setting each one's
// Id to the autoincrement id the database gave it. A transition that folds
// earlier ones (folds_since_round > 0: a transition into UNSTABLE) marks
// them folded into it in the same transaction (foldInto), so a timeline
// never shows an episode half folded; those in ts get FoldedInto too.
func (db *DB) AddTransitions(ctx context.Context, ts []*vantagev1.Transition) error {
	if len(ts) == 0 {
		return nil
	}
	ids := make([]int64, len(ts))
	folded := map[int64]int64{} // folded id -> the id it is folded into
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
			if c.GetFoldsSinceRound() > 0 {
				if err := foldInto(ctx, tx, c, folded); err != nil {
					return fmt.Errorf("transition %d: fold: %w", c.Id, err)
				}
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
	for _, t := range ts {
		if into, ok := folded[t.Id]; ok {
			t.FoldedInto = into
		}
	}
	return nil
}

// foldInto marks the transitions f folds as folded into it (column and
// body), recording each in folded. The rule is verdict.Fold's: f's
// verdict's unfolded transitions before it, latest first, while their
// round is in [f.folds_since_round, f.round] and they were detected no
// earlier than f's onset_earliest (a campaign edit may renumber rounds,
// not the clock; that bound also keeps the scan to the episode's
// transitions, through the (campaign, detected_at) index). Without an
// onset, f folds nothing.
func foldInto(ctx context.Context, tx *sql.Tx, f *vantagev1.Transition, folded map[int64]int64) error {
	if f.GetOnsetEarliest() == nil {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, body FROM transitions
		WHERE campaign = ? AND detected_at >= ? AND verdict_id = ? AND id < ? AND folded_into = 0 ORDER BY id DESC`,
		f.GetCampaign(), nanos(f.GetOnsetEarliest().AsTime()), f.GetVerdictId(), f.GetId())
	if err != nil {
		return err
	}
	var marks []*vantagev1.Transition
	for rows.Next() {
		var id int64
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			rows.Close()
			return err
		}
		t := &vantagev1.Transition{}
		if err := proto.Unmarshal(body, t); err != nil {
			rows.Close()
			return fmt.Errorf("transition %d: %w", id, err)
		}
		if t.GetRound() < f.GetFoldsSinceRound() || t.GetRound() > f.GetRound() {
			break
		}
		t.Id = id
		marks = append(marks, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range marks {
		t.FoldedInto = f.GetId()
		body, err := proto.Marshal(t)
		if err != nil {
			return fmt.Errorf("marshal transition %d: %w", t.Id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE transitions SET folded_into = ?, body = ? WHERE id = ?`, f.GetId(), body, t.Id); err != nil {
			return err
		}
		folded[t.Id] = f.GetId()
	}
	return nil
}

// Timeline returns stored transitions, oldest first; folded ones only when
// q.IncludeFolded. Limit counts the transitions returned.
func (db *DB) Timeline(ctx context.Context, q store.TimelineQuery) ([]*vantagev1.Transition, error) {
	query, args, err := timelineSQL(q)
	if err != nil {
		return nil, err
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

// timelineSQL is Timeline's query and its arguments.
func timelineSQL(q store.TimelineQuery) (string, []any, error) {
	var where []string
	var args []any
	switch {
	case len(q.Subjects) > 0:
		// By verdict id alone, which names the campaign and the level,
		// so that the (verdict_id, detected_at) index is the one to use:
		// a page of a network's targets, not a scan of the campaign's
		// window (a blackout of 65,536 targets is 65,536 rows in it).
		if q.Campaign == "" {
			return "", nil, fmt.Errorf("timeline: subjects: need a campaign (they are read by verdict id)")
		}
		marks := make([]string, len(q.Subjects))
		for i, subject := range q.Subjects {
			id, ok := verdict.ID(q.Campaign, q.Level, subject)
			if !ok {
				return "", nil, fmt.Errorf("timeline: subjects: need a level with verdicts, not %s", q.Level)
			}
			marks[i], args = "?", append(args, id)
		}
		where = append(where, "verdict_id IN ("+strings.Join(marks, ", ")+")")
	default:
		if q.Campaign != "" {
			where, args = append(where, "campaign = ?"), append(args, q.Campaign)
		}
		if q.Level != vantagev1.Level_LEVEL_UNSPECIFIED {
			where, args = append(where, "level = ?"), append(args, int32(q.Level))
		}
	}
	if !q.From.IsZero() {
		where, args = append(where, "detected_at >= ?"), append(args, nanos(q.From))
	}
	if !q.To.IsZero() {
		where, args = append(where, "detected_at < ?"), append(args, nanos(q.To))
	}
	if !q.IncludeFolded {
		where = append(where, "folded_into = 0")
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
	return query, args, nil
}
