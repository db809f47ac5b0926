package sqlite

import (
	"container/heap"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

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
// ranges) in order of their least key (min_sent, agent, epoch, first_seq:
// no result of a chunk sorts before it), and their results filtered
// exactly. Chunks overlap in time (many agents send at once), so results
// wait in a heap until no later chunk can hold an earlier one: every result
// below the next chunk's least key is final.
//
// The chunks are read a page at a time (queryPageChunks rows or
// queryPageBytes of bodies) from the results pool, and the connection is
// released before fn sees any result of the page: a caller that blocks in
// fn (a gRPC stream to a slow client) holds no connection. Each page is
// its own statement, so a chunk committed or pruned during a long query
// may or may not be seen. A query with a Limit keeps at most about twice
// the results it still has to emit and stops reading as soon as no further
// chunk can hold one of them.
//
// With q.After, the scan starts at the chunks that can hold its sent_at
// (as a From would) and skips every result at or before it.
func (db *DB) QueryResults(ctx context.Context, q store.ResultQuery, fn func(store.StoredResult) error) error {
	if q.After != nil && q.After.SentAt.After(q.From) {
		q.From = q.After.SentAt
	}
	where, args := resultConds(q)
	var start *chunkRow
	// With a lower bound on time or round, find the earliest chunk that
	// can match first, so the ordered scan starts there rather than at the
	// beginning of the campaign.
	if !q.From.IsZero() || q.HasMinRound {
		var lo sql.NullInt64
		if err := db.q.QueryRowContext(ctx, `SELECT min(min_sent) FROM result_chunks`+whereSQL(where), args...).Scan(&lo); err != nil {
			return fmt.Errorf("query results: %w", err)
		}
		if !lo.Valid {
			return nil // nothing matches
		}
		// A cursor, once there is one, replaces this start: SQLite
		// would seek on min_sent alone and rescan it every page.
		start = &chunkRow{id: -1, low: resultKey{sent: lo.Int64}}
	}
	m := newResultMerge(q, fn)
	after := start
	for {
		page, more, err := db.resultPage(ctx, where, args, after)
		if err != nil {
			return err
		}
		for i := range page {
			stop, err := m.chunk(&page[i])
			if err != nil || stop {
				return m.result(err)
			}
			page[i].body = nil // decoded: let it go before the next page
		}
		if !more || len(page) == 0 {
			break
		}
		after = &page[len(page)-1]
	}
	return m.result(m.finish())
}

// Result query pages.
const (
	queryPageChunks = 64
	queryPageBytes  = 4 << 20
)

// resultConds turns a query into chunk conditions.
func resultConds(q store.ResultQuery) ([]string, []any) {
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
	return where, args
}

func whereSQL(where []string) string {
	if len(where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(where, " AND ")
}

// chunkRow is one result_chunks row of a page.
type chunkRow struct {
	id   int64
	low  resultKey // min_sent, agent, epoch, first_seq
	recv int64
	body []byte
}

// resultPage reads the chunks after the cursor (all from the start when
// nil), in key order, into memory and releases the connection. more
// reports that the page is full, so more chunks may follow.
func (db *DB) resultPage(ctx context.Context, where []string, args []any, after *chunkRow) ([]chunkRow, bool, error) {
	if after != nil {
		where = append(slices.Clip(where), "(min_sent, agent_id, epoch, first_seq, id) > (?, ?, ?, ?, ?)")
		args = append(slices.Clip(args), after.low.sent, after.low.agent, after.low.epoch, after.low.seq, after.id)
	}
	rows, err := db.q.QueryContext(ctx, `SELECT id, agent_id, epoch, first_seq, min_sent, received_at, body FROM result_chunks`+
		whereSQL(where)+` ORDER BY min_sent, agent_id, epoch, first_seq, id LIMIT `+strconv.Itoa(db.pageChunks), args...)
	if err != nil {
		return nil, false, fmt.Errorf("query results: %w", err)
	}
	defer rows.Close()
	var page []chunkRow
	bytes := 0
	for rows.Next() {
		var c chunkRow
		if err := rows.Scan(&c.id, &c.low.agent, &c.low.epoch, &c.low.seq, &c.low.sent, &c.recv, &c.body); err != nil {
			return nil, false, fmt.Errorf("query results: %w", err)
		}
		page = append(page, c)
		if bytes += len(c.body); bytes >= queryPageBytes {
			return page, true, nil
		}
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("query results: %w", err)
	}
	return page, len(page) == db.pageChunks, nil
}

// errLimit ends a query that reached its limit.
var errLimit = errors.New("limit reached")

// resultKey is the order of results: (sent_at, agent, epoch, seq).
type resultKey struct {
	sent  int64
	agent string
	epoch uint64
	seq   uint64
}

func (a resultKey) less(b resultKey) bool {
	if a.sent != b.sent {
		return a.sent < b.sent
	}
	if a.agent != b.agent {
		return a.agent < b.agent
	}
	if a.epoch != b.epoch {
		return a.epoch < b.epoch
	}
	return a.seq < b.seq
}

// resultMerge emits results in order from chunks that overlap in time.
type resultMerge struct {
	q       store.ResultQuery
	fn      func(store.StoredResult) error
	targets map[string]bool
	// after is q.After as a key (hasAfter: set).
	after    resultKey
	hasAfter bool
	pending  resultHeap
	emitted  int
	// bound, once set, is a key with at least the results still to emit
	// at or below it in pending: a result above it can never be emitted.
	bound    resultKey
	hasBound bool
}

func newResultMerge(q store.ResultQuery, fn func(store.StoredResult) error) *resultMerge {
	m := &resultMerge{q: q, fn: fn, targets: map[string]bool{}}
	if q.Target != "" {
		m.targets[q.Target] = true
	}
	for _, t := range q.Targets {
		m.targets[t] = true
	}
	if a := q.After; a != nil {
		m.after, m.hasAfter = resultKey{sent: nanos(a.SentAt), agent: a.AgentID, epoch: a.Epoch, seq: a.Seq}, true
	}
	return m
}

// chunk emits every waiting result below c's least key, then takes c's
// matching results in. stop reports that no further chunk can matter.
func (m *resultMerge) chunk(c *chunkRow) (stop bool, err error) {
	if err := m.emitBefore(c.low, false); err != nil {
		return true, err
	}
	if m.hasBound && m.bound.less(c.low) {
		return true, m.finish() // c and every later chunk sort above what is left to emit
	}
	results, err := decodeChunk(c.body)
	if err != nil {
		return true, fmt.Errorf("query results: chunk of %s/%d: %w", c.low.agent, c.low.epoch, err)
	}
	q := m.q
	for _, r := range results {
		sent := nanos(r.GetSentAt().AsTime())
		if len(m.targets) > 0 && !m.targets[r.GetTarget()] ||
			!q.From.IsZero() && sent < nanos(q.From) ||
			!q.To.IsZero() && sent >= nanos(q.To) ||
			q.HasMinRound && r.GetRound() < q.MinRound {
			continue
		}
		k := resultKey{sent: sent, agent: c.low.agent, epoch: c.low.epoch, seq: r.GetSeq()}
		if m.hasBound && m.bound.less(k) || m.hasAfter && !m.after.less(k) {
			continue
		}
		heap.Push(&m.pending, pendingResult{key: k, sr: store.StoredResult{AgentID: c.low.agent, Epoch: c.low.epoch, Result: r, ReceivedAt: fromNanos(c.recv)}})
	}
	m.trim()
	return false, nil
}

// trim keeps, once pending holds twice what the limit still allows (and
// at least minTrim), only the results that can still be emitted, and
// bounds what may come in afterwards.
func (m *resultMerge) trim() {
	const minTrim = 256
	if m.q.Limit <= 0 {
		return
	}
	left := m.q.Limit - m.emitted
	if len(m.pending) <= max(2*left, minTrim) {
		return
	}
	slices.SortFunc(m.pending, func(a, b pendingResult) int {
		if a.key.less(b.key) {
			return -1
		}
		return 1 // keys are unique
	})
	clear(m.pending[left:])
	m.pending = m.pending[:left] // sorted, so still a heap
	m.bound, m.hasBound = m.pending[left-1].key, true
}

// finish emits every waiting result.
func (m *resultMerge) finish() error { return m.emitBefore(resultKey{}, true) }

// emitBefore hands fn every waiting result below t (all of them when
// all), in order, up to the limit.
func (m *resultMerge) emitBefore(t resultKey, all bool) error {
	for m.pending.Len() > 0 && (all || m.pending[0].key.less(t)) {
		if m.q.Limit > 0 && m.emitted >= m.q.Limit {
			return errLimit
		}
		p := heap.Pop(&m.pending).(pendingResult)
		m.emitted++
		if err := m.fn(p.sr); err != nil {
			return err
		}
	}
	if m.q.Limit > 0 && m.emitted >= m.q.Limit {
		return errLimit
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
	key resultKey
	sr  store.StoredResult
}

// resultHeap orders results by (sent_at, agent, epoch, seq).
type resultHeap []pendingResult

func (h resultHeap) Len() int           { return len(h) }
func (h resultHeap) Less(i, j int) bool { return h[i].key.less(h[j].key) }
func (h resultHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *resultHeap) Push(x any)        { *h = append(*h, x.(pendingResult)) }
func (h *resultHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = pendingResult{}
	*h = old[:len(old)-1]
	return x
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
