package trace

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Config configures an Engine. Zero values take the defaults below.
type Config struct {
	Log *slog.Logger
	// Limiter is the agent's guard; it is waited on once per probe packet.
	Limiter Limiter
	// PPS and Burst are the engine-wide probe rate. Default 2000 and 64;
	// NoLimit (any negative PPS) sends as fast as the socket takes them.
	PPS   float64
	Burst int
	// RouterPPS and RouterBurst pace probes per router (the address that
	// will answer, as predicted from earlier traces, else per next hop and
	// TTL), so routers' ICMP rate limits are respected. Default 100 and 20;
	// NoLimit (any negative RouterPPS) turns per-router pacing off, for
	// labs whose routers have no ICMP rate limit. The daemon keeps the
	// default.
	RouterPPS   float64
	RouterBurst int
	// MaxTraces is how many traces run at once; more wait. Default 4096,
	// at most 16384.
	MaxTraces int
	// Attempts is how many probes a silent TTL gets in all (as scamper's
	// trace -q). Default 2, at most 5.
	Attempts int

	open openFunc // seam: nil opens raw sockets
}

// NoLimit as Config.PPS or Config.RouterPPS turns that pacing off.
const NoLimit = -1

// Defaults and caps.
const (
	DefaultPPS         = 2000
	DefaultBurst       = 64
	DefaultRouterPPS   = 100
	DefaultRouterBurst = 20
	DefaultMaxTraces   = 4096
	DefaultAttempts    = 2
	maxTracesCap       = 16384
	batchSize          = 64
	pathCacheCap       = 1 << 16
)

// Engine runs many traceroutes at once over one shared raw socket per
// address family (plus a receive-only raw TCP socket for TCP traces). One
// goroutine paces and sends every probe; one per receive socket matches
// answers statelessly from what they quote.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	fam  [2]*family // [0] IPv4, [1] IPv6; nil when unavailable
	seed maphash.Seed

	slotSem chan struct{} // one token per free slot

	mu    sync.Mutex // slots, free, traces' answers, path cache
	slots []slot
	free  []uint16 // FIFO, so a slot's generation changes slowly
	path  map[pathKey]netip.Addr
	dist  map[netip.Addr]uint8 // TTL at which a destination answered last

	qmu     sync.Mutex // the send queues
	queues  map[routerKey]*routerQ
	active  []*routerQ
	swept   time.Time
	global  *rate.Limiter // nil: unpaced
	wake    chan struct{}
	stop    chan struct{}
	ctx     context.Context // cancelled by Close; for the guard's Wait
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closing sync.Once

	ignored atomic.Uint64 // malformed, foreign or spoofed packets
	late    atomic.Uint64 // valid answers for traces already finished
	dups    atomic.Uint64
	matched atomic.Uint64 // answers recorded as hops
	sendErr atomic.Uint64
}

type slot struct {
	gen     uint8
	tr      *traceState // nil when free
	lastDst netip.Addr  // of the last trace in this slot, to tell late answers
}

type pathKey struct {
	prefix netip.Prefix
	ttl    uint8
}

// routerKey names a pacing bucket: a router address, or while the router
// is unknown, (destination prefix, TTL); TTL 1 is the first hop for all.
type routerKey struct {
	addr netip.Addr
	ttl  uint8
}

type routerQ struct {
	key    routerKey
	lim    *rate.Limiter // nil: unpaced
	items  []pending
	head   int
	queued bool // in Engine.active
}

type pending struct {
	tr  *traceState
	ttl uint8
}

type answer struct {
	final uint8 // 0 hop, finalDest, finalUnreach
	hop   *vantagev1.Hop
}

const (
	finalDest    = 1
	finalUnreach = 2
)

// traceState is one running trace. Guarded by Engine.mu.
type traceState struct {
	id       probeID
	maxTTL   int
	gapLimit int
	timeout  time.Duration
	sent     [maxTTLCap + 1]time.Time
	ans      [maxTTLCap + 1]answer
	nsent    int
	nDone    int // sent or dropped
	nQueued  int // ever queued; all sent when nDone == nQueued
	attempt  int // rounds of probing so far (retries of silent TTLs)
	horizon  int // probes are queued for TTL 1..horizon
	lastSent time.Time
	sendErr  error
	finished bool
	kick     chan struct{} // all queued probes sent, or all answered below horizon
	done     chan struct{}
	doneSet  bool
}

