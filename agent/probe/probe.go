// Package probe defines what every probe kind implements (Prober for one
// task, Sweeper for a stream of tasks) and the one place that maps a task's
// ProbeKind to its implementation (Registry). The scheduler only ever sees
// a Prober; the one-shot command and sweeps use a Sweeper.
//
// Kinds live in their own packages and do not import this one: icmp (the
// shared raw-socket engine "icmp/bulk-raw" on Linux with CAP_NET_RAW, else
// pro-bing on datagram sockets), tcp (raw SYN "tcp/syn-raw", else
// connect) and trace (Paris traceroute on raw sockets). Which engine runs
// is decided once, at start, by what the host allows; it is reported in
// Hello.capabilities.engines and in every result's engine field.
//
// On the agent "engine" has one meaning: a probe implementation, known by
// its name ("icmp/bulk-raw", "tcp/connect", ...: the Engine* constants of
// the kind packages), which the wire carries in ProbeResult.engine,
// TaskStatus.engine and Capabilities.engines (proto is fixed, so the field
// keeps that name). The Go types that do the work are named for what they
// are: icmp.Bulk and tcp.Syn over the shared bulk.Mux, icmp.Prober,
// tcp.Prober and trace.Prober over trace.Tracer.
package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

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

// Sweeper probes a stream of tasks: the sweep API. Run probes every task
// read from tasks and calls emit once per task with its result (never
// concurrently), returning when tasks is closed and every result is
// emitted, or when ctx ends.
type Sweeper interface {
	Run(ctx context.Context, tasks <-chan *vantagev1.Task, emit func(*vantagev1.ProbeResult)) error
}

// Limiter paces probe packets; the agent's guard implements it.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Options tune the registry's engines.
type Options struct {
	// Limiter paces every probe packet (the guard); nil means no pacing
	// beyond Rate.
	Limiter Limiter
	// Rate is the bulk engines' own packets per second; 0 is unlimited
	// (then Limiter alone paces).
	Rate float64
	// Unprivileged skips the raw-socket engines even when they would open
	// (tests of the portable path, or an operator's choice).
	Unprivileged bool
}

// Registry holds the engines and dispatches on Task.kind. It is itself a
// Prober. Close it to release the raw sockets.
type Registry struct {
	log      *slog.Logger
	icmpBulk *icmp.Bulk // nil when raw ICMP is unavailable
	icmp     *icmp.Prober
	syn      *tcp.Syn // nil when raw TCP is unavailable
	tcp      *tcp.Prober
	trace    *trace.Prober
	caps     *vantagev1.Capabilities
}

// Engine names (ProbeResult.engine) of the kinds' implementations.
const (
	EngineICMPPortable = icmp.EngineUDP
	EngineICMPBulk     = icmp.EngineBulk
	EngineTCPSyn       = tcp.EngineSYN
	EngineTCPConnect   = tcp.EngineConnect
)

// NewRegistry detects which sockets this host allows, logs it, and builds
// the engines. lim paces every probe packet.
func NewRegistry(log *slog.Logger, lim Limiter) *Registry {
	return NewRegistryWith(log, Options{Limiter: lim})
}

// NewRegistryWith is NewRegistry with options.
func NewRegistryWith(log *slog.Logger, o Options) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sup := icmp.Detect()
	r := &Registry{log: log, tcp: tcp.New(o.Limiter), trace: trace.New(o.Limiter)}
	var bulkErr, synErr error = errors.New("unprivileged mode"), errors.New("unprivileged mode")
	if !o.Unprivileged {
		if r.icmpBulk, bulkErr = icmp.NewBulk(icmp.BulkConfig{Rate: o.Rate, Limiter: o.Limiter, Logger: log}); bulkErr != nil {
			r.icmpBulk = nil
		}
		if r.syn, synErr = tcp.NewSyn(tcp.SynConfig{Rate: o.Rate, Limiter: o.Limiter, Logger: log}); synErr != nil {
			r.syn = nil
		}
	}
	if r.icmpBulk == nil {
		// The portable path: pro-bing on datagram sockets; raw pro-bing
		// only where raw works but the bulk engine does not (not Linux).
		if o.Unprivileged {
			sup.Raw4, sup.Raw6 = false, false
		}
	}
	r.icmp = icmp.New(sup, o.Limiter)
	caps := &vantagev1.Capabilities{
		RawIcmp:    sup.Raw() && !o.Unprivileged,
		DgramIcmp:  sup.Dgram(),
		Ipv6:       sup.IPv6() || (r.icmpBulk != nil && r.icmpBulk.IPv6()),
		TcpSyn:     r.syn != nil,
		TcpConnect: true,
	}
	caps.Engines = []string{"icmp=" + r.icmpEngine(false), "tcp=" + tcp.EngineConnect}
	if r.syn != nil {
		caps.Engines = append(caps.Engines, "tcp="+tcp.EngineSYN)
	}
	if !o.Unprivileged {
		caps.TraceProtocols = trace.Protocols()
		if len(caps.TraceProtocols) > 0 {
			caps.Engines = append(caps.Engines, "trace="+trace.EngineRaw)
		}
	}
	r.caps = caps
	log.Info("probe capabilities",
		slog.Bool("raw_icmp4", sup.Raw4), slog.Bool("dgram_icmp4", sup.Dgram4),
		slog.Bool("raw_icmp6", sup.Raw6), slog.Bool("dgram_icmp6", sup.Dgram6),
		slog.Bool("tcp_syn", caps.TcpSyn), slog.Any("trace_protocols", caps.TraceProtocols),
		slog.Any("engines", caps.Engines))
	if bulkErr != nil {
		log.Info("bulk icmp engine unavailable; using pro-bing", slog.Any("error", bulkErr))
	}
	if synErr != nil {
		log.Info("raw tcp syn engine unavailable; syn tasks run with connect", slog.Any("error", synErr))
	}
	return r
}

