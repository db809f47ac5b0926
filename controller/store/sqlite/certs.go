package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Agent certificate renewal: agents.cert_serial is the serial of the
// agent's newest certificate, agents.prev_cert_serial the one it renewed
// with, accepted until the agent opens a session with the new one, so an
// agent that dies between receiving and storing its new certificate can
// still come back with the old one.

// AgentCertSerials returns the agent's current and previous certificate
// serials ("" when there is no previous one), ErrNotFound for an unknown
// agent.
func (db *DB) AgentCertSerials(ctx context.Context, id string) (current, previous string, err error) {
	err = db.r.QueryRowContext(ctx, `SELECT cert_serial, prev_cert_serial FROM agents WHERE id = ?`, id).Scan(&current, &previous)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("agent %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("agent %q: cert serials: %w", id, err)
	}
	return current, previous, nil
}

// RenewAgentCert records a renewal: newSerial becomes current and presented
// previous, only while the agent is ACTIVE and presented is one of its two
// serials (ErrConflict otherwise), with the audit entry.
func (db *DB) RenewAgentCert(ctx context.Context, id, presented, newSerial string, audit store.AuditEntry) error {
	if presented == "" || newSerial == "" {
		return fmt.Errorf("renew agent %q: empty serial", id)
	}
	return db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE agents SET prev_cert_serial = ?, cert_serial = ?
			WHERE id = ? AND state = ? AND (cert_serial = ? OR prev_cert_serial = ?)`,
			presented, newSerial, id, int32(vantagev1.AgentState_AGENT_STATE_ACTIVE), presented, presented)
		if err != nil {
			return fmt.Errorf("renew agent %q: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM agents WHERE id = ?`, id).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("agent %q: %w", id, store.ErrNotFound)
			}
			return fmt.Errorf("renew agent %q: not active or serial %s no longer accepted: %w", id, presented, store.ErrConflict)
		}
		return insertAudit(ctx, tx, audit)
	})
}

// ConfirmAgentCert clears the previous serial when serial is the current
// one; it reports whether a previous serial was cleared.
func (db *DB) ConfirmAgentCert(ctx context.Context, id, serial string) (bool, error) {
	var n int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE agents SET prev_cert_serial = ''
			WHERE id = ? AND cert_serial = ? AND prev_cert_serial != ''`, id, serial)
		if err != nil {
			return fmt.Errorf("confirm agent %q certificate: %w", id, err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n > 0, err
}
