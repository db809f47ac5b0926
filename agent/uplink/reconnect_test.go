package uplink

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/internal/syncbuf"
)

func TestBackoff(t *testing.T) {
	b := newBackoff(250*time.Millisecond, 10*time.Second)
	prevMax := time.Duration(0)
	for i := range 10 {
		d := b.next()
		hi := min(250*time.Millisecond<<i, 10*time.Second)
		if d < hi/2 || d > hi {
			t.Fatalf("try %d: backoff %v not in [%v, %v]", i, d, hi/2, hi)
		}
		prevMax = hi
	}
	if prevMax != 10*time.Second {
		t.Fatalf("backoff never reached its cap")
	}
}

func TestResourceExhaustedRetryAfter(t *testing.T) {
	for _, detail := range []bool{false, true} {
		name := map[bool]string{false: "trailer retry-after-ms", true: "RetryInfo detail"}[detail]
		t.Run(name, func(t *testing.T) {
			srv, addr := newTestServer(t)
			srv.exhaustStreams, srv.exhaustMs, srv.exhaustDetail = 1, 600, detail
			c, _, stop := startClient(t, srv, addr)
			defer stop()
			submit(c, 5)
			waitFor(t, "results acked after the retry-after", func() bool { return c.Acked().Seq == 5 })
			srv.mu.Lock()
			defer srv.mu.Unlock()
			// The backoff alone is at most 50ms here.
			if len(srv.helloAt) < 2 {
				t.Fatalf("%d hellos, want a reconnect", len(srv.helloAt))
			}
			if gap := srv.helloAt[1].Sub(srv.helloAt[0]); gap < 500*time.Millisecond {
				t.Fatalf("reconnected %v after RESOURCE_EXHAUSTED with retry-after 600ms", gap)
			}
		})
	}
}

// TestResourceExhaustedWhileSending: the controller ends the session with
// RESOURCE_EXHAUSTED and a retry-after (as ingest does for an agent over its
// rate) while the agent is busy sending its backlog. The send loop then
// usually sees the end first, as a bare io.EOF; the reconnect must still
// wait for the retry-after.
func TestResourceExhaustedWhileSending(t *testing.T) {
	const sessions = 8 // the race is lost in some, not all
	for _, detail := range []bool{false, true} {
		name := map[bool]string{false: "trailer retry-after-ms", true: "RetryInfo detail"}[detail]
		t.Run(name, func(t *testing.T) {
			srv, addr := newTestServer(t)
			srv.exhaustStreams, srv.exhaustAfter, srv.exhaustMs, srv.exhaustDetail = sessions, 2, 600, detail
			c, _, stop := startClient(t, srv, addr, func(cfg *Config) {
				cfg.Outbox = spool.NewOutbox(spool.NewMemory(cfg.Identity.Epoch, DefaultSpoolCapacity), spool.OutboxOptions{BatchMax: 5})
			})
			defer stop()
			submit(c, 20000)
			// The client counts a session when it opens the stream, the
			// server when the Hello arrives: wait for both (CI once read
			// helloAt before the last Hello was recorded).
			waitFor(t, "a session after the exhausted ones", func() bool {
				srv.mu.Lock()
				defer srv.mu.Unlock()
				return c.Sessions() > sessions && len(srv.helloAt) > sessions
			})
			srv.mu.Lock()
			defer srv.mu.Unlock()
			for i := 1; i <= sessions; i++ {
				gap := srv.helloAt[i].Sub(srv.helloAt[i-1])
				t.Logf("reconnect %d: %v after the previous session opened (retry-after 600ms; backoff alone <= 50ms)", i, gap.Round(time.Millisecond))
				if gap < 500*time.Millisecond {
					t.Errorf("reconnect %d came %v after a session ended with RESOURCE_EXHAUSTED, retry-after 600ms", i, gap)
				}
			}
		})
	}
}

// TestReconnectWaitsForTheController: the controller goes away for longer
// than OpenTimeout; the agent logs that it is unreachable and keeps
// waiting, with no second backoff on top of gRPC's: once the controller
// listens again on the same address, the session is back within about a
// connect backoff (at most 1 s apart), whatever the uplink's own backoff.
func TestReconnectWaitsForTheController(t *testing.T) {
	srv, addr := newTestServer(t)
	logs := &syncbuf.Buffer{}
	c, _, stop := startClient(t, srv, addr, func(cfg *Config) {
		cfg.OpenTimeout = 300 * time.Millisecond
		cfg.BackoffMin, cfg.BackoffMax = 5*time.Second, 10*time.Second // would be stacked before
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	defer stop()
	waitFor(t, "session", func() bool { return c.Sessions() == 1 })
	srv.stop()
	waitFor(t, "an unreachable note", func() bool { return strings.Contains(logs.String(), "controller unreachable; still trying") })
	time.Sleep(2 * time.Second) // gRPC's connect backoff reaches its 1 s cap
	back := time.Now()
	srv.serve(t, addr)
	waitFor(t, "a session after the controller is back", func() bool { return c.Sessions() == 2 })
	delay := time.Since(back)
	t.Logf("session back %v after the controller listened again (uplink backoff min 5s, connect backoff max %v); %d unreachable notes",
		delay.Round(time.Millisecond), DefaultConnectBackoffMax, strings.Count(logs.String(), "controller unreachable; still trying"))
	if delay >= 5*time.Second {
		t.Errorf("reconnected %v after the controller was back: the uplink's backoff was added to gRPC's", delay)
	}
}
