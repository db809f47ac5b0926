package scenarios

// The outage scenarios' shared steps: apply a fault at a round boundary,
// wait for the scope's verdict, wait for the traces to place it, and read
// what was published (state, every location the timeline gave the episode,
// the cause) and how fast.

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// outageWant is what an outage scenario expects of the scope.
type outageWant struct {
	state vantagev1.State
	// loc: the final location (unspecified: any location traces give).
	loc vantagev1.Location
	// cause: the final cause (unspecified: not checked).
	cause     vantagev1.Cause
	maxClosed int
}

// outageSeen is what the scope's verdict and timeline said.
type outageSeen struct {
	b      time.Time // the boundary the fault was applied at
	v      *vantagev1.Verdict
	tr     *vantagev1.Transition // the first transition into want.state
	locs   []vantagev1.Location  // published for the episode, in order: tr's, then refinements
	lat    time.Duration
	closed int
}

// final is the location the timeline gives the episode now.
func (o outageSeen) final() vantagev1.Location { return o.locs[len(o.locs)-1] }

// firstLocated is the first location published for the episode that is
// not LOCATING (LOCATING says no location yet; it claims nothing).
func (o outageSeen) firstLocated() vantagev1.Location {
	for _, l := range o.locs {
		if l != vantagev1.Location_LOCATION_LOCATING {
			return l
		}
	}
	return vantagev1.Location_LOCATION_LOCATING
}

// trail is the episode's published locations, e.g. "LOCATING>UPSTREAM".
func (o outageSeen) trail() string {
	parts := make([]string, len(o.locs))
	for i, l := range o.locs {
		parts[i] = loc(l)
	}
	return strings.Join(parts, ">")
}

func causeName(c vantagev1.Cause) string { return strings.TrimPrefix(c.String(), "CAUSE_") }

// observeOutage applies fault at a boundary, waits up to 10 rounds for the
// scope to reach want.state, then up to five more for the traces to place
// it (the verdict traced at want.loc, the timeline refined to the same, and
// the cause want.cause), and returns what it saw. It asserts nothing.
func (s *suite) observeOutage(t *testing.T, name string, fault func() error, want outageWant) outageSeen {
	t.Helper()
	o := outageSeen{b: s.atBoundary(t, name, fault)}
	s.waitScope(t, 10, name+": scope "+short(want.state), func(v *vantagev1.Verdict) bool { return state(v, want.state) })
	o.tr = s.firstTo(t, o.b.Add(-s.round), want.state)
	o.lat, o.closed = s.latency(o.b, o.tr)
	for deadline := time.Now().Add(5 * s.round); ; time.Sleep(s.round / 4) {
		o.v, o.locs = s.scope(t), s.publishedLocations(t, o.tr)
		placed := o.v.GetLastResponsiveHop() != "" && o.v.GetLocation() != vantagev1.Location_LOCATION_LOCATING &&
			o.final() == o.v.GetLocation()
		if (placed && (want.loc == vantagev1.Location_LOCATION_UNSPECIFIED || o.v.GetLocation() == want.loc) &&
			(want.cause == vantagev1.Cause_CAUSE_UNSPECIFIED || o.v.GetCause().GetCause() == want.cause)) || time.Now().After(deadline) {
			return o
		}
	}
}

// outage is observeOutage, recorded in the table and asserted: the state
// within want.maxClosed closed rounds, the first published location the
// final one or LOCATING (never a wrong one refined later), the final
// location and cause as wanted.
func (s *suite) outage(t *testing.T, name string, fault func() error, want outageWant) outageSeen {
	t.Helper()
	o := s.observeOutage(t, name, fault, want)
	v := o.v
	wantLoc := "any location"
	if want.loc != vantagev1.Location_LOCATION_UNSPECIFIED {
		wantLoc = loc(want.loc)
	}
	var problems []string
	if o.closed > want.maxClosed {
		problems = append(problems, fmt.Sprintf("detected after %d closed rounds (%s), want <= %d", o.closed, o.lat, want.maxClosed))
	}
	if !state(v, want.state) {
		problems = append(problems, fmt.Sprintf("scope %s, want %s", short(v.GetState()), short(want.state)))
	}
	if first := o.locs[0]; first != o.final() && first != vantagev1.Location_LOCATION_LOCATING {
		problems = append(problems, fmt.Sprintf("published at %s and refined to %s later (want the final location or LOCATING first)", loc(first), loc(o.final())))
	}
	if want.loc != vantagev1.Location_LOCATION_UNSPECIFIED && (v.GetLocation() != want.loc || o.final() != want.loc) {
		problems = append(problems, fmt.Sprintf("location %s (timeline %s), want %s", loc(v.GetLocation()), o.trail(), loc(want.loc)))
	}
	if o.final() == vantagev1.Location_LOCATION_LOCATING {
		problems = append(problems, "still LOCATING: no traces placed it")
	}
	if want.cause != vantagev1.Cause_CAUSE_UNSPECIFIED && v.GetCause().GetCause() != want.cause {
		problems = append(problems, fmt.Sprintf("cause %s, want %s (evidence %q)", causeName(v.GetCause().GetCause()), causeName(want.cause), v.GetCause().GetEvidence()))
	}
	wantText := fmt.Sprintf("%s at %s, <= %d rounds", short(want.state), wantLoc, want.maxClosed)
	if want.cause != vantagev1.Cause_CAUSE_UNSPECIFIED {
		wantText += ", cause " + causeName(want.cause)
	}
	s.record(result{scenario: name, want: wantText, got: short(v.GetState()), location: loc(v.GetLocation()),
		cause:      fmt.Sprintf("%s %.2f", causeName(v.GetCause().GetCause()), v.GetCause().GetConfidence()),
		hasLatency: true, latency: o.lat, closed: o.closed, pass: len(problems) == 0,
		note: fmt.Sprintf("published %s, router %s, onset ±%s", o.trail(), hopName(v),
			o.tr.GetOnsetLatest().AsTime().Sub(o.tr.GetOnsetEarliest().AsTime()).Round(time.Millisecond))})
	t.Logf("%s: %s after %s (%s rounds, %d closed), location %s (published %s), last responsive hop %q, notes %q",
		name, short(v.GetState()), o.lat.Round(time.Millisecond), s.rounds(o.lat), o.closed, loc(v.GetLocation()), o.trail(), v.GetLastResponsiveHop(), v.GetNotes())
	t.Logf("%s: %s", name, causeLog(v, o.tr))
	for _, p := range problems {
		t.Errorf("%s: %s", name, p)
	}
	return o
}

