package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func decodeDiscovery(version uint64, status, targets []byte) (*store.Discovery, error) {
	d := &store.Discovery{Version: version, Status: &vantagev1.DiscoveryStatus{}}
	if err := proto.Unmarshal(status, d.Status); err != nil {
		return nil, fmt.Errorf("discovery status: %w", err)
	}
	var holder vantagev1.Campaign
	if err := proto.Unmarshal(targets, &holder); err != nil {
		return nil, fmt.Errorf("discovery targets: %w", err)
	}
	d.Targets = holder.GetTargets()
	return d, nil
}

// getDiscovery returns a campaign's stored discovery, nil when none.
func getDiscovery(ctx context.Context, q querier, name string) (*store.Discovery, error) {
	var version uint64
	var status, targets []byte
	err := q.QueryRowContext(ctx, `SELECT version, status, targets FROM campaign_discovery WHERE name = ?`, name).
		Scan(&version, &status, &targets)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("campaign %q discovery: %w", name, err)
	}
	return decodeDiscovery(version, status, targets)
}

// addDiscoveries fills Discovery of every campaign in cs.
func (db *DB) addDiscoveries(ctx context.Context, cs []store.Campaign) error {
	if len(cs) == 0 {
		return nil
	}
	rows, err := db.r.QueryContext(ctx, `SELECT name, version, status, targets FROM campaign_discovery`)
	if err != nil {
		return fmt.Errorf("list discoveries: %w", err)
	}
	defer rows.Close()
	by := map[string]*store.Discovery{}
	for rows.Next() {
		var name string
		var version uint64
		var status, targets []byte
		if err := rows.Scan(&name, &version, &status, &targets); err != nil {
			return fmt.Errorf("list discoveries: %w", err)
		}
		d, err := decodeDiscovery(version, status, targets)
		if err != nil {
			return fmt.Errorf("campaign %q: %w", name, err)
		}
		by[name] = d
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list discoveries: %w", err)
	}
	for i := range cs {
		cs[i].Discovery = by[cs[i].Name]
	}
	return nil
}

// PutDiscovery stores a campaign's discovery and sets its state, if the
// campaign is still at d.Version.
func (db *DB) PutDiscovery(ctx context.Context, name string, d store.Discovery, state vantagev1.CampaignState, now time.Time, audit store.AuditEntry) (store.Campaign, error) {
	if d.Status == nil {
		d.Status = &vantagev1.DiscoveryStatus{}
	}
	status, err := proto.Marshal(d.Status)
	if err != nil {
		return store.Campaign{}, fmt.Errorf("discovery status: %w", err)
	}
	targets, err := proto.Marshal(&vantagev1.Campaign{Targets: d.Targets})
	if err != nil {
		return store.Campaign{}, fmt.Errorf("discovery targets: %w", err)
	}
	var c store.Campaign
	err = db.tx(ctx, func(tx *sql.Tx) error {
		cur, err := scanCampaign(tx.QueryRowContext(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE name = ?`, name))
		if err != nil {
			return fmt.Errorf("campaign %q: %w", name, err)
		}
		if cur.Version != d.Version {
			return fmt.Errorf("campaign %q is at version %d, discovery ran for %d: %w", name, cur.Version, d.Version, store.ErrConflict)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO campaign_discovery (name, version, status, targets) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET version = excluded.version, status = excluded.status, targets = excluded.targets`,
			name, d.Version, status, targets)
		if err != nil {
			return fmt.Errorf("write discovery: %w", err)
		}
		if cur.State != state {
			if _, err := tx.ExecContext(ctx, `UPDATE campaigns SET state = ?, updated_at = ? WHERE name = ?`, int32(state), nanos(now), name); err != nil {
				return fmt.Errorf("update campaign: %w", err)
			}
			cur.State, cur.UpdatedAt = state, now
		}
		if err := insertAudit(ctx, tx, audit); err != nil {
			return err
		}
		c = cur
		c.Discovery = &store.Discovery{Version: d.Version, Status: proto.Clone(d.Status).(*vantagev1.DiscoveryStatus), Targets: d.Targets}
		return nil
	})
	return c, err
}
