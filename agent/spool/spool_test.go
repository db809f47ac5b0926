package spool

import (
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func fill(t *testing.T, m *Memory, from, to uint64) {
	t.Helper()
	for s := from; s <= to; s++ {
		if err := m.Append(&vantagev1.ProbeResult{Seq: s, TaskId: "x"}); err != nil {
			t.Fatalf("Append(%d): %v", s, err)
		}
	}
}

func seqs(rs []*vantagev1.ProbeResult) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.GetSeq())
	}
	return out
}

func TestMemory(t *testing.T) {
	tests := []struct {
		name      string
		capacity  int
		appendTo  uint64
		ack       uint64
		after     uint64
		max       int
		wantFirst uint64
		wantLen   int
		wantGaps  [][2]uint64
		pending   uint64
	}{
		{"read all", 10, 5, 0, 0, 100, 1, 5, nil, 5},
		{"read after cursor", 10, 5, 0, 3, 100, 4, 2, nil, 5},
		{"max caps a batch", 10, 8, 0, 0, 3, 1, 3, nil, 8},
		{"ack trims", 10, 8, 5, 0, 100, 6, 3, nil, 3},
		{"full drops oldest as one gap", 4, 7, 0, 0, 100, 4, 4, [][2]uint64{{1, 3}}, 4},
		{"ack past gap clears it", 4, 7, 5, 0, 100, 6, 2, nil, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemory(7, tc.capacity)
			fill(t, m, 1, tc.appendTo)
			m.Ack(tc.ack)
			rs, gaps := m.Read(tc.after, tc.max)
			if len(rs) != tc.wantLen || (tc.wantLen > 0 && rs[0].GetSeq() != tc.wantFirst) {
				t.Fatalf("Read = %v, want %d results from %d", seqs(rs), tc.wantLen, tc.wantFirst)
			}
			for i := 1; i < len(rs); i++ {
				if rs[i].GetSeq() != rs[i-1].GetSeq()+1 {
					t.Fatalf("Read not contiguous: %v", seqs(rs))
				}
			}
			if len(gaps) != len(tc.wantGaps) {
				t.Fatalf("gaps = %v, want %v", gaps, tc.wantGaps)
			}
			for i, g := range gaps {
				if g.GetFirstSeq() != tc.wantGaps[i][0] || g.GetLastSeq() != tc.wantGaps[i][1] || g.GetEpoch() != 7 || g.GetReason() == "" {
					t.Fatalf("gap %d = %v, want %v", i, g, tc.wantGaps[i])
				}
			}
			if st := m.State(); st.GetPendingResults() != tc.pending {
				t.Fatalf("pending = %d, want %d", st.GetPendingResults(), tc.pending)
			}
		})
	}
}

func TestAppendOutOfOrder(t *testing.T) {
	m := NewMemory(1, 4)
	if err := m.Append(&vantagev1.ProbeResult{Seq: 2}); err == nil {
		t.Fatal("Append of seq 2 first: want an error")
	}
}
