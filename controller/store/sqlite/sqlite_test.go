package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func openTest(t *testing.T) (*DB, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dir
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func enroll(t *testing.T, db *DB, id string) {
	t.Helper()
	ctx := context.Background()
	h := "hash-" + id
	if err := db.CreateJoinToken(ctx, store.JoinToken{Hash: h, ExpiresAt: t0.Add(time.Hour), CreatedAt: t0}, store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.EnrollAgent(ctx, h, t0, store.Agent{ID: id, Name: id, State: vantagev1.AgentState_AGENT_STATE_ACTIVE}); err != nil {
		t.Fatal(err)
	}
}

func results(first, last uint64) []*vantagev1.ProbeResult {
	var out []*vantagev1.ProbeResult
	for s := first; s <= last; s++ {
		out = append(out, &vantagev1.ProbeResult{Seq: s, Campaign: "kp", TaskId: "kp/icmp/192.0.2.1", Target: "192.0.2.1",
			Round: int64(s), SentAt: timestamppb.New(t0.Add(time.Duration(s) * time.Second)), Outcome: vantagev1.Outcome_OUTCOME_REPLY})
	}
	return out
}

func TestOpenCreatesWALAndMigratesOnce(t *testing.T) {
	db, dir := openTest(t)
	var mode string
	if err := db.w.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
	db.Close()
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(context.Background(), dir) // re-open: migrations already applied
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	db2.Close()
}

func TestOpenSync(t *testing.T) {
	tests := []struct {
		sync Sync
		want int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{{SyncFull, 2}, {SyncNormal, 1}}
	for _, tc := range tests {
		t.Run(string(tc.sync), func(t *testing.T) {
			db, err := OpenSync(context.Background(), t.TempDir(), tc.sync)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for name, pool := range map[string]*sql.DB{"writer": db.w, "readers": db.r} {
				var got int
				if err := pool.QueryRow(`PRAGMA synchronous`).Scan(&got); err != nil || got != tc.want {
					t.Errorf("%s: synchronous = %d, %v; want %d", name, got, err, tc.want)
				}
			}
		})
	}
	if _, err := OpenSync(context.Background(), t.TempDir(), "off"); err == nil {
		t.Error(`OpenSync("off") succeeded; want an error`)
	}
}

func TestCommitBatchDedupes(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	enroll(t, db, "agt-0000000000000001")
	tests := []struct {
		name        string
		epoch       uint64
		first, last uint64
		gaps        []*vantagev1.Gap
		stored, dup int
	}{
		{"first batch", 1, 1, 5, nil, 5, 0},
		{"same batch again", 1, 1, 5, nil, 0, 5},
		{"overlapping batch", 1, 4, 8, []*vantagev1.Gap{{Epoch: 1, FirstSeq: 9, LastSeq: 10, Reason: "spool full"}}, 3, 2},
		{"new epoch restarts seq", 2, 1, 2, nil, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, d, err := db.CommitBatch(ctx, "agt-0000000000000001", tc.epoch, results(tc.first, tc.last), tc.gaps)
			if err != nil || s != tc.stored || d != tc.dup {
				t.Fatalf("CommitBatch = %d, %d, %v; want %d, %d", s, d, err, tc.stored, tc.dup)
			}
		})
	}
	var n int
	if err := db.r.QueryRow(`SELECT coalesce(sum(n), 0) FROM result_chunks`).Scan(&n); err != nil || n != 10 {
		t.Fatalf("rows = %d, %v; want 10", n, err)
	}
	a, err := db.GetAgent(ctx, "agt-0000000000000001")
	if err != nil {
		t.Fatal(err)
	}
	if a.ResultsStored != 10 || a.DuplicatesDropped != 7 || a.Gaps != 2 {
		t.Fatalf("counters = %d/%d/%d; want 10/7/2", a.ResultsStored, a.DuplicatesDropped, a.Gaps)
	}
	var got []uint64
	err = db.QueryResults(ctx, store.ResultQuery{Campaign: "kp", HasMinRound: true, MinRound: 7, Limit: 100}, func(r store.StoredResult) error {
		got = append(got, r.Result.GetSeq())
		return nil
	})
	if err != nil || len(got) != 2 || got[0] != 7 || got[1] != 8 {
		t.Fatalf("QueryResults = %v, %v; want [7 8]", got, err)
	}
}

func TestEnrollAgentToken(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	err := db.CreateJoinToken(ctx, store.JoinToken{Hash: "h", ExpiresAt: t0.Add(time.Hour), MaxUses: 1, Labels: map[string]string{"role": "vps"}, CreatedAt: t0}, store.AuditEntry{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, hash, id string
		at             time.Time
		want           error
	}{
		{"unknown token", "nope", "agt-1", t0, store.ErrTokenInvalid},
		{"expired token", "h", "agt-1", t0.Add(2 * time.Hour), store.ErrTokenInvalid},
		{"valid", "h", "agt-1", t0, nil},
		{"used up", "h", "agt-2", t0, store.ErrTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := db.EnrollAgent(ctx, tc.hash, tc.at, store.Agent{ID: tc.id, Name: "n", Labels: map[string]string{"role": "x", "asn": "1"}})
			if !errors.Is(err, tc.want) {
				t.Fatalf("EnrollAgent err = %v; want %v", err, tc.want)
			}
			if err == nil && (a.Labels["role"] != "vps" || a.Labels["asn"] != "1") {
				t.Fatalf("labels = %v; want token labels merged over agent labels", a.Labels)
			}
		})
	}
	if _, err := db.GetAgent(ctx, "agt-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetAgent(agt-2) = %v; want ErrNotFound", err)
	}
}

func TestCampaignVersionsAndAudit(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	au := store.AuditEntry{At: t0, Actor: "operator:admin", Action: "campaign.apply", Subject: "kp"}
	steps := []struct {
		name    string
		yaml    string
		version uint64
		changed bool
	}{
		{"create", "a: 1", 1, true},
		{"same spec", "a: 1", 1, false},
		{"changed spec", "a: 2", 2, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			c, ch, err := db.PutCampaign(ctx, "kp", s.yaml, t0, au)
			if err != nil || c.Version != s.version || ch != s.changed {
				t.Fatalf("PutCampaign = v%d changed=%v err=%v; want v%d changed=%v", c.Version, ch, err, s.version, s.changed)
			}
		})
	}
	c, err := db.SetCampaignState(ctx, "kp", vantagev1.CampaignState_CAMPAIGN_STATE_PAUSED, t0, au)
	if err != nil || c.State != vantagev1.CampaignState_CAMPAIGN_STATE_PAUSED {
		t.Fatalf("SetCampaignState = %v, %v", c.State, err)
	}
	if err := db.DeleteCampaign(ctx, "kp", au); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteCampaign(ctx, "kp", au); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete = %v; want ErrNotFound", err)
	}
	entries, err := db.ListAudit(ctx, 10)
	if err != nil || len(entries) != 4 {
		t.Fatalf("ListAudit = %d entries, %v; want 4", len(entries), err)
	}
}