// Close stops the engines and closes their sockets.
func (r *Registry) Close() error {
	var errs []error
	if r.icmpBulk != nil {
		errs = append(errs, r.icmpBulk.Close())
	}
	if r.syn != nil {
		errs = append(errs, r.syn.Close())
	}
	errs = append(errs, r.trace.Close())
	return errors.Join(errs...)
}

// Capabilities is what the agent reports in Hello.
func (r *Registry) Capabilities() *vantagev1.Capabilities { return r.caps }

// PacketsIgnored counts received packets the engines could not use
// (malformed, foreign, spoofed or late), for Heartbeat.packets_ignored.
func (r *Registry) PacketsIgnored() uint64 {
	n := r.trace.PacketsIgnored()
	if r.icmpBulk != nil {
		n += r.icmpBulk.PacketsIgnored()
	}
	if r.syn != nil {
		n += r.syn.PacketsIgnored()
	}
	return n
}

func (r *Registry) icmpEngine(v6 bool) string {
	if r.icmpBulk != nil && (!v6 || r.icmpBulk.IPv6()) {
		return icmp.EngineBulk
	}
	return r.icmp.Engine(v6)
}

// Fallback reports the engine a task will run with when it differs from the
// one the task asks for (or the agent's usual one), and why.
func (r *Registry) Fallback(t *vantagev1.Task) (engine, reason string, ok bool) {
	switch t.GetKind() {
	case vantagev1.ProbeKind_PROBE_KIND_TCP:
		if r.syn == nil {
			return r.tcp.Fallback(t)
		}
	case vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:
		addr, err := netip.ParseAddr(t.GetTarget())
		if err == nil && r.icmpBulk != nil && addr.Unmap().Is6() && !r.icmpBulk.IPv6() {
			e := r.icmp.Engine(true)
			return e, "no raw ICMPv6 socket for the bulk engine; IPv6 echo runs with " + e, true
		}
	}
	return "", "", false
}

// Probe dispatches t to the engine of its kind: the one registration point.
func (r *Registry) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	p, err := r.prober(t)
	if err != nil {
		return &vantagev1.ProbeResult{Target: t.GetTarget(), Kind: t.GetKind(), Outcome: vantagev1.Outcome_OUTCOME_ERROR, Error: err.Error()}
	}
	return p.Probe(ctx, t)
}

func (r *Registry) prober(t *vantagev1.Task) (Prober, error) {
	switch t.GetKind() {
	case vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:
		addr, err := netip.ParseAddr(t.GetTarget())
		if err == nil && r.icmpEngine(addr.Unmap().Is6()) == icmp.EngineBulk {
			return r.icmpBulk, nil
		}
		return r.icmp, nil
	case vantagev1.ProbeKind_PROBE_KIND_TCP:
		if r.syn != nil && t.GetTcp().GetMode() == vantagev1.TcpMode_TCP_MODE_SYN {
			return r.syn, nil
		}
		return r.tcp, nil
	case vantagev1.ProbeKind_PROBE_KIND_TRACE:
		return r.trace, nil
	default:
		return nil, fmt.Errorf("task.kind %v: no prober for this kind", t.GetKind())
	}
}

// Sweeper returns the sweep engine for kind: the shared raw-socket engine
// when this host has one, else the per-task prober run by workers. For
// TCP the raw SYN engine is used when available (every task then runs as
// SYN); Engine names which one it is.
func (r *Registry) Sweeper(kind vantagev1.ProbeKind) (Sweeper, string, error) {
	switch kind {
	case vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:
		if r.icmpBulk != nil {
			return r.icmpBulk, icmp.EngineBulk, nil
		}
		return SweeperOf(r.icmp, 64), r.icmp.Engine(false), nil
	case vantagev1.ProbeKind_PROBE_KIND_TCP:
		if r.syn != nil {
			return r.syn, tcp.EngineSYN, nil
		}
		return SweeperOf(r.tcp, 256), tcp.EngineConnect, nil
	case vantagev1.ProbeKind_PROBE_KIND_TRACE:
		return SweeperOf(r.trace, 256), trace.EngineRaw, nil
	default:
		return nil, "", fmt.Errorf("kind %v: no sweep engine for this kind", kind)
	}
}

// SweeperOf runs a per-task Prober as a Sweeper with a fixed pool of workers
// (the portable paths, which have no shared socket to batch on).
func SweeperOf(p Prober, workers int) Sweeper { return workerSweeper{p: p, workers: max(workers, 1)} }

type workerSweeper struct {
	p       Prober
	workers int
}

func (b workerSweeper) Run(ctx context.Context, tasks <-chan *vantagev1.Task, emit func(*vantagev1.ProbeResult)) error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range b.workers {
		wg.Go(func() {
			for {
				var t *vantagev1.Task
				var ok bool
				select {
				case <-ctx.Done():
					return
				case t, ok = <-tasks:
				}
				if !ok {
					return
				}
				res := b.p.Probe(ctx, t)
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				emit(res)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}
