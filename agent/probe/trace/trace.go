// Package trace runs Paris traceroutes over ICMP, UDP and TCP SYN, IPv4
// and IPv6, many at once, from one shared raw socket per address family.
//
// Why it looks like this: an agent must fire hundreds of traceroutes the
// moment a network breaks, without tripping routers' ICMP rate limits and
// without a socket per trace. So, as yarrp and scamper do:
//   - every probe's identity (trace slot, generation, TTL, a keyed cookie)
//     is in the bytes an answer quotes or echoes back, and answers are
//     matched statelessly from those bytes (packet.go);
//   - the flow identifier stays constant across TTLs (Paris): same ICMP id
//     and checksum, same UDP 5-tuple with the checksum naming the probe, same
//     TCP ports with the sequence number naming the probe, so per-flow load
//     balancers keep the whole trace on one path;
//   - every TTL of a trace is queued at once; one sender releases probes
//     through a global token bucket and one bucket per router (pacing.go);
//   - answers carry kernel receive timestamps (SO_TIMESTAMPNS), the MPLS
//     label stacks of RFC 4950, quoted TTLs and reply TTLs.
//
// It needs raw sockets (root or CAP_NET_RAW): datagram ICMP sockets do not
// deliver time-exceeded messages, and header inclusion lets one socket send
// all three protocols with the TTL written in the header. Sockets sit behind
// the unexported rawConn seam, so matching is tested without root. Packets
// that are malformed, truncated, foreign or spoofed are dropped and counted
// (PacketsIgnored); they never stop a trace.
package trace

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/vantage-net/vantage/internal/tracedefaults"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// EngineRaw is the name reported to the controller in Capabilities.engines;
// ProbeResult.engine says the protocol, e.g. "trace/udp-paris".
const EngineRaw = "trace/raw"

// Defaults for TraceSpec fields left zero, and the highest max_ttl a
// trace probes: the values agent and controller share (tracedefaults).
const (
	DefaultMaxTTL   = tracedefaults.MaxTTL
	DefaultGapLimit = tracedefaults.GapLimit
	DefaultTimeout  = tracedefaults.Timeout
	maxTTLCap       = tracedefaults.MaxTTLCap
)

// Limiter paces probe packets (the agent's guard).
type Limiter interface {
	Wait(ctx context.Context) error
}

// Prober is the registry's handle: a Tracer opened on first use, so that
// building the registry never fails. New code should use NewTracer.
type Prober struct {
	cfg  Config
	once sync.Once
	e    atomic.Pointer[Tracer]
	err  error
}

// New returns a Prober that opens a shared Tracer (raw sockets) on its
// first Probe. lim may be nil (no pacing beyond the tracer's own).
func New(lim Limiter) *Prober { return &Prober{cfg: Config{Limiter: lim}} }

// NewProber is New with a full Config (logger, rates).
func NewProber(cfg Config) *Prober { return &Prober{cfg: cfg} }

func (p *Prober) tracer() (*Tracer, error) {
	p.once.Do(func() {
		e, err := NewTracer(p.cfg)
		p.e.Store(e)
		p.err = err
	})
	return p.e.Load(), p.err
}

// Probe traces the path to t.Target.
func (p *Prober) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	e, err := p.tracer()
	if err != nil {
		res := &vantagev1.ProbeResult{Target: t.GetTarget(), Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Engine: EngineRaw}
		return fail(res, err)
	}
	return e.Probe(ctx, t)
}

// PacketsIgnored counts received packets the tracer could not use.
func (p *Prober) PacketsIgnored() uint64 {
	if e := p.e.Load(); e != nil {
		return e.PacketsIgnored()
	}
	return 0
}

// Close closes the tracer if it was opened.
func (p *Prober) Close() error {
	p.once.Do(func() { p.err = errTracerClosed }) // no tracer after Close
	if e := p.e.Load(); e != nil {
		return e.Close()
	}
	return nil
}

// RawAvailable reports whether this host lets the tracer open its raw
// socket for the family (root or CAP_NET_RAW).
func RawAvailable(v6 bool) bool {
	f, err := openRaw(v6, 1)
	if err != nil {
		return false
	}
	_ = f.icmp.Close()
	if f.tcp != nil {
		_ = f.tcp.Close()
	}
	_ = f.close()
	return true
}

// Protocols is what Capabilities.trace_protocols should list: ICMP, UDP
// and TCP SYN when the raw sockets open, else nothing.
func Protocols() []vantagev1.TraceProtocol {
	if !RawAvailable(false) && !RawAvailable(true) {
		return nil
	}
	return allProtocols()
}
