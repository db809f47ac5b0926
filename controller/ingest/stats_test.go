package ingest

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestStats drives a real session over a real SQLite store and checks
// every counter Stats reads.
func TestStats(t *testing.T) {
	ta := newTestAgent(t, nil, nil, nil)
	if s := ta.srv.Stats(); s.Sessions != 0 || s.Batches != 0 {
		t.Fatalf("Stats before any session = %+v", s)
	}
	s, task := ta.session(t, 2)
	if got := ta.srv.Stats().Sessions; got != 1 {
		t.Fatalf("Sessions = %d with one live session; want 1", got)
	}
	res := func(seq uint64, taskID string) *vantagev1.ProbeResult {
		return &vantagev1.ProbeResult{Seq: seq, TaskId: taskID, Campaign: task.GetCampaign(), Target: task.GetTarget(), SentAt: timestamppb.Now()}
	}
	sendAcked := func(t *testing.T, b *vantagev1.ResultBatch) {
		t.Helper()
		if a := fixture.SendAwaitAck(t, s, b); a.GetUpToSeq() != b.GetLastSeq() {
			t.Fatalf("ack %v; want up to seq %d", a, b.GetLastSeq())
		}
	}
	// Seqs 1..4 were lost by the agent (a gap record); 5, 6, 8 are
	// stored; 7 names a task the agent was never given.
	b := &vantagev1.ResultBatch{Epoch: 2, FirstSeq: 5, LastSeq: 8,
		Results: []*vantagev1.ProbeResult{res(5, task.GetId()), res(6, task.GetId()), res(7, "c/icmp/192.0.2.200"), res(8, task.GetId())},
		Gaps:    []*vantagev1.Gap{{Epoch: 2, FirstSeq: 1, LastSeq: 4, Reason: "spool full"}}}
	tests := []struct {
		name                          string
		stored, dup, refused, batches uint64
		gapResults                    uint64
		minCommits                    uint64
	}{
		{"first send", 3, 0, 1, 1, 4, 1},
		{"re-sent after a lost ack", 3, 3, 2, 2, 8, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sendAcked(t, b)
			st := ta.srv.Stats()
			if st.ResultsStored != tc.stored || st.ResultsDuplicate != tc.dup || st.ResultsRefused != tc.refused ||
				st.Batches != tc.batches || st.GapResults != tc.gapResults {
				t.Fatalf("Stats = stored %d, duplicate %d, refused %d, batches %d, gap results %d; want %d, %d, %d, %d, %d",
					st.ResultsStored, st.ResultsDuplicate, st.ResultsRefused, st.Batches, st.GapResults,
					tc.stored, tc.dup, tc.refused, tc.batches, tc.gapResults)
			}
			if st.QueuedResults != 0 {
				t.Errorf("QueuedResults = %d after the ack; want 0", st.QueuedResults)
			}
			h := st.CommitSeconds
			if h.Count < tc.minCommits || h.Sum <= 0 || len(h.Cumulative) != len(CommitBuckets) || h.Cumulative[len(h.Cumulative)-1] > h.Count {
				t.Errorf("CommitSeconds = %+v; want at least %d commits, a positive sum, cumulative buckets", h, tc.minCommits)
			}
		})
	}
	// Every session ends: Sessions goes back to 0.
	s.CloseSend()
	deadline := time.Now().Add(10 * time.Second)
	for ta.srv.Stats().Sessions != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Sessions never went back to 0 after the session ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommitBuckets(t *testing.T) {
	srv := &Server{}
	for _, d := range []time.Duration{0, time.Millisecond, 1500 * time.Microsecond, 30 * time.Millisecond, time.Minute} {
		srv.stats.commitTook(d)
	}
	s := srv.Stats().CommitSeconds
	// <= 1ms: 2 (0 and exactly 1ms); <= 2.5ms: 3; <= 50ms: 4; one above 10s.
	want := []uint64{2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4}
	if !slices.Equal(s.Cumulative, want) || s.Count != 5 {
		t.Fatalf("cumulative %v count %d; want %v count 5", s.Cumulative, s.Count, want)
	}
	if want := (time.Minute + 32500*time.Microsecond).Seconds(); s.Sum != want {
		t.Fatalf("sum %v; want %v", s.Sum, want)
	}
	for k, name := range map[ThrottleKind]string{ThrottleSoft: "soft", ThrottleHard: "hard", ThrottleRate: "rate"} {
		if k.String() != name {
			t.Errorf("ThrottleKind(%d) = %q; want %q", k, k.String(), name)
		}
	}
}
