package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/vantage-net/vantage/internal/bgpwords"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// sortedVerdicts orders verdicts by campaign, then scope before network
// before target, then subject, without touching the caller's slice.
func sortedVerdicts(vs []*vantagev1.Verdict) []*vantagev1.Verdict {
	out := slices.Clone(vs)
	slices.SortStableFunc(out, func(a, b *vantagev1.Verdict) int {
		if c := strings.Compare(a.GetCampaign(), b.GetCampaign()); c != 0 {
			return c
		}
		if c := levelRank(a.GetLevel()) - levelRank(b.GetLevel()); c != 0 {
			return c
		}
		return strings.Compare(a.GetSubject(), b.GetSubject())
	})
	return out
}

var verdictHeader = []string{"LEVEL", "SUBJECT", "STATE", "SINCE", "UP/TOTAL", "VANTAGES", "LOCATION", "NOTES"}

func (p printer) verdictFields(v *vantagev1.Verdict) []string {
	return []string{levelName(v.GetLevel()), v.GetSubject(), stateName(v.GetState()), p.ago(v.GetSince()),
		fraction(v.GetUp(), v.GetTotal()), fraction(v.GetHealthyVantages(), v.GetTotalVantages()),
		locationName(v.GetLocation()), strings.Join(v.GetNotes(), "; ")}
}

// verdicts renders `verdicts`. A CAMPAIGN column leads when the verdicts
// span several campaigns.
func (p printer) verdicts(w io.Writer, vs []*vantagev1.Verdict) error {
	return campaignTable(w, "No verdicts.", sortedVerdicts(vs), (*vantagev1.Verdict).GetCampaign, verdictHeader, p.verdictFields)
}

// verdictLine renders one verdict on one line, for --watch after the first
// table (for instance after a reconnect).
func (p printer) verdictLine(v *vantagev1.Verdict) string {
	f := p.verdictFields(v)
	f[1] = v.GetCampaign() + "/" + f[1]
	return joinCells("verdict", f)
}

// transitionHeader: LATENCY is how long after the first round in the new
// state (onset_latest) the transition was published; the round number
// itself is in -o json.
var transitionHeader = []string{"DETECTED", "LEVEL", "SUBJECT", "CHANGE", "ONSET", "LATENCY", "LOCATION", "CAUSE", "BGP", "CHILDREN"}

func (p printer) transitionFields(t *vantagev1.Transition) []string {
	return []string{p.clock(t.GetDetectedAt()), levelName(t.GetLevel()), t.GetSubject(),
		change(t),
		p.onsetAround(t.GetOnsetEarliest(), t.GetOnsetLatest()), latency(t),
		locationCell(t.GetLocation(), t.GetLocationHop()), causeCell(t.GetCause()), bgpwords.Finding(t.GetCause().GetBgp()),
		children(t.GetUpChildren(), t.GetDownChildren())}
}

// change is a transition's CHANGE cell; from == to is a refinement
// (traces moved the location, or the cause, while the state held).
func change(t *vantagev1.Transition) string {
	why := ""
	switch t.GetReason() {
	case vantagev1.Reason_REASON_LOSS:
		why = " (loss)"
	case vantagev1.Reason_REASON_LATENCY:
		why = " (latency)"
	}
	refined := func(prefix string) bool {
		return t.GetFrom() == t.GetTo() && len(t.GetNotes()) > 0 && strings.HasPrefix(t.GetNotes()[0], prefix)
	}
	switch {
	case refined("cause refined"):
		return stateName(t.GetTo()) + why + " (cause refined)"
	case why != "" && refined("reason refined"):
		return stateName(t.GetTo()) + why + " (reason refined)"
	case t.GetFrom() == t.GetTo():
		return stateName(t.GetTo()) + why + " (location refined)"
	}
	return stateName(t.GetFrom()) + " -> " + stateName(t.GetTo()) + why
}

// timeline renders `timeline`: one aligned line per transition. A CAMPAIGN
// column leads when the transitions span several campaigns. When folded
// transitions are among them (--all), each is marked "(folded into #ID)"
// and each transition into UNSTABLE that folds others is marked with its
// id; the folded view (the default) has no marks.
func (p printer) timeline(w io.Writer, ts []*vantagev1.Transition) error {
	fields := p.transitionFields
	if slices.ContainsFunc(ts, func(t *vantagev1.Transition) bool { return t.GetFoldedInto() != 0 }) {
		fields = func(t *vantagev1.Transition) []string {
			f := p.transitionFields(t)
			f[3] += foldMark(t) // CHANGE
			return f
		}
	}
	return campaignTable(w, "No transitions.", ts, (*vantagev1.Transition).GetCampaign, transitionHeader, fields)
}

