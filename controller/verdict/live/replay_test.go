package live

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func transitionKeys(ts []*vantagev1.Transition) []string {
	var out []string
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%s %s>%s r%d [%s %s] %s", t.GetVerdictId(), t.GetFrom(), t.GetTo(), t.GetRound(),
			t.GetOnsetEarliest().AsTime().Format(time.RFC3339Nano), t.GetOnsetLatest().AsTime().Format(time.RFC3339Nano), t.GetLocation()))
	}
	return out
}

// TestReplay runs campaign a live (two vantages; the second silent in
// rounds 10-14, a blackout in rounds 20-22), then replays the stored
// results: with the same parameters the timeline is the live one; with
// quorum 2 it differs; bad parameters name the parameter; the live
// timeline is untouched.
func TestReplay(t *testing.T) {
	ctx := context.Background()
	w, db, clk := setup(t)
	db.PutCampaign(ctx, "a", specA, start, store.AuditEntry{})
	if err := reload(ctx, w); err != nil {
		t.Fatal(err)
	}
	sp := specOf(t, w, "a")
	agents := []string{"agt-00000000000000a1", "agt-00000000000000a2"}
	for _, id := range agents {
		fixture.ActiveAgent(t, db, id, map[string]string{"provider": id}, start)
	}
	for _, id := range agents {
		w.SetAgentConnected(id, map[string]string{"provider": id}, true, start)
	}
	seq := map[string]uint64{}
	const rounds = 30
	for round := int64(0); round < rounds; round++ {
		roundStart := start.Add(time.Duration(round) * sp.Round())
		for ai, id := range agents {
			if ai == 1 && round >= 10 && round < 15 {
				continue
			}
			var rs []*vantagev1.ProbeResult
			for ti, tg := range sp.Targets() {
				seq[id]++
				out, att := vantagev1.Outcome_OUTCOME_REPLY, uint32(1)
				if round >= 20 && round < 23 {
					out, att = vantagev1.Outcome_OUTCOME_TIMEOUT, 3
				}
				rs = append(rs, &vantagev1.ProbeResult{Seq: seq[id], Campaign: "a", Target: tg.Addr.String(), Round: round,
					Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, SentAt: timestamppb.New(roundStart.Add(time.Second + time.Duration(10*ai+ti)*time.Millisecond)),
					Outcome: out, Attempts: att, TaskId: "a/icmp/" + tg.Addr.String()})
			}
			deliver(t, w, db, id, rs)
		}
		closeRound(t, w, clk, sp, roundStart)
	}
	live, err := db.Timeline(ctx, store.TimelineQuery{Campaign: "a"})
	if err != nil {
		t.Fatal(err)
	}
	end := start.Add(rounds * sp.Round())
	got, err := w.Replay(ctx, "a", start, end, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := transitionKeys(live), transitionKeys(got); !slices.Equal(a, b) {
		t.Fatalf("replay differs from live:\nlive   %q\nreplay %q", a, b)
	}
	if !slices.ContainsFunc(got, func(tr *vantagev1.Transition) bool { return tr.GetTo() == vantagev1.State_STATE_UNREACHABLE }) {
		t.Fatalf("no blackout in %q", transitionKeys(got))
	}
	q2, err := w.Replay(ctx, "a", start, end, map[string]string{"quorum": "2"})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(transitionKeys(q2), transitionKeys(got)) ||
		!slices.ContainsFunc(q2, func(tr *vantagev1.Transition) bool { return tr.GetTo() == vantagev1.State_STATE_UNKNOWN }) {
		t.Errorf("quorum 2 gave no UNKNOWN: %q", transitionKeys(q2))
	}
	for _, c := range []struct {
		name     string
		from, to time.Time
		params   map[string]string
		want     string
	}{
		{"bad quorum", start, end, map[string]string{"quorum": "x"}, `params["quorum"]`},
		{"unknown param", start, end, map[string]string{"speed": "1"}, `params["speed"]: unknown parameter`},
		{"inverted window", end, start, nil, "to: "},
		{"no from", time.Time{}, end, nil, "from: required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := w.Replay(ctx, "a", c.from, c.to, c.params)
			if !errors.Is(err, ErrReplay) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Replay err %v, want ErrReplay naming %q", err, c.want)
			}
		})
	}
	if _, err := w.Replay(ctx, "nope", start, end, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown campaign: %v", err)
	}
	after, _ := db.Timeline(ctx, store.TimelineQuery{Campaign: "a"})
	if len(after) != len(live) {
		t.Errorf("replay changed the live timeline: %d -> %d transitions", len(live), len(after))
	}
	if h := w.HealthyVantages("a"); !slices.Equal(h, agents) {
		t.Errorf("HealthyVantages = %v", h)
	}
}
