package campaign

import (
	"errors"
	"testing"
	"time"
)

const qualityBase = `name: q
scope: {country: KP}
targets: {networks: [{name: n, prefix: 198.18.0.0/24, hosts: [198.18.0.1]}]}
probes: [{icmp: {}}]
schedule: {round: 1m}
`

func TestQualityDefaults(t *testing.T) {
	want := Quality{Loss: 0.1, LossClear: 0.05, LatencyFactor: 2, LatencyClearFactor: 1.5,
		LatencyMin: 20 * time.Millisecond, Rounds: 2, ClearRounds: 2}
	if got := mustParse(t, []byte(qualityBase)).Quality(); got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	s := mustParse(t, []byte(qualityBase+`verdict:
  quality: {loss: 0.3, loss_clear: 0.1, latency_factor: 3, latency_clear_factor: 2, latency_min: 50ms, rounds: 3, clear_rounds: 4, off: true}
`))
	want = Quality{Off: true, Loss: 0.3, LossClear: 0.1, LatencyFactor: 3, LatencyClearFactor: 2,
		LatencyMin: 50 * time.Millisecond, Rounds: 3, ClearRounds: 4}
	if got := s.Quality(); got != want {
		t.Errorf("set %+v, want %+v", got, want)
	}
}

func TestQualityBad(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{`verdict: {quality: {loss: 1}}`, "verdict.quality.loss: 1 must be below 1"},
		{`verdict: {quality: {loss: 0}}`, "verdict.quality.loss: 0 is out of range (0, 1]"},
		{`verdict: {quality: {loss: -0.2}}`, "verdict.quality.loss: -0.2 is out of range (0, 1]"},
		{`verdict: {quality: {loss: "much"}}`, "verdict.quality.loss: expected a number, got a string"},
		{`verdict: {quality: {loss: 0.04}}`, "verdict.quality.loss_clear: 0.05 must not exceed loss (0.04)"},
		{`verdict: {quality: {latency_factor: 1}}`, "verdict.quality.latency_factor: 1 must be above 1"},
		{`verdict: {quality: {latency_factor: 1.2}}`, "verdict.quality.latency_clear_factor: 1.5 must not exceed latency_factor (1.2)"},
		{`verdict: {quality: {latency_clear_factor: 0.5}}`, "verdict.quality.latency_clear_factor: 0.5 must be at least 1"},
		{`verdict: {quality: {latency_min: 0s}}`, "verdict.quality.latency_min: 0s is out of range [1ms, 1m0s]"},
		{`verdict: {quality: {rounds: 0}}`, "verdict.quality.rounds: 0 is out of range [1, 100]"},
		{`verdict: {quality: {clear_rounds: 101}}`, "verdict.quality.clear_rounds: 101 is out of range [1, 100]"},
		{`verdict: {quality: {off: "yes"}}`, "verdict.quality.off: expected a boolean (true or false), got a string"},
		{`verdict: {quality: {los: 0.2}}`, "verdict.quality.los: unknown field (known fields: loss, loss_clear, latency_factor, latency_clear_factor, latency_min, rounds, clear_rounds, off)"},
		{`verdict: {qualty: {}}`, "verdict.qualty: unknown field (known fields: quality)"},
		{"verdict: {quality: {loss: 0.2, loss: 0.3}}", "verdict.quality.loss: defined more than once (line 6)"},
	} {
		_, err := Parse([]byte(qualityBase + c.yaml + "\n"))
		if err == nil || err.Error() != c.want || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s:\n got %v\nwant %s", c.yaml, err, c.want)
		}
	}
}
