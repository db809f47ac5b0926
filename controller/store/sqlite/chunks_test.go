package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestCover(t *testing.T) {
	r := func(a, b uint64) seqRange { return seqRange{a, b} }
	tests := []struct {
		name     string
		run      seqRange
		touching []seqRange
		fresh    []seqRange
		merged   seqRange
	}{
		{"nothing stored", r(5, 9), nil, []seqRange{r(5, 9)}, r(5, 9)},
		{"extends the range before", r(5, 9), []seqRange{r(1, 4)}, []seqRange{r(5, 9)}, r(1, 9)},
		{"overlaps the range before", r(3, 9), []seqRange{r(1, 4)}, []seqRange{r(5, 9)}, r(1, 9)},
		{"all stored", r(3, 4), []seqRange{r(1, 9)}, nil, r(1, 9)},
		{"fills a hole", r(5, 6), []seqRange{r(1, 4), r(7, 9)}, []seqRange{r(5, 6)}, r(1, 9)},
		{"spans two ranges", r(3, 12), []seqRange{r(1, 4), r(7, 9)}, []seqRange{r(5, 6), r(10, 12)}, r(1, 12)},
		{"before a range", r(1, 3), []seqRange{r(4, 9)}, []seqRange{r(1, 3)}, r(1, 9)},
		{"inside and after", r(8, 10), []seqRange{r(1, 9)}, []seqRange{r(10, 10)}, r(1, 10)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fresh, merged := cover(tc.run, tc.touching)
			if !slices.Equal(fresh, tc.fresh) || merged != tc.merged {
				t.Errorf("cover(%v, %v) = %v, %v; want %v, %v", tc.run, tc.touching, fresh, merged, tc.fresh, tc.merged)
			}
		})
	}
}

type refKey struct {
	agent string
	epoch uint64
	seq   uint64
}

