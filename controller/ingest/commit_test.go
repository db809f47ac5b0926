package ingest

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestOverloaded(t *testing.T) {
	tests := []struct {
		name     string
		queued   int64
		running  time.Duration // how long the running commit has run; 0: none
		n        int
		wantWhy  string
		wantHard bool
	}{
		{"idle", 0, 0, 10000, "", false},
		{"a huge first batch is never refused", 0, 0, 1_000_000, "", false},
		{"under the soft bound", 50, 0, 49, "", false},
		{"over the soft bound: throttle hint", 80, 0, 30, "ingest queue long", false},
		{"over twice the soft bound: refuse", 150, 0, 60, "ingest queue full", true},
		{"a commit running too long: refuse", 0, 6 * time.Second, 1, "store commit running for", true},
		{"a commit running, not yet too long", 0, time.Second, 1, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{cfg: Config{MaxQueuedResults: 100, MaxCommitLatency: 5 * time.Second}, clock: time.Now().Add(-time.Hour)}
			s.queued.Store(tc.queued)
			if tc.running > 0 {
				s.commitStart.Store(int64(time.Since(s.clock)-tc.running) + 1)
			}
			why, hard := s.overloaded(tc.n)
			if hard != tc.wantHard || (tc.wantWhy == "") != (why == "") || !strings.Contains(why, tc.wantWhy) {
				t.Fatalf("overloaded(%d) = %q, %v; want %q, %v", tc.n, why, hard, tc.wantWhy, tc.wantHard)
			}
		})
	}
}

func TestThrottledStatus(t *testing.T) {
	th := &throttled{retry: 1500 * time.Millisecond, reason: "test"}
	if c := status.Code(agentService.Status(nil, "Session", th)); c != codes.ResourceExhausted {
		t.Errorf("code %v, want ResourceExhausted", c)
	}
	if v := th.Trailer().Get(RetryAfterKey); len(v) != 1 || v[0] != "1500" {
		t.Errorf("trailer %v, want retry-after-ms 1500", v)
	}
	if m := th.message().GetThrottle(); m.GetRetryAfterMs() != 1500 || m.GetReason() != "test" {
		t.Errorf("Throttle %v", m)
	}
}
