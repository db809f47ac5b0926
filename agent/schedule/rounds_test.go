package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/agent/guard"
	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestFileRoundLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rounds.log")
	l, err := OpenRoundLog(path)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	for _, r := range []int64{3, 4, 5} {
		if err := l.Start("c/icmp/192.0.2.10", r, exp); err != nil {
			t.Fatal(err)
		}
	}
	_ = l.Close()
	// A crash mid-line leaves a torn line naming a prefix of another id.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString("99 0 c/icmp/192.0.2.1")
	_ = f.Close()
	l2, err := OpenRoundLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	tests := []struct {
		id     string
		want   int64
		wantOK bool
	}{
		{"c/icmp/192.0.2.10", 5, true},
		{"c/icmp/192.0.2.1", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			r, e, ok := l2.Last(tc.id)
			if ok != tc.wantOK || r != tc.want || (ok && !e.Equal(exp)) {
				t.Fatalf("Last = %d %v %v, want %d %v", r, e, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestRestartMidRound: a task whose current round was already started
// before a restart resumes at the next round, and the rounds it missed
// while down are reported once each as ERROR results.
func TestRestartMidRound(t *testing.T) {
	const round = 200 * time.Millisecond
	start := time.Now().Add(-10*round - round/2) // now is mid-round 10
	task := icmpTask("c/icmp/127.0.0.1", start, uint32(round/time.Millisecond), 0, 1)
	task.ExpiresAt = timestamppb.New(time.Now().Add(time.Minute))
	l, err := OpenRoundLog(filepath.Join(t.TempDir(), "rounds.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The previous run last started round 6; rounds 7..9 fell while it was down.
	if err := l.Start(task.GetId(), 6, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	out := &sink{}
	s := New(Config{Prober: fakeProber{}, Guard: guard.New(guard.Config{AllowSpecialRanges: true, MinRoundMs: 10}),
		Emit: out.emit, Status: out.stat, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Rounds: l})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	if err := s.Apply(ctx, &vantagev1.Assignment{Version: 1, Tasks: []*vantagev1.Task{task}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * round)
	cancel()
	<-done
	seen := map[int64]int{}
	for _, r := range out.byTask(task.GetId()) {
		seen[r.GetRound()]++
		missed := r.GetError() == MissedReason
		if missed != (r.GetRound() < 10) {
			t.Fatalf("round %d: error %q", r.GetRound(), r.GetError())
		}
	}
	for r := int64(7); r <= 11; r++ {
		if seen[r] != 1 {
			t.Fatalf("round %d reported %d times, want once (seen %v)", r, seen[r], seen)
		}
	}
	if seen[6] != 0 {
		t.Fatalf("round 6 (run before the restart) reported again")
	}
	if last, _, _ := l.Last(task.GetId()); last < 11 {
		t.Fatalf("round log at %d, want >= 11", last)
	}
}

// permissiveGuard passes every task, so that the scheduler's own handling
// of a schedule it cannot compute is what runs.
type permissiveGuard struct{ *guard.Guard }

func (permissiveGuard) CheckTask(*vantagev1.Task) error     { return nil }
func (permissiveGuard) CheckSchedule(*vantagev1.Task) error { return nil }

// TestScheduleStartOutOfRange: a schedule_start more than 292 years back
// (before about 1733) overflowed the round arithmetic, and the task's loop
// spun at 100% CPU, deaf to cancellation. The guard refuses such a task,
// naming the field; a scheduler behind a guard that lets it through refuses
// it itself instead of spinning; and Run returns when cancelled.
func TestScheduleStartOutOfRange(t *testing.T) {
	tests := []struct {
		name       string
		start      time.Time
		permissive bool
		want       string
	}{
		{"guard refuses 1700", time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC), false,
			"task.schedule_start 1700-01-01T00:00:00Z: outside 1970-01-01T00:00:00Z..2200-01-01T00:00:00Z"},
		{"scheduler refuses 1700", time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC), true,
			"task.schedule_start 1700-01-01T00:00:00Z: rounds of 1000 ms from it cannot be computed"},
		{"scheduler refuses year 1", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), true, "task.schedule_start 0001-01-01T00:00:00Z"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g Guard = guard.New(guard.Config{MinRoundMs: 10})
			if tc.permissive {
				g = permissiveGuard{guard.New(guard.Config{AllowSpecialRanges: true, MinRoundMs: 10})}
			}
			var clockReads atomic.Int64
			out := &sink{}
			s := New(Config{Prober: fakeProber{}, Guard: g, Emit: out.emit, Status: out.stat,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Now:    func() time.Time { clockReads.Add(1); return time.Now() }})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { defer close(done); _ = s.Run(ctx) }()
			task := icmpTask("c/icmp/8.8.8.8", tc.start, 1000, 0, 1)
			task.Target = "8.8.8.8"
			if err := s.Apply(ctx, &vantagev1.Assignment{Version: 1, Tasks: []*vantagev1.Task{task}}); err != nil {
				t.Fatal(err)
			}
			// Generous: the refusal takes microseconds; a spinning loop never sends it.
			var st *vantagev1.TaskStatus
			for deadline := time.Now().Add(20 * time.Second); st == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				out.mu.Lock()
				if len(out.status) > 0 {
					st = out.status[0]
				}
				out.mu.Unlock()
			}
			if st == nil {
				t.Fatalf("no TaskStatus in 20 s; the clock was read %d times (the round loop spins)", clockReads.Load())
			}
			if !st.GetRefused() || st.GetTaskId() != task.GetId() || !strings.Contains(st.GetReason(), tc.want) {
				t.Fatalf("TaskStatus %v, want refused with %q", st, tc.want)
			}
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("Run did not return within 20 s of cancel; the clock was read %d times", clockReads.Load())
			}
			if n := len(out.byTask(task.GetId())); n != 0 {
				t.Fatalf("%d results for a refused task", n)
			}
			t.Logf("refused: %s (clock read %d times)", st.GetReason(), clockReads.Load())
		})
	}
}

// TestRoundArithmetic: RoundAt and roundStart at the edges of
// time.Duration.
func TestRoundArithmetic(t *testing.T) {
	epoch := time.Unix(0, 0)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		start  time.Time
		round  time.Duration
		want   int64
		wantOK bool
	}{
		{"epoch, 1s", epoch, time.Second, now.Unix(), true},
		{"future start", now.Add(time.Hour), time.Second, 0, true},
		{"zero round", epoch, 0, 0, false},
		{"start in 1700", time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC), time.Second, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, ok := roundAt(tc.start, tc.round, now)
			if n != tc.want || ok != tc.wantOK {
				t.Fatalf("roundAt = %d %v, want %d %v", n, ok, tc.want, tc.wantOK)
			}
		})
	}
	if _, ok := roundStart(epoch, time.Hour, 1<<62); ok {
		t.Fatal("roundStart of round 2^62 of an hour: no overflow reported")
	}
	if rs, ok := roundStart(epoch, time.Second, now.Unix()); !ok || !rs.Equal(now) {
		t.Fatalf("roundStart = %v %v, want %v", rs, ok, now)
	}
}

