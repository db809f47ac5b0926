package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/probe/internal/probetest"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func task(target string, port uint32, mode vantagev1.TcpMode) *vantagev1.Task {
	return &vantagev1.Task{
		Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Target: target,
		Spec: &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: port, Mode: mode, TimeoutMs: 1000}},
	}
}

// TestRealConnectLoopback uses real sockets on 127.0.0.1; connect needs no root.
func TestRealConnectLoopback(t *testing.T) {
	openPort := probetest.Port(probetest.Listen(t, "127.0.0.1:0"))

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	closedPort := uint32(closed.Addr().(*net.TCPAddr).Port)
	_ = closed.Close()

	tests := []struct {
		name     string
		port     uint32
		mode     vantagev1.TcpMode
		want     vantagev1.Outcome
		wantNote bool
	}{
		{"open port", openPort, vantagev1.TcpMode_TCP_MODE_CONNECT, vantagev1.Outcome_OUTCOME_TCP_SYNACK, false},
		{"closed port", closedPort, vantagev1.TcpMode_TCP_MODE_CONNECT, vantagev1.Outcome_OUTCOME_TCP_RST, false},
		{"syn falls back", openPort, vantagev1.TcpMode_TCP_MODE_SYN, vantagev1.Outcome_OUTCOME_TCP_SYNACK, true},
	}
	p := New(nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := p.Probe(context.Background(), task("127.0.0.1", tc.port, tc.mode))
			if res.GetOutcome() != tc.want {
				t.Fatalf("outcome = %v (error %q), want %v", res.GetOutcome(), res.GetError(), tc.want)
			}
			if res.GetEngine() != EngineConnect || res.GetPort() != tc.port || res.GetAttempts() != 1 {
				t.Errorf("engine/port/attempts = %q/%d/%d", res.GetEngine(), res.GetPort(), res.GetAttempts())
			}
			if res.GetReplyFrom() != "127.0.0.1" {
				t.Errorf("reply_from = %q", res.GetReplyFrom())
			}
			if got := res.GetError() == SynFallbackNote; got != tc.wantNote {
				t.Errorf("error = %q, want fallback note %v", res.GetError(), tc.wantNote)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestClassify covers the outcomes loopback cannot produce.
func TestClassify(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name   string
		parent context.Context
		err    error
		want   vantagev1.Outcome
	}{
		{"host unreachable", context.Background(), &net.OpError{Op: "dial", Err: fmt.Errorf("connect: %w", syscall.EHOSTUNREACH)}, vantagev1.Outcome_OUTCOME_UNREACHABLE},
		{"net unreachable", context.Background(), &net.OpError{Op: "dial", Err: syscall.ENETUNREACH}, vantagev1.Outcome_OUTCOME_UNREACHABLE},
		{"deadline", context.Background(), &net.OpError{Op: "dial", Err: timeoutErr{}}, vantagev1.Outcome_OUTCOME_TIMEOUT},
		{"ctx deadline", context.Background(), context.DeadlineExceeded, vantagev1.Outcome_OUTCOME_TIMEOUT},
		{"parent canceled", canceled, context.Canceled, vantagev1.Outcome_OUTCOME_ERROR},
		{"other", context.Background(), errors.New("boom"), vantagev1.Outcome_OUTCOME_ERROR},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := &vantagev1.ProbeResult{Target: "192.0.2.1"}
			classify(tc.parent, res, tc.err, time.Millisecond)
			if res.GetOutcome() != tc.want {
				t.Fatalf("outcome = %v, want %v", res.GetOutcome(), tc.want)
			}
		})
	}
}

// countingLimiter counts the packets charged to it.
type countingLimiter struct{ n int }

func (l *countingLimiter) Wait(context.Context) error { l.n++; return nil }

// TestConnectChargesSYNs: a connect probe is charged for every SYN the
// kernel may send within its timeout, and the dial is told to cap the
// retransmissions at that count (TCP_SYNCNT). It used to be charged one.
func TestConnectChargesSYNs(t *testing.T) {
	tests := []struct {
		timeoutMs   uint32
		wantRetries int
	}{
		{500, 1}, // TCP_SYNCNT cannot be 0
		{1000, 1},
		{2000, 1}, // SYNs at 0 and 1 s
		{3001, 2}, // and 3 s
		{10000, 3},
		{30000, 4}, // 0, 1, 3, 7, 15 s
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.timeoutMs), func(t *testing.T) {
			lim := &countingLimiter{}
			p := New(lim)
			var gotRetries int
			p.dial = func(_ context.Context, _ string, retries int) (net.Conn, error) {
				gotRetries = retries
				return nil, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}
			}
			tk := task("192.0.2.1", 80, vantagev1.TcpMode_TCP_MODE_CONNECT)
			tk.GetTcp().TimeoutMs = tc.timeoutMs
			res := p.Probe(context.Background(), tk)
			if res.GetOutcome() != vantagev1.Outcome_OUTCOME_TCP_RST {
				t.Fatalf("outcome %v", res.GetOutcome())
			}
			if gotRetries != tc.wantRetries || lim.n != 1+tc.wantRetries {
				t.Fatalf("timeout %d ms: dial capped at %d retransmissions, limiter charged %d; want %d and %d",
					tc.timeoutMs, gotRetries, lim.n, tc.wantRetries, 1+tc.wantRetries)
			}
		})
	}
}