// TestChunksAgainstReference commits random, overlapping, repeated and
// out-of-order batches from several agents and campaigns, and checks the
// fresh flags, the stored ranges and many queries against a plain map.
func TestChunksAgainstReference(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	agents := []string{"agt-000000000000000a", "agt-000000000000000b", "agt-000000000000000c"}
	for _, a := range agents {
		enroll(t, db, a)
	}
	ref := map[refKey]*vantagev1.ProbeResult{}
	make1 := func(agent string, epoch, seq uint64) *vantagev1.ProbeResult {
		// Deterministic per key, so a re-sent result is the same result.
		h := seq*7919 + epoch*31 + uint64(len(agent))
		camp := []string{"kp", "ir"}[h%2]
		tgt := fmt.Sprintf("192.0.2.%d", h%5)
		return &vantagev1.ProbeResult{Seq: seq, Campaign: camp, TaskId: camp + "/icmp/" + tgt, Target: tgt,
			Round: int64(seq / 10), SentAt: timestamppb.New(t0.Add(time.Duration(seq)*time.Second + time.Duration(h%3000)*time.Millisecond)),
			Outcome: vantagev1.Outcome_OUTCOME_REPLY}
	}
	for range 60 {
		var group []store.Batch
		for range 1 + rng.IntN(4) {
			agent := agents[rng.IntN(len(agents))]
			epoch := uint64(1 + rng.IntN(2))
			lo := uint64(1 + rng.IntN(300))
			n := 1 + rng.IntN(40)
			var rs []*vantagev1.ProbeResult
			for s := lo; s < lo+uint64(n); s++ {
				if rng.IntN(10) == 0 {
					continue // a hole
				}
				rs = append(rs, make1(agent, epoch, s))
			}
			if len(rs) == 0 {
				continue
			}
			if rng.IntN(4) == 0 {
				rng.Shuffle(len(rs), func(i, j int) { rs[i], rs[j] = rs[j], rs[i] })
				rs = append(rs, rs[0]) // and a seq twice
			}
			group = append(group, store.Batch{AgentID: agent, Epoch: epoch, Results: rs})
		}
		fresh, err := db.CommitBatches(ctx, group)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range group {
			for j, r := range b.Results {
				k := refKey{b.AgentID, b.Epoch, r.GetSeq()}
				_, had := ref[k]
				if fresh[i][j] == had {
					t.Fatalf("batch %d result %d (%v): fresh=%v, but stored before=%v", i, j, k, fresh[i][j], had)
				}
				ref[k] = r
			}
		}
	}
	// The ranges are exactly the stored seqs, disjoint and non-adjacent.
	rows, err := db.r.Query(`SELECT agent_id, epoch, first_seq, last_seq FROM result_ranges ORDER BY agent_id, epoch, first_seq`)
	if err != nil {
		t.Fatal(err)
	}
	inRanges := map[refKey]bool{}
	var last refKey
	for rows.Next() {
		var k refKey
		var r seqRange
		if err := rows.Scan(&k.agent, &k.epoch, &r.first, &r.last); err != nil {
			t.Fatal(err)
		}
		if k.agent == last.agent && k.epoch == last.epoch && r.first <= last.seq+1 {
			t.Errorf("ranges of %s/%d touch: one ends at %d, the next starts at %d", k.agent, k.epoch, last.seq, r.first)
		}
		for s := r.first; s <= r.last; s++ {
			inRanges[refKey{k.agent, k.epoch, s}] = true
		}
		last = refKey{k.agent, k.epoch, r.last}
	}
	rows.Close()
	if len(inRanges) != len(ref) {
		t.Errorf("ranges cover %d seqs, %d stored", len(inRanges), len(ref))
	}
	for k := range ref {
		if !inRanges[k] {
			t.Errorf("%v stored but in no range", k)
		}
	}
	queries := []store.ResultQuery{
		{},
		{Campaign: "kp"},
		{Campaign: "ir", AgentID: agents[1]},
		{Target: "192.0.2.3"},
		{Campaign: "kp", Targets: []string{"192.0.2.1", "192.0.2.4"}, HasMinRound: true, MinRound: 12},
		{From: t0.Add(100 * time.Second), To: t0.Add(150 * time.Second)},
		{Campaign: "kp", From: t0.Add(200 * time.Second)},
		{Limit: 17},
		{Campaign: "ir", From: t0.Add(50 * time.Second), Limit: 33},
		{HasMinRound: true, MinRound: 31},
	}
	for _, q := range queries {
		t.Run(fmt.Sprintf("%+v", q), func(t *testing.T) {
			want := reference(ref, q)
			var got []refKey
			err := db.QueryResults(ctx, q, func(sr store.StoredResult) error {
				k := refKey{sr.AgentID, sr.Epoch, sr.Result.GetSeq()}
				if !proto.Equal(sr.Result, ref[k]) {
					t.Errorf("%v: stored %v, sent %v", k, sr.Result, ref[k])
				}
				got = append(got, k)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %d results, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

func firstDiff(a, b []refKey) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// reference is QueryResults over a map: filter, sort, limit.
func reference(ref map[refKey]*vantagev1.ProbeResult, q store.ResultQuery) []refKey {
	var out []refKey
	for k, r := range ref {
		sent := r.GetSentAt().AsTime()
		switch {
		case q.Campaign != "" && r.GetCampaign() != q.Campaign,
			q.AgentID != "" && k.agent != q.AgentID,
			q.Target != "" && r.GetTarget() != q.Target,
			len(q.Targets) > 0 && !slices.Contains(q.Targets, r.GetTarget()),
			!q.From.IsZero() && sent.Before(q.From),
			!q.To.IsZero() && !sent.Before(q.To),
			q.HasMinRound && r.GetRound() < q.MinRound:
			continue
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b refKey) int {
		return cmp.Or(ref[a].GetSentAt().AsTime().Compare(ref[b].GetSentAt().AsTime()),
			cmp.Compare(a.agent, b.agent), cmp.Compare(a.epoch, b.epoch), cmp.Compare(a.seq, b.seq))
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out
}

// TestMigrateResultsToChunks builds a schema-3 database with per-result
// rows, opens it, and finds every result, its ranges and its dedupe intact.
func TestMigrateResultsToChunks(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	raw := openAtSchema(t, dir, 3)
	old := append(results(1, 5), results(8, 9)...)
	for _, r := range old {
		body, _ := proto.Marshal(r)
		_, err := raw.Exec(`INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, "agt-000000000000000a", 1, r.GetSeq(),
			r.GetCampaign(), r.GetTaskId(), r.GetTarget(), r.GetRound(), nanos(r.GetSentAt().AsTime()), int32(r.GetOutcome()), nanos(t0), body)
		if err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	db, err := Open(ctx, dir)
	if err != nil {
		t.Fatalf("Open migrates: %v", err)
	}
	defer db.Close()
	var got []uint64
	err = db.QueryResults(ctx, store.ResultQuery{}, func(sr store.StoredResult) error {
		if sr.AgentID != "agt-000000000000000a" || sr.Epoch != 1 || !sr.ReceivedAt.Equal(t0) {
			t.Errorf("migrated result %d: agent %s epoch %d received %v", sr.Result.GetSeq(), sr.AgentID, sr.Epoch, sr.ReceivedAt)
		}
		got = append(got, sr.Result.GetSeq())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{1, 2, 3, 4, 5, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("migrated seqs %v, want %v", got, want)
	}
	fresh, err := db.CommitBatchFresh(ctx, "agt-000000000000000a", 1, results(4, 8), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, false, true, true, false}; !slices.Equal(fresh, want) {
		t.Errorf("after the migration, seqs 4..8 fresh = %v, want %v (6 and 7 were never stored)", fresh, want)
	}
	var n int
	if err := db.r.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'results'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("old results table still there (%d, %v)", n, err)
	}
}

// TestGapsClaimSeqs: a seq is counted once, as a result or as a gap. A gap
// over stored seqs records only the rest; a gap reported twice counts once;
// a result arriving after its seq was reported lost is a duplicate.
func TestGapsClaimSeqs(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	a := "agt-000000000000000a"
	enroll(t, db, a)
	gap := func(first, last uint64) []*vantagev1.Gap {
		return []*vantagev1.Gap{{Epoch: 1, FirstSeq: first, LastSeq: last, Reason: "spool full"}}
	}
	steps := []struct {
		name    string
		results []*vantagev1.ProbeResult
		gaps    []*vantagev1.Gap
	}{
		{"store 1..5", results(1, 5), nil},
		{"a gap over 4..9 (4, 5 stored: their ack was lost)", nil, gap(4, 9)},
		{"the same gap again", nil, gap(4, 9)},
		{"7..8 arrive after all", results(7, 8), nil},
		{"store 10..12", results(10, 12), nil},
	}
	for _, s := range steps {
		if _, err := db.CommitBatches(ctx, []store.Batch{{AgentID: a, Epoch: 1, Results: s.results, Gaps: s.gaps}}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	ag, err := db.GetAgent(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if ag.ResultsStored != 8 || ag.Gaps != 4 || ag.DuplicatesDropped != 2 {
		t.Errorf("stored %d, gaps %d, duplicates %d; want 8 (1..5, 10..12), 4 (6..9), 2 (7, 8)", ag.ResultsStored, ag.Gaps, ag.DuplicatesDropped)
	}
	gaps, err := db.Gaps(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	var rows []seqRange
	for _, g := range gaps {
		rows = append(rows, seqRange{g.GetFirstSeq(), g.GetLastSeq()})
	}
	if want := []seqRange{{6, 9}}; !slices.Equal(rows, want) {
		t.Errorf("gap rows %v, want %v", rows, want)
	}
}

// openAtSchema opens a raw database in dir with the first version
// migrations applied, as an older controller left it.
func openAtSchema(t *testing.T, dir string, version int) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName)+"?"+url.Values{"_pragma": {"journal_mode(WAL)"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	for i := range version {
		if _, err := raw.Exec(migrations[i]); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	if _, err := raw.Exec(fmt.Sprintf("PRAGMA user_version = %d", version)); err != nil {
		t.Fatal(err)
	}
	return raw
}
