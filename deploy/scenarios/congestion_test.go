package scenarios

// Congestion at the border (issue 11, ATTACK_OR_CONGESTION): load fills the
// border's links to the networks while their capacity is capped, step by
// step, so loss and RTT rise together at every vantage, as in an attack or
// a flash crowd.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-net/vantage/deploy/lab"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// congestionSteps: one a round. The border's links to the networks are
// capped at 512 kbit/s (tc tbf, lab.LossStep.Capacity) and a lab-internal
// UDP flood (Flood, kbit/s over the four links) fills them more each round:
// measured with burst probes like the agents' (deploy/lab/README.md), p50
// RTT 29-40 ms and 29-47% loss at the first step, 52-76 ms and 49-59% at
// the second, 97-251 ms and 84-92% at the last (0.5 ms, none, clean).
var congestionSteps = []lab.LossStep{
	{Capacity: 512, Flood: 1920},
	{Capacity: 512, Flood: 2048},
	{Capacity: 512, Flood: 2304},
}

// congestion: the steps above, one a round, held at the last. The scope
// must go DEGRADED (loss, latency) or UNREACHABLE with the cause
// ATTACK_OR_CONGESTION once loss and RTT have risen together in 3 rounds.
func (s *suite) congestion(t *testing.T) {
	rctx, cancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	var rampErr error
	b := s.atBoundary(t, "congestion at the border", func() error {
		wg.Go(func() { rampErr = s.h.Lab.RampLoss(rctx, "border", s.round, congestionSteps...) })
		return nil
	})
	stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	const maxRounds = 10
	var found time.Time
	var v *vantagev1.Verdict
	for next := b.Add(s.round / 2); next.Before(b.Add(maxRounds * s.round)); next = next.Add(s.round / 2) {
		time.Sleep(time.Until(next))
		v = s.scope(t)
		t.Logf("congestion %s rounds in: scope %s (%s), cause %s; %s", s.rounds(time.Since(b)), short(v.GetState()),
			strings.TrimPrefix(v.GetReason().String(), "REASON_"), causeName(v.GetCause().GetCause()), trendLine(v))
		if v.GetCause().GetCause() == vantagev1.Cause_CAUSE_ATTACK_OR_CONGESTION {
			found = time.Now()
			break
		}
	}
	stop()
	if rampErr != nil {
		t.Fatalf("ramp: %v", rampErr)
	}
	r := result{scenario: "congestion at the border (capacity capped, flood rising)", want: "cause ATTACK_OR_CONGESTION",
		got: fmt.Sprintf("%s (%s)", short(v.GetState()), strings.TrimPrefix(v.GetReason().String(), "REASON_")), location: loc(v.GetLocation()),
		cause: fmt.Sprintf("%s %.2f", causeName(v.GetCause().GetCause()), v.GetCause().GetConfidence()), pass: !found.IsZero(),
		note: trendLine(v)}
	if !found.IsZero() {
		r.hasLatency, r.latency = true, found.Sub(b)
		r.closed = max(int((r.latency-s.grace)/s.round), 0)
	}
	s.record(r)
	t.Logf("congestion: %s", causeLog(v, &vantagev1.Transition{}))
	if found.IsZero() {
		t.Errorf("congestion for %d rounds: scope %s, cause %s, want ATTACK_OR_CONGESTION (evidence %q)", maxRounds, short(v.GetState()),
			causeName(v.GetCause().GetCause()), v.GetCause().GetEvidence())
	}
	s.waitClean(t, 20)
}

// trendLine is the cause evidence's loss/RTT line, or "-".
func trendLine(v *vantagev1.Verdict) string {
	for _, e := range v.GetCause().GetEvidence() {
		if strings.HasPrefix(e, "loss and RTT") {
			return e
		}
	}
	return "-"
}
