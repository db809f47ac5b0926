package campaign

import (
	"maps"
	"slices"
	"strings"
)

// CheckQuorum refuses a campaign whose quorum no set of vantages could
// reach: selectable is the labels of every enrolled, active agent. With
// fewer matching agents than vantages.quorum, every verdict would be
// UNKNOWN forever, so the apply fails with an error naming the field
// instead of storing a campaign that can only ever say "don't know".
// (Agents enrolled later can make it valid: apply it again then.)
func (s *Spec) CheckQuorum(selectable []map[string]string) error {
	n := 0
	for _, l := range selectable {
		if s.SelectsAgent(l) {
			n++
		}
	}
	if int64(n) >= s.vantages.quorum {
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
	return fieldErr("vantages.quorum", "%d is more than the %d enrolled active agent(s) matching %s; every verdict would be UNKNOWN",
		s.vantages.quorum, n, sel)
}
