package verdict

import (
	"strings"
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	locUpstream = vantagev1.Location_LOCATION_UPSTREAM
	locTarget   = vantagev1.Location_LOCATION_TARGET_NETWORK
	locPath     = vantagev1.Location_LOCATION_PATH_SPECIFIC
	locVantage  = vantagev1.Location_LOCATION_VANTAGE
	locTransit  = vantagev1.Location_LOCATION_TRANSIT

	causeUndetermined = vantagev1.Cause_CAUSE_UNDETERMINED
	causeSelf         = vantagev1.Cause_CAUSE_SELF
	causeUpstream     = vantagev1.Cause_CAUSE_UPSTREAM
	causeFailure      = vantagev1.Cause_CAUSE_FAILURE
	causeAttack       = vantagev1.Cause_CAUSE_ATTACK_OR_CONGESTION
)

// outage is an UNREACHABLE episode after calm rounds: traced, one upstream
// and one border, both answering, no quality series.
func outage(loc vantagev1.Location, edit func(*CauseEvidence)) CauseEvidence {
	ev := CauseEvidence{State: unreachable, Location: loc, Traced: true, UpstreamsUp: 1, Upstreams: 1, BordersUp: 1, Borders: 1,
		Onset: 20, Known: CauseHistoryRounds}
	if edit != nil {
		edit(&ev)
	}
	return ev
}

// rise is n rounds in which loss and RTT rose at lossUp / rttUp of
// vantages vantages.
func rise(n, vantages, lossUp, rttUp int) []QualityRound {
	out := []QualityRound{{Round: 10, Vantages: vantages}} // a calm round first
	for i := range n {
		out = append(out, QualityRound{Round: int64(11 + i), Vantages: vantages, LossUp: lossUp, RTTUp: rttUp})
	}
	return out
}

type causeCase struct {
	name   string
	ev     CauseEvidence
	want   vantagev1.Cause
	reason string // a substring of the last evidence line
}

func runCauses(t *testing.T, cases []causeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := Cause(c.ev)
			ev := f.GetEvidence()
			if f.GetCause() != c.want || len(ev) == 0 || !strings.Contains(ev[len(ev)-1], c.reason) {
				t.Fatalf("cause %s (confidence %.2f), evidence %q; want %s with %q", f.GetCause(), f.GetConfidence(), ev, c.want, c.reason)
			}
			switch {
			case c.want == causeUndetermined && f.GetConfidence() != 0:
				t.Errorf("UNDETERMINED with confidence %.2f, want 0", f.GetConfidence())
			case c.want != causeUndetermined && (f.GetConfidence() < 0.5 || f.GetConfidence() > 1):
				t.Errorf("confidence %.2f outside [0.5, 1]", f.GetConfidence())
			}
		})
	}
}

func TestCauseUpstream(t *testing.T) {
	runCauses(t, []causeCase{
		{"paths die before the answering upstream, border answers", outage(locUpstream, nil), causeUpstream, "upstream: the paths die"},
		{"no border target: still upstream, lower confidence", outage(locUpstream, func(ev *CauseEvidence) { ev.BordersUp, ev.Borders = 0, 0 }),
			causeUpstream, "upstream:"},
		{"multi-homed: one upstream's paths die while it answers, the other carries", outage(locPath, func(ev *CauseEvidence) {
			ev.State = degraded
			ev.Upstreams, ev.UpstreamsUp = 2, 2
			ev.Views = []UpstreamState{{Name: "unicom", Dead: true, Answers: true}, {Name: "rostelecom"}}
		}), causeUpstream, "upstream:"},
		// Borderline: must not be UPSTREAM.
		{"upstream silent too", outage(locUpstream, func(ev *CauseEvidence) { ev.UpstreamsUp, ev.BordersUp, ev.Borders = 0, 0, 0 }),
			causeUndetermined, "the upstream is silent too"},
		{"no traces yet", outage(locUpstream, func(ev *CauseEvidence) { ev.Traced = false }),
			causeUndetermined, "no traces place the outage yet"},
		{"multi-homed, the dead upstream is silent itself", outage(locPath, func(ev *CauseEvidence) {
			ev.Views = []UpstreamState{{Name: "unicom", Dead: true}, {Name: "rostelecom"}}
		}), causeUndetermined, "no one upstream's paths all die"},
		{"multi-homed, both upstreams' paths die", outage(locPath, func(ev *CauseEvidence) {
			ev.Views = []UpstreamState{{Name: "unicom", Dead: true, Answers: true}, {Name: "rostelecom", Dead: true, Answers: true}}
		}), causeUndetermined, "no one upstream's paths all die"},
	})
}

func TestCauseSelf(t *testing.T) {
	runCauses(t, []causeCase{
		{"paths pass the upstream, the border answers, hosts do not", outage(locTarget, nil), causeSelf, "self: the country's border answers"},
		{"a degraded network inside", outage(locTarget, func(ev *CauseEvidence) { ev.State = degraded }), causeSelf, "self:"},
		// Borderline: must not be SELF.
		{"no border target to tell self from failure", outage(locTarget, func(ev *CauseEvidence) { ev.Borders, ev.BordersUp = 0, 0 }),
			causeUndetermined, "no border target to tell SELF from FAILURE"},
		{"border answers, but no traces", outage(locTarget, func(ev *CauseEvidence) { ev.Traced = false }),
			causeUndetermined, "no traces place the outage yet, and the border answers"},
		{"only vantages' own paths fail", outage(locVantage, nil), causeUndetermined, "only vantages' own paths fail"},
		{"transit", outage(locTransit, nil), causeUndetermined, "location TRANSIT does not separate"},
	})
}

