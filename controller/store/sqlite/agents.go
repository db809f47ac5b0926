package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const agentCols = `id, name, labels, state, enrolled_at, cert_serial, state_reason, last_seen, remote_addr,
	agent_version, capabilities, spool, epoch, results_stored, duplicates_dropped, gaps`

func scanAgent(s scanner) (store.Agent, error) {
	var a store.Agent
	var labels string
	var state int32
	var enrolled, seen int64
	var caps, spool []byte
	err := s.Scan(&a.ID, &a.Name, &labels, &state, &enrolled, &a.CertSerial, &a.StateReason, &seen, &a.RemoteAddr,
		&a.AgentVersion, &caps, &spool, &a.Epoch, &a.ResultsStored, &a.DuplicatesDropped, &a.Gaps)
	if errors.Is(err, sql.ErrNoRows) {
		return a, store.ErrNotFound
	}
	if err != nil {
		return a, err
	}
	a.State = vantagev1.AgentState(state)
	a.EnrolledAt, a.LastSeen = fromNanos(enrolled), fromNanos(seen)
	if a.Labels, err = parseLabels(labels); err != nil {
		return a, err
	}
	if len(caps) > 0 {
		a.Capabilities = &vantagev1.Capabilities{}
		if err := proto.Unmarshal(caps, a.Capabilities); err != nil {
			return a, fmt.Errorf("capabilities: %w", err)
		}
	}
	if len(spool) > 0 {
		a.Spool = &vantagev1.SpoolState{}
		if err := proto.Unmarshal(spool, a.Spool); err != nil {
			return a, fmt.Errorf("spool: %w", err)
		}
	}
	return a, nil
}

// EnrollAgent consumes one use of the join token and inserts the agent in
// one transaction. The token's labels are merged over the agent's.
func (db *DB) EnrollAgent(ctx context.Context, tokenHash string, now time.Time, a store.Agent) (store.Agent, error) {
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var expires int64
		var maxUses, uses uint32
		var labels string
		err := tx.QueryRowContext(ctx, `SELECT expires_at, max_uses, uses, labels FROM join_tokens WHERE hash = ?`, tokenHash).
			Scan(&expires, &maxUses, &uses, &labels)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrTokenInvalid
		}
		if err != nil {
			return fmt.Errorf("read join token: %w", err)
		}
		if !now.Before(fromNanos(expires)) || (maxUses > 0 && uses >= maxUses) {
			return store.ErrTokenInvalid
		}
		tl, err := parseLabels(labels)
		if err != nil {
			return err
		}
		if a.Labels == nil {
			a.Labels = map[string]string{}
		}
		for k, v := range tl {
			a.Labels[k] = v
		}
		if _, err := tx.ExecContext(ctx, `UPDATE join_tokens SET uses = uses + 1 WHERE hash = ?`, tokenHash); err != nil {
			return fmt.Errorf("use join token: %w", err)
		}
		a.EnrolledAt = now
		_, err = tx.ExecContext(ctx, `INSERT INTO agents (id, name, labels, state, enrolled_at, cert_serial) VALUES (?, ?, ?, ?, ?, ?)`,
			a.ID, a.Name, labelsJSON(a.Labels), int32(a.State), nanos(now), a.CertSerial)
		if err != nil {
			if strings.Contains(err.Error(), "UNIQUE") {
				return fmt.Errorf("agent %s: %w", a.ID, store.ErrExists)
			}
			return fmt.Errorf("insert agent: %w", err)
		}
		return insertAudit(ctx, tx, store.AuditEntry{At: now, Actor: "agent:" + a.ID, Action: "agent.enroll",
			Subject: a.ID, Detail: "name=" + a.Name + " state=" + a.State.String()})
	})
	return a, err
}

// GetAgent returns one agent or ErrNotFound.
func (db *DB) GetAgent(ctx context.Context, id string) (store.Agent, error) {
	a, err := scanAgent(db.r.QueryRowContext(ctx, `SELECT `+agentCols+` FROM agents WHERE id = ?`, id))
	if err != nil {
		return a, fmt.Errorf("agent %q: %w", id, err)
	}
	return a, nil
}

// ListAgents returns every agent, ordered by name then id.
func (db *DB) ListAgents(ctx context.Context) ([]store.Agent, error) {
	out, err := queryAll(ctx, db.r, scanAgent, `SELECT `+agentCols+` FROM agents ORDER BY name, id`)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return out, nil
}

