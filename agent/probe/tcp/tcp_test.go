package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	openPort := uint32(ln.Addr().(*net.TCPAddr).Port)

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
			if res.GetEngine() != Engine || res.GetPort() != tc.port || res.GetAttempts() != 1 {
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
