package trace

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Config configures a Tracer. Zero values take the defaults below.
type Config struct {
	Log *slog.Logger
	// Limiter is the agent's guard; it is waited on once per probe packet.
	Limiter Limiter
	// PPS and Burst are the tracer-wide probe rate. Default 2000 and 64;
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

// Tracer runs many traceroutes at once over one shared raw socket per
// address family (plus a receive-only raw TCP socket for TCP traces). One
// goroutine paces and sends every probe; one per receive socket matches
// answers statelessly from what they quote.
type Tracer struct {
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

// NewTracer opens the shared sockets (IPv4 and IPv6, whichever the host
// allows; an error if neither) and starts the sender and reader goroutines.
// Close stops and waits for them.
func NewTracer(cfg Config) (*Tracer, error) {
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
	tc := &Tracer{
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
	tc.ctx, tc.cancel = context.WithCancel(context.Background())
	for i := range cfg.MaxTraces {
		tc.free = append(tc.free, uint16(i))
		tc.slotSem <- struct{}{}
	}
	var errs []error
	for i, v6 := range []bool{false, true} {
		f, err := cfg.open(v6, cfg.MaxTraces)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		tc.fam[i] = f
	}
	if tc.fam[0] == nil && tc.fam[1] == nil {
		tc.cancel()
		return nil, fmt.Errorf("trace engine needs raw sockets (root or CAP_NET_RAW): %w", errors.Join(errs...))
	}
	for i, f := range tc.fam {
		if f == nil {
			continue
		}
		kinds := [2]rxKind{rxICMP4, rxTCP4}
		if i == 1 {
			kinds = [2]rxKind{rxICMP6, rxTCP6}
		}
		tc.wg.Add(1)
		go tc.readLoop(f.icmp, kinds[0])
		if f.tcp != nil {
			tc.wg.Add(1)
			go tc.readLoop(f.tcp, kinds[1])
		}
	}
	tc.wg.Add(1)
	go tc.sendLoop()
	return tc, nil
}

// Close stops the tracer's goroutines, waits for them and closes the
// sockets. Running traces end with an error.
func (tc *Tracer) Close() error {
	var errs []error
	tc.closing.Do(func() {
		close(tc.stop)
		tc.cancel()
		for _, f := range tc.fam {
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
		tc.wg.Wait()
	})
	return errors.Join(errs...)
}

// PacketsIgnored counts received packets that were malformed, truncated,
// foreign, spoofed or duplicates, since start. Answers that come after their
// trace finished (typically the destination answering TTLs beyond its own
// distance) are counted by PacketsLate instead.
func (tc *Tracer) PacketsIgnored() uint64 { return tc.ignored.Load() + tc.dups.Load() }

// PacketsLate counts valid answers that arrived after their trace ended.
func (tc *Tracer) PacketsLate() uint64 { return tc.late.Load() }

// Protocols lists the trace protocols this tracer can run.
func (tc *Tracer) Protocols() []vantagev1.TraceProtocol { return allProtocols() }

func allProtocols() []vantagev1.TraceProtocol {
	return []vantagev1.TraceProtocol{vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP,
		vantagev1.TraceProtocol_TRACE_PROTOCOL_UDP, vantagev1.TraceProtocol_TRACE_PROTOCOL_TCP_SYN}
}

// HasFamily reports whether the tracer has sockets for IPv6 (true) or IPv4.
func (tc *Tracer) HasFamily(v6 bool) bool { return tc.fam[b2i(v6)] != nil }

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
func (tc *Tracer) Run(ctx context.Context, tasks <-chan *vantagev1.Task, emit func(*vantagev1.ProbeResult)) error {
	var wg sync.WaitGroup
	var emu sync.Mutex
	sem := make(chan struct{}, tc.cfg.MaxTraces)
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
				res := tc.Probe(ctx, t)
				emu.Lock()
				defer emu.Unlock()
				emit(res)
			}()
		}
	}
}
