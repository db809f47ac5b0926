package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/vantage-net/vantage/agent/guard"
	"github.com/vantage-net/vantage/agent/probe"
	"github.com/vantage-net/vantage/agent/probe/icmp"
	"github.com/vantage-net/vantage/agent/probe/trace"
	"github.com/vantage-net/vantage/internal/taskid"
	"github.com/vantage-net/vantage/internal/tracedefaults"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// oneShotCampaign names the tasks of `vantage-agent probe` in their ids.
const oneShotCampaign = "oneshot"

// maxExpand caps how many addresses one --targets CIDR may expand to.
const maxExpand = 1 << 24

type probeOptions struct {
	targets            string
	rate               float64
	routerRate         float64
	ports              []int
	timeout            time.Duration
	retries            int
	protocol           string
	paris              bool
	maxTTL             int
	allowSpecialRanges bool
	unprivileged       bool
	output             string
	logLevel           string
}

// newProbeCmd is the one-shot mode: probe a list or a prefix without a
// controller (like fping or scamper) and print one result per line.
func newProbeCmd() *cobra.Command {
	var o probeOptions
	cmd := &cobra.Command{
		Use:   "probe icmp|tcp|trace --targets FILE|CIDR",
		Short: "probe targets once without a controller and print the results (JSON lines or text)",
		Long: `Probe every target once and print one result per line on stdout.

--targets is a CIDR prefix or a single address (expanded to every address
in it: for IPv4 the network and broadcast addresses are included, whatever
the prefix length), or else a file with one address or prefix per line
('#' starts a comment). Special-purpose ranges (loopback, RFC 1918, the
198.18.0.0/15 benchmark range, ...) are refused unless
--allow-special-ranges is given, as in the daemon.

The fastest engine the host allows is used: the shared raw-socket engines
(icmp/bulk-raw, tcp/syn-raw) with CAP_NET_RAW, else pro-bing on datagram
sockets and TCP connect. --rate 0 means no pacing at all.

Traces are also paced per router (--router-rate, default 100 probes a
second to each router, as the daemon does), so that routers' ICMP rate
limits are respected; --router-rate 0 turns that off, for labs whose
routers have no rate limit.

-o json prints one ProbeResult per line in protojson (proto field names).
A progress line is drawn on stderr only when stderr is a terminal.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"icmp", "tcp", "trace"},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runProbe(ctx, args[0], o, cmd.OutOrStdout(), os.Stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.targets, "targets", "", "file of addresses (one per line, # comments) or a CIDR prefix or address")
	f.Float64Var(&o.rate, "rate", 10000, "probe packets per second (0 = unlimited)")
	f.Float64Var(&o.routerRate, "router-rate", trace.DefaultRouterPPS, "trace probes per second to each router (0 = no per-router pacing)")
	f.IntSliceVar(&o.ports, "ports", []int{80}, "TCP ports (tcp), or the destination port (udp/tcp traces)")
	f.DurationVar(&o.timeout, "timeout", time.Second, "wait for each answer")
	f.IntVar(&o.retries, "retries", 0, "extra echo requests after a miss (icmp, 0..5)")
	f.StringVar(&o.protocol, "protocol", "icmp", "trace protocol: icmp, udp or tcp")
	f.BoolVar(&o.paris, "paris", true, "Paris traceroute (constant flow identifier)")
	f.IntVar(&o.maxTTL, "max-ttl", tracedefaults.MaxTTL, "highest TTL a trace probes")
	f.BoolVar(&o.allowSpecialRanges, "allow-special-ranges", false, "allow loopback, RFC 1918 and other special-purpose ranges (labs only)")
	f.BoolVar(&o.unprivileged, "unprivileged", false, "use the portable engines (datagram ICMP, connect) even with raw sockets")
	f.StringVarP(&o.output, "output", "o", "text", "output format: json or text")
	f.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error (stderr)")
	_ = cmd.MarkFlagRequired("targets")
	return cmd
}

// runProbe is `vantage-agent probe <kind>`: it checks the flags and the
// targets, opens the kind's sweep engine and writes one result per task.
func runProbe(ctx context.Context, kindName string, o probeOptions, stdout io.Writer, stderr *os.File) error {
	log, err := newLogger(o.logLevel, stderr)
	if err != nil {
		return err
	}
	kind, src, g, err := checkProbe(kindName, o)
	if err != nil {
		return err
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok && kind != vantagev1.ProbeKind_PROBE_KIND_TRACE {
		// A sweep's garbage is results already printed: keep the heap small.
		// Not for traces: 2,000 running traces hold ~13 MB live, and under
		// this limit the GC ran back to back (gctrace: 19% of the CPU).
		debug.SetMemoryLimit(24 << 20)
	}
	sweeper, engine, closeEngine, err := oneShotEngine(log, kind, o)
	if err != nil {
		return err
	}
	defer closeEngine()
	log.Info("one-shot probe", slog.String("kind", kindName), slog.String("engine", engine), slog.Int("targets", src.count()))

	out := bufio.NewWriterSize(stdout, 64<<10)
	defer func() { _ = out.Flush() }()
	run := &oneShot{kind: kind, o: o, src: src, g: g, write: resultWriter(o.output, out),
		prog: newProgress(stderr, src.count()*max(1, portsFor(kind, o)))}
	err = run.run(ctx, sweeper)
	run.prog.done()
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("stdout: %w", err)
	}
	if run.refused > 0 {
		return fmt.Errorf("%d targets refused by the agent guard (see their results)", run.refused)
	}
	return nil
}

// newLogger is the text logger on w at the level --log-level names.
func newLogger(levelText string, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(levelText)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", levelText, err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
}

// checkProbe validates the one-shot flags: the kind, its options, and the
// targets, which the guard must allow before anything is sent.
func checkProbe(kindName string, o probeOptions) (vantagev1.ProbeKind, targetSource, *guard.Guard, error) {
	kind, err := parseKind(kindName)
	if err != nil {
		return 0, targetSource{}, nil, err
	}
	if err := o.validate(kind); err != nil {
		return 0, targetSource{}, nil, err
	}
	src, err := parseTargets(o.targets)
	if err != nil {
		return 0, targetSource{}, nil, err
	}
	g := guard.New(guard.Config{AllowSpecialRanges: o.allowSpecialRanges})
	if err := src.precheck(g); err != nil {
		return 0, targetSource{}, nil, err
	}
	return kind, src, g, nil
}

// oneShot is one run of `vantage-agent probe`: a feeder turns the targets
// into tasks (the guard refuses some, each reported as an ERROR result),
// and the sweep engine runs them; every result is written and counted.
type oneShot struct {
	kind    vantagev1.ProbeKind
	o       probeOptions
	src     targetSource
	g       *guard.Guard
	write   func(*vantagev1.ProbeResult)
	prog    *progress
	refused int
}

func (s *oneShot) run(ctx context.Context, sweeper probe.Sweeper) error {
	tasks := make(chan *vantagev1.Task, 1024)
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		defer close(tasks)
		return s.feed(ctx, tasks)
	})
	eg.Go(func() error { return sweeper.Run(ctx, tasks, s.emit) })
	return eg.Wait()
}

// feed sends every target's tasks the guard allows.
func (s *oneShot) feed(ctx context.Context, tasks chan<- *vantagev1.Task) error {
	mk := newTaskMaker(s.kind, s.o)
	return s.src.each(func(a netip.Addr) error {
		for _, t := range mk.tasks(a) {
			if err := s.g.CheckTask(t); err != nil {
				s.refused++ // reported as an ERROR result, like a refused trigger
				s.write(&vantagev1.ProbeResult{TaskId: t.GetId(), Campaign: oneShotCampaign, Target: t.GetTarget(), Kind: s.kind,
					Port: t.GetTcp().GetPort(), Outcome: vantagev1.Outcome_OUTCOME_ERROR, Error: "refused by agent guard: " + err.Error()})
				continue
			}
			select {
			case tasks <- t:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
}

// emit writes one result of the sweep engine.
func (s *oneShot) emit(r *vantagev1.ProbeResult) {
	if r.GetTaskId() == "" {
		r.TaskId = taskID(s.kind, r.GetTarget(), r.GetPort())
	}
	r.Campaign = oneShotCampaign
	s.write(r)
	s.prog.add(r)
}

// oneShotEngine opens the sweep engine for kind: the trace package's
// shared engine for traces, else the registry's choice by capability.
func oneShotEngine(log *slog.Logger, kind vantagev1.ProbeKind, o probeOptions) (probe.Sweeper, string, func(), error) {
	if kind == vantagev1.ProbeKind_PROBE_KIND_TRACE {
		te, err := trace.NewTracer(trace.Config{Log: log, PPS: unlimited(o.rate), RouterPPS: unlimited(o.routerRate)})
		if err != nil {
			return nil, "", nil, fmt.Errorf("trace engine (needs raw sockets, CAP_NET_RAW): %w", err)
		}
		return te, trace.EngineRaw, func() { _ = te.Close() }, nil
	}
	if kind == vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO && !o.unprivileged {
		// The bulk engine alone: the registry would also open the TCP SYN
		// engine, whose raw ICMP socket gets (and filters out) a copy of
		// every echo reply of the sweep. Without raw sockets, the
		// registry's portable path below.
		// Its echo requests are 24-byte ICMP messages: DF costs nothing
		// there and spares the kernel an IP id per packet.
		if b, err := icmp.NewBulk(icmp.BulkConfig{Rate: o.rate, DontFragment: true, Logger: log}); err == nil {
			return b, icmp.EngineBulk, func() { _ = b.Close() }, nil
		}
	}
	reg := probe.NewRegistryWith(log, probe.Options{Rate: o.rate, Unprivileged: o.unprivileged})
	b, engine, err := reg.Sweeper(kind)
	if err != nil {
		_ = reg.Close()
		return nil, "", nil, err
	}
	return b, engine, func() { _ = reg.Close() }, nil
}

// unlimited maps a flag's 0 ("no pacing") to the trace engine's NoLimit
// (its 0 means "the default").
func unlimited(pps float64) float64 {
	if pps == 0 {
		return trace.NoLimit
	}
	return pps
}

func parseKind(s string) (vantagev1.ProbeKind, error) {
	switch s {
	case "icmp":
		return vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, nil
	case "tcp":
		return vantagev1.ProbeKind_PROBE_KIND_TCP, nil
	case "trace":
		return vantagev1.ProbeKind_PROBE_KIND_TRACE, nil
	}
	return 0, fmt.Errorf("probe kind %q: want icmp, tcp or trace", s)
}

func (o probeOptions) validate(kind vantagev1.ProbeKind) error {
	switch {
	case o.rate < 0:
		return fmt.Errorf("--rate %v: must be >= 0", o.rate)
	case o.routerRate < 0:
		return fmt.Errorf("--router-rate %v: must be >= 0", o.routerRate)
	case o.timeout <= 0 || o.timeout > 30*time.Second:
		return fmt.Errorf("--timeout %v: must be in (0, 30s]", o.timeout)
	case o.retries < 0 || o.retries > 5:
		return fmt.Errorf("--retries %d: must be 0..5", o.retries)
	case o.maxTTL < 1 || o.maxTTL > guard.MaxTTL:
		return fmt.Errorf("--max-ttl %d: must be 1..%d", o.maxTTL, guard.MaxTTL)
	case o.output != "json" && o.output != "text":
		return fmt.Errorf("-o %q: want json or text", o.output)
	}
	if _, err := traceProtocol(o.protocol); err != nil {
		return err
	}
	if kind == vantagev1.ProbeKind_PROBE_KIND_TCP && len(o.ports) == 0 {
		return errors.New("--ports: at least one port for tcp")
	}
	for _, p := range o.ports {
		if p < 1 || p > 65535 {
			return fmt.Errorf("--ports %d: must be 1..65535", p)
		}
	}
	return nil
}

func traceProtocol(s string) (vantagev1.TraceProtocol, error) {
	switch s {
	case "icmp":
		return vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP, nil
	case "udp":
		return vantagev1.TraceProtocol_TRACE_PROTOCOL_UDP, nil
	case "tcp":
		return vantagev1.TraceProtocol_TRACE_PROTOCOL_TCP_SYN, nil
	}
	return 0, fmt.Errorf("--protocol %q: want icmp, udp or tcp", s)
}

func portsFor(kind vantagev1.ProbeKind, o probeOptions) int {
	if kind == vantagev1.ProbeKind_PROBE_KIND_TCP {
		return len(o.ports)
	}
	return 1
}

// taskID is the id of a one-shot task, spelled as a campaign's
// (internal/taskid): "oneshot/<kind>/<target>", the target of a tcp task
// with its port.
func taskID(kind vantagev1.ProbeKind, target string, port uint32) string {
	if kind == vantagev1.ProbeKind_PROBE_KIND_TCP {
		target = taskid.TCPTarget(target, int64(port))
	}
	return taskid.New(oneShotCampaign, taskid.Kind(kind), target)
}

// taskMaker builds the tasks for each address (one per port for tcp).
// It is the sweep's producer, so it allocates little: every task shares
// one spec, tasks come from slabs, and a task's target is a substring of
// its id.
type taskMaker struct {
	kind   vantagev1.ProbeKind
	ports  []uint16
	prefix string // of task ids: "oneshot/<kind>/"
	spec   []func(t *vantagev1.Task)
	slab   []vantagev1.Task
	out    []*vantagev1.Task
}

func newTaskMaker(kind vantagev1.ProbeKind, o probeOptions) *taskMaker {
	m := &taskMaker{kind: kind, ports: []uint16{0}, prefix: taskid.Prefix(oneShotCampaign, taskid.Kind(kind))}
	timeoutMs := uint32(o.timeout.Milliseconds())
	switch kind {
	case vantagev1.ProbeKind_PROBE_KIND_TCP:
		m.ports = m.ports[:0]
		for _, p := range o.ports {
			spec := &vantagev1.Task_Tcp{Tcp: &vantagev1.TcpSpec{Port: uint32(p), Mode: vantagev1.TcpMode_TCP_MODE_SYN, TimeoutMs: timeoutMs}}
			m.ports = append(m.ports, uint16(p))
			m.spec = append(m.spec, func(t *vantagev1.Task) { t.Spec = spec })
		}
	case vantagev1.ProbeKind_PROBE_KIND_TRACE:
		proto, _ := traceProtocol(o.protocol)
		ts := &vantagev1.TraceSpec{Protocol: proto, Paris: o.paris, MaxTtl: uint32(o.maxTTL), TimeoutMs: timeoutMs}
		if len(o.ports) > 0 && proto != vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP {
			ts.Port = uint32(o.ports[0])
		}
		spec := &vantagev1.Task_Trace{Trace: ts}
		m.spec = append(m.spec, func(t *vantagev1.Task) { t.Spec = spec })
	default:
		spec := &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{Retries: uint32(o.retries), TimeoutMs: timeoutMs}}
		m.spec = append(m.spec, func(t *vantagev1.Task) { t.Spec = spec })
	}
	return m
}

// tasks returns a's tasks; the slice is reused by the next call.
func (m *taskMaker) tasks(a netip.Addr) []*vantagev1.Task {
	m.out = m.out[:0]
	for i, port := range m.ports {
		if len(m.slab) == 0 {
			m.slab = make([]vantagev1.Task, 256)
		}
		t := &m.slab[0]
		m.slab = m.slab[1:]
		t.Id, t.Target = m.ids(a, port)
		t.Campaign, t.Kind = oneShotCampaign, m.kind
		m.spec[i](t)
		m.out = append(m.out, t)
	}
	return m.out
}

// ids builds taskID(kind, a, port) and a's text in one allocation.
func (m *taskMaker) ids(a netip.Addr, port uint16) (id, target string) {
	var buf [96]byte
	b := append(buf[:0], m.prefix...)
	start := len(b)
	b = a.AppendTo(b)
	end := len(b)
	if port != 0 { // taskid.TCPTarget: "<addr>:<port>", unbracketed
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(port), 10)
	}
	id = string(b)
	return id, id[start:end]
}

// targetSource is a list of prefixes (single addresses are /32 or /128),
// expanded lazily so that a /16 never sits in memory as 65,536 tasks.
type targetSource struct{ prefixes []netip.Prefix }

// parseTargets reads a CIDR or address, else a file of them.
func parseTargets(s string) (targetSource, error) {
	if s == "" {
		return targetSource{}, errors.New("--targets: empty")
	}
	if p, err := parsePrefixOrAddr(s); err == nil {
		return targetSource{prefixes: []netip.Prefix{p}}, nil
	}
	f, err := os.Open(s)
	if err != nil {
		return targetSource{}, fmt.Errorf("--targets %q: not a CIDR or address, and not a readable file: %w", s, err)
	}
	defer f.Close()
	var src targetSource
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		p, err := parsePrefixOrAddr(line)
		if err != nil {
			return targetSource{}, fmt.Errorf("--targets %s line %d: %q: not an address or CIDR", s, n, line)
		}
		src.prefixes = append(src.prefixes, p)
	}
	if err := sc.Err(); err != nil {
		return targetSource{}, fmt.Errorf("--targets %s: %w", s, err)
	}
	return src, nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-map[bool]int{true: 96, false: 0}[p.Addr().Is4In6()]).Masked()
		if bits := p.Addr().BitLen() - p.Bits(); bits > 24 {
			return netip.Prefix{}, fmt.Errorf("%s expands to more than %d addresses", s, maxExpand)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (s targetSource) count() int {
	n := 0
	for _, p := range s.prefixes {
		n += 1 << (p.Addr().BitLen() - p.Bits())
	}
	return n
}

// precheck refuses a whole prefix that starts in a special-purpose range,
// before anything is sent (addresses inside are still checked one by one).
func (s targetSource) precheck(g *guard.Guard) error {
	for _, p := range s.prefixes {
		if _, err := g.CheckTarget(p.Addr().String()); err != nil {
			return fmt.Errorf("--targets %s: %w", p, err)
		}
	}
	return nil
}

func (s targetSource) each(f func(netip.Addr) error) error {
	for _, p := range s.prefixes {
		for a := p.Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
			if err := f(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// resultWriter prints results as protojson lines or text columns.
func resultWriter(format string, w *bufio.Writer) func(*vantagev1.ProbeResult) {
	if format == "json" {
		// One compact protojson line per result: appendResultJSON writes
		// protojson's bytes without reflection; the rest (traces' hops)
		// goes through protojson itself.
		var fast jsonEncoder
		var slow protoJSONLine
		line := make([]byte, 0, 1024)
		return func(r *vantagev1.ProbeResult) {
			var ok bool
			if line, ok = fast.appendResult(line[:0], r); !ok {
				line = slow.append(line[:0], r)
			}
			line = append(line, '\n')
			_, _ = w.Write(line)
		}
	}
	return func(r *vantagev1.ProbeResult) {
		target := r.GetTarget()
		if r.GetPort() != 0 {
			target = netip.AddrPortFrom(netip.MustParseAddr(target), uint16(r.GetPort())).String()
		}
		outcome := strings.TrimPrefix(r.GetOutcome().String(), "OUTCOME_")
		fmt.Fprintf(w, "%-40s %-11s", target, outcome)
		if r.GetReplyFrom() != "" {
			fmt.Fprintf(w, " %8.3fms from %s ttl %d", float64(r.GetRttUs())/1000, r.GetReplyFrom(), r.GetReplyTtl())
		}
		if r.GetOutcome() == vantagev1.Outcome_OUTCOME_UNREACHABLE {
			fmt.Fprintf(w, " code %d", r.GetUnreachableCode())
		}
		for _, h := range r.GetHops() {
			addr := h.GetAddr()
			if addr == "" {
				addr = "*"
			}
			fmt.Fprintf(w, "\n  %2d %-39s %8.3fms", h.GetTtl(), addr, float64(h.GetRttUs())/1000)
		}
		fmt.Fprintf(w, " attempts %d engine %s", r.GetAttempts(), r.GetEngine())
		if r.GetError() != "" {
			fmt.Fprintf(w, " (%s)", r.GetError())
		}
		_ = w.WriteByte('\n')
	}
}

// progress draws one line on stderr when it is a terminal.
type progress struct {
	w         *os.File
	on        bool
	total     int
	n, up     int
	last      time.Time
	startedAt time.Time
}

func newProgress(w *os.File, total int) *progress {
	fi, err := w.Stat()
	on := err == nil && fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
	return &progress{w: w, on: on, total: total, startedAt: time.Now()}
}

func (p *progress) add(r *vantagev1.ProbeResult) {
	p.n++
	switch r.GetOutcome() {
	case vantagev1.Outcome_OUTCOME_REPLY, vantagev1.Outcome_OUTCOME_TCP_SYNACK, vantagev1.Outcome_OUTCOME_TCP_RST:
		p.up++
	}
	if p.on && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		p.draw()
	}
}

func (p *progress) draw() {
	fmt.Fprintf(p.w, "\r%d/%d done, %d up, %s elapsed ", p.n, p.total, p.up, time.Since(p.startedAt).Truncate(time.Millisecond))
}

// done draws the final line.
func (p *progress) done() {
	if p.on {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
