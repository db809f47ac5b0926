package ingest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// stallStore is a store whose commits stall (a disk stall) while a stall
// is armed, until it is released.
type stallStore struct {
	testStore
	mu      sync.Mutex
	entered chan struct{} // closed when a commit meets the armed stall
	release chan struct{} // nil: no stall armed
}

func newStallStore(db *sqlite.DB) *stallStore { return &stallStore{testStore: db} }

// arm makes the next commit stall until the returned release is called;
// entered is closed when it does.
func (s *stallStore) arm() (entered <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entered, s.release = make(chan struct{}), make(chan struct{})
	rel := s.release
	return s.entered, func() { close(rel) }
}

func (s *stallStore) CommitBatchFresh(ctx context.Context, agentID string, epoch uint64, rs []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) ([]bool, error) {
	s.mu.Lock()
	entered, release := s.entered, s.release
	s.entered, s.release = nil, nil
	s.mu.Unlock()
	if release != nil {
		close(entered)
		<-release
	}
	return s.testStore.CommitBatchFresh(ctx, agentID, epoch, rs, gaps)
}

// sendOn sends b on s and returns its ack, or the status the session ended
// with and its retry-after trailer.
func sendOn(t *testing.T, s vantagev1.AgentService_SessionClient, b *vantagev1.ResultBatch) (*vantagev1.Ack, *status.Status, string) {
	t.Helper()
	if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := s.Recv()
		if err != nil {
			retry := ""
			if v := s.Trailer().Get(RetryAfterKey); len(v) > 0 {
				retry = v[0]
			}
			return nil, status.Convert(err), retry
		}
		if a := m.GetAck(); a != nil {
			return a, nil, ""
		}
	}
}

// oneResult is a batch of one result of task.
func oneResult(epoch, seq uint64, task *vantagev1.Task) *vantagev1.ResultBatch {
	r := &vantagev1.ProbeResult{Seq: seq, TaskId: task.GetId(), Campaign: task.GetCampaign(), Target: task.GetTarget(), SentAt: timestamppb.Now()}
	return &vantagev1.ResultBatch{Epoch: epoch, FirstSeq: seq, LastSeq: seq, Results: []*vantagev1.ProbeResult{r}}
}

// gapsOnly is a batch of n one-seq gaps at first, first+2, ...
func gapsOnly(epoch, first uint64, n int) *vantagev1.ResultBatch {
	b := &vantagev1.ResultBatch{Epoch: epoch, Gaps: make([]*vantagev1.Gap, n)}
	for i := range b.Gaps {
		s := first + 2*uint64(i)
		b.Gaps[i] = &vantagev1.Gap{Epoch: epoch, FirstSeq: s, LastSeq: s, Reason: "spool full"}
	}
	return b
}

// TestSlowCommitRecovers: a store commit that stalls past MaxCommitLatency
// (a disk stall) makes the controller refuse batches while it runs, and
// once it has returned every batch is taken again, with no restart. The
// old rule (refuse while the *last* commit was slow) never cleared: with
// every batch refused, no commit ran to replace that last duration.
func TestSlowCommitRecovers(t *testing.T) {
	var ss *stallStore
	ta := newTestAgentWith(t, wrapped(&ss, newStallStore), nil, nil,
		func(c *Config) { c.MaxCommitLatency = 100 * time.Millisecond })
	other := ta.another(t)
	s1, task := ta.session(t, 1)
	// stalled sends seq on s1 and returns once its commit has stalled
	// for three times MaxCommitLatency, with the stall's release.
	stalled := func(seq uint64) func() {
		entered, release := ss.arm()
		if err := s1.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: oneResult(1, seq, task)}}); err != nil {
			t.Fatal(err)
		}
		<-entered
		time.Sleep(300 * time.Millisecond)
		return release
	}

	// A slow commit, then nothing queued: the next batch is taken.
	release := stalled(1)
	release()
	fixture.RecvAck(t, s1)
	s2, task2 := other.session(t, 1)
	if a, st, retry := sendOn(t, s2, oneResult(1, 1, task2)); a == nil {
		t.Fatalf("the first batch after a slow commit: session ended %v (retry-after-ms %s); want it acked (ingest recovers by itself)", st, retry)
	}

	// While a commit stalls past its bound, batches are refused, not
	// queued behind it.
	release = stalled(2)
	type end struct {
		ack *vantagev1.Ack
		st  *status.Status
	}
	during := make(chan end, 1)
	go func() {
		a, st, _ := sendOn(t, s2, oneResult(1, 2, task2))
		during <- end{a, st}
	}()
	select {
	case e := <-during:
		if e.ack != nil || e.st.Code() != codes.ResourceExhausted || !strings.Contains(e.st.Message(), "store commit running for") {
			t.Errorf("a batch during the stall: ack %v, status %v; want RESOURCE_EXHAUSTED naming the running commit", e.ack, e.st)
		} else {
			t.Logf("during the stall: %s", e.st.Message())
		}
	case <-time.After(5 * time.Second):
		t.Errorf("a batch during the stall got no answer in 5s (queued behind the stalled commit); want RESOURCE_EXHAUSTED")
	}
	release()
	fixture.RecvAck(t, s1)
	// And once it returned, both agents' batches are taken again.
	for i, who := range []*testAgent{other, ta} {
		s, tk := who.session(t, 2)
		if a, st, retry := sendOn(t, s, oneResult(2, 1, tk)); a == nil {
			t.Fatalf("batch %d after the second stall: session ended %v (retry-after-ms %s); want it acked", i, st, retry)
		}
	}
	for _, c := range []struct {
		who  *testAgent
		want uint64
	}{{ta, 3}, {other, 2}} {
		ag, err := ta.db.GetAgent(context.Background(), c.who.id)
		if err != nil {
			t.Fatal(err)
		}
		if ag.ResultsStored != c.want {
			t.Errorf("agent %s: %d results stored, want %d", c.who.id, ag.ResultsStored, c.want)
		}
	}
}

