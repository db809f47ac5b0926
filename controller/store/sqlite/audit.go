package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/vantage-net/vantage/controller/store"
)

func insertAudit(ctx context.Context, tx *sql.Tx, e store.AuditEntry) error {
	if e.Action == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)`,
		nanos(e.At), e.Actor, e.Action, e.Subject, e.Detail)
	if err != nil {
		return fmt.Errorf("insert audit: %w", err)
	}
	return nil
}

// AddAudit appends one entry.
func (db *DB) AddAudit(ctx context.Context, e store.AuditEntry) error {
	return db.tx(ctx, func(tx *sql.Tx) error { return insertAudit(ctx, tx, e) })
}

// ListAudit returns the newest limit entries, newest first.
func (db *DB) ListAudit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := db.r.QueryContext(ctx, `SELECT id, at, actor, action, subject, detail FROM audit ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Subject, &e.Detail); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		e.At = fromNanos(at)
		out = append(out, e)
	}
	return out, rows.Err()
}
