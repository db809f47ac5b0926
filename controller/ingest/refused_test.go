package ingest

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// feedLog is an Observer that records the seqs it was fed.
type feedLog struct {
	mu   sync.Mutex
	seqs []uint64
}

func (f *feedLog) Feed(_ string, rs []*vantagev1.ProbeResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rs {
		f.seqs = append(f.seqs, r.GetSeq())
	}
}

func (f *feedLog) SetAgentConnected(string, map[string]string, bool, time.Time) {}

func (f *feedLog) fed() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seqs)
}

type gapRow struct {
	epoch, first, last uint64
	reason             string
}

// storedGaps reads the agent's rows of the gaps table.
func storedGaps(t *testing.T, db *sqlite.DB, agentID string) []gapRow {
	t.Helper()
	gaps, err := db.Gaps(context.Background(), agentID)
	if err != nil {
		t.Fatal(err)
	}
	var gs []gapRow
	for _, g := range gaps {
		gs = append(gs, gapRow{g.GetEpoch(), g.GetFirstSeq(), g.GetLastSeq(), g.GetReason()})
	}
	return gs
}

// TestRefusedResultsBecomeGaps: results whose task the agent was never
// given (or whose campaign and target do not match it) are not stored, but
// their batch is acked and they are recorded once as gaps, so the agent's
// stream is never blocked behind them.
func TestRefusedResultsBecomeGaps(t *testing.T) {
	ctx := context.Background()
	obs := &feedLog{}
	var logged syncbuf.Buffer
	ta := newTestAgent(t, nil, obs, slog.New(slog.NewTextHandler(&logged, nil)))
	s, task := ta.session(t, 4)

	known := func(seq uint64) *vantagev1.ProbeResult {
		return &vantagev1.ProbeResult{Seq: seq, TaskId: task.GetId(), Campaign: task.GetCampaign(), Target: task.GetTarget(), SentAt: timestamppb.Now()}
	}
	unknown := func(seq uint64, id string) *vantagev1.ProbeResult {
		return &vantagev1.ProbeResult{Seq: seq, TaskId: id, Campaign: "other", Target: "192.0.2.9", SentAt: timestamppb.Now()}
	}
	mismatch := known(5)
	mismatch.Target = "192.0.2.77"
	longID := strings.Repeat("x", 300)
	mixed := []*vantagev1.ProbeResult{known(1), unknown(2, "other/icmp/192.0.2.9"), unknown(3, "gone/icmp/192.0.2.9"),
		known(4), mismatch, known(6), unknown(7, "other/icmp/192.0.2.9")}
	allRefused := []*vantagev1.ProbeResult{unknown(8, longID), unknown(9, "other/icmp/192.0.2.9")}

	// sendAcked sends one batch and waits for its ack.
	sendAcked := func(t *testing.T, rs []*vantagev1.ProbeResult) {
		t.Helper()
		b := &vantagev1.ResultBatch{Epoch: 4, FirstSeq: rs[0].GetSeq(), LastSeq: rs[len(rs)-1].GetSeq(), Results: rs}
		if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("session ended before the ack of %d..%d: %v", b.GetFirstSeq(), b.GetLastSeq(), err)
			}
			if a := m.GetAck(); a != nil {
				if a.GetEpoch() != 4 || a.GetUpToSeq() != b.GetLastSeq() {
					t.Fatalf("ack = %v; want epoch 4 up to %d", a, b.GetLastSeq())
				}
				return
			}
		}
	}
	notAssigned := func(id string) string {
		return `refused by controller: task "` + id + `" is not assigned to this agent`
	}
	wantGaps := []gapRow{
		{4, 2, 3, notAssigned("other/icmp/192.0.2.9")},
		{4, 5, 5, `refused by controller: task "` + task.GetId() + `" does not match the result's campaign and target`},
		{4, 7, 7, notAssigned("other/icmp/192.0.2.9")},
	}
	check := func(t *testing.T, gaps []gapRow, refused, stored, dups uint64) {
		t.Helper()
		var seqs []uint64
		ta.db.QueryResults(ctx, store.ResultQuery{AgentID: ta.id}, func(r store.StoredResult) error {
			seqs = append(seqs, r.Result.GetSeq())
			return nil
		})
		slices.Sort(seqs)
		if !slices.Equal(seqs, []uint64{1, 4, 6}) {
			t.Errorf("stored seqs %v; want [1 4 6] (the known tasks' results only)", seqs)
		}
		if got := storedGaps(t, ta.db, ta.id); !slices.Equal(got, gaps) {
			t.Errorf("gaps\n got %+v\nwant %+v", got, gaps)
		}
		ag, err := ta.db.GetAgent(ctx, ta.id)
		if err != nil {
			t.Fatal(err)
		}
		var gapped uint64
		for _, g := range gaps {
			gapped += g.last - g.first + 1
		}
		if ag.Gaps != gapped || ag.ResultsStored != stored || ag.DuplicatesDropped != dups {
			t.Errorf("agent counters gaps=%d results_stored=%d duplicates_dropped=%d; want %d, %d, %d",
				ag.Gaps, ag.ResultsStored, ag.DuplicatesDropped, gapped, stored, dups)
		}
		if got := ta.srv.RefusedResults(); got != refused {
			t.Errorf("RefusedResults() = %d; want %d", got, refused)
		}
	}

	t.Run("mixed batch is acked, known results stored, one gap per refused run", func(t *testing.T) {
		sendAcked(t, mixed)
		check(t, wantGaps, 4, 3, 0)
	})
	t.Run("the same batch re-sent stores nothing new and no gap twice", func(t *testing.T) {
		sendAcked(t, mixed)
		check(t, wantGaps, 8, 3, 3)
	})
	t.Run("a batch with every result refused is acked as one gap, long ids cut to 128", func(t *testing.T) {
		sendAcked(t, allRefused)
		want := append(slices.Clone(wantGaps), gapRow{4, 8, 9, notAssigned(strings.Repeat("x", 128))})
		check(t, want, 10, 3, 3)
	})
	// One WARN per batch with refusals, not one per result.
	if n := strings.Count(logged.String(), `level=WARN msg="results refused"`); n != 3 {
		t.Errorf("%d WARN lines \"results refused\" for 3 batches with refusals; log:\n%s", n, logged.String())
	}
	// Feed of a batch runs before the next batch is read, so after the
	// last ack every earlier feed is done.
	if got := obs.fed(); !slices.Equal(got, []uint64{1, 4, 6}) {
		t.Errorf("observer fed seqs %v; want [1 4 6] (fresh accepted results, once)", got)
	}
}
