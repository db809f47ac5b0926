package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/vantage-net/vantage/deploy/lab"
	"github.com/vantage-net/vantage/internal/bgpwords"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Phase is one act of the story: a fault (or its repair) applied to the lab,
// then held for a number of rounds.
type Phase struct {
	Name string
	// Expect is the scope state this phase should produce; unspecified means
	// no single expectation (instability may or may not show).
	Expect vantagev1.State
	Rounds int
	Apply  func(*lab.Lab) error
}

// Story2014 replays North Korea's December 2014 outage: a steady network, a
// period of instability, a full blackout, partial restoration (two of four
// networks) and full restoration.
func Story2014() []Phase {
	return []Phase{
		{Name: "steady", Expect: vantagev1.State_STATE_REACHABLE, Rounds: 4,
			Apply: func(*lab.Lab) error { return nil }},
		{Name: "instability: 40% loss at the upstream", Rounds: 5,
			Apply: func(l *lab.Lab) error { return l.Loss("upstream", 40) }},
		{Name: "blackout: all routes withdrawn at the upstream", Expect: vantagev1.State_STATE_UNREACHABLE, Rounds: 6,
			Apply: func(l *lab.Lab) error {
				if err := l.Loss("upstream", 0); err != nil {
					return err
				}
				return l.Blackout()
			}},
		{Name: "partial restoration: net0 and net1 back", Expect: vantagev1.State_STATE_DEGRADED, Rounds: 5,
			Apply: func(l *lab.Lab) error { return l.Restore("net0", "net1") }},
		{Name: "full restoration", Expect: vantagev1.State_STATE_REACHABLE, Rounds: 4,
			Apply: func(l *lab.Lab) error { return l.Restore() }},
	}
}

// Story2014BGP is the 2014 story told in BGP (the lab in BGP mode, BIRD
// in every router): instability is announce/withdraw flapping of net0 and
// net1 at unicom (AS64501), the blackout both upstreams withdrawing every
// prefix of the country, partial restoration unicom announcing again (net0
// and net1 back, satgate's net2 and net3 still withdrawn) and full
// restoration satgate too. Each step is a real BGP event the collector
// sees, so the timeline's causes name the withdrawing AS.
func Story2014BGP(round time.Duration) []Phase {
	var flap flapper
	return []Phase{
		{Name: "steady", Expect: vantagev1.State_STATE_REACHABLE, Rounds: 4,
			Apply: func(*lab.Lab) error { return nil }},
		{Name: "instability: unicom flaps net0 and net1 in BGP", Expect: vantagev1.State_STATE_UNSTABLE, Rounds: 8,
			Apply: func(l *lab.Lab) error { return flap.start(l, 2*round, "upstream", "net0", "net1") }},
		{Name: "blackout: both upstreams withdraw every route", Expect: vantagev1.State_STATE_UNREACHABLE, Rounds: 8,
			Apply: func(l *lab.Lab) error {
				if err := flap.stop(); err != nil {
					return err
				}
				return errors.Join(l.BGPWithdraw("upstream"), l.BGPWithdraw("upstream-b"))
			}},
		{Name: "partial restoration: unicom announces net0 and net1 again", Expect: vantagev1.State_STATE_DEGRADED, Rounds: 6,
			Apply: func(l *lab.Lab) error { return l.BGPAnnounce("upstream") }},
		{Name: "full restoration: satgate announces net2 and net3", Expect: vantagev1.State_STATE_REACHABLE, Rounds: 5,
			Apply: func(l *lab.Lab) error { return l.BGPAnnounce("upstream-b") }},
	}
}

// flapper runs one lab.BGPFlap in a goroutine it owns, until stop.
type flapper struct {
	cancel context.CancelFunc
	done   chan error
}

func (f *flapper) start(l *lab.Lab, period time.Duration, router string, networks ...string) error {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() { f.done <- l.BGPFlap(ctx, period, router, networks...) }()
	return nil
}

