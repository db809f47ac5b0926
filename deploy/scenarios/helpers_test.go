package scenarios

// Helpers the scenario tests share: starting their lab, and the suite's
// reads of verdicts and transitions, waits and the closing table.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/vantage-net/vantage/deploy/demo"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// readSpec reads a campaign file.
func readSpec(t *testing.T, path string) []byte {
	t.Helper()
	spec, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// startLab starts the demo harness (lab, controller, three agents) under
// prefix, in a fresh work directory, and closes it at cleanup, printing
// tailBytes of each log when the test failed.
func startLab(t *testing.T, ctx context.Context, prefix string, logger *slog.Logger, tailBytes int) *demo.Harness {
	t.Helper()
	h, err := demo.Start(ctx, demo.Config{BinDir: binDir, Prefix: prefix, WorkDir: t.TempDir(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	demo.CloseAtCleanup(t, h, tailBytes)
	return h
}

func (s *suite) authed() context.Context { return s.h.Authed(s.ctx) }

// atBoundary waits until 150ms before the next round boundary at least
// 300ms away, applies fault, and returns the boundary (the start of the
// first fully affected round).
func (s *suite) atBoundary(t *testing.T, what string, fault func() error) time.Time {
	t.Helper()
	now := time.Now()
	n := now.Sub(s.start)/s.round + 1
	b := s.start.Add(n * s.round)
	if b.Sub(now) < 300*time.Millisecond {
		b = b.Add(s.round)
	}
	time.Sleep(time.Until(b.Add(-150 * time.Millisecond)))
	if err := fault(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return b
}

func (s *suite) scope(t *testing.T) *vantagev1.Verdict {
	t.Helper()
	resp, err := s.h.Operator.GetVerdicts(s.authed(), &vantagev1.GetVerdictsRequest{Campaign: s.name, Level: vantagev1.Level_LEVEL_SCOPE})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range resp.GetVerdicts() {
		if v.GetId() == s.scopeID {
			return v
		}
	}
	t.Fatalf("no scope verdict %s", s.scopeID)
	return nil
}

func (s *suite) verdicts(t *testing.T, level vantagev1.Level) []*vantagev1.Verdict {
	t.Helper()
	resp, err := s.h.Operator.GetVerdicts(s.authed(), &vantagev1.GetVerdictsRequest{Campaign: s.name, Level: level})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetVerdicts()
}

// waitScope polls the scope verdict until ok, for at most rounds rounds.
func (s *suite) waitScope(t *testing.T, rounds int, what string, ok func(*vantagev1.Verdict) bool) *vantagev1.Verdict {
	t.Helper()
	wctx, cancel := context.WithTimeout(s.ctx, time.Duration(rounds)*s.round)
	defer cancel()
	v, err := s.h.WaitVerdict(wctx, s.name, s.scopeID, ok)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func state(v *vantagev1.Verdict, want vantagev1.State) bool { return v.GetState() == want }

// waitClean waits for the scope REACHABLE with all three vantages healthy
// and every network REACHABLE, then one more round so the next scenario
// starts from a settled engine.
func (s *suite) waitClean(t *testing.T, rounds int) {
	t.Helper()
	s.waitScope(t, rounds, "lab back to clean (scope REACHABLE, 3 healthy vantages, all networks up)", func(v *vantagev1.Verdict) bool {
		if v.GetState() != vantagev1.State_STATE_REACHABLE || v.GetHealthyVantages() != 3 {
			return false
		}
		resp, err := s.h.Operator.GetVerdicts(s.authed(), &vantagev1.GetVerdictsRequest{Campaign: s.name, Level: vantagev1.Level_LEVEL_NETWORK})
		if err != nil {
			return false
		}
		for _, n := range resp.GetVerdicts() {
			if n.GetState() != vantagev1.State_STATE_REACHABLE {
				return false
			}
		}
		return len(resp.GetVerdicts()) == 4
	})
	time.Sleep(s.round)
}

// transitions returns the campaign's transitions at level (UNSPECIFIED: all)
// detected in [from, to) (zero to: no end).
func (s *suite) transitions(t *testing.T, level vantagev1.Level, from, to time.Time) []*vantagev1.Transition {
	t.Helper()
	tl, err := s.h.Timeline(s.ctx, s.name)
	if err != nil {
		t.Fatal(err)
	}
	var out []*vantagev1.Transition
	for _, tr := range tl {
		at := tr.GetDetectedAt().AsTime()
		if (level == vantagev1.Level_LEVEL_UNSPECIFIED || tr.GetLevel() == level) && !at.Before(from) && (to.IsZero() || at.Before(to)) &&
			tr.GetFrom() != tr.GetTo() {
			out = append(out, tr)
		}
	}
	return out
}

// firstTo is the first scope transition into want detected at or after from.
func (s *suite) firstTo(t *testing.T, from time.Time, want vantagev1.State) *vantagev1.Transition {
	t.Helper()
	for _, tr := range s.transitions(t, vantagev1.Level_LEVEL_SCOPE, from, time.Time{}) {
		if tr.GetTo() == want {
			return tr
		}
	}
	t.Fatalf("no scope transition to %s after %s", short(want), from.Format(time.TimeOnly))
	return nil
}

// latency measures a detection: wall-clock from the boundary, and how many
// affected rounds had closed (end + grace) by then.
func (s *suite) latency(boundary time.Time, tr *vantagev1.Transition) (time.Duration, int) {
	lat := tr.GetDetectedAt().AsTime().Sub(boundary)
	closed := int((lat - s.grace) / s.round)
	return lat, max(closed, 0)
}

func (s *suite) rounds(d time.Duration) string {
	return fmt.Sprintf("%.2f", d.Seconds()/s.round.Seconds())
}

func short(st vantagev1.State) string { return strings.TrimPrefix(st.String(), "STATE_") }

func loc(l vantagev1.Location) string { return strings.TrimPrefix(l.String(), "LOCATION_") }

func describeTransitions(ts []*vantagev1.Transition) string {
	var b strings.Builder
	for i, tr := range ts {
		if i == 40 {
			fmt.Fprintf(&b, "\n  ... %d more", len(ts)-i)
			break
		}
		fmt.Fprintf(&b, "\n  %s %s %s -> %s (round %d, %s)", tr.GetDetectedAt().AsTime().Format("15:04:05.000"),
			tr.GetVerdictId(), short(tr.GetFrom()), short(tr.GetTo()), tr.GetRound(), loc(tr.GetLocation()))
		if tr.GetTo() == vantagev1.State_STATE_UNKNOWN && len(tr.GetNotes()) > 0 {
			fmt.Fprintf(&b, " notes %q", tr.GetNotes())
		}
	}
	return b.String()
}

func (s *suite) printTable(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.results) == 0 {
		return
	}
	fmt.Fprintf(w, "\nscenario results (round %s, grace %s; latency = fault to stored transition; closed = affected rounds closed by then)\n", s.round, s.grace)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tWANT\tGOT\tLOCATION\tCAUSE\tLATENCY\tROUNDS\tCLOSED\tPASS\tNOTE")
	for _, r := range s.results {
		lat, rr, cl := "-", "-", "-"
		if r.hasLatency {
			lat, rr, cl = r.latency.Round(10*time.Millisecond).String(), s.rounds(r.latency), fmt.Sprint(r.closed)
		}
		cause := r.cause
		if cause == "" {
			cause = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\n", r.scenario, r.want, r.got, r.location, cause, lat, rr, cl, r.pass, r.note)
	}
	tw.Flush()
}

// nftIn runs an nft script inside a lab node.
func (s *suite) nftIn(t *testing.T, node, script string) string {
	t.Helper()
	cmd := s.h.Lab.Command(s.ctx, node, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft in %s: %v\n%s\n%s", node, err, out, script)
	}
	return string(out)
}
