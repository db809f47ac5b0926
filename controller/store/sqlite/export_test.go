package sqlite

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestTransitionsByVerdict pages through interleaved transitions of
// several verdicts (and of a campaign whose name extends kp's) and checks
// that every page size yields kp's unfolded transitions in the window, by
// verdict then time, each once.
func TestTransitionsByVerdict(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	vids := []string{"kp/network/net1", "kp/scope/KP", "kp/network/net0"}
	var all []*vantagev1.Transition
	for n := range int64(12) {
		for _, id := range vids {
			all = append(all, ftr(id, n, fUp, fDown))
		}
		other := ftr("kp2/scope/KP", n, fUp, fDown)
		other.Campaign = "kp2"
		all = append(all, other)
	}
	all = append(all, unstableSince("kp/scope/KP", 12, 10)) // folds rounds 10 and 11 of kp/scope/KP
	if err := db.AddTransitions(ctx, all); err != nil {
		t.Fatal(err)
	}
	from, to := t0.Add(20*time.Second), t0.Add(120*time.Second) // detected in rounds 1..10
	var want []int64
	for _, id := range slices.Sorted(slices.Values(vids)) {
		for _, tr := range all {
			d := tr.GetDetectedAt().AsTime()
			if tr.GetVerdictId() == id && tr.GetFoldedInto() == 0 && !d.Before(from) && d.Before(to) {
				want = append(want, tr.GetId())
			}
		}
	}
	for _, limit := range []int{1, 4, 1000} {
		t.Run(fmt.Sprintf("pages of %d", limit), func(t *testing.T) {
			q := store.VerdictPageQuery{Campaign: "kp", From: from, To: to, Limit: limit}
			var got []int64
			for range 1000 {
				page, err := db.TransitionsByVerdict(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				got = append(got, ids(page)...)
				last := page[len(page)-1]
				q.AfterVerdictID, q.AfterDetectedAt, q.AfterID = last.GetVerdictId(), last.GetDetectedAt().AsTime(), last.GetId()
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
		})
	}
}
