package verdict

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParamNamesHaveSetters: every name replay --param lists is accepted,
// and nothing is accepted that the list does not name.
func TestParamNamesHaveSetters(t *testing.T) {
	for _, n := range ParamNames {
		if setters[n] == nil {
			t.Errorf("ParamNames lists %q, which WithParams does not accept", n)
		}
	}
	for n := range setters {
		if !slices.Contains(ParamNames, n) {
			t.Errorf("WithParams accepts %q, which ParamNames does not list", n)
		}
	}
}

// TestWithParamsQuality: a replay can try other quality thresholds; bad
// values name the parameter, and values the engine would refuse (a clear
// threshold above the threshold) are refused as NewEngine would.
func TestWithParamsQuality(t *testing.T) {
	cfg, err := WithParams(labConfig(), map[string]string{
		"quality_loss": "0.3", "quality_loss_clear": "0.2", "quality_latency_factor": "3",
		"quality_latency_clear_factor": "2", "quality_latency_min": "50ms", "quality_rounds": "4",
		"quality_clear_rounds": "5", "quality_off": "true",
	})
	q := cfg.Quality
	if err != nil || q.Loss != 0.3 || q.LossClear != 0.2 || q.LatencyFactor != 3 || q.LatencyClearFactor != 2 ||
		q.LatencyMin != 50*time.Millisecond || q.Rounds != 4 || q.ClearRounds != 5 || !q.Off {
		t.Fatalf("WithParams = %+v, %v", q, err)
	}
	for params, want := range map[string]string{
		"quality_loss=1.5":           `params["quality_loss"]: "1.5" is not a number in (0, 1)`,
		"quality_rounds=0":           `params["quality_rounds"]: "0" is not an integer in [1, 100]`,
		"quality_off=maybe":          `params["quality_off"]: "maybe" is not true or false`,
		"quality_latency_min=-1s":    `params["quality_latency_min"]: "-1s" is not a duration in [0, 1m]`,
		"quality_latency_factor=NaN": `params["quality_latency_factor"]: "NaN" is not a number`,
		"quality_loss_clear=0.5":     "Quality.LossClear",
		"quality_latency_factor=1.2,quality_latency_clear_factor=1.5": "Quality.LatencyClearFactor",
	} {
		m := map[string]string{}
		for _, kv := range strings.Split(params, ",") {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		_, err := WithParams(labConfig(), m)
		if !errors.Is(err, ErrParam) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want ErrParam containing %q", params, err, want)
		}
	}
}
