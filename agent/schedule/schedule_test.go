package schedule

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/agent/guard"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// fakeProber answers every probe at once; the scheduler is under test.
type fakeProber struct{}

func (fakeProber) Probe(_ context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	return &vantagev1.ProbeResult{Target: t.GetTarget(), Kind: t.GetKind(), Outcome: vantagev1.Outcome_OUTCOME_REPLY}
}

type sink struct {
	mu      sync.Mutex
	results []*vantagev1.ProbeResult
	status  []*vantagev1.TaskStatus
}

func (s *sink) emit(r *vantagev1.ProbeResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results = append(s.results, r)
}

func (s *sink) stat(st *vantagev1.TaskStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = append(s.status, st)
}

func (s *sink) byTask(id string) []*vantagev1.ProbeResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*vantagev1.ProbeResult
	for _, r := range s.results {
		if r.GetTaskId() == id {
			out = append(out, r)
		}
	}
	return out
}

func newTestScheduler(t *testing.T, allowSpecial bool) (*Scheduler, *sink, func()) {
	t.Helper()
	out := &sink{}
	s := New(Config{
		Prober: fakeProber{},
		Guard:  guard.New(guard.Config{AllowSpecialRanges: allowSpecial, MinRoundMs: 10}),
		Emit:   out.emit, Status: out.stat,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	return s, out, func() { cancel(); <-done }
}

func icmpTask(id string, start time.Time, roundMs, jitterMs, every uint32) *vantagev1.Task {
	return &vantagev1.Task{
		Id: id, Campaign: "c", Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: "127.0.0.1",
		RoundMs: roundMs, JitterMs: jitterMs, EveryRounds: every, ScheduleStart: timestamppb.New(start),
	}
}

// checkRounds verifies rounds are distinct, increasing, multiples of every,
// and that each result was sent inside its round.
func checkRounds(t *testing.T, rs []*vantagev1.ProbeResult, start time.Time, round time.Duration, every int64) {
	t.Helper()
	last := int64(-1)
	for _, r := range rs {
		n := r.GetRound()
		if n <= last {
			t.Fatalf("round %d after round %d", n, last)
		}
		if n%every != 0 {
			t.Fatalf("round %d is not a multiple of every_rounds %d", n, every)
		}
		if got := RoundAt(start, round, r.GetSentAt().AsTime()); got != n {
			t.Fatalf("result of round %d sent in round %d", n, got)
		}
		if r.GetCampaign() != "c" || r.GetTaskId() == "" {
			t.Fatalf("result not stamped: %v", r)
		}
		last = n
	}
}

func TestRounds(t *testing.T) {
	tests := []struct {
		name     string
		every    uint32
		minCount int
	}{
		{"every round", 1, 4},
		{"every 3 rounds", 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, out, stop := newTestScheduler(t, true)
			start := time.Now().Add(-time.Second)
			round := 50 * time.Millisecond
			err := s.Apply(context.Background(), &vantagev1.Assignment{Version: 1, Tasks: []*vantagev1.Task{icmpTask("c/icmp/127.0.0.1", start, 50, 20, tc.every)}})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			time.Sleep(400 * time.Millisecond)
			stop()
			rs := out.byTask("c/icmp/127.0.0.1")
			if len(rs) < tc.minCount {
				t.Fatalf("%d results in 8 rounds, want at least %d", len(rs), tc.minCount)
			}
			checkRounds(t, rs, start, round, int64(tc.every))
		})
	}
}

func TestReplaceAndExpire(t *testing.T) {
	s, out, stop := newTestScheduler(t, true)
	defer stop()
	start := time.Now()
	a := icmpTask("a", start, 40, 10, 1)
	b := icmpTask("b", start, 40, 10, 1)
	ctx := context.Background()
	if err := s.Apply(ctx, &vantagev1.Assignment{Version: 1, Tasks: []*vantagev1.Task{a, b}}); err != nil {
		t.Fatalf("Apply v1: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	cExp := icmpTask("c", start, 40, 10, 1)
	cExp.ExpiresAt = timestamppb.New(time.Now().Add(150 * time.Millisecond))
	if err := s.Apply(ctx, &vantagev1.Assignment{Version: 2, Tasks: []*vantagev1.Task{a, cExp}}); err != nil {
		t.Fatalf("Apply v2: %v", err)
	}
	nb := len(out.byTask("b"))
	if err := s.Apply(ctx, &vantagev1.Assignment{Version: 2}); !errors.Is(err, guard.ErrStale) {
		t.Fatalf("Apply of a replayed version = %v, want ErrStale", err)
	}
	time.Sleep(400 * time.Millisecond)
	if got := len(out.byTask("b")); got != nb {
		t.Fatalf("removed task b ran %d more times", got-nb)
	}
	nc := len(out.byTask("c"))
	if nc == 0 || nc > 6 {
		t.Fatalf("task c expiring after 150ms ran %d times in 40ms rounds", nc)
	}
	// a was unchanged: it kept running without repeating a round.
	checkRounds(t, out.byTask("a"), start, 40*time.Millisecond, 1)
	time.Sleep(100 * time.Millisecond)
	if got := len(out.byTask("c")); got != nc {
		t.Fatalf("expired task c still runs")
	}
}

func TestAssignmentExpiryStopsAll(t *testing.T) {
	s, out, stop := newTestScheduler(t, true)
	defer stop()
	a := icmpTask("a", time.Now(), 20, 0, 1)
	err := s.Apply(context.Background(), &vantagev1.Assignment{Version: 1, ExpiresAt: timestamppb.New(time.Now().Add(100 * time.Millisecond)), Tasks: []*vantagev1.Task{a}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	time.Sleep(250 * time.Millisecond)
	n := len(out.byTask("a"))
	time.Sleep(100 * time.Millisecond)
	if n == 0 || len(out.byTask("a")) != n {
		t.Fatalf("results before/after expiry: %d/%d, want >0 and no more", n, len(out.byTask("a")))
	}
}

func TestRefusals(t *testing.T) {
	s, out, stop := newTestScheduler(t, false)
	defer stop()
	bad := icmpTask("bad", time.Now(), 50, 0, 1) // 127.0.0.1 without --allow-special-ranges
	if err := s.Apply(context.Background(), &vantagev1.Assignment{Version: 1, Tasks: []*vantagev1.Task{bad}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	out.mu.Lock()
	defer out.mu.Unlock()
	if len(out.results) != 0 {
		t.Fatalf("refused task produced %d results", len(out.results))
	}
	if len(out.status) != 1 || !out.status[0].GetRefused() || out.status[0].GetTaskId() != "bad" || out.status[0].GetReason() == "" {
		t.Fatalf("status = %v, want one refusal of task bad with a reason", out.status)
	}
}

func TestTrigger(t *testing.T) {
	s, out, stop := newTestScheduler(t, false)
	defer stop()
	ok := &vantagev1.Task{Id: "c/trace/8.8.8.8", Campaign: "c", Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: "8.8.8.8"}
	refused := &vantagev1.Task{Id: "c/trace/10.0.0.1", Campaign: "c", Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: "10.0.0.1"}
	tr := &vantagev1.Trigger{Id: "t1", ExpiresAt: timestamppb.New(time.Now().Add(time.Minute)), Tasks: []*vantagev1.Task{ok, refused}}
	if err := s.Trigger(context.Background(), tr); err != nil {
		t.Fatalf("Trigger: %v", err)
	}
	if err := s.Trigger(context.Background(), tr); !errors.Is(err, guard.ErrStale) {
		t.Fatalf("replayed Trigger = %v, want ErrStale", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(out.byTask(ok.Id))+len(out.byTask(refused.Id)) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got, bad := out.byTask(ok.Id), out.byTask(refused.Id)
	if len(got) != 1 || got[0].GetTriggerId() != "t1" || got[0].GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY {
		t.Fatalf("trigger results for ok task = %v", got)
	}
	if len(bad) != 1 || bad[0].GetOutcome() != vantagev1.Outcome_OUTCOME_ERROR || bad[0].GetError() == "" || bad[0].GetTriggerId() != "t1" {
		t.Fatalf("trigger results for refused task = %v, want one ERROR with reason", bad)
	}
}

func TestRoundAt(t *testing.T) {
	start := time.Unix(1000, 0)
	tests := []struct {
		name string
		now  time.Time
		want int64
	}{
		{"before start", start.Add(-time.Second), 0},
		{"at start", start, 0},
		{"end of round 0", start.Add(59 * time.Second), 0},
		{"round 1", start.Add(60 * time.Second), 1},
		{"round 10", start.Add(10*time.Minute + time.Second), 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := RoundAt(start, time.Minute, tc.now); got != tc.want {
				t.Fatalf("RoundAt = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestQuantize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		j, n    time.Duration
		want    time.Duration
		comment string
	}{
		{"tiny jitter unchanged", 7 * time.Millisecond, 50 * time.Millisecond, 7 * time.Millisecond, "slot under 1 ms"},
		{"64 slots", 1300 * time.Millisecond, 6400 * time.Millisecond, 1300 * time.Millisecond, "slot 100 ms"},
		{"down to the slot", 1399 * time.Millisecond, 6400 * time.Millisecond, 1300 * time.Millisecond, "slot 100 ms"},
		{"slot capped", 29999 * time.Millisecond, 30 * time.Second, 29750 * time.Millisecond, "slot 250 ms"},
		{"zero", 0, time.Minute, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := quantize(tc.j, tc.n)
			if got != tc.want {
				t.Fatalf("quantize(%v, %v) = %v, want %v (%s)", tc.j, tc.n, got, tc.want, tc.comment)
			}
			if got < 0 || (tc.n > 0 && got >= tc.n) {
				t.Fatalf("quantize(%v, %v) = %v: outside [0, %v)", tc.j, tc.n, got, tc.n)
			}
		})
	}
}