// NewEngine opens the shared sockets (IPv4 and IPv6, whichever the host
// allows; an error if neither) and starts the sender and reader goroutines.
// Close stops and waits for them.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.PPS == 0 {
		cfg.PPS = DefaultPPS
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.RouterPPS == 0 {
		cfg.RouterPPS = DefaultRouterPPS
	}
	if cfg.RouterBurst <= 0 {
		cfg.RouterBurst = DefaultRouterBurst
	}
	if cfg.MaxTraces <= 0 {
		cfg.MaxTraces = DefaultMaxTraces
	}
	cfg.MaxTraces = min(cfg.MaxTraces, maxTracesCap)
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultAttempts
	}
	cfg.Attempts = min(cfg.Attempts, 5)
	if cfg.open == nil {
		cfg.open = openRaw
	}
	e := &Engine{
		cfg: cfg, log: cfg.Log, seed: maphash.MakeSeed(),
		slotSem: make(chan struct{}, cfg.MaxTraces),
		slots:   make([]slot, cfg.MaxTraces),
		free:    make([]uint16, 0, cfg.MaxTraces),
		path:    make(map[pathKey]netip.Addr),
		dist:    make(map[netip.Addr]uint8),
		queues:  make(map[routerKey]*routerQ),
		global:  newLimiter(cfg.PPS, cfg.Burst),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	for i := range cfg.MaxTraces {
		e.free = append(e.free, uint16(i))
		e.slotSem <- struct{}{}
	}
	var errs []error
	for i, v6 := range []bool{false, true} {
		f, err := cfg.open(v6, cfg.MaxTraces)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.fam[i] = f
	}
	if e.fam[0] == nil && e.fam[1] == nil {
		e.cancel()
		return nil, fmt.Errorf("trace engine needs raw sockets (root or CAP_NET_RAW): %w", errors.Join(errs...))
	}
	for i, f := range e.fam {
		if f == nil {
			continue
		}
		kinds := [2]rxKind{rxICMP4, rxTCP4}
		if i == 1 {
			kinds = [2]rxKind{rxICMP6, rxTCP6}
		}
		e.wg.Add(1)
		go e.readLoop(f.icmp, kinds[0])
		if f.tcp != nil {
			e.wg.Add(1)
			go e.readLoop(f.tcp, kinds[1])
		}
	}
	e.wg.Add(1)
	go e.sendLoop()
	return e, nil
}

// Close stops the engine's goroutines, waits for them and closes the
// sockets. Running traces end with an error.
func (e *Engine) Close() error {
	var errs []error
	e.closing.Do(func() {
		close(e.stop)
		e.cancel()
		for _, f := range e.fam {
			if f == nil {
				continue
			}
			errs = append(errs, f.icmp.Close())
			if f.tcp != nil {
				errs = append(errs, f.tcp.Close())
			}
			if f.close != nil {
				errs = append(errs, f.close())
			}
		}
		e.wg.Wait()
	})
	return errors.Join(errs...)
}

// PacketsIgnored counts received packets that were malformed, truncated,
// foreign, spoofed or duplicates, since start. Answers that come after their
// trace finished (typically the destination answering TTLs beyond its own
// distance) are counted by PacketsLate instead.
func (e *Engine) PacketsIgnored() uint64 { return e.ignored.Load() + e.dups.Load() }

// PacketsLate counts valid answers that arrived after their trace ended.
func (e *Engine) PacketsLate() uint64 { return e.late.Load() }

// Protocols lists the trace protocols this engine can run.
func (e *Engine) Protocols() []vantagev1.TraceProtocol { return allProtocols() }

func allProtocols() []vantagev1.TraceProtocol {
	return []vantagev1.TraceProtocol{vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP,
		vantagev1.TraceProtocol_TRACE_PROTOCOL_UDP, vantagev1.TraceProtocol_TRACE_PROTOCOL_TCP_SYN}
}

// HasFamily reports whether the engine has sockets for IPv6 (true) or IPv4.
func (e *Engine) HasFamily(v6 bool) bool { return e.fam[b2i(v6)] != nil }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Run runs every task received on tasks concurrently (at most MaxTraces at
// a time) and calls emit with each result, in completion order, never
// concurrently; results carry the task's id and campaign. It returns
// when tasks is closed and every trace has finished, or when ctx ends.
func (e *Engine) Run(ctx context.Context, tasks <-chan *vantagev1.Task, emit func(*vantagev1.ProbeResult)) error {
	var wg sync.WaitGroup
	var emu sync.Mutex
	sem := make(chan struct{}, e.cfg.MaxTraces)
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case t, ok := <-tasks:
			if !ok {
				wg.Wait()
				return ctx.Err()
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				res := e.Probe(ctx, t)
				emu.Lock()
				defer emu.Unlock()
				emit(res)
			}()
		}
	}
}

