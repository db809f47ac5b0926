package ingest

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func result(seq uint64, target string) *vantagev1.ProbeResult {
	return &vantagev1.ProbeResult{Seq: seq, TaskId: "c/icmp/" + target, Campaign: "c", Target: target, SentAt: timestamppb.Now()}
}

func TestValidateBatch(t *testing.T) {
	ok := func() *vantagev1.ResultBatch {
		return &vantagev1.ResultBatch{Epoch: 1, FirstSeq: 5, LastSeq: 6, Results: []*vantagev1.ProbeResult{result(5, "192.0.2.1"), result(6, "2001:db8::1")}}
	}
	tests := []struct {
		name  string
		edit  func(b *vantagev1.ResultBatch)
		field string // "" means valid
	}{
		{"valid", func(*vantagev1.ResultBatch) {}, ""},
		{"epoch zero", func(b *vantagev1.ResultBatch) { b.Epoch = 0 }, "results.epoch"},
		{"first after last", func(b *vantagev1.ResultBatch) { b.FirstSeq = 7 }, "results.first_seq"},
		{"first zero", func(b *vantagev1.ResultBatch) { b.FirstSeq = 0 }, "results.first_seq"},
		{"count mismatch", func(b *vantagev1.ResultBatch) { b.LastSeq = 7 }, "results.results"},
		{"not contiguous", func(b *vantagev1.ResultBatch) { b.Results[1].Seq = 9 }, "results.results[1].seq"},
		{"target not an IP", func(b *vantagev1.ResultBatch) { b.Results[0].Target = "example.com" }, "results.results[0].target"},
		{"no sent_at", func(b *vantagev1.ResultBatch) { b.Results[0].SentAt = nil }, "results.results[0].sent_at"},
		{"bad gap", func(b *vantagev1.ResultBatch) { b.Gaps = []*vantagev1.Gap{{Epoch: 1, FirstSeq: 3, LastSeq: 2}} }, "results.gaps[0]"},
		{"too many", func(b *vantagev1.ResultBatch) {
			b.FirstSeq, b.LastSeq, b.Results = 1, MaxBatchResults+1, nil
			for i := range MaxBatchResults + 1 {
				b.Results = append(b.Results, result(uint64(i+1), "192.0.2.1"))
			}
		}, "results.results"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := ok()
			tc.edit(b)
			err := ValidateBatch(b)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("ValidateBatch = %v; want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("ValidateBatch = %v; want an error naming %s", err, tc.field)
			}
		})
	}
}

// gatedStore holds CommitBatchFresh until release is closed.
type gatedStore struct {
	testStore
	entered   chan struct{}
	release   chan struct{}
	committed atomic.Bool
}

func (g *gatedStore) CommitBatchFresh(ctx context.Context, agentID string, epoch uint64, rs []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) ([]bool, error) {
	g.entered <- struct{}{}
	<-g.release
	fresh, err := g.testStore.CommitBatchFresh(ctx, agentID, epoch, rs, gaps)
	g.committed.Store(err == nil)
	return fresh, err
}

func newGatedStore(db *sqlite.DB) *gatedStore {
	return &gatedStore{testStore: db, entered: make(chan struct{}, 1), release: make(chan struct{})}
}

type specs []*campaign.Spec

func (s specs) Active() []*campaign.Spec { return s }

// spec is the campaign the tests' controller runs: c, one host of
// 198.18.0.0/24 probed by ICMP every 5s.
var spec = fixture.Campaign{Name: "c"}.YAML()

// testStore is what a test's wrapper around the SQLite store gives ingest
// and its fleet. It is no store.GroupCommitter, so every commit goes
// through the wrapper.
type testStore interface {
	SessionStore
	fleet.Registry
}

// wrapped is a wrap for newTestAgent: it wraps the store with mk and keeps
// the wrapper in *p for the test.
func wrapped[S testStore](p *S, mk func(*sqlite.DB) S) func(*sqlite.DB) testStore {
	return func(db *sqlite.DB) testStore { *p = mk(db); return *p }
}

