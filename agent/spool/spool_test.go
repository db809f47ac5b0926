package spool

import (
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func fill(t *testing.T, s Store, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		if err := s.Append(&vantagev1.ProbeResult{Seq: seq, TaskId: "x", Target: "192.0.2.1"}); err != nil {
			t.Fatalf("Append(%d): %v", seq, err)
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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemory(7, tc.capacity)
			fill(t, m, 1, tc.appendTo)
			if tc.ack > 0 {
				if err := m.Ack(Key{7, tc.ack}, nil); err != nil {
					t.Fatal(err)
				}
			}
			after := Key{}
			if tc.after > 0 {
				after = Key{7, tc.after}
			}
			b, err := m.Read(after, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			rs, gaps := b.Results, b.Gaps
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

func TestMemoryAckGap(t *testing.T) {
	m := NewMemory(7, 4)
	fill(t, m, 1, 7)
	b, _ := m.Read(Key{}, 100)
	if err := m.Ack(b.End(), b.Gaps); err != nil {
		t.Fatal(err)
	}
	if b, _ := m.Read(Key{}, 100); len(b.Results) != 0 || len(b.Gaps) != 0 {
		t.Fatalf("after ack: %d results, %d gaps, want none", len(b.Results), len(b.Gaps))
	}
}

func TestAppendOutOfOrder(t *testing.T) {
	m := NewMemory(1, 4)
	if err := m.Append(&vantagev1.ProbeResult{Seq: 2}); err == nil {
		t.Fatal("Append of seq 2 first: want an error")
	}
}
