package campaign

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// CheckQuorum refuses a campaign whose quorum no set of vantages could
// reach: selectable is the labels of every enrolled, active agent. The
// verdict engine counts the quorum in groups of vantages sharing the value
// of groupLabel (verdict.Config.QuorumLabel: agents without it are groups
// of their own; "-" makes every agent its own group), so the check counts
// the same groups. With fewer groups than vantages.quorum, every verdict
// would be UNKNOWN forever, so the apply fails with an error naming the
// field instead of storing a campaign that can only ever say "don't know".
// (Agents enrolled later can make it valid: apply it again then.)
func (s *Spec) CheckQuorum(selectable []map[string]string, groupLabel string) error {
	n := 0
	groups := map[string]bool{}
	for i, l := range selectable {
		if !s.SelectsAgent(l) {
			continue
		}
		n++
		if v := l[groupLabel]; groupLabel != "-" && groupLabel != "" && v != "" {
			groups["label:"+v] = true
		} else {
			groups["agent:"+strconv.Itoa(i)] = true
		}
	}
	if int64(len(groups)) >= s.vantages.quorum {
		return nil
	}
	sel := "any agent"
	if len(s.vantages.selector) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(s.vantages.selector)) {
			kv = append(kv, k+"="+s.vantages.selector[k])
		}
		sel = "vantages.select {" + strings.Join(kv, ", ") + "}"
	}
	if len(groups) == n {
		return fieldErr("vantages.quorum", "%d is more than the %d enrolled active agent(s) matching %s; every verdict would be UNKNOWN",
			s.vantages.quorum, n, sel)
	}
	return fieldErr("vantages.quorum", "%d is more than the %d distinct %q group(s) among the %d enrolled active agent(s) matching %s (the quorum counts agents sharing a %s once); every verdict would be UNKNOWN",
		s.vantages.quorum, len(groups), groupLabel, n, sel, groupLabel)
}