// traceParams validates a task into the probe template of a trace.
func (e *Engine) traceParams(t *vantagev1.Task) (probeID, *vantagev1.TraceSpec, error) {
	spec := t.GetTrace()
	var id probeID
	switch spec.GetProtocol() {
	case vantagev1.TraceProtocol_TRACE_PROTOCOL_UNSPECIFIED, vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP:
		id.proto = protoICMP
	case vantagev1.TraceProtocol_TRACE_PROTOCOL_UDP:
		id.proto, id.port = protoUDP, DefaultUDPPort
	case vantagev1.TraceProtocol_TRACE_PROTOCOL_TCP_SYN:
		id.proto, id.port = protoTCP, DefaultTCPPort
	default:
		return id, nil, fmt.Errorf("trace.protocol %v: unknown protocol", spec.GetProtocol())
	}
	if p := spec.GetPort(); p != 0 {
		if p > 65535 {
			return id, nil, fmt.Errorf("trace.port %d: must be at most 65535", p)
		}
		if id.proto == protoICMP {
			return id, nil, fmt.Errorf("trace.port %d: ICMP traces have no port", p)
		}
		id.port = uint16(p)
	}
	dst, err := netip.ParseAddr(t.GetTarget())
	if err != nil {
		return id, nil, fmt.Errorf("target %q: not an IP address", t.GetTarget())
	}
	id.dst = dst.Unmap()
	if id.dst.Zone() != "" {
		return id, nil, fmt.Errorf("target %q: zones are not supported", t.GetTarget())
	}
	if id.proto == protoICMP && id.dst.Is6() {
		id.proto = protoICMPv6
	}
	id.paris = spec.GetParis()
	return id, spec, nil
}

