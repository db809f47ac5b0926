package probe

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/vantage-net/vantage/agent/probe/internal/probetest"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestRegistryDispatch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw ICMP sockets for icmp and trace")
	}
	ln := probetest.Listen(t, "127.0.0.1:0")
	r := NewRegistry(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if !r.Capabilities().GetRawIcmp() || !r.Capabilities().GetTcpConnect() {
		t.Fatalf("capabilities as root = %v, want raw icmp and tcp connect", r.Capabilities())
	}
	tests := []struct {
		name   string
		task   *vantagev1.Task
		want   vantagev1.Outcome
		engine string
	}{
		{"icmp", &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: "127.0.0.1"}, vantagev1.Outcome_OUTCOME_REPLY, "icmp/bulk-raw"},
		{"tcp", &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Target: "127.0.0.1",
			Spec: &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: probetest.Port(ln)}}}, vantagev1.Outcome_OUTCOME_TCP_SYNACK, "tcp/connect"},
		{"trace", &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: "127.0.0.1"}, vantagev1.Outcome_OUTCOME_REPLY, "trace/icmp"},
		{"unknown", &vantagev1.Task{Target: "127.0.0.1"}, vantagev1.Outcome_OUTCOME_ERROR, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := r.Probe(context.Background(), tc.task)
			if res.GetOutcome() != tc.want || res.GetEngine() != tc.engine {
				t.Fatalf("outcome/engine = %v/%q (error %q), want %v/%q", res.GetOutcome(), res.GetEngine(), res.GetError(), tc.want, tc.engine)
			}
		})
	}
}