// TestGapFloodCannotWedge is the attack of the issue, by an enrolled agent
// over real mTLS on loopback into real SQLite: 45 batches of 10,000
// isolated one-seq gaps (450,000), then one gap claiming seqs 1..2^62.
// Before, that left 900,000 gap rows, a gap counter of 4.6e18 and an 8 s
// commit, after which every batch from every agent was refused. Now the
// gap rows stop at the cap, the claims at the agent's gap budget, the
// giant gap merges a bounded number of ranges, and a result batch sent
// afterwards is taken. (Under the race detector, 1,000 gaps a batch.)
func TestGapFloodCannotWedge(t *testing.T) {
	ctx := context.Background()
	ta := newTestAgent(t, nil, nil, nil)
	s, _ := ta.session(t, 3)
	start := time.Now()
	const batches = 45
	perBatch := MaxBatchResults
	if raceEnabled {
		perBatch = 1000
	}
	for i := range batches {
		if a, st, _ := sendOn(t, s, gapsOnly(3, 1+2*uint64(i*perBatch), perBatch)); a == nil {
			t.Fatalf("batch %d of isolated gaps: session ended %v", i, st)
		}
	}
	flood := time.Since(start)
	giantStart := time.Now()
	giant := &vantagev1.ResultBatch{Epoch: 3, Gaps: []*vantagev1.Gap{{Epoch: 3, FirstSeq: 1, LastSeq: 1 << 62, Reason: "spool full"}}}
	if a, st, _ := sendOn(t, s, giant); a == nil {
		t.Fatalf("the giant gap: session ended %v", st)
	}
	giantTook := time.Since(giantStart)
	s2, task := ta.session(t, 4)
	if a, st, retry := sendOn(t, s2, oneResult(4, 1, task)); a == nil {
		t.Fatalf("a result batch after the gap flood: session ended %v (retry-after-ms %s); want it acked", st, retry)
	}
	elapsed := time.Since(start)

	ag, err := ta.db.GetAgent(ctx, ta.id)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := ta.db.Gaps(ctx, ta.id)
	if err != nil {
		t.Fatal(err)
	}
	st := ta.srv.Stats()
	var dbBytes int64
	for _, f := range []string{sqlite.FileName, sqlite.FileName + "-wal"} {
		if fi, err := os.Stat(filepath.Join(ta.dir, f)); err == nil {
			dbBytes += fi.Size()
		}
	}
	slowest := "over 10s"
	for i, b := range st.CommitSeconds.Bounds {
		if st.CommitSeconds.Cumulative[i] == st.CommitSeconds.Count {
			slowest = (time.Duration(b * float64(time.Second))).String()
			break
		}
	}
	t.Logf("%d isolated gaps in %d batches: %s; the giant gap: %s; %d commits, each <= %s; gap rows %d; agent gaps %d; Stats gap results %d, cut %d; database %.1f MB",
		batches*perBatch, batches, flood.Round(time.Millisecond), giantTook.Round(time.Millisecond), st.CommitSeconds.Count, slowest,
		len(rows), ag.Gaps, st.GapResults, st.GapResultsCut, float64(dbBytes)/1e6)
	if len(rows) > DefaultMaxGapRows {
		t.Errorf("%d gap rows stored; want at most %d (DefaultMaxGapRows)", len(rows), DefaultMaxGapRows)
	}
	bound := uint64(DefaultGapSeqBurst) + uint64(DefaultGapSeqRate*elapsed.Seconds()) + 1
	if ag.Gaps > bound || st.GapResults > bound {
		t.Errorf("agent gap counter %d, Stats.GapResults %d; want both at most %d (the gap budget over %s)", ag.Gaps, st.GapResults, bound, elapsed.Round(time.Millisecond))
	}
}

