package verdict

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// published takes every subject's newest transition from a timeline.
func published(trs map[int64][]*vantagev1.Transition) map[string]Published {
	out := map[string]Published{}
	for _, n := range slices.Sorted(maps.Keys(trs)) {
		for _, tr := range trs[n] {
			p := out[tr.GetVerdictId()]
			p.Latest = tr
			if tr.GetFrom() != tr.GetTo() {
				p.Changed = tr
			}
			out[tr.GetVerdictId()] = p
		}
	}
	return out
}

// TestRestoreCarriesOn: an engine that ran rounds 0-9 (net1 down from round
// 5) is replaced by a fresh one restored from its transitions, resuming at
// round 10 and re-fed rounds 2-9. The re-fed rounds publish nothing; the
// restored engine's verdicts have the old states, onsets and since; its
// first transition is a real change, from the restored state, with the
// onset the original engine gives it.
func TestRestoreCarriesOn(t *testing.T) {
	cfg := labConfig()
	orig := newEngine(t, cfg)
	world := func(n int64) world {
		if n >= 5 && n < 12 {
			return netsDown("net1")
		}
		return allUp
	}
	var ss []step
	for n := int64(0); n <= 13; n++ {
		ss = append(ss, step{n, agents3, world(n)})
	}
	before := run(t, orig, cfg, ss[:10])
	pub := published(before)
	net1Orig := mustVerdict(t, orig, "country/network/net1")
	if net1Orig.GetState() != unreachable {
		t.Fatalf("net1 is %s after round 9", net1Orig.GetState())
	}
	later := run(t, orig, cfg, ss[10:])

	e := newEngine(t, cfg)
	if unknown, err := e.Restore(10, pub); err != nil || unknown != 0 {
		t.Fatalf("Restore = %d unknown, %v", unknown, err)
	}
	if v := mustVerdict(t, e, "country/network/net1"); v.GetState() != unreachable {
		t.Fatalf("restored net1 is %s before any round", v.GetState())
	}
	silent := run(t, e, cfg, ss[2:10])
	for n, trs := range silent {
		if len(trs) != 0 {
			t.Errorf("re-fed round %d published %d transitions", n, len(trs))
		}
	}
	v := mustVerdict(t, e, "country/network/net1")
	if v.GetState() != unreachable || !v.GetSince().AsTime().Equal(net1Orig.GetSince().AsTime()) ||
		!v.GetOnsetEarliest().AsTime().Equal(net1Orig.GetOnsetEarliest().AsTime()) || !v.GetOnsetLatest().AsTime().Equal(net1Orig.GetOnsetLatest().AsTime()) {
		t.Errorf("restored net1: %s since %v onset [%v, %v]; original: %s since %v onset [%v, %v]", v.GetState(), v.GetSince().AsTime(),
			v.GetOnsetEarliest().AsTime(), v.GetOnsetLatest().AsTime(), net1Orig.GetState(), net1Orig.GetSince().AsTime(),
			net1Orig.GetOnsetEarliest().AsTime(), net1Orig.GetOnsetLatest().AsTime())
	}
	after := run(t, e, cfg, ss[10:])
	for n := int64(10); n <= 13; n++ {
		if got, want := summarize(after[n]), summarize(later[n]); got != want {
			t.Errorf("round %d: restored engine published\n%s\nthe original\n%s", n, got, want)
		}
	}
	rec := transitionsOf(after[12], "country/network/net1")
	if len(rec) != 1 || rec[0].GetFrom() != unreachable || rec[0].GetTo() != reachable {
		t.Errorf("net1's recovery after the restore: %v", rec)
	}
}

func summarize(trs []*vantagev1.Transition) string {
	s := ""
	for _, tr := range trs {
		s += tr.GetVerdictId() + " " + tr.GetFrom().String() + "->" + tr.GetTo().String() + " " +
			tr.GetOnsetEarliest().AsTime().String() + " " + tr.GetOnsetLatest().AsTime().String() + "\n"
	}
	return s
}

func TestRestoreErrors(t *testing.T) {
	cfg := labConfig()
	e := newEngine(t, cfg)
	feed(e, cfg, 0, agents3, allUp)
	if _, err := e.Restore(1, nil); !errors.Is(err, ErrRestore) {
		t.Errorf("Restore after Observe = %v; want ErrRestore", err)
	}
	e = newEngine(t, cfg)
	if _, err := e.Restore(-1, nil); !errors.Is(err, ErrRestore) {
		t.Errorf("Restore(-1) = %v; want ErrRestore", err)
	}
	tr := &vantagev1.Transition{VerdictId: "country/target/203.0.113.1", To: reachable, OnsetLatest: timestamppb.New(t0)}
	unknown, err := e.Restore(3, map[string]Published{"country/target/203.0.113.1": {Latest: tr}})
	if err != nil || unknown != 1 {
		t.Errorf("Restore of an id the campaign no longer has = %d unknown, %v; want 1, nil", unknown, err)
	}
	if e.Resume() != 3 {
		t.Errorf("Resume = %d, want 3", e.Resume())
	}
}
