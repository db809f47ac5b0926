package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vantage-net/vantage/controller/store"
)

// Join and operator tokens.

// CreateJoinToken stores a (hashed) join token with its audit entry.
func (db *DB) CreateJoinToken(ctx context.Context, t store.JoinToken, audit store.AuditEntry) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO join_tokens (hash, expires_at, max_uses, uses, labels, created_by, created_at)
			VALUES (?, ?, ?, 0, ?, ?, ?)`, t.Hash, nanos(t.ExpiresAt), t.MaxUses, labelsJSON(t.Labels), t.CreatedBy, nanos(t.CreatedAt))
		if err != nil {
			return fmt.Errorf("insert join token: %w", err)
		}
		return insertAudit(ctx, tx, audit)
	})
}

// PutOperatorToken stores an operator token; a name already used by another
// token gives ErrExists, a revoked token ErrRevoked.
func (db *DB) PutOperatorToken(ctx context.Context, t store.OperatorToken) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		var revoked int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM revoked_operator_tokens WHERE hash = ?`, t.Hash).Scan(&revoked); err != nil {
			return fmt.Errorf("read revoked operator tokens: %w", err)
		}
		if revoked > 0 {
			return fmt.Errorf("operator token %q: %w", t.Name, store.ErrRevoked)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO operator_tokens (hash, name, role, created_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (hash) DO UPDATE SET name = excluded.name, role = excluded.role`,
			t.Hash, t.Name, int(t.Role), nanos(t.CreatedAt))
		if err != nil {
			if strings.Contains(err.Error(), "UNIQUE") {
				return fmt.Errorf("operator token name %q: %w", t.Name, store.ErrExists)
			}
			return fmt.Errorf("insert operator token: %w", err)
		}
		actor := t.CreatedBy
		if actor == "" {
			actor = "controller"
		}
		return insertAudit(ctx, tx, store.AuditEntry{At: t.CreatedAt, Actor: actor, Action: "token.operator.create",
			Subject: t.Name, Detail: "role=" + t.Role.String()})
	})
}

// DeleteOperatorToken revokes an operator token by name, keeping its hash
// in revoked_operator_tokens.
func (db *DB) DeleteOperatorToken(ctx context.Context, name string, audit store.AuditEntry) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO revoked_operator_tokens (hash, name, revoked_at)
			SELECT hash, name, ? FROM operator_tokens WHERE name = ? ON CONFLICT (hash) DO NOTHING`, nanos(audit.At), name)
		if err != nil {
			return fmt.Errorf("remember revoked operator token: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM operator_tokens WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete operator token: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("operator token %q: %w", name, store.ErrNotFound)
		}
		return insertAudit(ctx, tx, audit)
	})
}

// ExpireJoinTokens makes every unexpired join token expire at now.
func (db *DB) ExpireJoinTokens(ctx context.Context, now time.Time, audit store.AuditEntry) (int, error) {
	var n int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE join_tokens SET expires_at = ? WHERE expires_at > ?`, nanos(now), nanos(now))
		if err != nil {
			return fmt.Errorf("expire join tokens: %w", err)
		}
		if n, _ = res.RowsAffected(); n == 0 {
			return nil // nothing changed: no audit entry
		}
		audit.Detail = fmt.Sprintf("expired=%d", n)
		return insertAudit(ctx, tx, audit)
	})
	return int(n), err
}

// OperatorTokenByHash finds an operator token by the SHA-256 of its secret.
func (db *DB) OperatorTokenByHash(ctx context.Context, hash string) (store.OperatorToken, error) {
	t := store.OperatorToken{Hash: hash}
	var role int
	var created int64
	err := db.r.QueryRowContext(ctx, `SELECT name, role, created_at FROM operator_tokens WHERE hash = ?`, hash).Scan(&t.Name, &role, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return t, store.ErrNotFound
	}
	if err != nil {
		return t, fmt.Errorf("operator token: %w", err)
	}
	t.Role, t.CreatedAt = store.Role(role), fromNanos(created)
	return t, nil
}

// ListJoinTokens returns every join token, newest first.
func (db *DB) ListJoinTokens(ctx context.Context) ([]store.JoinToken, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT hash, expires_at, max_uses, uses, labels, created_by, created_at
		FROM join_tokens ORDER BY created_at DESC, hash`)
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	defer rows.Close()
	var out []store.JoinToken
	for rows.Next() {
		t, err := scanJoinToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	return out, nil
}

func scanJoinToken(row interface{ Scan(...any) error }) (store.JoinToken, error) {
	var t store.JoinToken
	var expires, created int64
	var labels string
	if err := row.Scan(&t.Hash, &expires, &t.MaxUses, &t.Uses, &labels, &t.CreatedBy, &created); err != nil {
		return t, fmt.Errorf("read join token: %w", err)
	}
	l, err := parseLabels(labels)
	if err != nil {
		return t, fmt.Errorf("join token %s labels: %w", t.ID(), err)
	}
	t.Labels, t.ExpiresAt, t.CreatedAt = l, fromNanos(expires), fromNanos(created)
	return t, nil
}

// ExpireJoinToken makes the unexpired join token with this ID expire at now.
func (db *DB) ExpireJoinToken(ctx context.Context, id string, now time.Time, audit store.AuditEntry) (store.JoinToken, error) {
	var t store.JoinToken
	if len(id) != store.JoinTokenIDLen {
		return t, fmt.Errorf("join token %q: %w", id, store.ErrNotFound)
	}
	err := db.tx(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = scanJoinToken(tx.QueryRowContext(ctx, `SELECT hash, expires_at, max_uses, uses, labels, created_by, created_at
			FROM join_tokens WHERE substr(hash, 1, ?) = ? AND expires_at > ?`, store.JoinTokenIDLen, id, nanos(now)))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("join token %s: no unexpired token has this id: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE join_tokens SET expires_at = ? WHERE hash = ?`, nanos(now), t.Hash); err != nil {
			return fmt.Errorf("expire join token: %w", err)
		}
		t.ExpiresAt = now
		return insertAudit(ctx, tx, audit)
	})
	return t, err
}
