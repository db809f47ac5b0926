package icmp

import (
	"context"
	"os"
	"testing"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestRealEchoLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw ICMP sockets")
	}
	sup := Detect()
	if !sup.Raw4 {
		t.Fatalf("Detect found no raw IPv4 ICMP socket although running as root: %+v", sup)
	}
	tests := []struct {
		name   string
		sup    Support
		target string
		engine string
	}{
		{"raw v4", Support{Raw4: true}, "127.0.0.1", EngineRaw},
		{"raw v6", Support{Raw6: true}, "::1", EngineRaw},
		{"udp v4", Support{Dgram4: true}, "127.0.0.1", EngineUDP},
		{"udp v6", Support{Dgram6: true}, "::1", EngineUDP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.engine == EngineUDP && !(sup.Dgram4 && tc.target == "127.0.0.1" || sup.Dgram6 && tc.target == "::1") {
				t.Skip("datagram ICMP sockets not permitted here (net.ipv4.ping_group_range)")
			}
			if tc.target == "::1" && !sup.IPv6() {
				t.Skip("no IPv6 ICMP socket on this host")
			}
			p := New(tc.sup, nil)
			res := p.Probe(context.Background(), &vantagev1.Task{
				Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: tc.target,
				Spec: &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{Retries: 2, TimeoutMs: 1000, PayloadBytes: 64}},
			})
			if res.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY {
				t.Fatalf("outcome = %v (error %q), want REPLY", res.GetOutcome(), res.GetError())
			}
			if res.GetReplyFrom() != tc.target {
				t.Errorf("reply_from = %q, want %q", res.GetReplyFrom(), tc.target)
			}
			if res.GetAttempts() != 1 {
				t.Errorf("attempts = %d, want 1 (no retry after a reply)", res.GetAttempts())
			}
			if res.GetEngine() != tc.engine {
				t.Errorf("engine = %q, want %q", res.GetEngine(), tc.engine)
			}
			if res.GetReplyTtl() == 0 {
				t.Errorf("reply_ttl = 0, want the received TTL")
			}
			if res.GetSentAt() == nil {
				t.Errorf("sent_at not set")
			}
		})
	}
}

func TestNoSocketIsError(t *testing.T) {
	p := New(Support{}, nil)
	res := p.Probe(context.Background(), &vantagev1.Task{Target: "127.0.0.1"})
	if res.GetOutcome() != vantagev1.Outcome_OUTCOME_ERROR || res.GetError() == "" {
		t.Fatalf("outcome = %v error %q, want ERROR with a reason", res.GetOutcome(), res.GetError())
	}
}