// stop ends the flapping (the routes are announced again) and waits for it.
func (f *flapper) stop() error {
	if f.cancel == nil {
		return nil
	}
	f.cancel()
	err := <-f.done
	f.cancel = nil
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// PhaseRecord is what happened when a phase was applied.
type PhaseRecord struct {
	Phase     Phase
	AppliedAt time.Time
	// Detected is the first scope transition into Phase.Expect at or after
	// AppliedAt, if any.
	Detected *vantagev1.Transition
}

// Latency is the time from the fault to the controller's decision.
func (r PhaseRecord) Latency() time.Duration {
	if r.Detected == nil {
		return 0
	}
	return r.Detected.GetDetectedAt().AsTime().Sub(r.AppliedAt)
}

// Play applies each phase and waits its rounds. progress, if not nil, gets
// one line per phase.
func (h *Harness) Play(ctx context.Context, phases []Phase, round time.Duration, progress io.Writer) ([]PhaseRecord, error) {
	var records []PhaseRecord
	for _, p := range phases {
		if err := p.Apply(h.Lab); err != nil {
			return records, fmt.Errorf("phase %q: %w", p.Name, err)
		}
		rec := PhaseRecord{Phase: p, AppliedAt: time.Now()}
		records = append(records, rec)
		if progress != nil {
			fmt.Fprintf(progress, "%s  phase: %s (%d rounds)\n", rec.AppliedAt.Format("15:04:05.0"), p.Name, p.Rounds)
		}
		select {
		case <-ctx.Done():
			return records, ctx.Err()
		case <-time.After(time.Duration(p.Rounds) * round):
		}
	}
	return records, nil
}

// MatchDetections fills in, for each phase with an expectation, the first
// scope transition into the expected state after the phase began and before
// the next phase began.
func MatchDetections(records []PhaseRecord, timeline []*vantagev1.Transition) {
	for i := range records {
		want := records[i].Phase.Expect
		if want == vantagev1.State_STATE_UNSPECIFIED {
			continue
		}
		end := time.Time{}
		if i+1 < len(records) {
			end = records[i+1].AppliedAt
		}
		for _, tr := range timeline {
			if tr.GetLevel() != vantagev1.Level_LEVEL_SCOPE || tr.GetTo() != want || tr.GetFrom() == tr.GetTo() {
				continue
			}
			at := tr.GetDetectedAt().AsTime()
			if at.Before(records[i].AppliedAt) || (!end.IsZero() && !at.Before(end)) {
				continue
			}
			records[i].Detected = tr
			break
		}
		// A state that already held when the phase began needs no detection
		// (e.g. the first steady phase): use the latest earlier transition.
		if records[i].Detected == nil && i == 0 {
			for _, tr := range timeline {
				if tr.GetLevel() == vantagev1.Level_LEVEL_SCOPE && tr.GetTo() == want {
					records[i].Detected = tr
					break
				}
			}
		}
	}
}

// Timeline fetches the stored transitions of a campaign, oldest first.
func (h *Harness) Timeline(ctx context.Context, campaign string) ([]*vantagev1.Transition, error) {
	resp, err := h.Operator.GetTimeline(h.ctx(ctx), &vantagev1.GetTimelineRequest{Campaign: campaign, Limit: 10000})
	if err != nil {
		return nil, fmt.Errorf("get timeline: %w", err)
	}
	tl := resp.GetTransitions()
	sort.SliceStable(tl, func(i, j int) bool { return tl[i].GetId() < tl[j].GetId() })
	return tl, nil
}

// WaitVerdict polls until the verdict with id satisfies ok, or ctx ends.
func (h *Harness) WaitVerdict(ctx context.Context, campaign, id string, ok func(*vantagev1.Verdict) bool) (*vantagev1.Verdict, error) {
	var last *vantagev1.Verdict
	for {
		resp, err := h.Operator.GetVerdicts(h.ctx(ctx), &vantagev1.GetVerdictsRequest{Campaign: campaign})
		if err == nil {
			for _, v := range resp.GetVerdicts() {
				if v.GetId() == id {
					last = v
					if ok(v) {
						return v, nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("verdict %s: condition not met (last: %s): %w", id, describe(last), ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func describe(v *vantagev1.Verdict) string {
	if v == nil {
		return "none"
	}
	return fmt.Sprintf("%s up=%v down=%v", shortState(v.GetState()), v.GetUpChildren(), v.GetDownChildren())
}

// shortState turns STATE_UNREACHABLE into UNREACHABLE.
func shortState(s vantagev1.State) string {
	return strings.TrimPrefix(s.String(), "STATE_")
}

// WriteTimeline prints the scope and network transitions relative to t0,
// each with its cause and, with a BGP collector, the routing evidence
// beside it (the finding, then one line per withdrawn prefix).
func WriteTimeline(w io.Writer, t0 time.Time, timeline []*vantagev1.Transition) {
	fmt.Fprintf(w, "%-7s %-8s %-8s %-25s %-17s %-15s %-14s %-22s %s\n", "T+", "LEVEL", "SUBJECT", "TRANSITION", "ONSET WINDOW (T+)", "LOCATION", "CAUSE", "BGP", "DOWN")
	for _, tr := range timeline {
		if tr.GetLevel() == vantagev1.Level_LEVEL_TARGET {
			continue
		}
		rel := func(t time.Time) string { return fmt.Sprintf("%.1fs", t.Sub(t0).Seconds()) }
		onset := rel(tr.GetOnsetEarliest().AsTime()) + ".." + rel(tr.GetOnsetLatest().AsTime())
		fmt.Fprintf(w, "%-7s %-8s %-8s %-25s %-17s %-15s %-14s %-22s %s\n",
			rel(tr.GetDetectedAt().AsTime()),
			strings.TrimPrefix(tr.GetLevel().String(), "LEVEL_"),
			tr.GetSubject(),
			change(tr),
			onset,
			strings.TrimPrefix(tr.GetLocation().String(), "LOCATION_"),
			causeWords(tr.GetCause()),
			bgpwords.Finding(tr.GetCause().GetBgp()),
			strings.Join(tr.GetDownChildren(), ","))
		if tr.GetLevel() == vantagev1.Level_LEVEL_SCOPE {
			for _, line := range tr.GetCause().GetBgp().GetSummary() {
				if !strings.Contains(line, " announced by ") {
					fmt.Fprintf(w, "%-7s   bgp: %s\n", "", line)
				}
			}
		}
	}
}

// causeWords is "upstream 0.90", "" without a cause.
func causeWords(c *vantagev1.CauseFinding) string {
	if c.GetCause() == vantagev1.Cause_CAUSE_UNSPECIFIED {
		return "-"
	}
	name := strings.ToLower(strings.TrimPrefix(c.GetCause().String(), "CAUSE_"))
	if c.GetCause() == vantagev1.Cause_CAUSE_UNDETERMINED {
		return name
	}
	return fmt.Sprintf("%s %.2f", name, c.GetConfidence())
}

// WriteDetections prints, per phase, how long detection took in seconds and
// in rounds.
func WriteDetections(w io.Writer, records []PhaseRecord, round time.Duration) {
	for _, r := range records {
		if r.Phase.Expect == vantagev1.State_STATE_UNSPECIFIED {
			continue
		}
		if r.Detected == nil {
			fmt.Fprintf(w, "  %-48s expected %-11s NOT DETECTED\n", r.Phase.Name, shortState(r.Phase.Expect))
			continue
		}
		lat := r.Latency()
		if lat < 0 {
			lat = 0
		}
		fmt.Fprintf(w, "  %-48s %-11s after %5.1fs = %.2f rounds\n", r.Phase.Name, shortState(r.Phase.Expect),
			lat.Seconds(), lat.Seconds()/round.Seconds())
	}
}

// change is a transition's state change; from == to is a location
// refinement (traces moved the location while the state held).
func change(tr *vantagev1.Transition) string {
	if tr.GetFrom() == tr.GetTo() {
		return shortState(tr.GetTo()) + " located"
	}
	return shortState(tr.GetFrom()) + "->" + shortState(tr.GetTo())
}