func TestTransitionsGetIDs(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	ts := []*vantagev1.Transition{
		{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, VerdictId: "kp/scope/KP", DetectedAt: timestamppb.New(t0)},
		{Campaign: "kp", Level: vantagev1.Level_LEVEL_TARGET, VerdictId: "kp/target/192.0.2.1", DetectedAt: timestamppb.New(t0)},
	}
	if err := db.AddTransitions(ctx, ts); err != nil {
		t.Fatal(err)
	}
	if ts[0].Id == 0 || ts[1].Id <= ts[0].Id {
		t.Fatalf("ids = %d, %d; want increasing non-zero", ts[0].Id, ts[1].Id)
	}
	got, err := db.Timeline(ctx, store.TimelineQuery{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE})
	if err != nil || len(got) != 1 || got[0].Id != ts[0].Id {
		t.Fatalf("Timeline = %v, %v", got, err)
	}
	got, err = db.Timeline(ctx, store.TimelineQuery{Limit: 1})
	if err != nil || len(got) != 1 || got[0].Id != ts[1].Id {
		t.Fatalf("Timeline limit 1 = %v, %v; want the newest", got, err)
	}
}

func TestOperatorTokens(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	if err := db.PutOperatorToken(ctx, store.OperatorToken{Name: "admin", Hash: "h1", Role: store.RoleAdmin, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutOperatorToken(ctx, store.OperatorToken{Name: "admin", Hash: "h2", Role: store.RoleViewer, CreatedAt: t0}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate name = %v; want ErrExists", err)
	}
	tok, err := db.OperatorTokenByHash(ctx, "h1")
	if err != nil || tok.Role != store.RoleAdmin || tok.Name != "admin" {
		t.Fatalf("OperatorTokenByHash = %+v, %v", tok, err)
	}
	if _, err := db.OperatorTokenByHash(ctx, "h2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown hash = %v; want ErrNotFound", err)
	}
}