// testAgent is a controller's AgentService on a real TLS loopback listener
// over a real SQLite store, and one enrolled agent's client connection.
type testAgent struct {
	db   *sqlite.DB
	dir  string // the data directory
	srv  *Server
	id   string
	conn *grpc.ClientConn
	fl   *fleet.Fleet
	ca   *fleet.CA
	addr string
}

// newTestAgent starts the service with campaign spec active; wrap, when not
// nil, wraps the store the service writes to.
func newTestAgent(t *testing.T, wrap func(*sqlite.DB) testStore, obs Observer, log *slog.Logger) *testAgent {
	t.Helper()
	return newTestAgentWith(t, wrap, obs, log, nil)
}

// newTestAgentWith is newTestAgent with edit, when not nil, changing the
// Server's Config before it starts.
func newTestAgentWith(t *testing.T, wrap func(*sqlite.DB) testStore, obs Observer, log *slog.Logger, edit func(*Config)) *testAgent {
	t.Helper()
	db, ca, dir := fixture.StoreAndCA(t)
	var st testStore = db
	if wrap != nil {
		st = wrap(db)
	}
	fl := fleet.New(st, ca, fleet.Options{})
	cfg := Config{Store: st, Fleet: fl, Campaigns: specs{fixture.Spec(t, spec)}, Observer: obs, Log: log}
	if edit != nil {
		edit(&cfg)
	}
	srvImpl := New(cfg)

	ta := &testAgent{db: db, dir: dir, srv: srvImpl, fl: fl, ca: ca, addr: serveTLS(t, ca, srvImpl)}
	ta.enrol(t)
	return ta
}

// another enrols one more agent with the same controller.
func (ta *testAgent) another(t *testing.T) *testAgent {
	t.Helper()
	b := *ta
	b.enrol(t)
	return &b
}

// enrol enrols an agent for real and connects it with its certificate.
func (ta *testAgent) enrol(t *testing.T) {
	t.Helper()
	e, cert := fixture.Enrol(t, ta.fl, "a")
	ta.id, ta.conn = e.AgentID, fixture.Dial(t, ta.addr, ta.ca.Pool(), cert)
}

// session opens a Session with epoch and returns it with the one task of
// the first assignment.
func (ta *testAgent) session(t *testing.T, epoch uint64) (vantagev1.AgentService_SessionClient, *vantagev1.Task) {
	t.Helper()
	s, tasks := ta.rawSession(t, epoch)
	if len(tasks) != 1 {
		t.Fatalf("first assignment has %d tasks; want 1", len(tasks))
	}
	return s, tasks[0]
}

// rawSession opens a Session with epoch and returns it with the tasks of
// the first assignment.
func (ta *testAgent) rawSession(t *testing.T, epoch uint64) (vantagev1.AgentService_SessionClient, []*vantagev1.Task) {
	t.Helper()
	sctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := vantagev1.NewAgentServiceClient(ta.conn).Session(sctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{Epoch: epoch}}})
	m, err := s.Recv()
	if err != nil || m.GetAssignment() == nil {
		t.Fatalf("first message = %v, %v; want an assignment", m, err)
	}
	return s, m.GetAssignment().GetTasks()
}

func TestAckOnlyAfterCommit(t *testing.T) {
	ctx := context.Background()
	var gs *gatedStore
	ta := newTestAgent(t, wrapped(&gs, newGatedStore), nil, nil)
	s, task := ta.session(t, 3)

	r := &vantagev1.ProbeResult{Seq: 1, TaskId: task.GetId(), Campaign: "c", Target: task.GetTarget(), SentAt: timestamppb.Now()}
	s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: &vantagev1.ResultBatch{
		Epoch: 3, FirstSeq: 1, LastSeq: 1, Results: []*vantagev1.ProbeResult{r}}}})
	<-gs.entered // the commit is in progress and held

	acks := make(chan *vantagev1.Ack, 1)
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				close(acks)
				return
			}
			if a := m.GetAck(); a != nil {
				acks <- a
			}
		}
	}()
	select {
	case a := <-acks:
		t.Fatalf("ack %v arrived while the commit was held", a)
	case <-time.After(300 * time.Millisecond):
	}
	close(gs.release)
	a, ok := <-acks
	if !ok || a.GetUpToSeq() != 1 || a.GetEpoch() != 3 {
		t.Fatalf("ack = %v; want epoch 3 up to 1", a)
	}
	if !gs.committed.Load() {
		t.Fatal("ack arrived before the commit returned")
	}
	n := 0
	ta.db.QueryResults(ctx, store.ResultQuery{}, func(store.StoredResult) error { n++; return nil })
	if n != 1 {
		t.Fatalf("stored %d results; want 1", n)
	}
}

