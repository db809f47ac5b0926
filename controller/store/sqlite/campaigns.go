package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func scanCampaign(s scanner) (store.Campaign, error) {
	var c store.Campaign
	var state int32
	var created, updated int64
	err := s.Scan(&c.Name, &c.SpecYAML, &state, &c.Version, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return c, store.ErrNotFound
	}
	c.State, c.CreatedAt, c.UpdatedAt = vantagev1.CampaignState(state), fromNanos(created), fromNanos(updated)
	return c, err
}

const campaignCols = `name, spec_yaml, state, version, created_at, updated_at`

// PutCampaign inserts a campaign (ACTIVE, version 1) or replaces its spec,
// bumping the version when the YAML differs. The state is kept on update.
func (db *DB) PutCampaign(ctx context.Context, name, specYAML string, now time.Time, audit store.AuditEntry) (store.Campaign, bool, error) {
	var c store.Campaign
	changed := false
	err := db.tx(ctx, func(tx *sql.Tx) error {
		old, err := scanCampaign(tx.QueryRowContext(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE name = ?`, name))
		switch {
		case errors.Is(err, store.ErrNotFound):
			c = store.Campaign{Name: name, SpecYAML: specYAML, State: vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE,
				Version: 1, CreatedAt: now, UpdatedAt: now}
			changed = true
			_, err = tx.ExecContext(ctx, `INSERT INTO campaigns (`+campaignCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
				c.Name, c.SpecYAML, int32(c.State), c.Version, nanos(now), nanos(now))
		case err != nil:
			return fmt.Errorf("read campaign: %w", err)
		case old.SpecYAML == specYAML:
			c = old
			return nil // unchanged: no write, no audit
		default:
			c = old
			c.SpecYAML, c.Version, c.UpdatedAt = specYAML, old.Version+1, now
			changed = true
			_, err = tx.ExecContext(ctx, `UPDATE campaigns SET spec_yaml = ?, version = ?, updated_at = ? WHERE name = ?`,
				c.SpecYAML, c.Version, nanos(now), name)
		}
		if err != nil {
			return fmt.Errorf("write campaign: %w", err)
		}
		return insertAudit(ctx, tx, audit)
	})
	return c, changed, err
}

// SetCampaignState pauses or resumes a campaign. Setting the state it has
// is a no-op: no write, no audit entry.
func (db *DB) SetCampaignState(ctx context.Context, name string, state vantagev1.CampaignState, now time.Time, audit store.AuditEntry) (store.Campaign, error) {
	var c store.Campaign
	err := db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE campaigns SET state = ?, updated_at = ? WHERE name = ? AND state != ?`,
			int32(state), nanos(now), name, int32(state))
		if err != nil {
			return fmt.Errorf("update campaign: %w", err)
		}
		n, _ := res.RowsAffected()
		if c, err = scanCampaign(tx.QueryRowContext(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE name = ?`, name)); err != nil {
			return fmt.Errorf("campaign %q: %w", name, err)
		}
		if n == 0 {
			return nil // unchanged
		}
		return insertAudit(ctx, tx, audit)
	})
	return c, err
}

// DeleteCampaign removes a campaign; its results and transitions are kept.
func (db *DB) DeleteCampaign(ctx context.Context, name string, audit store.AuditEntry) error {
	return db.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM campaigns WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("delete campaign: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("campaign %q: %w", name, store.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM campaign_discovery WHERE name = ?`, name); err != nil {
			return fmt.Errorf("delete campaign discovery: %w", err)
		}
		return insertAudit(ctx, tx, audit)
	})
}

// GetCampaign returns one campaign or ErrNotFound.
func (db *DB) GetCampaign(ctx context.Context, name string) (store.Campaign, error) {
	c, err := scanCampaign(db.r.QueryRowContext(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE name = ?`, name))
	if err != nil {
		return c, fmt.Errorf("campaign %q: %w", name, err)
	}
	if c.Discovery, err = getDiscovery(ctx, db.r, name); err != nil {
		return c, err
	}
	return c, nil
}

// ListCampaigns returns every campaign by name.
func (db *DB) ListCampaigns(ctx context.Context) ([]store.Campaign, error) {
	out, err := queryAll(ctx, db.r, scanCampaign, `SELECT `+campaignCols+` FROM campaigns ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list campaigns: %w", err)
	}
	return out, db.addDiscoveries(ctx, out)
}