// failingRounds is a round log whose disk refuses every write.
type failingRounds struct{}

func (failingRounds) Last(string) (int64, time.Time, bool) { return 0, time.Time{}, false }
func (failingRounds) Start(string, int64, time.Time) error {
	return errors.New("write rounds.log: no space left on device")
}

// TestRoundLogFailureWarnsOnce: a round log that refuses every write (a full
// disk) is reported once, not once per task and round (993 lines in 85 s in
// the disk-full lab test before); the tasks still run every round.
func TestRoundLogFailureWarnsOnce(t *testing.T) {
	const round = 20 * time.Millisecond
	start := time.Now().Add(-round)
	var tasks []*vantagev1.Task
	for i := range 5 {
		task := icmpTask(fmt.Sprintf("c/icmp/127.0.0.%d", i+1), start, uint32(round/time.Millisecond), 0, 1)
		task.ExpiresAt = timestamppb.New(time.Now().Add(time.Minute))
		tasks = append(tasks, task)
	}
	var logs syncbuf.Buffer
	out := &sink{}
	s := New(Config{Prober: fakeProber{}, Guard: guard.New(guard.Config{AllowSpecialRanges: true, MinRoundMs: 10}),
		Emit: out.emit, Status: out.stat, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Rounds: failingRounds{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	if err := s.Apply(ctx, &vantagev1.Assignment{Version: 1, Tasks: tasks}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(out.byTask(tasks[4].GetId())) < 10; {
		if time.Now().After(deadline) {
			t.Fatalf("%d results of %s in 10s; want 10 (the tasks must still run)", len(out.byTask(tasks[4].GetId())), tasks[4].GetId())
		}
		time.Sleep(round)
	}
	cancel()
	<-done
	if n := strings.Count(logs.String(), "round not recorded"); n != 1 {
		t.Fatalf("%d \"round not recorded\" warnings for 5 tasks x 10+ rounds within %s; want 1:\n%s", n, RoundWarnEvery, logs.String())
	}
}