// TestGapsCountTowardRate: a gap record costs GapWork results of the
// agent's rate, so gap-only batches are throttled like results (before,
// a gap-only batch cost 1 whatever it carried).
func TestGapsCountTowardRate(t *testing.T) {
	ta := newTestAgentWith(t, nil, nil, nil, func(c *Config) { c.RatePerAgent = 1000 }) // burst 10,000
	s, _ := ta.session(t, 1)
	// 2,000 gaps cost 32,000: more than the bucket holds, so the whole
	// bucket; taken, as any valid batch is once the bucket is full.
	if a, st, _ := sendOn(t, s, gapsOnly(1, 1, 2000)); a == nil {
		t.Fatalf("first gap-only batch: session ended %v; want it acked", st)
	}
	a, st, retry := sendOn(t, s, gapsOnly(1, 10001, 2000))
	if a != nil || st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "ingest rate") {
		t.Fatalf("second gap-only batch: ack %v, status %v; want RESOURCE_EXHAUSTED for the agent's rate", a, st)
	}
	t.Logf("second gap-only batch: %s, retry-after-ms %s", st.Message(), retry)
}

// TestGapsCountAsWork: gap records count GapWork each in the ingest queue
// (the overload bound) and in a commit group's size, so gap-only batches
// cannot pile into one huge transaction behind a slow commit.
func TestGapsCountAsWork(t *testing.T) {
	var ss *stallStore
	ta := newTestAgentWith(t, wrapped(&ss, newStallStore), nil, nil, nil)
	s0, task := ta.session(t, 1)
	entered, release := ss.arm()
	if err := s0.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: oneResult(1, 1, task)}}); err != nil {
		t.Fatal(err)
	}
	<-entered // the first commit holds the writer
	const agents, gaps = 10, 1000
	acked := make(chan error, agents)
	for range agents {
		s, _ := ta.another(t).session(t, 1)
		go func() {
			a, st, _ := sendOn(t, s, gapsOnly(1, 1, gaps))
			if a == nil {
				acked <- st.Err()
				return
			}
			acked <- nil
		}()
	}
	want := int64(1 + agents*gaps*GapWork)
	deadline := time.Now().Add(10 * time.Second)
	for ta.srv.Stats().QueuedResults != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if q := ta.srv.Stats().QueuedResults; q != want {
		t.Errorf("queued work with %d gap-only batches of %d gaps behind a stalled commit: %d; want %d (GapWork %d per gap)", agents, gaps, q, want, GapWork)
	}
	release()
	for range agents {
		if err := <-acked; err != nil {
			t.Fatalf("gap-only batch: %v", err)
		}
	}
	fixture.RecvAck(t, s0)
	// Each batch is 16,000 of work, over GroupResults (5,000): one commit
	// each, not one transaction for all of them.
	if n := ta.srv.Stats().CommitSeconds.Count; n != 1+agents {
		t.Errorf("%d commits for 1 batch and %d gap-only batches; want %d (a group is bounded by its work)", n, agents, 1+agents)
	}
}

// TestClipGaps: an agent's gap records claim at most its gap budget (the
// burst, then the rate); the rest is cut and counted, and the batch's
// own gap records are left as they came.
func TestClipGaps(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	srv := New(Config{GapSeqRate: 10, GapSeqBurst: 100, Now: func() time.Time { return now }})
	t.Cleanup(srv.Wait)
	ss := &session{s: srv, agent: store.Agent{ID: "agt-0000000000000001"}}
	gap := func(first, last uint64) *vantagev1.Gap {
		return &vantagev1.Gap{Epoch: 1, FirstSeq: first, LastSeq: last, Reason: "spool full"}
	}
	type span struct{ first, last uint64 }
	spans := func(gs []*vantagev1.Gap) []span {
		var out []span
		for _, g := range gs {
			out = append(out, span{g.GetFirstSeq(), g.GetLastSeq()})
		}
		return out
	}
	in := []*vantagev1.Gap{gap(1, 60), gap(100, 199), gap(300, 300)}
	tests := []struct {
		name    string
		advance time.Duration
		in      []*vantagev1.Gap
		want    []span
		cut     uint64 // in total so far
	}{
		{"the burst: 60, then 40 of 100, then none", 0, in, []span{{1, 60}, {100, 139}}, 60 + 1},
		{"a second later: the rate's 10", time.Second, []*vantagev1.Gap{gap(1, 1<<62)}, []span{{1, 10}}, 61 + 1<<62 - 10},
	}
	for _, tc := range tests {
		now = now.Add(tc.advance)
		got := ss.clipGaps(1, tc.in)
		if g := spans(got); len(g) != len(tc.want) || (len(g) > 0 && !equalSpans(g, tc.want)) {
			t.Errorf("%s: claimed %v, want %v", tc.name, g, tc.want)
		}
		if c := srv.Stats().GapResultsCut; c != tc.cut {
			t.Errorf("%s: GapResultsCut %d, want %d", tc.name, c, tc.cut)
		}
	}
	if in[1].GetLastSeq() != 199 {
		t.Errorf("the batch's gap was modified: %v", in[1])
	}
}

func equalSpans[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
