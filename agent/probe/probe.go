// Package probe defines what every probe kind implements (Prober) and the
// one place that maps a task's ProbeKind to its implementation (Registry).
// The scheduler only ever sees a Prober; it does not know the kinds.
//
// Kinds live in their own packages: icmp (echo via pro-bing, raw or
// datagram sockets), tcp (connect) and trace (ICMP traceroute on raw
// sockets). They do not import this package.
package probe

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vantage-net/vantage/agent/probe/icmp"
	"github.com/vantage-net/vantage/agent/probe/tcp"
	"github.com/vantage-net/vantage/agent/probe/trace"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Prober runs one probe for a task and always returns a result: failures to
// run are OUTCOME_ERROR with ProbeResult.error set. A Prober fills the
// measurement fields (target, kind, outcome, rtt, engine, sent_at, ...);
// the caller stamps task_id, campaign, round and seq.
type Prober interface {
	Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult
}

// Limiter paces probe packets; the agent's guard implements it.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Registry holds one Prober per kind and dispatches on Task.kind. It is
// itself a Prober.
type Registry struct {
	icmp  *icmp.Prober
	tcp   *tcp.Prober
	trace *trace.Prober
	caps  *vantagev1.Capabilities
}

// NewRegistry detects which sockets this host allows, logs it, and builds
// the probers. lim paces every probe packet.
func NewRegistry(log *slog.Logger, lim Limiter) *Registry {
	sup := icmp.Detect()
	rawTrace4, rawTrace6 := trace.RawAvailable(false), trace.RawAvailable(true)
	r := &Registry{
		icmp:  icmp.New(sup, lim),
		tcp:   tcp.New(lim),
		trace: trace.New(lim),
	}
	caps := &vantagev1.Capabilities{
		RawIcmp:    sup.Raw(),
		DgramIcmp:  sup.Dgram(),
		Ipv6:       sup.IPv6(),
		TcpSyn:     false, // raw SYN probing is not implemented yet
		TcpConnect: true,
		Engines: []string{
			"icmp=" + r.icmp.Engine(false),
			"tcp=" + tcp.Engine,
		},
	}
	if rawTrace4 || rawTrace6 {
		caps.TraceProtocols = []vantagev1.TraceProtocol{vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP}
		caps.Engines = append(caps.Engines, "trace="+trace.Engine)
	}
	r.caps = caps
	log.Info("probe capabilities",
		slog.Bool("raw_icmp4", sup.Raw4), slog.Bool("dgram_icmp4", sup.Dgram4),
		slog.Bool("raw_icmp6", sup.Raw6), slog.Bool("dgram_icmp6", sup.Dgram6),
		slog.Bool("trace4", rawTrace4), slog.Bool("trace6", rawTrace6),
		slog.Any("engines", caps.Engines))
	return r
}

// Capabilities is what the agent reports in Hello.
func (r *Registry) Capabilities() *vantagev1.Capabilities { return r.caps }

// PacketsIgnored counts received packets the probers could not use.
func (r *Registry) PacketsIgnored() uint64 { return r.trace.PacketsIgnored() }

// Fallback reports the engine a task will run with when it differs from the
// one the task asks for, and why (e.g. TCP SYN run as connect).
func (r *Registry) Fallback(t *vantagev1.Task) (engine, reason string, ok bool) {
	if t.GetKind() == vantagev1.ProbeKind_PROBE_KIND_TCP {
		return r.tcp.Fallback(t)
	}
	return "", "", false
}

// Probe dispatches t to the prober of its kind: the one registration point.
func (r *Registry) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	var p Prober
	switch t.GetKind() {
	case vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:
		p = r.icmp
	case vantagev1.ProbeKind_PROBE_KIND_TCP:
		p = r.tcp
	case vantagev1.ProbeKind_PROBE_KIND_TRACE:
		p = r.trace
	default:
		return &vantagev1.ProbeResult{
			Target: t.GetTarget(), Kind: t.GetKind(), Outcome: vantagev1.Outcome_OUTCOME_ERROR,
			Error: fmt.Sprintf("task.kind %v: no prober for this kind", t.GetKind()),
		}
	}
	return p.Probe(ctx, t)
}
