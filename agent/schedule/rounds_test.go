package schedule

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/agent/guard"
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
