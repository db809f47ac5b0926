package verdict

import (
	"fmt"
	"slices"
)

// gate applies vantage-health gating to the counted vantages and returns
// the healthy ones.
func (e *Engine) gate(counted []*agent) []*agent {
	// Nearly everything down while most others see little down (raw
	// results of the vantage's latest round).
	withHosts, mostlyUp := 0, 0
	for _, a := range counted {
		if v := a.view; v.hostSeen > 0 {
			withHosts++
			if 2*(v.hostSeen-v.hostUp) < v.hostSeen {
				mostlyUp++
			}
		}
	}
	// Control targets: a control is dead (and ignored) when no counted
	// vantage sees it up.
	alive := make([]bool, len(e.controls))
	for ci, t := range e.controls {
		for _, a := range counted {
			if e.view(a, t) == viewUp {
				alive[ci] = true
				break
			}
		}
	}
	healthy := make([]*agent, 0, len(counted))
	for _, a := range counted {
		v := a.view
		down := v.hostSeen - v.hostUp
		if v.hostSeen > 0 && 10*down >= 9*v.hostSeen && 2*mostlyUp > withHosts-1 {
			a.status = stUnhealthy
			a.reason = fmt.Sprintf("sees nearly everything down while others don't (%d of %d hosts down; %d of %d other vantages see < 50%% down)",
				down, v.hostSeen, mostlyUp, withHosts-1)
			continue
		}
		viewed, failed := 0, 0
		for ci, t := range e.controls {
			switch e.view(a, t) {
			case viewUp:
				viewed++
			case viewDown:
				if alive[ci] {
					viewed++
					failed++
				}
			}
		}
		if failed > 0 && 2*failed >= viewed {
			a.status = stUnhealthy
			a.reason = fmt.Sprintf("control targets fail (%d of %d down while other vantages reach them)", failed, viewed)
			continue
		}
		healthy = append(healthy, a)
	}
	return healthy
}

// countGroups is the number of distinct quorum groups among as.
func countGroups(as []*agent) int {
	gs := make([]string, len(as))
	for i, a := range as {
		gs[i] = a.group
	}
	slices.Sort(gs)
	return len(slices.Compact(gs))
}
