package verdict

import (
	"testing"

	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// LevelVerdicts(level) is Verdicts filtered by level, verdict for verdict
// and in the same order, whatever the engine has seen: nothing yet, a
// network down, a vantage gone stale.
func TestLevelVerdicts(t *testing.T) {
	levels := []vantagev1.Level{vantagev1.Level_LEVEL_UNSPECIFIED, vantagev1.Level_LEVEL_SCOPE,
		vantagev1.Level_LEVEL_NETWORK, vantagev1.Level_LEVEL_TARGET, vantagev1.Level(99)}
	// How many verdicts labConfig has at each level.
	want := map[vantagev1.Level]int{vantagev1.Level_LEVEL_UNSPECIFIED: 23, vantagev1.Level_LEVEL_SCOPE: 1,
		vantagev1.Level_LEVEL_NETWORK: 4, vantagev1.Level_LEVEL_TARGET: 18}
	cfg := labConfig()
	e := newEngine(t, cfg)
	for _, st := range []struct {
		name  string
		steps []step
	}{
		{"before the first round", nil},
		{"all up", steps(0, 2, agents3, allUp)},
		{"net1 down", steps(3, 6, agents3, netsDown("net1"))},
		{"agt-c stale, net1 and net2 down", steps(7, 12, agents3[:2], netsDown("net1", "net2"))},
	} {
		run(t, e, cfg, st.steps)
		all := e.Verdicts()
		for _, lv := range levels {
			t.Run(st.name+"/"+lv.String(), func(t *testing.T) {
				var filtered []*vantagev1.Verdict
				for _, v := range all {
					if lv == vantagev1.Level_LEVEL_UNSPECIFIED || v.GetLevel() == lv {
						filtered = append(filtered, v)
					}
				}
				got := e.LevelVerdicts(lv)
				if len(got) != want[lv] || len(filtered) != want[lv] {
					t.Fatalf("%d verdicts (Verdicts filtered: %d), want %d", len(got), len(filtered), want[lv])
				}
				for i := range got {
					if !proto.Equal(got[i], filtered[i]) {
						t.Errorf("verdict %d: %v\nwant %v", i, got[i], filtered[i])
					}
				}
			})
		}
	}
}
