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
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// FileName is the database file inside the data directory.
const FileName = "vantage.db"

// migrations are applied in order; PRAGMA user_version records how many ran.
// Append only: never edit an entry once released.
var migrations = []string{
	`CREATE TABLE agents (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		labels TEXT NOT NULL DEFAULT '{}',
		state INTEGER NOT NULL,
		enrolled_at INTEGER NOT NULL,
		cert_serial TEXT NOT NULL DEFAULT '',
		state_reason TEXT NOT NULL DEFAULT '',
		last_seen INTEGER NOT NULL DEFAULT 0,
		remote_addr TEXT NOT NULL DEFAULT '',
		agent_version TEXT NOT NULL DEFAULT '',
		capabilities BLOB,
		spool BLOB,
		epoch INTEGER NOT NULL DEFAULT 0,
		results_stored INTEGER NOT NULL DEFAULT 0,
		duplicates_dropped INTEGER NOT NULL DEFAULT 0,
		gaps INTEGER NOT NULL DEFAULT 0
	);
	CREATE TABLE task_status (
		agent_id TEXT NOT NULL,
		task_id TEXT NOT NULL,
		refused INTEGER NOT NULL,
		reason TEXT NOT NULL,
		engine TEXT NOT NULL,
		at INTEGER NOT NULL,
		PRIMARY KEY (agent_id, task_id)
	);
	CREATE TABLE join_tokens (
		hash TEXT PRIMARY KEY,
		expires_at INTEGER NOT NULL,
		max_uses INTEGER NOT NULL,
		uses INTEGER NOT NULL DEFAULT 0,
		labels TEXT NOT NULL DEFAULT '{}',
		created_by TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE operator_tokens (
		hash TEXT PRIMARY KEY,
		name TEXT NOT NULL UNIQUE,
		role INTEGER NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE TABLE campaigns (
		name TEXT PRIMARY KEY,
		spec_yaml TEXT NOT NULL,
		state INTEGER NOT NULL,
		version INTEGER NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE results (
		id INTEGER PRIMARY KEY,
		agent_id TEXT NOT NULL,
		epoch INTEGER NOT NULL,
		seq INTEGER NOT NULL,
		campaign TEXT NOT NULL,
		task_id TEXT NOT NULL,
		target TEXT NOT NULL,
		round INTEGER NOT NULL,
		sent_at INTEGER NOT NULL,
		outcome INTEGER NOT NULL,
		received_at INTEGER NOT NULL,
		body BLOB NOT NULL,
		UNIQUE (agent_id, epoch, seq)
	);
	CREATE INDEX results_campaign_round ON results (campaign, round);
	CREATE INDEX results_campaign_target_round ON results (campaign, target, round);
	CREATE INDEX results_sent_at ON results (sent_at);
	CREATE TABLE gaps (
		agent_id TEXT NOT NULL,
		epoch INTEGER NOT NULL,
		first_seq INTEGER NOT NULL,
		last_seq INTEGER NOT NULL,
		reason TEXT NOT NULL,
		received_at INTEGER NOT NULL,
		UNIQUE (agent_id, epoch, first_seq)
	);
	CREATE TABLE transitions (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		campaign TEXT NOT NULL,
		level INTEGER NOT NULL,
		verdict_id TEXT NOT NULL,
		detected_at INTEGER NOT NULL,
		body BLOB NOT NULL
	);
	CREATE INDEX transitions_campaign_detected ON transitions (campaign, detected_at);
	CREATE TABLE audit (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		at INTEGER NOT NULL,
		actor TEXT NOT NULL,
		action TEXT NOT NULL,
		subject TEXT NOT NULL,
		detail TEXT NOT NULL
	);`,
	// 2: discovery (targets.hosts.discover, upstreams: auto). status is a
	// vantage.v1.DiscoveryStatus, targets a vantage.v1.Campaign holding
	// only the discovered targets.
	`CREATE TABLE campaign_discovery (
		name TEXT PRIMARY KEY,
		version INTEGER NOT NULL,
		status BLOB NOT NULL,
		targets BLOB NOT NULL
	);`,
	// 3: results keyed by (agent_id, epoch, seq) itself (WITHOUT ROWID: the
	// dedupe key is the table, not a second b-tree), and only the indexes
	// queries need: (campaign, round) for re-feed, Explain and campaign
	// queries, sent_at for time ranges. Every index is one more b-tree
	// insert per result at ingest.
	`CREATE TABLE results3 (
		agent_id TEXT NOT NULL,
		epoch INTEGER NOT NULL,
		seq INTEGER NOT NULL,
		campaign TEXT NOT NULL,
		task_id TEXT NOT NULL,
		target TEXT NOT NULL,
		round INTEGER NOT NULL,
		sent_at INTEGER NOT NULL,
		outcome INTEGER NOT NULL,
		received_at INTEGER NOT NULL,
		body BLOB NOT NULL,
		PRIMARY KEY (agent_id, epoch, seq)
	) WITHOUT ROWID;
	INSERT INTO results3 SELECT agent_id, epoch, seq, campaign, task_id, target, round, sent_at, outcome, received_at, body FROM results;
	DROP TABLE results;
	ALTER TABLE results3 RENAME TO results;
	CREATE INDEX results_campaign_round ON results (campaign, round);
	CREATE INDEX results_sent_at ON results (sent_at);`,
	// 4: results in chunks (chunks.go), deduplicated by seq ranges
	// (ranges.go). The indexes serve the ordered scan (min_sent, alone or
	// after campaign) and finding where it starts for a time or round
	// bound (max_sent, max_round, covering min_sent). migrateToChunks
	// moves the rows of results and drops it.
	`CREATE TABLE result_chunks (
		id INTEGER PRIMARY KEY,
		agent_id TEXT NOT NULL,
		epoch INTEGER NOT NULL,
		first_seq INTEGER NOT NULL,
		last_seq INTEGER NOT NULL,
		campaign TEXT NOT NULL,
		n INTEGER NOT NULL,
		min_round INTEGER NOT NULL,
		max_round INTEGER NOT NULL,
		min_sent INTEGER NOT NULL,
		max_sent INTEGER NOT NULL,
		received_at INTEGER NOT NULL,
		body BLOB NOT NULL
	);
	CREATE INDEX result_chunks_sent ON result_chunks (min_sent);
	CREATE INDEX result_chunks_max_sent ON result_chunks (max_sent, min_sent);
	CREATE INDEX result_chunks_campaign_sent ON result_chunks (campaign, min_sent);
	CREATE INDEX result_chunks_campaign_max_sent ON result_chunks (campaign, max_sent, min_sent);
	CREATE INDEX result_chunks_campaign_round ON result_chunks (campaign, max_round, min_sent);
	CREATE TABLE result_ranges (
		agent_id TEXT NOT NULL,
		epoch INTEGER NOT NULL,
		first_seq INTEGER NOT NULL,
		last_seq INTEGER NOT NULL,
		PRIMARY KEY (agent_id, epoch, first_seq)
	) WITHOUT ROWID;
	INSERT INTO result_ranges
		SELECT agent_id, epoch, min(seq), max(seq) FROM (
			SELECT agent_id, epoch, seq, seq - row_number() OVER (PARTITION BY agent_id, epoch ORDER BY seq) AS island
			FROM results)
		GROUP BY agent_id, epoch, island;`,
	// 5: the serial of an agent's certificate before its last renewal,
	// accepted until the agent uses the new one (certs.go).
	`ALTER TABLE agents ADD COLUMN prev_cert_serial TEXT NOT NULL DEFAULT '';`,
	// 6: the ordered scan of QueryResults by a chunk's least result key
	// (min_sent, agent_id, epoch, first_seq; results.go), so that chunks
	// that start at the same time are merged in order and a query resumes
	// after a page from a cursor.
	`DROP INDEX result_chunks_sent;
	CREATE INDEX result_chunks_sent ON result_chunks (min_sent, agent_id, epoch, first_seq);
	DROP INDEX result_chunks_campaign_sent;
	CREATE INDEX result_chunks_campaign_sent ON result_chunks (campaign, min_sent, agent_id, epoch, first_seq);`,
	// 7: the hashes of revoked operator tokens, so that a revoked secret
	// (say admin.token left on disk) is never registered again.
	`CREATE TABLE revoked_operator_tokens (
		hash TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		revoked_at INTEGER NOT NULL
	) WITHOUT ROWID;`,
}

