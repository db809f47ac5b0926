package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// backdated is a batch of n results of agent from seq first, sent one a
// millisecond from at, whose first result claims to be sent in 1970 (a
// clock at zero, or a lie).
func backdated(agent string, first uint64, n int, at time.Time) store.Batch {
	b := store.Batch{AgentID: agent, Epoch: 1}
	for i := range n {
		seq := first + uint64(i)
		sent := at.Add(time.Duration(i) * time.Millisecond)
		if i == 0 {
			sent = time.Unix(0, 0)
		}
		b.Results = append(b.Results, &vantagev1.ProbeResult{Seq: seq, Campaign: "kp", TaskId: "kp/icmp/192.0.2.1",
			Target: "192.0.2.1", Round: int64(seq), SentAt: timestamppb.New(sent), Outcome: vantagev1.Outcome_OUTCOME_REPLY})
	}
	return b
}

// TestQueryResultsPagesInOrder compares paged queries with a reference
// over chunks that start at the same instant (back-dated results of
// several agents) and overlap, with pages of one chunk up to the default.
func TestQueryResultsPagesInOrder(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	agents := []string{"agt-000000000000000a", "agt-000000000000000b", "agt-000000000000000c"}
	for _, a := range agents {
		enroll(t, db, a)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	ref := map[refKey]*vantagev1.ProbeResult{}
	next := map[string]uint64{}
	for i := range 90 {
		agent := agents[rng.IntN(len(agents))]
		b := backdated(agent, next[agent]+1, 1+rng.IntN(30), t0.Add(time.Duration(rng.IntN(60))*time.Second))
		if i%3 == 0 { // not every chunk is back-dated
			b.Results[0].SentAt = timestamppb.New(t0.Add(time.Duration(rng.IntN(60)) * time.Second))
		}
		next[agent] += uint64(len(b.Results))
		if _, err := db.CommitBatches(ctx, []store.Batch{b}); err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Results {
			ref[refKey{agent, 1, r.GetSeq()}] = r
		}
	}
	queries := []store.ResultQuery{
		{}, {Limit: 1}, {Limit: 2}, {Limit: 5}, {Limit: 40}, {Limit: 333},
		{AgentID: agents[1], Limit: 7},
		{From: t0.Add(10 * time.Second), Limit: 25},
		{From: t0.Add(10 * time.Second), To: t0.Add(20 * time.Second)},
		{Campaign: "kp", HasMinRound: true, MinRound: 100, Limit: 50},
	}
	for _, page := range []int{1, 3, queryPageChunks} {
		db.pageChunks = page
		for _, q := range queries {
			t.Run(fmt.Sprintf("page %d %+v", page, q), func(t *testing.T) {
				want := reference(ref, q)
				var got []refKey
				err := db.QueryResults(ctx, q, func(sr store.StoredResult) error {
					got = append(got, refKey{sr.AgentID, sr.Epoch, sr.Result.GetSeq()})
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
}

// TestQueryResultsHoldsNoConnectionInCallback blocks more result queries
// than there are read connections inside their callbacks (a stream to a
// client that never reads) and checks that token and agent look-ups and
// another result query still run.
func TestQueryResultsHoldsNoConnectionInCallback(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	enroll(t, db, "agt-000000000000000a")
	db.pageChunks = 2
	for i := range 10 {
		if _, _, err := db.CommitBatch(ctx, "agt-000000000000000a", 1, results(uint64(i*10+1), uint64(i*10+10)), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutOperatorToken(ctx, store.OperatorToken{Name: "ro", Hash: "h-ro", Role: store.RoleViewer, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var wg sync.WaitGroup
	blocked := make(chan struct{}, readConns)
	for range readConns {
		wg.Go(func() {
			first := true
			err := db.QueryResults(ctx, store.ResultQuery{}, func(store.StoredResult) error {
				if first {
					first = false
					blocked <- struct{}{}
					<-release
				}
				return nil
			})
			if err != nil {
				t.Errorf("blocked query: %v", err)
			}
		})
	}
	defer wg.Wait()
	defer close(release)
	for range readConns {
		<-blocked
	}
	// Generous: on the old code these wait for a connection forever.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := db.OperatorTokenByHash(cctx, "h-ro"); err != nil {
		t.Fatalf("OperatorTokenByHash while %d queries wait on their callers: %v", readConns, err)
	}
	if _, err := db.GetAgent(cctx, "agt-000000000000000a"); err != nil {
		t.Fatalf("GetAgent while %d queries wait on their callers: %v", readConns, err)
	}
	n := 0
	if err := db.QueryResults(cctx, store.ResultQuery{}, func(store.StoredResult) error { n++; return nil }); err != nil || n != 100 {
		t.Fatalf("another QueryResults = %d results, %v; want 100", n, err)
	}
	t.Logf("token, agent and result look-ups with %d blocked queries took %v", readConns, time.Since(start))
}

// TestQueryResultsLimitBackdatedMemory stores chunks that each hold one
// result back-dated to 1970, so that every chunk starts at the same
// instant, and measures the live heap while a Limit 1 query emits.
func TestQueryResultsLimitBackdatedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 240,000 results")
	}
	db, _ := openTest(t)
	ctx := context.Background()
	agents := []string{"agt-000000000000000a", "agt-000000000000000b"}
	for _, a := range agents {
		enroll(t, db, a)
	}
	const chunks, per = 1200, 200
	for i := 0; i < chunks; i += 20 {
		var group []store.Batch
		for j := i; j < i+20; j++ {
			group = append(group, backdated(agents[j%2], uint64(j/2*per+1), per, t0.Add(time.Duration(j)*time.Second)))
		}
		if _, err := db.CommitBatches(ctx, group); err != nil {
			t.Fatal(err)
		}
	}
	for _, limit := range []int{1, 100} {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var held uint64
		n := 0
		err := db.QueryResults(ctx, store.ResultQuery{Campaign: "kp", Limit: limit}, func(store.StoredResult) error {
			if n++; n == 1 {
				runtime.GC()
				var during runtime.MemStats
				runtime.ReadMemStats(&during)
				held = during.HeapAlloc - min(during.HeapAlloc, before.HeapAlloc)
			}
			return nil
		})
		if err != nil || n != limit {
			t.Fatalf("Limit %d: %d results, %v", limit, n, err)
		}
		t.Logf("Limit %d over %d chunks of %d results, each with one result sent in 1970: live heap +%.1f MB at the first result",
			limit, chunks, per, float64(held)/(1<<20))
		if held > 16<<20 {
			t.Errorf("Limit %d held %.1f MB of heap; want a few pages' worth (< 16 MB)", limit, float64(held)/(1<<20))
		}
	}
}

func TestDatabaseFilesPrivate(t *testing.T) {
	old := setUmask(0o022)
	defer setUmask(old)
	dir := t.TempDir()
	// A database an older controller left 0644 is tightened too.
	for _, fresh := range []bool{true, false} {
		db, err := Open(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}
		enroll(t, db, fmt.Sprintf("agt-%016x", map[bool]int{true: 1, false: 2}[fresh])) // a write: the WAL and shm exist
		for _, name := range []string{FileName, FileName + "-wal", FileName + "-shm"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("fresh=%v: %s has mode %v; want 0600", fresh, name, fi.Mode().Perm())
			}
		}
		db.Close()
		for _, name := range []string{FileName, FileName + "-wal", FileName + "-shm"} {
			os.Chmod(filepath.Join(dir, name), 0o644)
		}
	}
}

func setUmask(m int) int { return syscall.Umask(m) }

// TestQueryResultsAfter resumes a query after each of many results
// (chunks overlapping in time, several results sharing a sent_at across
// agents) and checks that it yields exactly the rest of the full order.
func TestQueryResultsAfter(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	agents := []string{"agt-000000000000000a", "agt-000000000000000b", "agt-000000000000000c"}
	for _, a := range agents {
		enroll(t, db, a)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	next := map[string]uint64{}
	for range 40 {
		agent := agents[rng.IntN(len(agents))]
		b := backdated(agent, next[agent]+1, 1+rng.IntN(20), t0.Add(time.Duration(rng.IntN(30))*time.Second))
		next[agent] += uint64(len(b.Results))
		if _, err := db.CommitBatches(ctx, []store.Batch{b}); err != nil {
			t.Fatal(err)
		}
	}
	collect := func(q store.ResultQuery) []store.ResultKey {
		var out []store.ResultKey
		if err := db.QueryResults(ctx, q, func(sr store.StoredResult) error {
			out = append(out, store.KeyOf(sr))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, page := range []int{1, queryPageChunks} {
		db.pageChunks = page
		for _, base := range []store.ResultQuery{{}, {From: t0.Add(5 * time.Second), To: t0.Add(25 * time.Second)}} {
			all := collect(base)
			if len(all) < 50 {
				t.Fatalf("only %d results to resume in", len(all))
			}
			for i := 0; i < len(all); i += 1 + len(all)/40 {
				t.Run(fmt.Sprintf("page %d from %v after %d of %d", page, !base.From.IsZero(), i, len(all)), func(t *testing.T) {
					q := base
					q.After = &all[i]
					if got, want := collect(q), all[i+1:]; !slices.Equal(got, want) {
						t.Errorf("got %d results, want %d", len(got), len(want))
					}
				})
			}
		}
	}
}
