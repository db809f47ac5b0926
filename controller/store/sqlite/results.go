package sqlite

import (
	"container/heap"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
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

// QueryResults calls fn for each matching result, oldest first (by
// sent_at, then agent, epoch and seq). It stops at the first error fn
// returns and returns it.
//
// Chunks are selected by their columns (campaign, agent, round and sent_at
// ranges) in order of their earliest sent_at, and their results filtered
// exactly. Chunks overlap in time (many agents send at once), so results
// wait in a heap until no later chunk can hold an earlier one: every result
// sent before the next chunk's earliest sent_at is final.
func (db *DB) QueryResults(ctx context.Context, q store.ResultQuery, fn func(store.StoredResult) error) error {
	var where []string
	var args []any
	if q.Campaign != "" {
		where, args = append(where, "campaign = ?"), append(args, q.Campaign)
	}
	if q.AgentID != "" {
		where, args = append(where, "agent_id = ?"), append(args, q.AgentID)
	}
	if !q.From.IsZero() {
		where, args = append(where, "max_sent >= ?"), append(args, nanos(q.From))
	}
	if !q.To.IsZero() {
		where, args = append(where, "min_sent < ?"), append(args, nanos(q.To))
	}
	if q.HasMinRound {
		where, args = append(where, "max_round >= ?"), append(args, q.MinRound)
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	// With a lower bound on time or round, find the earliest chunk that
	// can match first, so the ordered scan starts there rather than at the
	// beginning of the campaign.
	if !q.From.IsZero() || q.HasMinRound {
		var lo sql.NullInt64
		if err := db.r.QueryRowContext(ctx, `SELECT min(min_sent) FROM result_chunks`+cond, args...).Scan(&lo); err != nil {
			return fmt.Errorf("query results: %w", err)
		}
		if !lo.Valid {
			return nil // nothing matches
		}
		cond += " AND min_sent >= ?"
		args = append(args, lo.Int64)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT agent_id, epoch, min_sent, received_at, body FROM result_chunks`+cond+` ORDER BY min_sent`, args...)
	if err != nil {
		return fmt.Errorf("query results: %w", err)
	}
	defer rows.Close()
	m := resultMerge{q: q, fn: fn}
	targets := map[string]bool{}
	if q.Target != "" {
		targets[q.Target] = true
	}
	for _, t := range q.Targets {
		targets[t] = true
	}
	for rows.Next() {
		var agentID string
		var epoch uint64
		var minSent, recv int64
		var body []byte
		if err := rows.Scan(&agentID, &epoch, &minSent, &recv, &body); err != nil {
			return fmt.Errorf("query results: %w", err)
		}
		if err := m.emitBefore(minSent); err != nil {
			return m.result(err)
		}
		results, err := decodeChunk(body)
		if err != nil {
			return fmt.Errorf("query results: chunk of %s/%d: %w", agentID, epoch, err)
		}
		for _, r := range results {
			sent := nanos(r.GetSentAt().AsTime())
			if len(targets) > 0 && !targets[r.GetTarget()] ||
				!q.From.IsZero() && sent < nanos(q.From) ||
				!q.To.IsZero() && sent >= nanos(q.To) ||
				q.HasMinRound && r.GetRound() < q.MinRound {
				continue
			}
			heap.Push(&m.pending, pendingResult{sent: sent, sr: store.StoredResult{AgentID: agentID, Epoch: epoch, Result: r, ReceivedAt: fromNanos(recv)}})
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query results: %w", err)
	}
	return m.result(m.emitBefore(math.MaxInt64))
}

// errLimit ends a query that reached its limit.
var errLimit = errors.New("limit reached")

// resultMerge emits results in order from chunks that overlap in time.
type resultMerge struct {
	q       store.ResultQuery
	fn      func(store.StoredResult) error
	pending resultHeap
	emitted int
}

// emitBefore hands fn every waiting result sent before t, in order.
func (m *resultMerge) emitBefore(t int64) error {
	for m.pending.Len() > 0 && (m.pending[0].sent < t || t == math.MaxInt64) {
		p := heap.Pop(&m.pending).(pendingResult)
		if m.q.Limit > 0 && m.emitted >= m.q.Limit {
			return errLimit
		}
		m.emitted++
		if err := m.fn(p.sr); err != nil {
			return err
		}
	}
	return nil
}

func (m *resultMerge) result(err error) error {
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}

type pendingResult struct {
	sent int64
	sr   store.StoredResult
}

// resultHeap orders results by (sent_at, agent, epoch, seq).
type resultHeap []pendingResult

func (h resultHeap) Len() int { return len(h) }
func (h resultHeap) Less(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.sent != b.sent {
		return a.sent < b.sent
	}
	if a.sr.AgentID != b.sr.AgentID {
		return a.sr.AgentID < b.sr.AgentID
	}
	if a.sr.Epoch != b.sr.Epoch {
		return a.sr.Epoch < b.sr.Epoch
	}
	return a.sr.Result.GetSeq() < b.sr.Result.GetSeq()
}
func (h resultHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *resultHeap) Push(x any)   { *h = append(*h, x.(pendingResult)) }
func (h *resultHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = pendingResult{}
	*h = old[:len(old)-1]
	return x
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

// Gaps returns an agent's stored gaps (results it reported lost, and
// results the controller refused), by epoch and first seq.
func (db *DB) Gaps(ctx context.Context, agentID string) ([]*vantagev1.Gap, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT epoch, first_seq, last_seq, reason FROM gaps WHERE agent_id = ? ORDER BY epoch, first_seq`, agentID)
	if err != nil {
		return nil, fmt.Errorf("gaps: %w", err)
	}
	defer rows.Close()
	var out []*vantagev1.Gap
	for rows.Next() {
		g := &vantagev1.Gap{}
		if err := rows.Scan(&g.Epoch, &g.FirstSeq, &g.LastSeq, &g.Reason); err != nil {
			return nil, fmt.Errorf("gaps: %w", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gaps: %w", err)
	}
	return out, nil
}
