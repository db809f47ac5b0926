package icmp

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func newTestBulk(t testing.TB, cfg BulkConfig) *Bulk {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw ICMP sockets")
	}
	b, err := NewBulk(cfg)
	if err != nil {
		t.Fatalf("NewBulk: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestRealBulkLocalBroadcast: an echo probe to this host's own subnet
// broadcast address (loopback's, 127.255.255.255) ends in ERROR: the raw
// socket lacks SO_BROADCAST, so the kernel refuses to send it.
func TestRealBulkLocalBroadcast(t *testing.T) {
	b := newTestBulk(t, BulkConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := b.Probe(ctx, &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: "127.255.255.255",
		Spec: &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{TimeoutMs: 500}}})
	if res.GetOutcome() != vantagev1.Outcome_OUTCOME_ERROR || !strings.Contains(res.GetError(), "permission denied") {
		t.Fatalf("result = %v, want ERROR: permission denied", res)
	}
	t.Logf("%s: %s", res.GetTarget(), res.GetError())
}

func TestRealBulkLoopback(t *testing.T) {
	b := newTestBulk(t, BulkConfig{})
	for _, target := range []string{"127.0.0.1", "::1", "127.0.0.2"} {
		t.Run(target, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res := b.Probe(ctx, &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: target,
				Spec: &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{TimeoutMs: 1000}}})
			if res.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY || res.GetEngine() != EngineBulk || res.GetReplyFrom() != target {
				t.Fatalf("result = %v, want REPLY from %s by %s", res, target, EngineBulk)
			}
			if res.GetAttempts() != 1 || res.GetSentAt() == nil || res.GetReplyTtl() != 64 {
				t.Fatalf("result = %v, want 1 attempt, sent_at set, reply ttl 64", res)
			}
		})
	}
}
