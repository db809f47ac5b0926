package scenarios

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/verdict"
	"github.com/vantage-net/vantage/controller/verdict/live"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestSteadySimulated is the ten-minute half of the steady scenario: 300
// rounds of 2s (campaign.yaml) fed to the verdict engine exactly as the
// controller configures it (live.ConfigFor), with three vantages of which
// vantage-a loses 20% of its packets. Every packet is an independent 20%
// draw: an ICMP probe (an echo, and one adaptive retry when it is lost)
// misses with p = 0.04, a TCP connect (one SYN inside its 500ms timeout)
// with p = 0.2, so vantage-a misses a target in a round with p = 0.008. No verdict may change after the
// first evaluation. The random source is seeded, so a failure reproduces.
func TestSteadySimulated(t *testing.T) {
	const (
		rounds = 300 // 10 minutes of 2s rounds
		loss   = 0.20
	)
	data, err := os.ReadFile("campaign.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := campaign.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	cfg := live.ConfigFor(spec, 0, live.DefaultFreshRounds)
	eng, err := verdict.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	round := spec.Round()
	grace := live.GraceFor(round)
	t0 := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	first := int64(t0.Sub(spec.Start()) / round)
	agents := []string{"agt-vantage-a", "agt-vantage-b", "agt-vantage-c"}
	for _, a := range agents {
		// Distinct providers, as in the lab (quorum counts distinct groups).
		eng.SetAgentLabels(a, map[string]string{"role": "vps", "provider": "lab-" + a[len(a)-1:]})
		eng.SetAgentConnected(a, true, t0)
	}
	rng := rand.New(rand.NewPCG(2014, 12))
	drop := func(agent string) bool { return agent == agents[0] && rng.Float64() < loss }

	var later []*vantagev1.Transition
	misses, initial := 0, 0
	for i := range int64(rounds) {
		n := first + i
		rs := spec.Start().Add(time.Duration(n) * round)
		for _, a := range agents {
			for _, tg := range spec.Targets() {
				sent := rs.Add(time.Duration(rng.Int64N(int64(spec.Jitter()))))
				// One echo, and one adaptive retry only if it was lost.
				icmp, attempts := vantagev1.Outcome_OUTCOME_REPLY, uint32(1)
				if drop(a) {
					attempts = 2
					if drop(a) {
						icmp = vantagev1.Outcome_OUTCOME_TIMEOUT
					}
				}
				tcp := vantagev1.Outcome_OUTCOME_TCP_SYNACK
				if tg.Role != vantagev1.TargetRole_TARGET_ROLE_HOST {
					tcp = vantagev1.Outcome_OUTCOME_TCP_RST // routers run no service on :80
				}
				if drop(a) {
					tcp = vantagev1.Outcome_OUTCOME_TIMEOUT
				}
				if icmp != vantagev1.Outcome_OUTCOME_REPLY && tcp == vantagev1.Outcome_OUTCOME_TIMEOUT {
					misses++
				}
				addr := tg.Addr.String()
				eng.Observe(verdict.Observation{Agent: a, Target: addr, Round: n, SentAt: sent,
					Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Outcome: icmp, RTT: time.Millisecond, Attempts: attempts})
				eng.Observe(verdict.Observation{Agent: a, Target: addr, Round: n, SentAt: sent.Add(time.Millisecond),
					Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Outcome: tcp, RTT: time.Millisecond, Attempts: 1})
			}
		}
		for _, tr := range eng.Evaluate(rs.Add(round + grace)) {
			if tr.GetFrom() == vantagev1.State_STATE_UNSPECIFIED {
				initial++
				continue
			}
			later = append(later, tr)
		}
	}
	line := fmt.Sprintf("steady (simulated, %d rounds = %s, vantage-a %.0f%% loss): %d transitions after the first evaluation; vantage-a missed %d target-rounds",
		rounds, time.Duration(rounds)*round, loss*100, len(later), misses)
	fmt.Println(line)
	t.Log(line)
	if initial == 0 {
		t.Fatal("the engine produced no verdicts at all")
	}
	if misses == 0 {
		t.Fatal("the simulated loss never made vantage-a miss a target: the scenario tested nothing")
	}
	if len(later) != 0 {
		t.Errorf("steady with one lossy vantage: %d transitions, want 0:%s", len(later), describeTransitions(later))
	}
}