// hopName is the router the verdict's location names: "name (address,
// role)", or "-".
func hopName(v *vantagev1.Verdict) string {
	h := v.GetLocationHop()
	if h.GetAddress() == "" {
		return "-"
	}
	return fmt.Sprintf("%s (%s, %s)", h.GetName(), h.GetAddress(), strings.TrimPrefix(h.GetRole().String(), "TARGET_ROLE_"))
}

// causeLog is the verdict's cause, router and upstream views, and the
// first transition's cause, for the log.
func causeLog(v *vantagev1.Verdict, tr *vantagev1.Transition) string {
	var ups []string
	for _, u := range v.GetUpstreams() {
		ups = append(ups, fmt.Sprintf("%s dead=%v up=%v down=%v", u.GetName(), u.GetDead(), u.GetNetworksUp(), u.GetNetworksDown()))
	}
	return fmt.Sprintf("cause %s (confidence %.2f; first transition: %s), router %s, upstreams %v, evidence %q",
		causeName(v.GetCause().GetCause()), v.GetCause().GetConfidence(), causeName(tr.GetCause().GetCause()), hopName(v), ups, v.GetCause().GetEvidence())
}

// publishedLocations is every location the timeline gave the scope's
// episode that began with tr: tr's own, then each refinement (a timeline
// entry with from == to, published when traces moved the location).
func (s *suite) publishedLocations(t *testing.T, tr *vantagev1.Transition) []vantagev1.Location {
	t.Helper()
	tl, err := s.h.Timeline(s.ctx, s.name)
	if err != nil {
		t.Fatal(err)
	}
	locs := []vantagev1.Location{tr.GetLocation()}
	for _, x := range tl {
		if x.GetId() <= tr.GetId() || x.GetVerdictId() != tr.GetVerdictId() {
			continue
		}
		if x.GetFrom() != x.GetTo() || x.GetTo() != tr.GetTo() {
			break // the episode's state changed: later refinements are another's
		}
		locs = append(locs, x.GetLocation())
	}
	return locs
}

// restoration repairs at a boundary and expects REACHABLE within maxClosed.
func (s *suite) restoration(t *testing.T, name string, repair func() error, maxClosed int) {
	t.Helper()
	b := s.atBoundary(t, name, repair)
	s.waitScope(t, 10, name+": scope REACHABLE", func(v *vantagev1.Verdict) bool { return state(v, vantagev1.State_STATE_REACHABLE) })
	tr := s.firstTo(t, b.Add(-s.round), vantagev1.State_STATE_REACHABLE)
	lat, closed := s.latency(b, tr)
	s.record(result{scenario: name, want: fmt.Sprintf("REACHABLE, <= %d round", maxClosed), got: short(tr.GetTo()),
		location: loc(tr.GetLocation()), hasLatency: true, latency: lat, closed: closed, pass: closed <= maxClosed})
	t.Logf("%s: detected after %s (%s rounds, %d closed)", name, lat.Round(time.Millisecond), s.rounds(lat), closed)
	if closed > maxClosed {
		t.Errorf("%s: detected after %d closed rounds (%s), want <= %d", name, closed, lat, maxClosed)
	}
}

// upstreamView is the scope's view of one named upstream.
func upstreamView(v *vantagev1.Verdict, name string) *vantagev1.UpstreamView {
	i := slices.IndexFunc(v.GetUpstreams(), func(u *vantagev1.UpstreamView) bool { return u.GetName() == name })
	if i < 0 {
		return nil
	}
	return v.GetUpstreams()[i]
}
