package ingest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// sqliteFullError is a real SQLITE_FULL from the driver the store uses: a
// database capped at a few pages (PRAGMA max_page_count) refuses a large
// insert with the error a full disk gives.
func sqliteFullError(t *testing.T) error {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+t.TempDir()+"/full.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{`PRAGMA max_page_count = 3`, `CREATE TABLE t (b BLOB)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	_, err = db.Exec(`INSERT INTO t VALUES (zeroblob(100000))`)
	if err == nil {
		t.Fatal("an insert past max_page_count succeeded")
	}
	return fmt.Errorf("commit: %w", err)
}

func TestClassifyStoreError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want StoreErrorClass
	}{
		{"SQLITE_FULL from the driver", sqliteFullError(t), StoreDiskFull},
		{"ENOSPC", &fs.PathError{Op: "write", Path: "vantage.db-wal", Err: syscall.ENOSPC}, StoreDiskFull},
		{"quota", fmt.Errorf("x: %w", syscall.EDQUOT), StoreDiskFull},
		{"EIO", &fs.PathError{Op: "fsync", Path: "vantage.db-wal", Err: syscall.EIO}, StoreIO},
		{"read-only file system", fmt.Errorf("x: %w", syscall.EROFS), StoreIO},
		{"anything else", errors.New("constraint failed"), StoreOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyStoreError(tc.err); got != tc.want {
				t.Fatalf("ClassifyStoreError(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// failStore fails every commit with err while failing is set, and every
// update of the agent row at Hello while helloFailing is, as SQLite on a
// full disk does.
type failStore struct {
	testStore
	failing, helloFailing atomic.Bool
	err                   error
}

func (f *failStore) UpdateAgentHello(ctx context.Context, id string, h store.AgentHello) error {
	if f.helloFailing.Load() {
		return f.err
	}
	return f.testStore.UpdateAgentHello(ctx, id, h)
}

func (f *failStore) CommitBatchFresh(ctx context.Context, agentID string, epoch uint64, rs []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) ([]bool, error) {
	if f.failing.Load() {
		return nil, f.err
	}
	return f.testStore.CommitBatchFresh(ctx, agentID, epoch, rs, gaps)
}

// TestCommitFailureRetried: while the store's commits fail (a full disk),
// each batch is refused with RESOURCE_EXHAUSTED and a retry-after of
// DefaultStoreRetryAfter (after a Throttle), not acked, and counted by
// class; the failure is logged once, not once per batch; the first commit
// that succeeds clears it, with no restart, and the batch sent again is
// stored once. Before, a failed commit ended the session with UNAVAILABLE,
// counted nothing and logged one WARN per batch.
func TestCommitFailureRetried(t *testing.T) {
	var fst *failStore
	var logged syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	full := sqliteFullError(t)
	ta := newTestAgent(t, func(db *sqlite.DB) testStore { fst = &failStore{testStore: db, err: full}; return fst }, nil, log)
	fst.failing.Store(true)
	const tries = 3
	for i := range tries {
		s, task := ta.session(t, 1)
		a, st, retry := sendOn(t, s, oneResult(1, 1, task))
		if a != nil || st.Code() != codes.ResourceExhausted || retry != "5000" || !strings.Contains(st.Message(), "disk_full") {
			t.Fatalf("try %d on a failing store: ack %v, status %v, retry-after-ms %q; want RESOURCE_EXHAUSTED naming disk_full, retry-after-ms 5000",
				i, a, st, retry)
		}
		if i == 0 {
			t.Logf("a batch on a failing store: %s", st.Message())
		}
	}
	st := ta.srv.Stats()
	if st.StoreFailures[StoreDiskFull] != tries || !st.StoreFailing || !strings.Contains(st.StoreError, "database or disk is full") ||
		st.Throttles[ThrottleStore] != tries || st.Batches != 0 {
		t.Fatalf("Stats while failing: failures %v, failing %v (%q), store throttles %d, batches %d; want %d disk_full, failing, %d, 0",
			st.StoreFailures, st.StoreFailing, st.StoreError, st.Throttles[ThrottleStore], st.Batches, tries, tries)
	}
	if n := strings.Count(logged.String(), "store writes failing"); n != 1 {
		t.Errorf("%d \"store writes failing\" lines for %d failed commits, want 1:\n%s", n, tries, logged.String())
	}
	if n := strings.Count(logged.String(), "level=WARN"); n != 1 {
		t.Errorf("%d WARN lines for %d failed commits, want 1 (not one per batch):\n%s", n, tries, logged.String())
	}

	fst.failing.Store(false)
	s, task := ta.session(t, 1)
	if a, st, retry := sendOn(t, s, oneResult(1, 1, task)); a == nil {
		t.Fatalf("once the store works again: session ended %v (retry-after-ms %s); want the batch acked", st, retry)
	}
	if st := ta.srv.Stats(); st.StoreFailing || st.Batches != 1 {
		t.Fatalf("Stats after recovery: failing %v, batches %d; want not failing, 1", st.StoreFailing, st.Batches)
	}
	if !strings.Contains(logged.String(), "store writes recovered") {
		t.Errorf("no \"store writes recovered\" line:\n%s", logged.String())
	}
	ag, err := ta.db.GetAgent(context.Background(), ta.id)
	if err != nil {
		t.Fatal(err)
	}
	if ag.ResultsStored != 1 || ag.DuplicatesDropped != 0 {
		t.Errorf("stored %d, duplicates %d; want the batch stored once", ag.ResultsStored, ag.DuplicatesDropped)
	}
}

// TestAgentsSpoolFailing: Stats counts the live sessions whose agent's last
// heartbeat reports a spool that cannot write.
func TestAgentsSpoolFailing(t *testing.T) {
	ta := newTestAgent(t, nil, nil, nil)
	other := ta.another(t)
	s1, _ := ta.session(t, 1)
	s2, _ := other.session(t, 1)
	hb := func(s vantagev1.AgentService_SessionClient, sp *vantagev1.SpoolState) {
		t.Helper()
		if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Heartbeat{Heartbeat: &vantagev1.Heartbeat{Spool: sp}}}); err != nil {
			t.Fatal(err)
		}
	}
	hb(s1, &vantagev1.SpoolState{PendingResults: 5, WriteError: "no space left on device", MemoryResults: 5})
	hb(s2, &vantagev1.SpoolState{PendingResults: 1})
	waitStats(t, ta.srv, "one agent with a failing spool", func(st Stats) bool { return st.AgentsSpoolFailing == 1 })
	hb(s1, &vantagev1.SpoolState{})
	waitStats(t, ta.srv, "no agent with a failing spool", func(st Stats) bool { return st.AgentsSpoolFailing == 0 })
}

// waitStats polls the server's Stats until cond holds (at most 10 s).
func waitStats(t *testing.T, srv *Server, what string, cond func(Stats) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := srv.Stats()
		if cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s (Stats %+v)", what, st)
		}
	}
}