// foldMark marks a folded transition, or one that folds others.
func foldMark(t *vantagev1.Transition) string {
	switch {
	case t.GetFoldedInto() != 0:
		return fmt.Sprintf(" (folded into #%d)", t.GetFoldedInto())
	case t.GetFoldsSinceRound() > 0:
		return fmt.Sprintf(" (#%d, folds since round %d)", t.GetId(), t.GetFoldsSinceRound())
	}
	return ""
}

// transitionLine renders one transition as it arrives on --watch.
func (p printer) transitionLine(t *vantagev1.Transition) string {
	f := p.transitionFields(t)
	f[2] = t.GetCampaign() + "/" + f[2]
	return joinCells("", f)
}

// roundCell is explain's round line: the round the verdict covers and when
// it was evaluated, or that it has not been yet (the controller sends round
// -1 for a subject no round has covered).
func (p printer) roundCell(v *vantagev1.Verdict) string {
	if v.GetRound() < 0 || !valid(v.GetEvaluatedAt()) {
		return "not evaluated yet (no round has covered it)"
	}
	return strconv.FormatInt(v.GetRound(), 10) + " (evaluated " + p.at(v.GetEvaluatedAt()) + ")"
}

// latency is a transition's LATENCY cell.
func latency(t *vantagev1.Transition) string {
	if !valid(t.GetDetectedAt()) || !valid(t.GetOnsetLatest()) {
		return "-"
	}
	d := t.GetDetectedAt().AsTime().Sub(t.GetOnsetLatest().AsTime())
	if d < 0 {
		return "-"
	}
	return plusMinus(d)
}

// explain renders `explain`: the verdict, each vantage's view, then the raw
// results behind it.
func (p printer) explain(w io.Writer, r *vantagev1.ExplainResponse) error {
	v := r.GetVerdict()
	since := p.at(v.GetSince())
	if valid(v.GetSince()) {
		since += " (" + p.ago(v.GetSince()) + ")"
	}
	location := locationCell(v.GetLocation(), v.GetLocationHop())
	if v.GetLastResponsiveHop() != "" {
		location += " (last responsive hop " + v.GetLastResponsiveHop() + ")"
	}
	kv := newTable(w)
	kv.row("verdict:", v.GetId())
	kv.row("state:", stateName(v.GetState()))
	kv.row("since:", since)
	kv.row("onset:", p.onset(v.GetOnsetEarliest(), v.GetOnsetLatest()))
	kv.row("round:", p.roundCell(v))
	kv.row("vantages:", fmt.Sprintf("%d/%d healthy, quorum %d", v.GetHealthyVantages(), v.GetTotalVantages(), v.GetQuorum()))
	kv.row("up/total:", fraction(v.GetUp(), v.GetTotal()))
	kv.row("up:", strings.Join(v.GetUpChildren(), ","))
	kv.row("down:", strings.Join(v.GetDownChildren(), ","))
	kv.row("location:", location)
	explainCause(kv, v)
	if v.GetNetwork() != "" {
		kv.row("network:", v.GetNetwork())
	}
	kv.row("notes:", strings.Join(v.GetNotes(), "; "))
	if err := kv.flush(); err != nil {
		return err
	}
	if len(v.GetEvidence()) > 0 {
		if _, err := fmt.Fprintln(w); err != nil {
			return err
		}
		t := newTable(w, "AGENT", "NAME", "HEALTHY", "STATE", "UP", "DOWN", "LAST-ROUND", "LAST-RESULT", "REASON")
		for _, e := range v.GetEvidence() {
			t.row(e.GetAgentId(), e.GetAgentName(), yesNo(e.GetHealthy()), stateName(e.GetState()),
				strconv.FormatUint(uint64(e.GetTargetsUp()), 10), strconv.FormatUint(uint64(e.GetTargetsDown()), 10),
				strconv.FormatInt(e.GetLastRound(), 10), p.ago(e.GetLastResultAt()), e.GetReason())
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	var traces, others []*vantagev1.StoredResult
	for _, res := range r.GetResults() {
		if res.GetResult().GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE {
			traces = append(traces, res)
		} else {
			others = append(others, res)
		}
	}
	if len(traces) > 0 {
		if _, err := fmt.Fprintf(w, "\n%d traces (localisation evidence):\n", len(traces)); err != nil {
			return err
		}
		t := newTable(w, "SENT", "AGENT", "ROUND", "TARGET", "TRIGGER", "PATH")
		for _, s := range traces {
			res := s.GetResult()
			trig := res.GetTriggerId()
			if trig == "" {
				trig = "scheduled"
			}
			t.row(p.clock(res.GetSentAt()), s.GetAgentId(), strconv.FormatInt(res.GetRound(), 10), res.GetTarget(), trig, resultDetail(res))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintf(w, "\n%d results:\n", len(others)); err != nil {
		return err
	}
	if len(others) == 0 {
		return nil
	}
	rt := newTable(w, resultHeader...)
	for _, res := range others {
		rt.row(p.resultFields(res)...)
	}
	return rt.flush()
}
