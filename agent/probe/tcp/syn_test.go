package tcp

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestRealSynLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw TCP sockets")
	}
	s, err := NewSyn(SynConfig{})
	if err != nil {
		t.Fatalf("NewSyn: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	listen := func(network, addr string) int {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		return ln.Addr().(*net.TCPAddr).Port
	}
	open4, open6 := listen("tcp4", "127.0.0.1:0"), listen("tcp6", "[::1]:0")
	// A closed port: listen, note the port, close.
	cl, _ := net.Listen("tcp4", "127.0.0.1:0")
	closed := cl.Addr().(*net.TCPAddr).Port
	_ = cl.Close()
	tests := []struct {
		name   string
		target string
		port   int
		want   vantagev1.Outcome
	}{
		{"open v4", "127.0.0.1", open4, vantagev1.Outcome_OUTCOME_TCP_SYNACK},
		{"closed v4", "127.0.0.1", closed, vantagev1.Outcome_OUTCOME_TCP_RST},
		{"open v6", "::1", open6, vantagev1.Outcome_OUTCOME_TCP_SYNACK},
		{"closed v6", "::1", closed, vantagev1.Outcome_OUTCOME_TCP_RST},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res := s.Probe(ctx, &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Target: tc.target,
				Spec: &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: uint32(tc.port), Mode: vantagev1.TcpMode_TCP_MODE_SYN, TimeoutMs: 1000}}})
			if res.GetOutcome() != tc.want || res.GetEngine() != EngineSYN || res.GetReplyFrom() != tc.target || res.GetPort() != uint32(tc.port) {
				t.Fatalf("result = %v, want %v from %s:%d by %s", res, tc.want, tc.target, tc.port, EngineSYN)
			}
		})
	}
}
