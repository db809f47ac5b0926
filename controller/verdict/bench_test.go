package verdict

import (
	"fmt"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// benchSetup is a campaign of 16 /24s with 256 hosts each (4096 targets)
// and 10 vantages, and one round's worth of observations (40,960).
func benchSetup(b *testing.B) (*Engine, []Observation) {
	b.Helper()
	cfg := Config{Campaign: "bench", Scope: "KP", Start: t0, Round: round, Quorum: 2}
	for n := range 16 {
		cfg.Networks = append(cfg.Networks, fmt.Sprintf("net%d", n))
		for h := range 256 {
			cfg.Targets = append(cfg.Targets, Target{
				Addr: fmt.Sprintf("10.%d.%d.%d", n/256, n%256, h), Network: fmt.Sprintf("net%d", n),
				Role: vantagev1.TargetRole_TARGET_ROLE_HOST,
			})
		}
	}
	e, err := NewEngine(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const agents = 10
	obs := make([]Observation, 0, agents*len(cfg.Targets))
	for ti, tg := range cfg.Targets {
		for a := range agents {
			out := vantagev1.Outcome_OUTCOME_REPLY
			if ti%7 == 0 {
				out = vantagev1.Outcome_OUTCOME_TIMEOUT
			}
			obs = append(obs, Observation{
				Agent: fmt.Sprintf("agt-%016x", a), Target: tg.Addr, SentAt: t0.Add(time.Duration(ti) * time.Microsecond),
				Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Outcome: out,
			})
		}
	}
	return e, obs
}

// feedRound stamps obs with round n (and matching SentAt) and observes them.
func feedRound(e *Engine, obs []Observation, n int64) {
	shift := time.Duration(n) * round
	for i := range obs {
		o := obs[i]
		o.Round = n
		o.SentAt = o.SentAt.Add(shift)
		e.Observe(o)
	}
}

func BenchmarkObserve(b *testing.B) {
	e, obs := benchSetup(b)
	n := int64(0)
	i := 0
	b.ResetTimer()
	for range b.N {
		if i == len(obs) {
			b.StopTimer()
			e.Evaluate(closeAt(n))
			n++
			i = 0
			b.StartTimer()
		}
		o := obs[i]
		o.Round = n
		e.Observe(o)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "obs/s")
	if s := e.Stats(); s.Accepted != uint64(b.N) {
		b.Fatalf("accepted %d of %d", s.Accepted, b.N)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	e, obs := benchSetup(b)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		feedRound(e, obs, int64(i))
		b.StartTimer()
		if len(e.Evaluate(closeAt(int64(i)))) == 0 && i == 0 {
			b.Fatal("no transitions in the first round")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rounds/s")
	b.ReportMetric(float64(b.N*len(obs))/b.Elapsed().Seconds(), "obs/s")
}
