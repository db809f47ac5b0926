package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var _ store.GroupCommitter = (*DB)(nil)

// insertChunk is how many result rows one INSERT statement carries. One
// multi-row statement costs one bind/step cycle instead of insertChunk,
// which is most of the per-row cost in a pure-Go SQLite (11 columns x 100
// rows stays far below SQLite's 32766 parameters).
const insertChunk = 100

const resultCols = `(agent_id, epoch, seq, campaign, task_id, target, round, sent_at, outcome, received_at, body)`

// stmts are the writer connection's prepared statements, made once.
type stmts struct {
	mu    sync.Mutex
	ready bool
	chunk *sql.Stmt // insertChunk rows
	one   *sql.Stmt // one row
	gap   *sql.Stmt
	count *sql.Stmt
}

func insertSQL(rows int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO results ` + resultCols + ` VALUES `)
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	b.WriteString(` ON CONFLICT (agent_id, epoch, seq) DO NOTHING RETURNING seq`)
	return b.String()
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
	s.chunk = prep(insertSQL(insertChunk))
	s.one = prep(insertSQL(1))
	s.gap = prep(`INSERT INTO gaps (agent_id, epoch, first_seq, last_seq, reason, received_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, epoch, first_seq) DO NOTHING`)
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
	for _, st := range []*sql.Stmt{s.chunk, s.one, s.gap, s.count} {
		if st != nil {
			st.Close()
		}
	}
	s.chunk, s.one, s.gap, s.count, s.ready = nil, nil, nil, nil, false
}

// CommitBatches stores many agents' batches in one transaction: one commit
// (one WAL append and, with synchronous=NORMAL, no fsync except at
// checkpoints) for the whole group. See store.GroupCommitter.
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
		chunk, one := tx.StmtContext(ctx, st.chunk), tx.StmtContext(ctx, st.one)
		args := make([]any, 0, 11*insertChunk)
		for i, b := range batches {
			f := make([]bool, len(b.Results))
			fresh[i] = f
			c := perAgent[b.AgentID]
			if c == nil {
				c = &counts{}
				perAgent[b.AgentID] = c
			}
			// seq -> index in the batch (results are contiguous, but do
			// not rely on it here).
			index := make(map[uint64]int, len(b.Results))
			for j, r := range b.Results {
				index[r.GetSeq()] = j
			}
			for lo := 0; lo < len(b.Results); {
				n := min(insertChunk, len(b.Results)-lo)
				s := chunk
				if n < insertChunk {
					s, n = one, 1
				}
				args = args[:0]
				for j := lo; j < lo+n; j++ {
					r := b.Results[j]
					args = append(args, b.AgentID, b.Epoch, r.GetSeq(), r.GetCampaign(), r.GetTaskId(), r.GetTarget(),
						r.GetRound(), nanos(r.GetSentAt().AsTime()), int32(r.GetOutcome()), now, b.Bodies[j])
				}
				if err := insertReturning(ctx, s, args, index, f); err != nil {
					return fmt.Errorf("agent %s: insert results from seq %d: %w", b.AgentID, b.Results[lo].GetSeq(), err)
				}
				lo += n
			}
			for _, ok := range f {
				if ok {
					c.stored++
				} else {
					c.dups++
				}
			}
			for _, g := range b.Gaps {
				res, err := tx.StmtContext(ctx, st.gap).ExecContext(ctx, b.AgentID, g.GetEpoch(), g.GetFirstSeq(), g.GetLastSeq(), g.GetReason(), now)
				if err != nil {
					return fmt.Errorf("agent %s: insert gap: %w", b.AgentID, err)
				}
				if n, _ := res.RowsAffected(); n > 0 && g.GetLastSeq() >= g.GetFirstSeq() {
					c.gaps += g.GetLastSeq() - g.GetFirstSeq() + 1
				}
			}
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

// insertReturning runs a multi-row INSERT ... RETURNING seq and marks the
// rows that were new.
func insertReturning(ctx context.Context, s *sql.Stmt, args []any, index map[uint64]int, fresh []bool) error {
	rows, err := s.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var seq uint64
		if err := rows.Scan(&seq); err != nil {
			return err
		}
		if j, ok := index[seq]; ok {
			fresh[j] = true
		}
	}
	return rows.Err()
}

// commitOne is CommitBatchFresh through the group path.
func (db *DB) commitOne(ctx context.Context, agentID string, epoch uint64, results []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) ([]bool, error) {
	f, err := db.CommitBatches(ctx, []store.Batch{{AgentID: agentID, Epoch: epoch, Results: results, Gaps: gaps}})
	if err != nil {
		return nil, err
	}
	return f[0], nil
}