// ListAgentsPage returns at most limit agents after (afterName, afterID),
// ordered by name then id.
func (db *DB) ListAgentsPage(ctx context.Context, afterName, afterID string, limit int) ([]store.Agent, error) {
	out, err := queryAll(ctx, db.r, scanAgent, `SELECT `+agentCols+` FROM agents WHERE (name, id) > (?, ?) ORDER BY name, id LIMIT ?`,
		afterName, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return out, nil
}

// SetAgentState changes an agent's state (approve, revoke) with its audit
// entry. Setting the state it has is a no-op (no write, no audit entry)
// unless a new, non-empty reason is given: an empty reason keeps the one
// stored.
func (db *DB) SetAgentState(ctx context.Context, id string, state vantagev1.AgentState, reason string, audit store.AuditEntry) (store.Agent, error) {
	var a store.Agent
	err := db.tx(ctx, func(tx *sql.Tx) error {
		cur, err := scanAgent(tx.QueryRowContext(ctx, `SELECT `+agentCols+` FROM agents WHERE id = ?`, id))
		if err != nil {
			return fmt.Errorf("agent %q: %w", id, err)
		}
		if cur.State == state && (reason == "" || reason == cur.StateReason) {
			a = cur
			return nil
		}
		if cur.State == state {
			audit.Detail += fmt.Sprintf(" (reason was %q)", cur.StateReason)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE agents SET state = ?, state_reason = ? WHERE id = ?`, int32(state), reason, id); err != nil {
			return fmt.Errorf("update agent: %w", err)
		}
		if err := insertAudit(ctx, tx, audit); err != nil {
			return err
		}
		a, err = scanAgent(tx.QueryRowContext(ctx, `SELECT `+agentCols+` FROM agents WHERE id = ?`, id))
		return err
	})
	return a, err
}

// UpdateAgentHello records what a Hello said.
func (db *DB) UpdateAgentHello(ctx context.Context, id string, h store.AgentHello) error {
	caps, err := marshalOpt(h.Capabilities)
	if err != nil {
		return fmt.Errorf("capabilities: %w", err)
	}
	spool, err := marshalOpt(h.Spool)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE agents SET last_seen = ?, remote_addr = ?, agent_version = ?,
			capabilities = ?, labels = ?, spool = ?, epoch = ? WHERE id = ?`,
			nanos(h.At), h.RemoteAddr, h.AgentVersion, caps, labelsJSON(h.Labels), spool, h.Epoch, id)
		if err != nil {
			return fmt.Errorf("update agent hello: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("agent %q: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// UpdateAgentSeen records a heartbeat.
func (db *DB) UpdateAgentSeen(ctx context.Context, id string, at time.Time, spool *vantagev1.SpoolState) error {
	sp, err := marshalOpt(spool)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if sp == nil {
			_, err = tx.ExecContext(ctx, `UPDATE agents SET last_seen = ? WHERE id = ?`, nanos(at), id)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE agents SET last_seen = ?, spool = ? WHERE id = ?`, nanos(at), sp, id)
		}
		if err != nil {
			return fmt.Errorf("update agent seen: %w", err)
		}
		return nil
	})
}

// SetTaskStatus keeps the latest status per (agent, task).
func (db *DB) SetTaskStatus(ctx context.Context, st store.TaskStatus) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO task_status (agent_id, task_id, refused, reason, engine, at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (agent_id, task_id) DO UPDATE SET refused = excluded.refused, reason = excluded.reason,
			engine = excluded.engine, at = excluded.at`,
			st.AgentID, st.TaskID, st.Refused, st.Reason, st.Engine, nanos(st.At))
		if err != nil {
			return fmt.Errorf("set task status: %w", err)
		}
		return nil
	})
}

// TaskStatuses returns an agent's task statuses ordered by task id.
func (db *DB) TaskStatuses(ctx context.Context, agentID string) ([]store.TaskStatus, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT agent_id, task_id, refused, reason, engine, at FROM task_status WHERE agent_id = ? ORDER BY task_id`, agentID)
	if err != nil {
		return nil, fmt.Errorf("task statuses: %w", err)
	}
	defer rows.Close()
	var out []store.TaskStatus
	for rows.Next() {
		var st store.TaskStatus
		var at int64
		if err := rows.Scan(&st.AgentID, &st.TaskID, &st.Refused, &st.Reason, &st.Engine, &at); err != nil {
			return nil, fmt.Errorf("task statuses: %w", err)
		}
		st.At = fromNanos(at)
		out = append(out, st)
	}
	return out, rows.Err()
}