// TestGapsOnlyBatch: a batch of gaps without results (first_seq = last_seq
// = 0) is stored and acked with up_to_seq 0; sent again it adds nothing.
// Without results and gaps it is refused.
func TestGapsOnlyBatch(t *testing.T) {
	ta := newTestAgent(t, nil, nil, nil)
	s, _ := ta.session(t, 3)
	b := &vantagev1.ResultBatch{Epoch: 3, Gaps: []*vantagev1.Gap{{Epoch: 2, FirstSeq: 10, LastSeq: 19, Reason: "spool full"}}}
	for _, round := range []string{"first", "again"} {
		if a := fixture.SendAwaitAck(t, s, b); a.GetEpoch() != 3 || a.GetUpToSeq() != 0 {
			t.Fatalf("%s: ack %v; want epoch 3 up to seq 0", round, a)
		}
		gaps, err := ta.db.Gaps(context.Background(), ta.id)
		if err != nil {
			t.Fatal(err)
		}
		ag, err := ta.db.GetAgent(context.Background(), ta.id)
		if err != nil {
			t.Fatal(err)
		}
		if len(gaps) != 1 || gaps[0].GetFirstSeq() != 10 || gaps[0].GetLastSeq() != 19 || ag.Gaps != 10 || ag.ResultsStored != 0 {
			t.Fatalf("%s: gaps %v, agent gaps %d stored %d; want one gap 10..19 counted 10, nothing stored", round, gaps, ag.Gaps, ag.ResultsStored)
		}
	}
	if err := ValidateBatch(&vantagev1.ResultBatch{Epoch: 3}); err == nil || !strings.Contains(err.Error(), "results: no results and no gaps") {
		t.Fatalf("empty batch: %v; want refused, naming the field", err)
	}
}

// TestBacklogRightAfterHello: an agent re-sends its backlog the moment the
// session opens, before it reads its assignment, to a controller that has
// never assigned it anything (it just restarted). The results are of a task
// the agent's labels select, so they are stored, not refused as a gap: the
// first assignment is made before any batch is screened.
func TestBacklogRightAfterHello(t *testing.T) {
	for i := range 20 { // the old order lost this race most of the time
		ta := newTestAgent(t, nil, nil, nil)
		sctx, cancel := context.WithCancel(context.Background())
		s, err := vantagev1.NewAgentServiceClient(ta.conn).Session(sctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{Epoch: 5}}})
		r := &vantagev1.ProbeResult{Seq: 1, TaskId: "c/icmp/198.18.0.10", Campaign: "c", Target: "198.18.0.10", SentAt: timestamppb.Now()}
		if a := fixture.SendAwaitAck(t, s, &vantagev1.ResultBatch{Epoch: 5, FirstSeq: 1, LastSeq: 1, Results: []*vantagev1.ProbeResult{r}}); a.GetUpToSeq() != 1 {
			t.Fatalf("run %d: ack %v", i, a)
		}
		cancel()
		ag, err := ta.db.GetAgent(context.Background(), ta.id)
		if err != nil {
			t.Fatal(err)
		}
		if ag.ResultsStored != 1 || ag.Gaps != 0 {
			t.Fatalf("run %d: stored %d, gaps %d; want the result stored, no gap", i, ag.ResultsStored, ag.Gaps)
		}
	}
}

// serveTLS serves srvImpl's AgentService on real TLS over loopback, as in
// production, until the test ends, and returns the address.
func serveTLS(t *testing.T, ca *fleet.CA, srvImpl *Server) string {
	t.Helper()
	return fixture.ServeTLS(t, ca, func(srv *grpc.Server) { vantagev1.RegisterAgentServiceServer(srv, srvImpl) }, srvImpl.Wait)
}