func TestCauseFailure(t *testing.T) {
	silent := func(loc vantagev1.Location, edit func(*CauseEvidence)) CauseEvidence {
		return outage(loc, func(ev *CauseEvidence) {
			ev.BordersUp = 0
			if edit != nil {
				edit(ev)
			}
		})
	}
	runCauses(t, []causeCase{
		{"abrupt, the border stops answering, paths die at the upstream", silent(locUpstream, nil), causeFailure, "failure: an abrupt loss"},
		{"abrupt, paths die past the upstream", silent(locTarget, nil), causeFailure, "failure:"},
		{"abrupt, no traces yet (the border's own silence)", silent(locUpstream, func(ev *CauseEvidence) { ev.Traced = false }), causeFailure, "failure:"},
		{"two of three rounds known is enough", silent(locTarget, func(ev *CauseEvidence) { ev.Known = causeMinKnown }), causeFailure, "failure:"},
		{"UNREACHABLE two rounds after a partial first round", silent(locTarget, func(ev *CauseEvidence) { ev.Escalation = CauseMaxEscalation }), causeFailure, "failure:"},
		// Borderline: must be UNDETERMINED.
		{"degraded before the border went silent", silent(locTarget, func(ev *CauseEvidence) { ev.Degraded = 1 }),
			causeUndetermined, "after a degradation"},
		{"silent three rounds into the episode: a decline", silent(locTarget, func(ev *CauseEvidence) { ev.Escalation = CauseMaxEscalation + 1 }),
			causeUndetermined, "a decline, not the abrupt loss"},
		{"too little history to call it abrupt", silent(locTarget, func(ev *CauseEvidence) { ev.Known = causeMinKnown - 1 }),
			causeUndetermined, "abruptness unknown"},
		{"a vantage problem, not the border", silent(locVantage, nil), causeUndetermined, "only vantages' own paths fail"},
		{"no border target at all", outage(locTarget, func(ev *CauseEvidence) { ev.Borders, ev.BordersUp, ev.UpstreamsUp = 0, 0, 0 }),
			causeUndetermined, "no border target"},
	})
}

func TestCauseAttackOrCongestion(t *testing.T) {
	silentAfter := func(q []QualityRound) CauseEvidence {
		return outage(locTarget, func(ev *CauseEvidence) { ev.BordersUp, ev.Degraded, ev.Quality = 0, 2, q })
	}
	runCauses(t, []causeCase{
		{"loss and RTT rose at 3 of 3 vantages for 3 rounds, then the border died", silentAfter(rise(3, 3, 3, 3)), causeAttack, "attack or congestion"},
		{"rose at 2 of 4 vantages (half) for 4 rounds", silentAfter(rise(4, 4, 2, 3)), causeAttack, "in 4 rounds"},
		{"during the outage, the border still answering", outage(locTarget, func(ev *CauseEvidence) { ev.Quality = rise(3, 3, 3, 3) }), causeAttack, "attack"},
		// Borderline: must not be ATTACK_OR_CONGESTION.
		{"only two rounds of rise", silentAfter(rise(2, 3, 3, 3)), causeUndetermined, "after a degradation"},
		{"loss rose, RTT did not", silentAfter(rise(4, 3, 3, 0)), causeUndetermined, "after a degradation"},
		{"one vantage only", silentAfter(rise(4, 3, 1, 1)), causeUndetermined, "after a degradation"},
		{"a minority of vantages", silentAfter(rise(4, 6, 2, 2)), causeUndetermined, "after a degradation"},
		{"rise, but the paths die at an answering upstream", outage(locUpstream, func(ev *CauseEvidence) { ev.Quality = rise(3, 3, 3, 3) }),
			causeUndetermined, "congestion at the upstream or its withdrawal"},
	})
}

// TestCauseEvidenceWords: the evidence names what the rules read.
func TestCauseEvidenceWords(t *testing.T) {
	ev := outage(locUpstream, func(ev *CauseEvidence) {
		ev.Hop = &vantagev1.Router{Address: "198.51.100.42", Role: vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, Name: "unicom"}
		ev.Views = []UpstreamState{{Name: "unicom", Dead: true, Answers: true}}
	})
	got := strings.Join(Cause(ev).GetEvidence(), "; ")
	for _, want := range []string{"location UPSTREAM (from traces)", "paths die at upstream unicom (198.51.100.42)",
		"upstream targets answering: 1 of 1", "border targets answering: 1 of 1", "upstream unicom answers, but the paths through it die",
		"before the onset (round 20): 3 of 3 rounds known, 0 DEGRADED", "no loss/RTT series"} {
		if !strings.Contains(got, want) {
			t.Errorf("evidence %q lacks %q", got, want)
		}
	}
}
