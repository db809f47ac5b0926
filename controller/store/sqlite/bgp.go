package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var _ store.BGPStore = (*DB)(nil)

// bgpKey is a prefix's first address with its family in front (4 or 6),
// as the lo column holds it: the prefixes inside p have a key between
// bgpKey(p) and bgpLast(p).
func bgpKey(p netip.Prefix) []byte {
	a := p.Masked().Addr()
	fam := byte(6)
	if a.Is4() {
		fam = 4
	}
	return append([]byte{fam}, a.AsSlice()...)
}

// bgpLast is the key of p's last address.
func bgpLast(p netip.Prefix) []byte {
	k := bgpKey(p)
	addr := k[1:]
	for i := p.Bits(); i < len(addr)*8; i++ {
		addr[i/8] |= 0x80 >> (i % 8)
	}
	return k
}

// covering lists p and every prefix covering it, by name.
func covering(p netip.Prefix) []string {
	out := make([]string, 0, p.Bits()+1)
	for b := 0; b <= p.Bits(); b++ {
		out = append(out, netip.PrefixFrom(p.Addr(), b).Masked().String())
	}
	return out
}

func formatPath(path []uint32) string {
	parts := make([]string, len(path))
	for i, as := range path {
		parts[i] = strconv.FormatUint(uint64(as), 10)
	}
	return strings.Join(parts, " ")
}

func parsePath(s string) ([]uint32, error) {
	fs := strings.Fields(s)
	if len(fs) == 0 {
		return nil, nil
	}
	out := make([]uint32, len(fs))
	for i, f := range fs {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("as_path: %w", err)
		}
		out[i] = uint32(n)
	}
	return out, nil
}

// bgpRow is one update checked for storing.
type bgpRow struct {
	u      *vantagev1.BgpUpdate
	at     int64
	prefix netip.Prefix
}

// checkBGP checks what the columns need of each update and event, naming
// the index and the field.
func checkBGP(us []*vantagev1.BgpUpdate, es []store.BGPPeerEvent) ([]bgpRow, error) {
	rows := make([]bgpRow, len(us))
	for i, u := range us {
		if u.GetAt() == nil || u.GetAt().CheckValid() != nil {
			return nil, fmt.Errorf("updates[%d]: at: missing or invalid", i)
		}
		if _, err := netip.ParseAddr(u.GetPeer()); err != nil {
			return nil, fmt.Errorf("updates[%d]: peer: %w", i, err)
		}
		p, err := netip.ParsePrefix(u.GetPrefix())
		if err != nil {
			return nil, fmt.Errorf("updates[%d]: prefix: %w", i, err)
		}
		rows[i] = bgpRow{u: u, at: u.GetAt().AsTime().UnixNano(), prefix: p.Masked()}
	}
	for i, e := range es {
		if e.At.IsZero() {
			return nil, fmt.Errorf("peer_events[%d]: at: missing", i)
		}
		if _, err := netip.ParseAddr(e.Peer); err != nil {
			return nil, fmt.Errorf("peer_events[%d]: peer: %w", i, err)
		}
	}
	return rows, nil
}

// AddBGP stores updates and peer events in one transaction; see
// store.BGPStore. Each update's Id is set to its row's.
func (db *DB) AddBGP(ctx context.Context, us []*vantagev1.BgpUpdate, es []store.BGPPeerEvent, audit store.AuditEntry) error {
	rows, err := checkBGP(us, es)
	if err != nil {
		return fmt.Errorf("add bgp: %w", err)
	}
	if len(rows) == 0 && len(es) == 0 && audit.Action == "" {
		return nil
	}
	ids := make([]int64, len(rows))
	err = db.tx(ctx, func(tx *sql.Tx) error {
		if err := insertBGPUpdates(ctx, tx, rows, ids); err != nil {
			return err
		}
		if err := insertBGPEvents(ctx, tx, es); err != nil {
			return err
		}
		return insertAudit(ctx, tx, audit)
	})
	if err != nil {
		return err
	}
	for i, r := range rows {
		r.u.Id = ids[i]
	}
	return nil
}