// migrationSteps run in Go after the SQL of the migration with that number,
// in the same transaction.
var migrationSteps = map[int]func(context.Context, *sql.Tx) error{
	4: migrateToChunks,
}

// migrateToChunks moves the per-result rows of schema 3 into chunks of at
// most migrateChunk results (one agent, epoch, campaign and receive time)
// and drops the old table.
func migrateToChunks(ctx context.Context, tx *sql.Tx) error {
	const migrateChunk = 1000
	rows, err := tx.QueryContext(ctx, `SELECT agent_id, epoch, received_at, body FROM results ORDER BY agent_id, epoch, seq`)
	if err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	type key struct {
		agent    string
		epoch    uint64
		campaign string
		recv     int64
	}
	var (
		cur     key
		c       *chunk
		pending []struct {
			k key
			c *chunk
		}
	)
	for rows.Next() {
		var k key
		var body []byte
		if err := rows.Scan(&k.agent, &k.epoch, &k.recv, &body); err != nil {
			rows.Close()
			return fmt.Errorf("read results: %w", err)
		}
		r := &vantagev1.ProbeResult{}
		if err := proto.Unmarshal(body, r); err != nil {
			rows.Close()
			return fmt.Errorf("result %s/%d: %w", k.agent, k.epoch, err)
		}
		k.campaign = r.GetCampaign()
		if c == nil || k != cur || c.n >= migrateChunk {
			c, cur = &chunk{}, k
			pending = append(pending, struct {
				k key
				c *chunk
			}{k, c})
		}
		c.add(r, body)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read results: %w", err)
	}
	for _, p := range pending {
		_, err := tx.ExecContext(ctx, `INSERT INTO result_chunks (agent_id, epoch, first_seq, last_seq, campaign, n,
			min_round, max_round, min_sent, max_sent, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.k.agent, p.k.epoch, p.c.first, p.c.last, p.c.campaign, p.c.n, p.c.minRound, p.c.maxRound, p.c.minSent, p.c.maxSent, p.k.recv, p.c.body)
		if err != nil {
			return fmt.Errorf("write chunk: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DROP TABLE results`); err != nil {
		return fmt.Errorf("drop results: %w", err)
	}
	return nil
}

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

func (db *DB) migrate(ctx context.Context) error {
	var v int
	if err := db.w.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this controller (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		err := db.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return err
			}
			if step := migrationSteps[i+1]; step != nil {
				if err := step(ctx, tx); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, i+1))
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
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

// ---- agents ----

const agentCols = `id, name, labels, state, enrolled_at, cert_serial, state_reason, last_seen, remote_addr,
	agent_version, capabilities, spool, epoch, results_stored, duplicates_dropped, gaps`

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

// ---- campaigns ----

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
