package sqlite

import (
	"context"
	"fmt"
	"testing"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestCommitBatchesGroup commits several agents' batches in one group,
// with a batch repeated inside the group and partial overlaps with what
// is stored, and more results than one multi-row statement carries.
func TestCommitBatchesGroup(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	a, b := "agt-000000000000000a", "agt-000000000000000b"
	enroll(t, db, a)
	enroll(t, db, b)
	if _, err := db.CommitBatchFresh(ctx, a, 1, results(1, 10), nil); err != nil {
		t.Fatal(err)
	}
	group := []store.Batch{
		{AgentID: a, Epoch: 1, Results: results(5, 260)}, // 5..10 stored already
		{AgentID: b, Epoch: 1, Results: results(1, 3), Gaps: []*vantagev1.Gap{{Epoch: 1, FirstSeq: 4, LastSeq: 9, Reason: "spool full"}}},
		{AgentID: b, Epoch: 1, Results: results(1, 3)}, // the same batch again, in the same group
		{AgentID: b, Epoch: 2, Results: results(1, 1)},
	}
	fresh, err := db.CommitBatches(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	count := func(f []bool) (n int) {
		for _, x := range f {
			if x {
				n++
			}
		}
		return n
	}
	tests := []struct {
		name  string
		got   int
		want  int
		first bool // fresh[i][0]
		wantF bool
	}{
		{"a: 256 sent, 6 stored before", count(fresh[0]), 250, fresh[0][0], false},
		{"b epoch 1: new", count(fresh[1]), 3, fresh[1][0], true},
		{"b epoch 1: repeated in the group", count(fresh[2]), 0, fresh[2][0], false},
		{"b epoch 2: new epoch", count(fresh[3]), 1, fresh[3][0], true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want || tc.first != tc.wantF {
				t.Errorf("fresh = %d (first %v), want %d (first %v)", tc.got, tc.first, tc.want, tc.wantF)
			}
		})
	}
	for _, c := range []struct {
		id                 string
		stored, dups, gaps uint64
	}{{a, 260, 6, 0}, {b, 4, 3, 6}} {
		ag, err := db.GetAgent(ctx, c.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(ag.ResultsStored, ag.DuplicatesDropped, ag.Gaps); got != fmt.Sprint(c.stored, c.dups, c.gaps) {
			t.Errorf("%s counters stored/dups/gaps = %s, want %d %d %d", c.id, got, c.stored, c.dups, c.gaps)
		}
	}
	var n int
	if err := db.r.QueryRow(`SELECT coalesce(sum(n), 0) FROM result_chunks`).Scan(&n); err != nil || n != 264 {
		t.Errorf("rows = %d, %v; want 264", n, err)
	}
}
