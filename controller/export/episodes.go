package export

import (
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// severity orders the states an episode can reach (the dashboard's
// order: controller/web cuts its episodes with Cutter too).
var severity = map[vantagev1.State]int{vantagev1.State_STATE_UNKNOWN: 1, vantagev1.State_STATE_DEGRADED: 2,
	vantagev1.State_STATE_UNSTABLE: 3, vantagev1.State_STATE_UNREACHABLE: 4}

// Cut is an episode with the place of its last transition: the cursor
// after it.
type Cut struct {
	Episode *vantagev1.Episode
	Last    TransitionPlace
}

// Cutter cuts transitions into episodes, one verdict at a time: fed a
// stream of transitions grouped by verdict and oldest first within one
// (store.VerdictPageQuery's order), it holds at most the episode under
// way. An episode starts when the subject becomes DEGRADED, UNSTABLE or
// UNREACHABLE and ends when it is REACHABLE again; UNKNOWN (too few
// vantages) starts none, and inside one it neither ends it nor makes it
// worse. An episode still open at the verdict's last transition is cut
// there, with no end.
type Cutter struct {
	cur  *vantagev1.Episode
	vid  string
	last TransitionPlace
}

func place(tr *vantagev1.Transition) TransitionPlace {
	return TransitionPlace{VerdictID: tr.GetVerdictId(), DetectedAt: tr.GetDetectedAt().AsTime(), ID: tr.GetId()}
}

// Add takes the next transition and returns the episodes it completed
// (at most two: the previous verdict's open one, and none or one of
// this verdict's).
func (c *Cutter) Add(tr *vantagev1.Transition) []Cut {
	var out []Cut
	if tr.GetVerdictId() != c.vid {
		out = c.Flush()
		c.vid = tr.GetVerdictId()
	}
	c.last = place(tr)
	to := tr.GetTo()
	if to == vantagev1.State_STATE_REACHABLE || to == vantagev1.State_STATE_UNSPECIFIED {
		if c.cur != nil {
			c.cur.EndEarliest, c.cur.EndLatest = tr.GetOnsetEarliest(), tr.GetOnsetLatest()
			c.cur.LastTransitionId = tr.GetId()
			c.cur.Transitions++
			out = append(out, Cut{Episode: c.cur, Last: c.last})
			c.cur = nil
		}
		return out
	}
	if c.cur == nil && severity[to] < severity[vantagev1.State_STATE_DEGRADED] {
		return out
	}
	if c.cur == nil {
		c.cur = &vantagev1.Episode{Campaign: tr.GetCampaign(), Level: tr.GetLevel(), Subject: tr.GetSubject(), VerdictId: tr.GetVerdictId(),
			StartEarliest: tr.GetOnsetEarliest(), StartLatest: tr.GetOnsetLatest(), FirstTransitionId: tr.GetId()}
	}
	c.cur.LastTransitionId = tr.GetId()
	c.cur.Transitions++
	if severity[to] > severity[c.cur.GetState()] {
		c.cur.State = to
	}
	if l := tr.GetLocation(); l != vantagev1.Location_LOCATION_UNSPECIFIED {
		c.cur.Location = l
	}
	if h := tr.GetLocationHop(); h.GetAddress() != "" {
		c.cur.Upstream = h
	}
	if cf := tr.GetCause(); cf.GetCause() != vantagev1.Cause_CAUSE_UNSPECIFIED {
		c.cur.Cause = cf
	}
	return out
}

// Flush returns the episode under way (open: no end), if any, cut at the
// verdict's last transition so far.
func (c *Cutter) Flush() []Cut {
	if c.cur == nil {
		return nil
	}
	out := []Cut{{Episode: c.cur, Last: c.last}}
	c.cur = nil
	return out
}

// Episodes cuts one verdict's transitions (oldest first) into episodes.
func Episodes(ts []*vantagev1.Transition) []*vantagev1.Episode {
	var c Cutter
	var out []*vantagev1.Episode
	for _, tr := range ts {
		for _, cut := range c.Add(tr) {
			out = append(out, cut.Episode)
		}
	}
	for _, cut := range c.Flush() {
		out = append(out, cut.Episode)
	}
	return out
}
