// Package sqlite is the embedded Store: one SQLite file (modernc.org/sqlite,
// pure Go, WAL mode) in the controller's data directory, so a controller
// needs nothing installed. Writes go through one connection (SQLite has one
// writer anyway, and this keeps BEGIN IMMEDIATE from spinning on
// SQLITE_BUSY); reads use a separate pool so long QueryResults streams never
// hold up ingest.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/vantage-net/vantage/controller/store"
)

// FileName is the database file inside the data directory.
const FileName = "vantage.db"

// DB is the SQLite Store.
type DB struct {
	w *sql.DB // one connection: all writes
	r *sql.DB // read pool: agents, tokens, campaigns, timeline, audit
	// q is the pool of QueryResults alone, so that however many result
	// queries run, token checks and agent sessions still find a
	// connection in r.
	q          *sql.DB
	pageChunks int   // chunks per QueryResults page
	stmts      stmts // prepared on w, lazily
}

// Connection pools.
const (
	readConns  = 4
	queryConns = 2
)

var _ store.Store = (*DB)(nil)

// Sync is how a commit reaches the disk.
type Sync string

const (
	// SyncFull fsyncs the WAL at every commit: an acked result survives a
	// power cut or kernel crash, at one fsync per group commit.
	SyncFull Sync = "full"
	// SyncNormal leaves the fsync to checkpoints: an acked result survives
	// a controller crash (it is in the WAL file) but not a power cut.
	SyncNormal Sync = "normal"
)

// ParseSync checks a --store-sync value.
func ParseSync(s string) (Sync, error) {
	switch Sync(s) {
	case SyncFull, SyncNormal:
		return Sync(s), nil
	}
	return "", fmt.Errorf("store sync: want full or normal, got %q", s)
}

// Open opens (creating if needed) <dir>/vantage.db and migrates its schema,
// with SyncFull.
func Open(ctx context.Context, dir string) (*DB, error) { return OpenSync(ctx, dir, SyncFull) }

// OpenSync is Open with the given commit durability.
func OpenSync(ctx context.Context, dir string, sync Sync) (*DB, error) {
	if _, err := ParseSync(string(sync)); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, FileName)
	dsn := func(txlock string) string {
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous("+strings.ToUpper(string(sync))+")")
		// Statement journals (multi-row upserts) stay in memory, and a
		// 64 MiB page cache keeps the result indexes' hot pages.
		q.Add("_pragma", "temp_store(MEMORY)")
		q.Add("_pragma", "cache_size(-65536)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Set("_txlock", txlock)
		return "file:" + path + "?" + q.Encode()
	}
	if err := createPrivate(path); err != nil {
		return nil, err
	}
	w, err := sql.Open("sqlite", dsn("immediate"))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	db := &DB{w: w, pageChunks: queryPageChunks}
	for _, p := range []struct {
		pool  **sql.DB
		conns int
	}{{&db.r, readConns}, {&db.q, queryConns}} {
		if *p.pool, err = sql.Open("sqlite", dsn("deferred")); err != nil {
			db.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		(*p.pool).SetMaxOpenConns(p.conns)
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	// The WAL and shared-memory files exist now; SQLite gives new ones the
	// database file's mode, and files left by an older controller are
	// tightened here.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Chmod(path+suffix, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
			db.Close()
			return nil, fmt.Errorf("chmod %s: %w", path+suffix, err)
		}
	}
	return db, nil
}

// createPrivate creates the database file with mode 0600 before SQLite
// opens it (SQLite would create it 0644, and its WAL and shared-memory
// files take the database file's mode). An existing file is left as is.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return f.Close()
}

// Close closes both pools.
func (db *DB) Close() error {
	db.stmts.mu.Lock()
	db.stmts.close()
	db.stmts.mu.Unlock()
	var errs []error
	for _, p := range []*sql.DB{db.q, db.r, db.w} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	return errors.Join(errs...)
}

func (db *DB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func labelsJSON(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(m) // a map[string]string always marshals
	return string(b)
}

func parseLabels(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return m, nil
}

func marshalOpt(m proto.Message) ([]byte, error) {
	if m == nil {
		return nil, nil
	}
	return proto.Marshal(m)
}

type scanner interface{ Scan(...any) error }

// queryAll runs query and scans every row with scan.
func queryAll[T any](ctx context.Context, q *sql.DB, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
