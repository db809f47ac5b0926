package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

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
	// insert per result at ingest. Its columns repeat migration 1's results
	// table on purpose: a released migration is history and is never edited
	// or shared.
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
	// 8: the verdict engine's quality series (series.go): one point per
	// campaign, network, vantage and round, pruned with the results.
	`CREATE TABLE quality_series (
		id INTEGER PRIMARY KEY,
		campaign TEXT NOT NULL,
		network TEXT NOT NULL,
		agent_id TEXT NOT NULL,
		round INTEGER NOT NULL,
		round_start INTEGER NOT NULL,
		body BLOB NOT NULL,
		UNIQUE (campaign, network, agent_id, round)
	);
	CREATE INDEX quality_series_start ON quality_series (campaign, round_start);
	CREATE INDEX quality_series_prune ON quality_series (round_start);`,
	// 9: folding (transitions.go): the id of the transition into UNSTABLE
	// that folded this one, 0 if none; also in the body (folded_into).
	`ALTER TABLE transitions ADD COLUMN folded_into INTEGER NOT NULL DEFAULT 0;`,
	// 10: BGP evidence (bgp.go): the updates the routing view kept and the
	// peers' session events. lo is the prefix's first address with its
	// family (bgpKey), so that the prefixes more specific than P are a
	// range of lo; those covering P are listed by name (prefix, at most
	// one per length). as_path is the AS numbers separated by spaces.
	`CREATE TABLE bgp_updates (
		id INTEGER PRIMARY KEY,
		at_ns INTEGER NOT NULL,
		peer TEXT NOT NULL,
		peer_as INTEGER NOT NULL,
		prefix TEXT NOT NULL,
		lo BLOB NOT NULL,
		withdraw INTEGER NOT NULL,
		as_path TEXT NOT NULL,
		next_hop TEXT NOT NULL,
		origin_as INTEGER NOT NULL,
		source TEXT NOT NULL
	);
	CREATE INDEX bgp_updates_at ON bgp_updates (at_ns, id);
	CREATE INDEX bgp_updates_prefix ON bgp_updates (prefix, at_ns);
	CREATE INDEX bgp_updates_lo ON bgp_updates (lo, at_ns);
	CREATE TABLE bgp_peer_events (
		id INTEGER PRIMARY KEY,
		at_ns INTEGER NOT NULL,
		peer TEXT NOT NULL,
		peer_as INTEGER NOT NULL,
		source TEXT NOT NULL,
		up INTEGER NOT NULL,
		full_feed INTEGER NOT NULL
	);
	CREATE INDEX bgp_peer_events_at ON bgp_peer_events (at_ns, id);`,
	// 11: the timeline of a few subjects (TimelineQuery.Subjects: the
	// dashboard's page of a network's targets) by verdict id, not by a
	// scan of every transition of the campaign in the window.
	`CREATE INDEX transitions_verdict_detected ON transitions (verdict_id, detected_at);`,
	// 12: one network's quality series (SeriesQuery.Network: the
	// dashboard draws a few networks of hundreds) by its rounds, not by a
	// scan of every network's points in the window.
	`CREATE INDEX quality_series_network ON quality_series (campaign, network, round_start, agent_id);`,
	// 13: a campaign's timeline at one level (TimelineQuery.Level: the
	// dashboard's scope and network bands) by that level's rows, not by a
	// scan of the window's rows of every level: a blackout of 65,536
	// targets leaves 65,536 target rows for a few hundred network ones.
	// folded_into is in it because the folded view (folded_into = 0) is
	// the one read; without it SQLite keeps (campaign, detected_at) for
	// Timeline's ORDER BY id.
	`CREATE INDEX transitions_campaign_level_detected ON transitions (campaign, level, folded_into, detected_at);`,
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