func insertBGPUpdates(ctx context.Context, tx *sql.Tx, rows []bgpRow, ids []int64) error {
	if len(rows) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO bgp_updates (at_ns, peer, peer_as, prefix, lo, withdraw, as_path,
		next_hop, origin_as, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`)
	if err != nil {
		return fmt.Errorf("add bgp updates: %w", err)
	}
	defer stmt.Close()
	for i, r := range rows {
		u := r.u
		err := stmt.QueryRowContext(ctx, r.at, u.GetPeer(), u.GetPeerAs(), r.prefix.String(), bgpKey(r.prefix), u.GetWithdraw(),
			formatPath(u.GetAsPath()), u.GetNextHop(), u.GetOriginAs(), u.GetSource()).Scan(&ids[i])
		if err != nil {
			return fmt.Errorf("add bgp update %d: %w", i, err)
		}
	}
	return nil
}

func insertBGPEvents(ctx context.Context, tx *sql.Tx, es []store.BGPPeerEvent) error {
	if len(es) == 0 {
		return nil
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO bgp_peer_events (at_ns, peer, peer_as, source, up, full_feed)
		VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("add bgp peer events: %w", err)
	}
	defer stmt.Close()
	for i, e := range es {
		if _, err := stmt.ExecContext(ctx, e.At.UnixNano(), e.Peer, e.PeerAS, e.Source, e.Up, e.FullFeed); err != nil {
			return fmt.Errorf("add bgp peer event %d: %w", i, err)
		}
	}
	return nil
}

const bgpColumns = `id, at_ns, peer, peer_as, prefix, withdraw, as_path, next_hop, origin_as, source`

func scanBGPUpdate(s scanner) (*vantagev1.BgpUpdate, error) {
	u := &vantagev1.BgpUpdate{}
	var at int64
	var path string
	if err := s.Scan(&u.Id, &at, &u.Peer, &u.PeerAs, &u.Prefix, &u.Withdraw, &path, &u.NextHop, &u.OriginAs, &u.Source); err != nil {
		return nil, err
	}
	u.At = timestamppb.New(time.Unix(0, at).UTC())
	var err error
	if u.AsPath, err = parsePath(path); err != nil {
		return nil, fmt.Errorf("bgp update %d: %w", u.Id, err)
	}
	return u, nil
}

// BGPUpdates returns the stored updates q selects, in time order; see
// store.BGPQuery.
func (db *DB) BGPUpdates(ctx context.Context, q store.BGPQuery) ([]*vantagev1.BgpUpdate, error) {
	var where []string
	var args []any
	if len(q.Prefixes) > 0 {
		var alts []string
		for _, p := range q.Prefixes {
			names := covering(p)
			alts = append(alts, "(prefix IN (?"+strings.Repeat(", ?", len(names)-1)+") OR lo BETWEEN ? AND ?)")
			for _, n := range names {
				args = append(args, n)
			}
			args = append(args, bgpKey(p), bgpLast(p))
		}
		where = append(where, "("+strings.Join(alts, " OR ")+")")
	}
	if !q.From.IsZero() {
		where, args = append(where, "at_ns >= ?"), append(args, q.From.UnixNano())
	}
	if !q.To.IsZero() {
		where, args = append(where, "at_ns <= ?"), append(args, q.To.UnixNano())
	}
	if q.AfterID != 0 {
		at := q.AfterAt.UnixNano()
		where, args = append(where, "(at_ns > ? OR (at_ns = ? AND id > ?))"), append(args, at, at, q.AfterID)
	}
	query := `SELECT ` + bgpColumns + ` FROM bgp_updates`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY at_ns, id"
	if q.Limit > 0 {
		query += " LIMIT " + strconv.Itoa(q.Limit)
	}
	us, err := queryAll(ctx, db.r, scanBGPUpdate, query, args...)
	if err != nil {
		return nil, fmt.Errorf("bgp updates: %w", err)
	}
	return us, nil
}

func scanBGPEvent(s scanner) (store.BGPPeerEvent, error) {
	var e store.BGPPeerEvent
	var at int64
	if err := s.Scan(&at, &e.Peer, &e.PeerAS, &e.Source, &e.Up, &e.FullFeed); err != nil {
		return e, err
	}
	e.At = time.Unix(0, at).UTC()
	return e, nil
}

// BGPPeerEvents returns the stored peer events in [from, to], in time
// order; see store.BGPStore.
func (db *DB) BGPPeerEvents(ctx context.Context, from, to time.Time, limit int) ([]store.BGPPeerEvent, error) {
	query := `SELECT at_ns, peer, peer_as, source, up, full_feed FROM bgp_peer_events WHERE at_ns >= ? AND at_ns <= ? ORDER BY at_ns, id`
	hi := int64(1<<63 - 1)
	if !to.IsZero() {
		hi = to.UnixNano()
	}
	if limit > 0 {
		query += " LIMIT " + strconv.Itoa(limit)
	}
	es, err := queryAll(ctx, db.r, scanBGPEvent, query, nanos(from), hi)
	if err != nil {
		return nil, fmt.Errorf("bgp peer events: %w", err)
	}
	return es, nil
}

// BGPLatestBefore returns the routing state before t; see store.BGPStore.
// SQLite takes a bare column's value from the row that has the max().
func (db *DB) BGPLatestBefore(ctx context.Context, t time.Time) ([]*vantagev1.BgpUpdate, []store.BGPPeerEvent, error) {
	us, err := queryAll(ctx, db.r, scanBGPUpdate, `SELECT id, at, peer, peer_as, prefix, withdraw, as_path, next_hop, origin_as, source
		FROM (SELECT id, max(at_ns) AS at, peer, peer_as, prefix, withdraw, as_path, next_hop, origin_as, source
			FROM bgp_updates WHERE at_ns < ? GROUP BY source, peer, prefix)
		ORDER BY at, id`, t.UnixNano())
	if err != nil {
		return nil, nil, fmt.Errorf("bgp latest updates: %w", err)
	}
	es, err := queryAll(ctx, db.r, scanBGPEvent, `SELECT at, peer, peer_as, source, up, full_feed
		FROM (SELECT id, max(at_ns) AS at, peer, peer_as, source, up, full_feed
			FROM bgp_peer_events WHERE at_ns < ? GROUP BY source, peer)
		ORDER BY at, id`, t.UnixNano())
	if err != nil {
		return nil, nil, fmt.Errorf("bgp latest peer events: %w", err)
	}
	return us, es, nil
}

// PruneBGP deletes old updates and peer events; see store.BGPStore.
func (db *DB) PruneBGP(ctx context.Context, before time.Time, maxRows int) (int64, error) {
	if maxRows <= 0 {
		return 0, fmt.Errorf("prune bgp: maxRows: must be positive, got %d", maxRows)
	}
	if before.IsZero() {
		return 0, errors.New("prune bgp: before: must be set")
	}
	var total int64
	err := db.tx(ctx, func(tx *sql.Tx) error {
		for _, table := range []string{"bgp_updates", "bgp_peer_events"} {
			res, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE id IN (
				SELECT id FROM `+table+` WHERE at_ns < ? ORDER BY at_ns LIMIT ?)`, before.UnixNano(), maxRows)
			if err != nil {
				return fmt.Errorf("prune %s: %w", table, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("prune %s: %w", table, err)
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return total, nil
}
