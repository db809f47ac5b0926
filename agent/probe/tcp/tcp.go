// Package tcp probes TCP ports. A completed handshake (SYN-ACK) and a
// refused connection (an RST) both prove the host is up, which is why TCP
// evidence still counts when ICMP is filtered.
//
// Two engines: Syn sends raw SYNs from one shared socket per family and
// needs CAP_NET_RAW; Prober uses connect(2) and needs no privilege. A task
// asking for SYN on a host without raw sockets runs with connect and says
// so (Fallback, and ProbeResult.error). A connect probe is charged to the
// guard's packet limiter for every SYN the kernel may send within its
// timeout, and TCP_SYNCNT caps them at that (synRetries).
package tcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/internal/probecost"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// EngineConnect is the connect prober's name in ProbeResult.engine.
const EngineConnect = "tcp/connect"

// DefaultTimeout applies when TcpSpec.timeout_ms is zero.
const DefaultTimeout = 2 * time.Second

// SynFallbackNote is the ProbeResult.error text for SYN tasks run with connect.
const SynFallbackNote = "tcp mode syn needs raw sockets (CAP_NET_RAW), which this agent lacks; used connect"

// Limiter paces probe packets (the agent's guard).
type Limiter interface {
	Wait(ctx context.Context) error
}

// Prober runs connect probes.
type Prober struct {
	lim Limiter
	// dial connects to address, letting the kernel retransmit the SYN at
	// most synRetries times.
	dial func(ctx context.Context, address string, synRetries int) (net.Conn, error)
}

// New returns a Prober. lim may be nil (no pacing; tests only).
func New(lim Limiter) *Prober {
	return &Prober{lim: lim, dial: func(ctx context.Context, address string, synRetries int) (net.Conn, error) {
		d := net.Dialer{Control: capSYNs(synRetries)}
		return d.DialContext(ctx, "tcp", address)
	}}
}

// synRetries is how many times the kernel may retransmit a connect
// probe's SYN within timeout (probecost.ConnectSYNRetries, which the
// controller's budget check counts too). The prober caps the
// retransmissions at this count with TCP_SYNCNT (capSYNs), so a smaller
// initial RTO cannot send more, and charges the guard's limiter one packet
// per SYN the kernel may send: 1 + synRetries.
func synRetries(timeout time.Duration) int { return probecost.ConnectSYNRetries(timeout) }

// Fallback reports the engine a task runs with when it differs from the
// one asked for, and why.
func (p *Prober) Fallback(t *vantagev1.Task) (engine, reason string, ok bool) {
	if t.GetTcp().GetMode() == vantagev1.TcpMode_TCP_MODE_SYN {
		return EngineConnect, SynFallbackNote, true
	}
	return "", "", false
}

// Probe connects to t.Target on TcpSpec.port once.
func (p *Prober) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	spec := t.GetTcp()
	res := &vantagev1.ProbeResult{
		Target: t.GetTarget(), Kind: vantagev1.ProbeKind_PROBE_KIND_TCP,
		Port: spec.GetPort(), Engine: EngineConnect,
	}
	if _, _, ok := p.Fallback(t); ok {
		res.Error = SynFallbackNote
	}
	addr, err := netip.ParseAddr(t.GetTarget())
	if err != nil {
		return fail(res, fmt.Errorf("target %q: not an IP address", t.GetTarget()))
	}
	if spec.GetPort() == 0 || spec.GetPort() > 65535 {
		return fail(res, fmt.Errorf("tcp.port %d: must be 1..65535", spec.GetPort()))
	}
	timeout := time.Duration(spec.GetTimeoutMs()) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	retries := synRetries(timeout)
	if p.lim != nil {
		for range 1 + retries { // every SYN the kernel may send
			if err := p.lim.Wait(ctx); err != nil {
				return fail(res, err)
			}
		}
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	res.SentAt = timestamppb.New(start)
	res.Attempts = 1
	conn, err := p.dial(dctx, netip.AddrPortFrom(addr.Unmap(), uint16(spec.GetPort())).String(), retries)
	rtt := time.Since(start)
	if err == nil {
		_ = conn.Close()
	}
	classify(ctx, res, err, rtt)
	return res
}

// classify fills res from a dial's outcome.
func classify(parent context.Context, res *vantagev1.ProbeResult, err error, rtt time.Duration) {
	rttUs := uint32(min(rtt.Microseconds(), 1<<32-1))
	switch {
	case err == nil:
		res.Outcome = vantagev1.Outcome_OUTCOME_TCP_SYNACK
		res.RttUs, res.ReplyFrom = rttUs, res.Target
	case errors.Is(err, syscall.ECONNREFUSED):
		res.Outcome = vantagev1.Outcome_OUTCOME_TCP_RST
		res.RttUs, res.ReplyFrom = rttUs, res.Target
	case errors.Is(err, syscall.EHOSTUNREACH):
		res.Outcome = vantagev1.Outcome_OUTCOME_UNREACHABLE
		res.UnreachableCode = 1 // host unreachable; the kernel hides the exact ICMP code
	case errors.Is(err, syscall.ENETUNREACH):
		res.Outcome = vantagev1.Outcome_OUTCOME_UNREACHABLE
		res.UnreachableCode = 0 // net unreachable
	case parent.Err() != nil:
		fail(res, fmt.Errorf("tcp probe: %w", parent.Err()))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		res.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT
	default:
		fail(res, fmt.Errorf("tcp probe: %w", err))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func fail(res *vantagev1.ProbeResult, err error) *vantagev1.ProbeResult {
	res.Outcome = vantagev1.Outcome_OUTCOME_ERROR
	if res.Error != "" {
		res.Error = err.Error() + "; " + res.Error
	} else {
		res.Error = err.Error()
	}
	return res
}