// TestCommitRunning: while a commit stalls (a frozen disk), Stats says how
// long it has been running; once it returns, 0.
func TestCommitRunning(t *testing.T) {
	var ss *stallStore
	ta := newTestAgent(t, wrapped(&ss, newStallStore), nil, nil)
	s, task := ta.session(t, 1)
	entered, release := ss.arm()
	if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: oneResult(1, 1, task)}}); err != nil {
		t.Fatal(err)
	}
	<-entered
	time.Sleep(50 * time.Millisecond)
	if r := ta.srv.Stats().CommitRunning; r < 50*time.Millisecond {
		t.Errorf("CommitRunning = %v during a stalled commit of at least 50ms", r)
	}
	release()
	fixture.RecvAck(t, s)
	if r := ta.srv.Stats().CommitRunning; r != 0 {
		t.Errorf("CommitRunning = %v after the commit returned; want 0", r)
	}
}

// TestHelloFailureCounted: a full disk that refuses even the agent row's
// update at Hello (the session is refused with UNAVAILABLE) shows as a
// failing store too, and the first Hello that is stored again ends it
// when no commit failed meanwhile.
func TestHelloFailureCounted(t *testing.T) {
	var fst *failStore
	var logged syncbuf.Buffer
	ta := newTestAgent(t, func(db *sqlite.DB) testStore { fst = &failStore{testStore: db, err: sqliteFullError(t)}; return fst },
		nil, slog.New(slog.NewTextHandler(&logged, nil)))
	fst.helloFailing.Store(true)
	for range 2 {
		s, err := vantagev1.NewAgentServiceClient(ta.conn).Session(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{Epoch: 1}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
			t.Fatalf("session on a store refusing the hello: %v; want UNAVAILABLE", err)
		}
	}
	if st := ta.srv.Stats(); !st.StoreFailing || st.StoreFailures[StoreDiskFull] != 2 {
		t.Fatalf("Stats: failing %v, failures %v; want failing, 2 disk_full", st.StoreFailing, st.StoreFailures)
	}
	fst.helloFailing.Store(false)
	ta.session(t, 1)
	if st := ta.srv.Stats(); st.StoreFailing {
		t.Fatalf("Stats: still failing after a hello was stored")
	}
	if n := strings.Count(logged.String(), "store writes failing"); n != 1 || !strings.Contains(logged.String(), "store writes recovered") {
		t.Errorf("want one \"failing\" line and a \"recovered\" one:\n%s", logged.String())
	}
}
