package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var _ store.GroupCommitter = (*DB)(nil)

// stmts are the writer connection's prepared statements, made once.
type stmts struct {
	mu          sync.Mutex
	ready       bool
	prevRange   *sql.Stmt
	nextRanges  *sql.Stmt
	extendRange *sql.Stmt
	deleteRange *sql.Stmt
	insertRange *sql.Stmt
	insertChunk *sql.Stmt
	gap         *sql.Stmt
	gapRows     *sql.Stmt
	count       *sql.Stmt
}

func (db *DB) prepared(ctx context.Context) (*stmts, error) {
	s := &db.stmts
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready {
		return s, nil
	}
	var err error
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		if st, err = db.w.PrepareContext(ctx, q); err != nil {
			err = fmt.Errorf("prepare: %w", err)
		}
		return st
	}
	s.prevRange = prep(`SELECT first_seq, last_seq FROM result_ranges
		WHERE agent_id = ? AND epoch = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1`)
	s.nextRanges = prep(`SELECT first_seq, last_seq FROM result_ranges
		WHERE agent_id = ? AND epoch = ? AND first_seq > ? AND first_seq <= ? ORDER BY first_seq`)
	s.extendRange = prep(`UPDATE result_ranges SET last_seq = ? WHERE agent_id = ? AND epoch = ? AND first_seq = ?`)
	s.deleteRange = prep(`DELETE FROM result_ranges WHERE agent_id = ? AND epoch = ? AND first_seq = ?`)
	s.insertRange = prep(`INSERT INTO result_ranges (agent_id, epoch, first_seq, last_seq) VALUES (?, ?, ?, ?)`)
	s.insertChunk = prep(`INSERT INTO result_chunks (agent_id, epoch, first_seq, last_seq, campaign, n,
		min_round, max_round, min_sent, max_sent, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	s.gap = prep(`INSERT INTO gaps (agent_id, epoch, first_seq, last_seq, reason, received_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, epoch, first_seq) DO NOTHING`)
	s.gapRows = prep(`SELECT count(*) FROM gaps WHERE agent_id = ?`)
	s.count = prep(`UPDATE agents SET results_stored = results_stored + ?,
		duplicates_dropped = duplicates_dropped + ?, gaps = gaps + ? WHERE id = ?`)
	if err != nil {
		s.close()
		return nil, err
	}
	s.ready = true
	return s, nil
}

func (s *stmts) close() {
	for _, st := range []*sql.Stmt{s.prevRange, s.nextRanges, s.extendRange, s.deleteRange, s.insertRange, s.insertChunk, s.gap, s.gapRows, s.count} {
		if st != nil {
			st.Close()
		}
	}
	s.prevRange, s.nextRanges, s.extendRange, s.deleteRange, s.insertRange = nil, nil, nil, nil, nil
	s.insertChunk, s.gap, s.gapRows, s.count, s.ready = nil, nil, nil, nil, false
}

// CommitBatches stores many agents' batches in one transaction: one commit
// (one WAL append, and with SyncFull one fsync) for the whole group. Per batch it looks up the stored seq
// ranges the batch touches, keeps the results not stored yet, writes them
// as one chunk per campaign and merges the batch into the ranges; its gaps
// are bounded as gaps.go says. See store.GroupCommitter.
func (db *DB) CommitBatches(ctx context.Context, batches []store.Batch) ([][]bool, error) {
	st, err := db.prepared(ctx)
	if err != nil {
		return nil, err
	}
	for i := range batches {
		b := &batches[i]
		if b.Bodies != nil {
			continue
		}
		b.Bodies = make([][]byte, len(b.Results))
		for j, r := range b.Results {
			if b.Bodies[j], err = proto.Marshal(r); err != nil {
				return nil, fmt.Errorf("batch %d: results[%d]: marshal: %w", i, j, err)
			}
		}
	}
	now := nanos(time.Now())
	fresh := make([][]bool, len(batches))
	type counts struct{ stored, dups, gaps uint64 }
	perAgent := map[string]*counts{}
	err = db.tx(ctx, func(tx *sql.Tx) error {
		w := newRangeWriter(ctx, tx, st)
		insertChunk := tx.StmtContext(ctx, st.insertChunk)
		gb := &gapBudget{count: tx.StmtContext(ctx, st.gapRows), rows: map[string]int{}}
		for i, b := range batches {
			c := perAgent[b.AgentID]
			if c == nil {
				c = &counts{}
				perAgent[b.AgentID] = c
			}
			f, err := w.claim(b.AgentID, b.Epoch, b.Results)
			if err != nil {
				return fmt.Errorf("agent %s epoch %d: %w", b.AgentID, b.Epoch, err)
			}
			fresh[i] = f
			for _, ch := range chunksByCampaign(b.Results, b.Bodies, f) {
				if _, err := insertChunk.ExecContext(ctx, b.AgentID, b.Epoch, ch.first, ch.last, ch.campaign, ch.n,
					ch.minRound, ch.maxRound, ch.minSent, ch.maxSent, now, ch.body); err != nil {
					return fmt.Errorf("agent %s: insert results %d..%d: %w", b.AgentID, ch.first, ch.last, err)
				}
				c.stored += uint64(ch.n)
			}
			c.dups += uint64(len(f)) - countTrue(f)
			n, err := w.claimGaps(tx, gb, b, now)
			if err != nil {
				return err
			}
			c.gaps += n
		}
		count := tx.StmtContext(ctx, st.count)
		for id, c := range perAgent {
			if _, err := count.ExecContext(ctx, c.stored, c.dups, c.gaps, id); err != nil {
				return fmt.Errorf("agent %s: update counters: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return fresh, nil
}

func countTrue(f []bool) uint64 {
	var n uint64
	for _, x := range f {
		if x {
			n++
		}
	}
	return n
}

// claimGaps claims a batch's gaps and writes a row for each part not
// accounted for yet, within gb's bounds (gaps.go), and returns how many
// seqs they newly counted. Only the seqs not accounted for become gap rows:
// a seq stored and later reported lost (its ack was lost, then the spool
// dropped it), or a gap reported twice, is never counted twice.
func (w rangeWriter) claimGaps(tx *sql.Tx, gb *gapBudget, b store.Batch, now int64) (uint64, error) {
	if len(b.Gaps) == 0 {
		return 0, nil
	}
	gap := tx.StmtContext(w.ctx, w.st.gap)
	gb.merges = maxBatchGapMerges
	var counted uint64
	for _, g := range b.Gaps {
		if g.GetLastSeq() < g.GetFirstSeq() {
			continue
		}
		left, err := gb.rowsLeft(w.ctx, b.AgentID, b.MaxGapRows)
		if err != nil {
			return 0, fmt.Errorf("agent %s: %w", b.AgentID, err)
		}
		claim := &gapClaim{extra: gb.merges, mustTouch: left <= 0}
		parts, err := w.claimRange(b.AgentID, g.GetEpoch(), seqRange{g.GetFirstSeq(), g.GetLastSeq()}, claim)
		if err != nil {
			return 0, fmt.Errorf("agent %s epoch %d: gap: %w", b.AgentID, g.GetEpoch(), err)
		}
		gb.merges = claim.extra
		for _, p := range parts {
			if left <= 0 { // over the cap: accounted for and counted, no row
				counted += p.last - p.first + 1
				continue
			}
			res, err := gap.ExecContext(w.ctx, b.AgentID, g.GetEpoch(), p.first, p.last, g.GetReason(), now)
			if err != nil {
				return 0, fmt.Errorf("agent %s: insert gap: %w", b.AgentID, err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				counted += p.last - p.first + 1
				left--
				if b.MaxGapRows > 0 {
					gb.rows[b.AgentID]++
				}
			}
		}
	}
	return counted, nil
}

// rangeWriter claims seqs in result_ranges inside one transaction.
type rangeWriter struct {
	st                                      *stmts
	ctx                                     context.Context
	prev, next, extend, delete, insertRange *sql.Stmt
}

func newRangeWriter(ctx context.Context, tx *sql.Tx, st *stmts) rangeWriter {
	return rangeWriter{ctx: ctx, st: st,
		prev:        tx.StmtContext(ctx, st.prevRange),
		next:        tx.StmtContext(ctx, st.nextRanges),
		extend:      tx.StmtContext(ctx, st.extendRange),
		delete:      tx.StmtContext(ctx, st.deleteRange),
		insertRange: tx.StmtContext(ctx, st.insertRange),
	}
}

// claim marks the results of one (agent, epoch) batch stored and reports
// which were not stored before (fresh). A seq repeated inside the batch is
// fresh at most once.
func (w rangeWriter) claim(agentID string, epoch uint64, results []*vantagev1.ProbeResult) ([]bool, error) {
	fresh := make([]bool, len(results))
	order := make([]int, len(results))
	for i := range order {
		order[i] = i
	}
	seq := func(i int) uint64 { return results[order[i]].GetSeq() }
	sorted := true
	for i := 1; i < len(order); i++ {
		if seq(i) <= seq(i-1) {
			sorted = false
			break
		}
	}
	if !sorted {
		sort.SliceStable(order, func(a, b int) bool { return results[order[a]].GetSeq() < results[order[b]].GetSeq() })
	}
	// Walk maximal runs of consecutive seqs; a repeated seq stays false.
	for i := 0; i < len(order); {
		j := i + 1
		for j < len(order) && seq(j) <= seq(j-1)+1 {
			j++
		}
		run := seqRange{seq(i), seq(j - 1)}
		ranges, err := w.claimRange(agentID, epoch, run, nil)
		if err != nil {
			return nil, err
		}
		k := 0
		for p := i; p < j; p++ {
			s := seq(p)
			for k < len(ranges) && ranges[k].last < s {
				k++
			}
			if k < len(ranges) && ranges[k].first <= s && (p == i || s != seq(p-1)) {
				fresh[order[p]] = true
			}
		}
		i = j
	}
	return fresh, nil
}

// gapClaim bounds the claim of a gap (gaps.go): extra is the number of
// stored ranges it may merge beyond freeGapMerges (reduced by those it
// merged), and with mustTouch it is claimed only if it adjoins or overlaps
// a stored range, so that it adds no range row.
type gapClaim struct {
	extra     int
	mustTouch bool
}

// claimRange merges run into result_ranges and returns the parts of it
// that were not stored yet. gc, when not nil, bounds a gap's claim: run is
// cut short before the first range it may not merge.
func (w rangeWriter) claimRange(agentID string, epoch uint64, run seqRange, gc *gapClaim) ([]seqRange, error) {
	most := -1
	if gc != nil {
		most = freeGapMerges + max(gc.extra, 0)
	}
	touching, run, err := w.touching(agentID, epoch, run, most)
	if err != nil || run.last < run.first {
		return nil, err
	}
	if gc != nil {
		if gc.mustTouch && len(touching) == 0 {
			return nil, nil
		}
		gc.extra -= max(len(touching)-freeGapMerges, 0)
	}
	fresh, merged := cover(run, touching)
	if len(fresh) == 0 {
		return nil, nil
	}
	// The common case: the batch extends the one range before it.
	if len(touching) == 1 && touching[0].first == merged.first {
		if _, err := w.extend.ExecContext(w.ctx, merged.last, agentID, epoch, merged.first); err != nil {
			return nil, fmt.Errorf("extend stored range: %w", err)
		}
		return fresh, nil
	}
	for _, t := range touching {
		if _, err := w.delete.ExecContext(w.ctx, agentID, epoch, t.first); err != nil {
			return nil, fmt.Errorf("merge stored ranges: %w", err)
		}
	}
	if _, err := w.insertRange.ExecContext(w.ctx, agentID, epoch, merged.first, merged.last); err != nil {
		return nil, fmt.Errorf("merge stored ranges: %w", err)
	}
	return fresh, nil
}

// touching returns the stored ranges that overlap or adjoin run, in order.
// With most >= 0 it returns at most most of them, and run cut to end two
// seqs before the first one left out (so that it no longer adjoins it);
// the cut run is empty (last < first) when nothing of it is left.
func (w rangeWriter) touching(agentID string, epoch uint64, run seqRange, most int) ([]seqRange, seqRange, error) {
	var touching []seqRange
	var prev seqRange
	err := w.prev.QueryRowContext(w.ctx, agentID, epoch, run.first).Scan(&prev.first, &prev.last)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, run, fmt.Errorf("read stored ranges: %w", err)
	case touches(prev, run):
		touching = append(touching, prev)
	}
	rows, err := w.next.QueryContext(w.ctx, agentID, epoch, run.first, run.last+1)
	if err != nil {
		return nil, run, fmt.Errorf("read stored ranges: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r seqRange
		if err := rows.Scan(&r.first, &r.last); err != nil {
			return nil, run, fmt.Errorf("read stored ranges: %w", err)
		}
		if most >= 0 && len(touching) >= most {
			// r.first > run.first >= 1; an empty run when r.first-2 < run.first.
			run.last = r.first - 2
			if r.first < 2 || run.last < run.first {
				return nil, seqRange{1, 0}, nil
			}
			return touching, run, nil
		}
		touching = append(touching, r)
	}
	if err := rows.Err(); err != nil {
		return nil, run, fmt.Errorf("read stored ranges: %w", err)
	}
	return touching, run, nil
}

// commitOne is CommitBatchFresh through the group path.
func (db *DB) commitOne(ctx context.Context, agentID string, epoch uint64, results []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) ([]bool, error) {
	f, err := db.CommitBatches(ctx, []store.Batch{{AgentID: agentID, Epoch: epoch, Results: results, Gaps: gaps}})
	if err != nil {
		return nil, err
	}
	return f[0], nil
}