// Probe traces the path to t.Target and returns when the trace ends.
func (e *Engine) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	res := &vantagev1.ProbeResult{TaskId: t.GetId(), Campaign: t.GetCampaign(), Target: t.GetTarget(), Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE}
	id, spec, err := e.traceParams(t)
	res.Engine = engineName(id.proto, id.paris)
	if err != nil {
		return fail(res, err)
	}
	if id.proto == protoTCP {
		res.Port = uint32(id.port)
	}
	f := e.fam[b2i(id.dst.Is6())]
	if f == nil {
		return fail(res, fmt.Errorf("target %s: no raw socket for this address family", id.dst))
	}
	if id.proto == protoTCP && f.tcp == nil {
		return fail(res, errors.New("trace.protocol TCP_SYN: no raw TCP receive socket on this host"))
	}
	id.src, err = f.srcFor(id.dst)
	if err != nil {
		return fail(res, err)
	}
	maxTTL := int(spec.GetMaxTtl())
	if maxTTL == 0 {
		maxTTL = DefaultMaxTTL
	}
	maxTTL = min(maxTTL, maxTTLCap)
	gapLimit := int(spec.GetGapLimit())
	if gapLimit == 0 {
		gapLimit = DefaultGapLimit
	}
	timeout := time.Duration(min(spec.GetTimeoutMs(), maxTimeoutMs)) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTimeout
	}

	select {
	case <-e.slotSem:
	case <-ctx.Done():
		return fail(res, fmt.Errorf("waiting for a free trace slot: %w", ctx.Err()))
	case <-e.stop:
		return fail(res, errEngineClosed)
	}
	tr := &traceState{id: id, maxTTL: maxTTL, gapLimit: gapLimit, timeout: timeout,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	e.start(tr)
	defer e.release(tr)

	tm := time.NewTimer(time.Hour)
	tm.Stop()
	defer tm.Stop()
	var deadline <-chan time.Time
	var why vantagev1.TraceStopReason
	var runErr error
wait:
	for {
		select {
		case <-tr.done:
			break wait
		case <-tr.kick:
			e.mu.Lock()
			last, serr, allSent := tr.lastSent, tr.sendErr, tr.nDone == tr.nQueued
			extend := tr.shouldExtend(false)
			e.mu.Unlock()
			if extend {
				e.extend(tr)
				deadline = nil
				continue
			}
			if allSent && deadline == nil {
				if serr != nil && last.IsZero() {
					why, runErr = vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR, serr
					break wait
				}
				tm.Reset(time.Until(last.Add(timeout)))
				deadline = tm.C
			}
		case <-deadline:
			deadline = nil
			e.mu.Lock()
			extend := tr.shouldExtend(true)
			var retry []int
			if !extend && tr.attempt+1 < e.cfg.Attempts {
				retry = tr.silent()
			}
			e.mu.Unlock()
			switch {
			case extend:
				e.extend(tr)
			case len(retry) > 0:
				// Silent TTLs get another probe, as scamper's attempts:
				// routers rate-limit their ICMP errors.
				tr.attempt++
				e.enqueueTTLs(tr, retry)
			default:
				break wait
			}
		case <-ctx.Done():
			why, runErr = vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR, ctx.Err()
			break wait
		case <-e.stop:
			why, runErr = vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR, errEngineClosed
			break wait
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	tr.finished = true
	for ttl := 1; ttl <= maxTTL; ttl++ {
		if !tr.sent[ttl].IsZero() {
			res.Attempts++
			if res.SentAt == nil || tr.sent[ttl].Before(res.SentAt.AsTime()) {
				res.SentAt = timestamppb.New(tr.sent[ttl])
			}
		}
	}
	if why == vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR {
		tr.hops(res)
		return finish(res, why, runErr)
	}
	return finish(res, tr.hops(res), nil)
}

var errEngineClosed = errors.New("trace engine closed")

const maxTimeoutMs = 30000

func engineName(proto uint8, paris bool) string {
	n := "trace/icmp"
	switch proto {
	case protoUDP:
		n = "trace/udp"
	case protoTCP:
		n = "trace/tcp-syn"
	}
	if paris {
		n += "-paris"
	}
	return n
}

// hops fills res.Hops from TTL 1 and says why the trace stops: at the
// destination, at an unreachable, at a forwarding loop, after gap_limit
// silent TTLs, or at max_ttl.
func (tr *traceState) hops(res *vantagev1.ProbeResult) vantagev1.TraceStopReason {
	gap := 0
	loop := loopAt(tr.ans[:tr.maxTTL+1])
	for ttl := 1; ttl <= tr.maxTTL; ttl++ {
		a := tr.ans[ttl]
		if a.hop == nil {
			res.Hops = append(res.Hops, &vantagev1.Hop{Ttl: uint32(ttl)})
			gap++
			if gap >= tr.gapLimit {
				return vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT
			}
			continue
		}
		gap = 0
		res.Hops = append(res.Hops, a.hop)
		if ttl == loop {
			return vantagev1.TraceStopReason_TRACE_STOP_REASON_LOOP
		}
		switch a.final {
		case finalDest:
			return vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED
		case finalUnreach:
			return vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE
		}
	}
	return vantagev1.TraceStopReason_TRACE_STOP_REASON_MAX_TTL
}

// start gives tr a slot and queues its probes, every TTL at once; pacing
// decides when each leaves.
func (e *Engine) start(tr *traceState) {
	e.mu.Lock()
	idx := e.free[0]
	e.free = e.free[1:]
	s := &e.slots[idx]
	s.gen++
	s.tr, s.lastDst = tr, tr.id.dst
	tr.id.slot, tr.id.gen = idx, s.gen
	tr.id.cookie = e.cookie(&tr.id)
	tr.horizon = tr.maxTTL
	if n, ok := e.dist[tr.id.dst]; ok {
		// Known distance: probe one TTL beyond it, not all the way to
		// max_ttl; the trace extends if the path got longer.
		tr.horizon = min(tr.maxTTL, int(n)+1)
	}
	e.mu.Unlock()
	e.enqueue(tr, 1, tr.horizon)
}

// extend queues the TTLs beyond tr's horizon up to max_ttl.
func (e *Engine) extend(tr *traceState) {
	e.mu.Lock()
	lo := tr.horizon + 1
	tr.horizon = tr.maxTTL
	e.mu.Unlock()
	e.enqueue(tr, lo, tr.maxTTL)
}

// shouldExtend: the path is longer than expected. Either every TTL up to
// the horizon answered without reaching the destination, or (timedOut)
// the horizon's answers are in and the gap limit was not hit. Called with
// e.mu held.
func (tr *traceState) shouldExtend(timedOut bool) bool {
	if tr.horizon >= tr.maxTTL || tr.finished || loopAt(tr.ans[:tr.horizon+1]) != 0 {
		return false
	}
	gap := 0
	for ttl := 1; ttl <= tr.horizon; ttl++ {
		a := tr.ans[ttl]
		if a.final != 0 {
			return false
		}
		if a.hop == nil {
			if !timedOut {
				return false
			}
			gap++
			if gap >= tr.gapLimit {
				return false
			}
		} else {
			gap = 0
		}
	}
	return true
}

// silent lists the TTLs that matter and stayed silent: those below the
// first final answer (or up to the horizon), stopping after a gap_limit run.
// Called with e.mu held.
func (tr *traceState) silent() []int {
	var out []int
	gap := 0
	for ttl := 1; ttl <= tr.horizon; ttl++ {
		a := tr.ans[ttl]
		if a.final != 0 {
			break
		}
		if a.hop != nil {
			gap = 0
			continue
		}
		out = append(out, ttl)
		if gap++; gap >= tr.gapLimit {
			break
		}
	}
	return out
}

// enqueue queues tr's probes for TTL lo..hi in their routers' queues.
func (e *Engine) enqueue(tr *traceState, lo, hi int) {
	var ttls []int
	for ttl := lo; ttl <= hi; ttl++ {
		ttls = append(ttls, ttl)
	}
	e.enqueueTTLs(tr, ttls)
}

func (e *Engine) enqueueTTLs(tr *traceState, ttls []int) {
	if len(ttls) == 0 {
		return
	}
	keys := make([]routerKey, len(ttls))
	e.mu.Lock()
	for i, ttl := range ttls {
		keys[i] = e.routerFor(tr.id.dst, uint8(ttl))
	}
	tr.nQueued += len(ttls)
	e.mu.Unlock()

	e.qmu.Lock()
	for i, ttl := range ttls {
		q := e.queues[keys[i]]
		if q == nil {
			q = &routerQ{key: keys[i], lim: newLimiter(e.cfg.RouterPPS, e.cfg.RouterBurst)}
			e.queues[keys[i]] = q
		}
		q.items = append(q.items, pending{tr: tr, ttl: uint8(ttl)})
		if !q.queued {
			q.queued = true
			e.active = append(e.active, q)
		}
	}
	e.qmu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// release frees tr's slot. Probes still queued are dropped by the sender.
func (e *Engine) release(tr *traceState) {
	e.mu.Lock()
	tr.finished = true
	e.slots[tr.id.slot].tr = nil
	e.free = append(e.free, tr.id.slot)
	e.mu.Unlock()
	e.slotSem <- struct{}{}
}

// cookie is a keyed hash of the probe's identity with the engine secret.
func (e *Engine) cookie(id *probeID) uint32 {
	var b [24]byte
	binary.BigEndian.PutUint16(b[0:2], id.slot)
	b[2], b[3] = id.gen, id.proto
	a := id.dst.As16()
	copy(b[4:20], a[:])
	binary.BigEndian.PutUint16(b[20:22], id.port)
	return uint32(maphash.Bytes(e.seed, b[:]))
}

func prefixOf(a netip.Addr) netip.Prefix {
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, _ := a.Prefix(bits)
	return p
}

// routerFor predicts the pacing bucket of the probe to dst with ttl: the
// router seen at that TTL towards dst's prefix, the destination itself at or
// beyond its known distance, else (prefix, TTL). TTL 1 is the first-hop
// router for every destination of a family. Called with e.mu held.
func (e *Engine) routerFor(dst netip.Addr, ttl uint8) routerKey {
	p := prefixOf(dst)
	if n, ok := e.dist[dst]; ok && ttl >= n {
		return routerKey{addr: dst}
	}
	if a, ok := e.path[pathKey{p, ttl}]; ok {
		return routerKey{addr: a}
	}
	if ttl == 1 {
		if dst.Is6() {
			return routerKey{addr: netip.IPv6Unspecified(), ttl: 1}
		}
		return routerKey{addr: netip.IPv4Unspecified(), ttl: 1}
	}
	return routerKey{addr: p.Addr(), ttl: ttl}
}

// learn remembers who answered at ttl towards dst. Called with e.mu held.
func (e *Engine) learn(dst netip.Addr, ttl uint8, from netip.Addr, final uint8) {
	if len(e.path) >= pathCacheCap {
		clear(e.path)
	}
	if len(e.dist) >= pathCacheCap {
		clear(e.dist)
	}
	p := prefixOf(dst)
	if final == finalDest {
		e.dist[dst] = ttl
		return
	}
	e.path[pathKey{p, ttl}] = from
}

// sendLoop is the only sender: it releases queued probes as the global and
// per-router buckets allow, in batches.
func (e *Engine) sendLoop() {
	defer e.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var bufs [2][batchSize][hdr6 + 64]byte
	var out [2][]outPacket
	var trs [2][]pending
	for {
		wait := e.sendReady(&bufs, &out, &trs)
		if wait < 0 {
			select {
			case <-e.wake:
			case <-e.stop:
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-e.wake:
		case <-timer.C:
		case <-e.stop:
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// sendReady sends every probe the buckets allow now and returns how long
// until the next one may go (-1: nothing queued).
func (e *Engine) sendReady(bufs *[2][batchSize][hdr6 + 64]byte, out *[2][]outPacket, trs *[2][]pending) time.Duration {
	for {
		now := time.Now()
		var batch []pending
		wait := time.Duration(-1)
		e.qmu.Lock()
		// Lowest TTLs first: when many traces start at once, the probes
		// near the vantage go first, and by the time the high TTLs' turn
		// comes, traces that reached their destination have dropped them.
		slices.SortStableFunc(e.active, func(a, b *routerQ) int {
			return int(a.items[a.head].ttl) - int(b.items[b.head].ttl)
		})
		keep := e.active[:0]
		for _, q := range e.active {
			for q.head < len(q.items) && len(batch) < batchSize {
				p := q.items[q.head]
				if e.isFinished(p.tr) {
					q.items[q.head] = pending{}
					q.head++
					e.dropped(p.tr)
					continue
				}
				if d, ok := tokenWait(q.lim, now); !ok {
					wait = minWait(wait, d)
					break
				}
				if d, ok := tokenWait(e.global, now); !ok {
					wait = minWait(wait, d)
					break
				}
				if q.lim != nil {
					q.lim.AllowN(now, 1)
				}
				if e.global != nil {
					e.global.AllowN(now, 1)
				}
				q.items[q.head] = pending{}
				q.head++
				batch = append(batch, p)
			}
			if q.head < len(q.items) {
				if len(batch) >= batchSize {
					wait = 0
				}
				if q.head > len(q.items)/2 { // a queue fed while it drains
					n := copy(q.items, q.items[q.head:])
					clear(q.items[n:])
					q.items, q.head = q.items[:n], 0
				}
				keep = append(keep, q)
				continue
			}
			q.items, q.head, q.queued = q.items[:0], 0, false
		}
		clear(e.active[len(keep):])
		e.active = keep
		if now.Sub(e.swept) > time.Second {
			// Forget idle routers whose bucket is full again: they
			// would start from a full bucket anyway.
			e.swept = now
			for k, q := range e.queues {
				if !q.queued && (q.lim == nil || q.lim.TokensAt(now) >= float64(q.lim.Burst())) {
					delete(e.queues, k)
				}
			}
		}
		e.qmu.Unlock()
		if len(batch) == 0 {
			return wait
		}
		e.write(batch, bufs, out, trs)
		if wait != 0 {
			return wait
		}
	}
}

// newLimiter is a token bucket, or nil (unpaced) for a negative rate.
func newLimiter(pps float64, burst int) *rate.Limiter {
	if pps < 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(pps), burst)
}

// tokenWait reports whether lim has a token now, else how long until it
// has one. A nil lim always has one.
func tokenWait(lim *rate.Limiter, now time.Time) (time.Duration, bool) {
	if lim == nil {
		return 0, true
	}
	tok := lim.TokensAt(now)
	if tok >= 1 {
		return 0, true
	}
	return time.Duration((1 - tok) / float64(lim.Limit()) * float64(time.Second)), false
}

func minWait(a, b time.Duration) time.Duration {
	b = max(b, time.Microsecond)
	if a < 0 || b < a {
		return b
	}
	return a
}

func (e *Engine) isFinished(tr *traceState) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return tr.finished
}

// dropped accounts a queued probe that will not be sent.
func (e *Engine) dropped(tr *traceState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.noteDone(tr)
}

// noteDone counts a probe of tr as sent or dropped. Called with e.mu held.
func (e *Engine) noteDone(tr *traceState) {
	tr.nDone++
	if tr.nDone == tr.nQueued {
		tr.signal()
	}
}

// write builds a batch and sends it, per family, one packet per write.
// Each packet's send time is taken right before its own write and recorded
// before it, so even an answer faster than the bookkeeping finds it. (One
// sendmmsg for the batch with one time for all would add the time the
// kernel takes over the packets before it to each RTT: up to ~130 µs for
// 64 packets.)
func (e *Engine) write(batch []pending, bufs *[2][batchSize][hdr6 + 64]byte, out *[2][]outPacket, trs *[2][]pending) {
	out[0], out[1] = out[0][:0], out[1][:0]
	trs[0], trs[1] = trs[0][:0], trs[1][:0]
	for _, p := range batch {
		if e.cfg.Limiter != nil {
			if err := e.cfg.Limiter.Wait(e.ctx); err != nil {
				e.mu.Lock()
				if p.tr.sendErr == nil {
					p.tr.sendErr = fmt.Errorf("pacing: %w", err)
				}
				e.noteDone(p.tr)
				e.mu.Unlock()
				continue
			}
		}
		f := b2i(p.tr.id.dst.Is6())
		id := p.tr.id
		id.ttl = p.ttl
		b := bufs[f][len(out[f])][:]
		n := buildProbe(b, &id)
		out[f] = append(out[f], outPacket{b: b[:n], dst: id.dst})
		trs[f] = append(trs[f], p)
	}
	for f := range 2 {
		pk := out[f]
		failed := 0
		for i := range pk {
			p := trs[f][i]
			now := time.Now()
			e.mu.Lock()
			if p.tr.finished { // ended while the batch was being written
				e.mu.Unlock()
				continue
			}
			p.tr.sent[p.ttl] = now
			p.tr.lastSent = now
			e.mu.Unlock()
			if _, err := e.fam[f].icmp.WriteBatch(pk[i : i+1]); err != nil {
				e.sendErr.Add(1)
				failed++
				e.mu.Lock()
				p.tr.sent[p.ttl] = time.Time{}
				if p.tr.sendErr == nil {
					p.tr.sendErr = fmt.Errorf("send ttl %d: %w", p.ttl, err)
				}
				e.mu.Unlock()
			}
		}
		e.mu.Lock()
		for _, p := range trs[f] {
			e.noteDone(p.tr)
		}
		e.mu.Unlock()
		if failed > 0 {
			e.log.Debug("trace probe send failed", slog.Int("packets", failed))
		}
	}
}

// readLoop reads one receive socket until it is closed.
func (e *Engine) readLoop(c rawConn, kind rxKind) {
	defer e.wg.Done()
	in := make([]inPacket, 32)
	for i := range in {
		in[i].buf = make([]byte, 1600)
	}
	for {
		n, err := c.ReadBatch(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-e.stop:
				return
			default:
			}
			e.log.Warn("trace socket read failed", slog.Any("error", err))
			select {
			case <-time.After(10 * time.Millisecond):
			case <-e.stop:
				return
			}
			continue
		}
		for i := range n {
			e.handle(kind, &in[i])
		}
	}
}

// handle parses one received packet and matches it to its trace and TTL,
// or counts it.
func (e *Engine) handle(kind rxKind, p *inPacket) {
	b := p.buf[:min(p.n, len(p.buf))]
	var r reply
	var err error
	hl := p.hopLimit
	switch kind {
	case rxICMP4:
		r, err = parseICMP4(b)
		hl = int(r.replyTTL)
	case rxICMP6:
		r, err = parseICMP6(b, p.src)
	case rxTCP4:
		r, err = parseTCP4(b)
		hl = int(r.replyTTL)
	case rxTCP6:
		r, err = parseTCP6(b, p.src)
	}
	if err != nil {
		e.ignored.Add(1)
		return
	}
	e.match(&r, hl, p.at)
}

// match finds the trace and TTL an answer belongs to from the answer alone.
func (e *Engine) match(r *reply, hopLimit int, at time.Time) {
	var idx uint16
	switch r.proto {
	case protoICMP, protoICMPv6:
		idx = r.sport
	case protoUDP, protoTCP:
		if r.sport < portBase {
			e.ignored.Add(1)
			return
		}
		idx = r.sport - portBase
	default:
		e.ignored.Add(1)
		return
	}
	gen, ttl := uint8(r.tag>>8), r.tag&0xff
	dst := r.quotedDst
	if r.kind == kindEchoReply {
		dst = r.src
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if int(idx) >= len(e.slots) {
		e.ignored.Add(1)
		return
	}
	s := &e.slots[idx]
	tr := s.tr
	if tr != nil && r.proto == protoUDP && !tr.id.paris {
		// Classic UDP: the destination port names the TTL; the
		// checksum is not ours to read.
		ttl, gen = r.dport-tr.id.port, tr.id.gen
	}
	if tr == nil || tr.finished || s.gen != gen || tr.id.dst != dst || tr.id.proto != r.proto {
		if s.gen == gen && s.lastDst == dst {
			e.late.Add(1)
		} else {
			e.ignored.Add(1)
		}
		return
	}
	id := &tr.id
	switch r.proto {
	case protoTCP:
		if r.hiSeq != uint16(id.cookie) || r.dport != id.port {
			e.ignored.Add(1)
			return
		}
	case protoUDP:
		if (id.paris && r.dport != id.port) || (r.payloadN >= 6 && binary.BigEndian.Uint32(r.payload[2:6]) != id.cookie) {
			e.ignored.Add(1)
			return
		}
	default:
		if r.payloadN >= 6 && binary.BigEndian.Uint32(r.payload[2:6]) != id.cookie {
			e.ignored.Add(1)
			return
		}
	}
	if ttl < 1 || int(ttl) > tr.maxTTL || tr.sent[ttl].IsZero() {
		e.ignored.Add(1)
		return
	}
	if tr.ans[ttl].hop != nil {
		e.dups.Add(1)
		return
	}
	var final uint8
	switch r.kind {
	case kindEchoReply, kindTCP:
		final = finalDest
	case kindUnreachable:
		final = finalUnreach
		if r.src == id.dst && r.proto == protoUDP &&
			((id.dst.Is4() && r.icmpCode == v4PortUnreach) || (id.dst.Is6() && r.icmpCode == v6PortUnreach)) {
			final = finalDest // the destination's own port unreachable
		}
	}
	rtt := max(at.Sub(tr.sent[ttl]), 0)
	hop := &vantagev1.Hop{
		Ttl:       uint32(ttl),
		Addr:      r.src.String(),
		RttUs:     uint32(min(rtt.Microseconds(), 1<<32-1)),
		IcmpType:  uint32(r.icmpType),
		IcmpCode:  uint32(r.icmpCode),
		QuotedTtl: uint32(r.quotedTTL),
		ReplyTtl:  uint32(max(hopLimit, 0)),
	}
	if r.kind == kindTCP {
		hop.IcmpType, hop.IcmpCode = 0, 0
	}
	if r.kind == kindEchoReply || r.kind == kindTCP {
		hop.QuotedTtl = 0
	}
	for _, l := range r.labels[:r.nLabels] {
		hop.Mpls = append(hop.Mpls, &vantagev1.MplsLabel{Label: l.label, Exp: uint32(l.exp), BottomOfStack: l.s, Ttl: uint32(l.ttl)})
	}
	tr.ans[ttl] = answer{final: final, hop: hop}
	e.matched.Add(1)
	if final != finalDest || tr.lowestFinal() == int(ttl) {
		e.learn(id.dst, uint8(ttl), r.src, final)
	}
	if !tr.doneSet && tr.complete() {
		tr.doneSet = true
		close(tr.done)
	} else if tr.shouldExtend(false) {
		tr.signal()
	}
}

// lowestFinal is the lowest TTL with a final answer, or 0.
func (tr *traceState) lowestFinal() int {
	for ttl := 1; ttl <= tr.maxTTL; ttl++ {
		if tr.ans[ttl].final != 0 {
			return ttl
		}
	}
	return 0
}

// signal wakes the trace's Probe goroutine.
func (tr *traceState) signal() {
	select {
	case tr.kick <- struct{}{}:
	default:
	}
}

// complete reports whether the answers decide the trace already: a final
// answer, or a loop, with every TTL below it answered.
func (tr *traceState) complete() bool {
	for ttl := 1; ttl <= tr.maxTTL; ttl++ {
		a := tr.ans[ttl]
		if a.hop == nil {
			return loopAt(tr.ans[:ttl]) != 0
		}
		if a.final != 0 {
			return true
		}
	}
	return loopAt(tr.ans[:tr.maxTTL+1]) != 0
}

// loopRepeat is how many consecutive TTLs one router may answer before the
// trace counts as a loop. Two in a row are common (a router that answers
// for its own next hop, or does not decrement the TTL); three are not.
const loopRepeat = 3

// loopAt returns the TTL at which the answers (ans[ttl], ttl >= 1) show a
// forwarding loop, or 0: the same address answering time exceeded at
// loopRepeat consecutive TTLs, or answering again after another address or
// a silent TTL came between (a cycle). Only TTLs below the first final
// answer count.
func loopAt(ans []answer) int {
	run := 0
	for ttl := 1; ttl < len(ans); ttl++ {
		a := ans[ttl]
		if a.hop == nil {
			run = 0
			continue
		}
		if a.final != 0 {
			return 0
		}
		addr := a.hop.GetAddr()
		if run > 0 && ans[ttl-1].hop.GetAddr() == addr {
			if run++; run >= loopRepeat {
				return ttl
			}
			continue
		}
		run = 1
		for prev := 1; prev < ttl; prev++ {
			if h := ans[prev].hop; h != nil && h.GetAddr() == addr {
				return ttl // seen before, with something else between
			}
		}
	}
	return 0
}

// finish fills the summary fields of res from its last hop.
func finish(res *vantagev1.ProbeResult, why vantagev1.TraceStopReason, err error) *vantagev1.ProbeResult {
	res.StopReason = why
	var last *vantagev1.Hop
	if n := len(res.Hops); n > 0 {
		last = res.Hops[n-1]
	}
	switch why {
	case vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED:
		res.Outcome = vantagev1.Outcome_OUTCOME_REPLY
	case vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE:
		res.Outcome = vantagev1.Outcome_OUTCOME_UNREACHABLE
		res.UnreachableCode = last.GetIcmpCode()
	case vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR:
		res.Outcome = vantagev1.Outcome_OUTCOME_ERROR
		res.Error = err.Error()
		return res
	default:
		res.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT
		return res
	}
	res.RttUs, res.ReplyFrom, res.ReplyTtl = last.GetRttUs(), last.GetAddr(), last.GetReplyTtl()
	return res
}

func fail(res *vantagev1.ProbeResult, err error) *vantagev1.ProbeResult {
	res.Outcome = vantagev1.Outcome_OUTCOME_ERROR
	res.StopReason = vantagev1.TraceStopReason_TRACE_STOP_REASON_ERROR
	res.Error = err.Error()
	return res
}
