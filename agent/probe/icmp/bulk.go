package icmp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"

	"github.com/vantage-net/vantage/agent/probe/internal/bulk"
	"github.com/vantage-net/vantage/agent/probe/rawsock"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// EngineBulk is the shared raw-socket engine's name in ProbeResult.engine.
const EngineBulk = "icmp/bulk-raw"

// Limits of a task's spec.
const (
	MaxRetries      = 5
	MaxTimeout      = 30 * time.Second
	MaxPayloadBytes = 1400
	// minBulkPayload holds the cookie and pads to pro-bing's default size.
	minBulkPayload = 16
	// maxIDs bounds the id block: 16 ids * 65536 seqs = 1Mi slots.
	maxIDs = 16
)

// BulkConfig configures the shared engine.
type BulkConfig struct {
	// Rate caps the engine's echo requests per second; 0 is unlimited.
	Rate float64
	// Slots bounds probes in flight, and so memory (about 100 bytes per
	// slot plus the results in flight). 0 sizes it from Rate and a 2 s
	// timeout, at least 1024; unlimited rate gets 32768.
	Slots int
	// Limiter, if set, is waited on for every packet (the agent's guard).
	Limiter Limiter
	// MinGap is the per-target budget between retries of one task.
	MinGap time.Duration
	// RecvBuf is the socket receive buffer; 0 means 8 MiB.
	RecvBuf int
	// DontFragment sets DF on IPv4 echo requests, which spares the kernel
	// an IP id per packet. Only for small payloads (the one-shot sweep's):
	// on a path whose MTU is smaller than a request, a router answers
	// "fragmentation needed" (UNREACHABLE, code 4) instead of fragmenting.
	DontFragment bool
	// Senders is how many send loops (each with its own send-only
	// sockets) run side by side. 0 means one per CPU (at most 4) when
	// nothing paces the engine (Rate 0, no Limiter), else one.
	Senders int
	Logger  *slog.Logger
}

// Bulk is the Linux echo engine: one raw socket per address family shared
// by every ICMP task of the agent, a BPF filter so that only echo replies
// with our ids and ICMP errors are copied to user space, batched reads and
// writes, kernel receive timestamps and a keyed cookie in every payload.
// It implements both the per-task Prober and the Sweeper API.
type Bulk struct {
	mux *bulk.Mux
	ids idRange
	v6  bool
}

var instances atomic.Uint32

// NewBulk opens the raw sockets and starts the engine. IPv4 must work;
// IPv6 is used when its raw socket opens too.
func NewBulk(cfg BulkConfig) (*Bulk, error) {
	slots := cfg.Slots
	if slots <= 0 {
		slots = 1 << 15
		if cfg.Rate > 0 {
			slots = max(int(cfg.Rate*2.5), 1024)
		}
	}
	slots = min(slots, maxIDs<<16)
	n := (slots + 0xffff) >> 16
	// The id block is fixed for the process (pid) and the engine instance,
	// aligned to maxIDs, so two engines in one process never share ids.
	blk := (uint32(os.Getpid())*8 + instances.Add(1)) % (65536 / maxIDs)
	ids := idRange{base: uint16(blk * maxIDs), n: uint16(n)}
	if cfg.RecvBuf == 0 {
		cfg.RecvBuf = 8 << 20
	}
	c4, err := rawsock.Listen(false, rawsock.ICMP, rawsock.Options{Filter: filter4(ids), RecvBuf: cfg.RecvBuf, DontFragment: cfg.DontFragment})
	if err != nil {
		return nil, fmt.Errorf("icmp bulk engine: %w", err)
	}
	c6, err6 := rawsock.Listen(true, rawsock.ICMP, rawsock.Options{Filter: filter6(ids), RecvBuf: cfg.RecvBuf})
	b := &Bulk{ids: ids}
	senders := cfg.Senders
	if senders <= 0 {
		senders = 1
		if cfg.Rate == 0 && cfg.Limiter == nil {
			senders = min(runtime.GOMAXPROCS(0), 4)
		}
	}
	bc := bulk.Config{
		EngineName: EngineBulk, Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO,
		Send4: c4, Slots: slots, MaxSlots: maxIDs << 16,
		Senders: senders,
		OpenSend: func(v6 bool) (bulk.Conn, error) {
			return rawsock.Listen(v6, rawsock.ICMP, rawsock.Options{SendOnly: true, DontFragment: cfg.DontFragment})
		},
		Rate: cfg.Rate, Limiter: cfg.Limiter, MinGap: cfg.MinGap, Logger: cfg.Logger,
		Recv: []bulk.Receiver{{Conn: c4, Decode: func(pkt []byte, _ netip.Addr, _ int, m *bulk.Match) bulk.Verdict {
			return decode4(ids, pkt, m)
		}}},
		Encode: func(buf []byte, j *bulk.Job, slot uint32, cookie uint64) (int, error) {
			id, seq := ids.idSeq(slot)
			return encodeEcho(buf, j.Addr.Is6(), id, seq, cookie, j.PayloadBytes), nil
		},
	}
	if err6 == nil {
		b.v6 = true
		bc.Send6 = c6
		bc.Recv = append(bc.Recv, bulk.Receiver{Conn: c6, Decode: func(pkt []byte, from netip.Addr, hop int, m *bulk.Match) bulk.Verdict {
			return decode6(ids, pkt, from, hop, m)
		}})
	} else if cfg.Logger != nil {
		cfg.Logger.Info("icmp bulk engine without IPv6", slog.Any("error", err6))
	}
	mux, err := bulk.New(bc)
	if err != nil {
		_ = c4.Close()
		if c6 != nil {
			_ = c6.Close()
		}
		return nil, fmt.Errorf("icmp bulk engine: %w", err)
	}
	b.mux = mux
	return b, nil
}

// IPv6 reports whether the engine has an ICMPv6 socket.
func (b *Bulk) IPv6() bool { return b.v6 }

// Close stops the engine; pending probes end in ERROR.
func (b *Bulk) Close() error { return b.mux.Close() }

// PacketsIgnored counts malformed, foreign, spoofed and late packets.
func (b *Bulk) PacketsIgnored() uint64 { return b.mux.Stats().Ignored() }

// Stats returns the engine's counters.
func (b *Bulk) Stats() bulk.Stats { return b.mux.Stats() }

// CookieKey is the cookie key (tests forge replies with a wrong one).
func (b *Bulk) CookieKey() rawsock.CookieKey { return b.mux.CookieKey() }

// IDs returns the block of echo ids the engine owns: [base, base+n).
func (b *Bulk) IDs() (base, n uint16) { return b.ids.base, b.ids.n }

// Run implements the sweep API (probe.Sweeper).
func (b *Bulk) Run(ctx context.Context, tasks <-chan *vantagev1.Task, emit func(*vantagev1.ProbeResult)) error {
	return b.mux.Run(ctx, tasks, b.prepare, emit)
}

// Probe runs one task through the shared engine and waits for its result.
func (b *Bulk) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	res := &vantagev1.ProbeResult{Target: t.GetTarget(), Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Engine: EngineBulk}
	j, err := b.prepare(t, res)
	if err != nil {
		return fail(res, err)
	}
	r, taken, err := b.mux.Probe(ctx, j)
	switch {
	case err == nil:
		return r
	case taken: // the Mux still owns res
		res = &vantagev1.ProbeResult{Target: res.Target, Kind: res.Kind, Engine: EngineBulk}
	}
	return fail(res, fmt.Errorf("icmp probe: %w", err))
}

func (b *Bulk) prepare(t *vantagev1.Task, res *vantagev1.ProbeResult) (*bulk.Job, error) {
	addr, err := netip.ParseAddr(t.GetTarget())
	if err != nil {
		return nil, fmt.Errorf("target %q: not an IP address", t.GetTarget())
	}
	addr = addr.Unmap()
	if !b.mux.Supports(addr) {
		return nil, fmt.Errorf("target %s: no raw ICMPv6 socket on this host", addr)
	}
	j := b.mux.NewJob(res, addr, nil)
	return j, fillJob(j, t.GetIcmp())
}

// fillJob applies IcmpSpec defaults and limits.
func fillJob(j *bulk.Job, spec *vantagev1.IcmpSpec) error {
	if spec.GetRetries() > MaxRetries {
		return fmt.Errorf("icmp.retries %d: at most %d", spec.GetRetries(), MaxRetries)
	}
	if spec.GetPayloadBytes() > MaxPayloadBytes {
		return fmt.Errorf("icmp.payload_bytes %d: at most %d", spec.GetPayloadBytes(), MaxPayloadBytes)
	}
	timeout := time.Duration(spec.GetTimeoutMs()) * time.Millisecond
	if timeout > MaxTimeout {
		return fmt.Errorf("icmp.timeout_ms %d: at most %d", spec.GetTimeoutMs(), MaxTimeout.Milliseconds())
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	size := int(spec.GetPayloadBytes())
	if size == 0 {
		size = DefaultPayloadBytes
	}
	j.Timeout, j.Retries, j.PayloadBytes = timeout, int(spec.GetRetries()), max(size, minBulkPayload)
	return nil
}

// filter4 passes echo replies with an id in ids, and destination
// unreachable and time exceeded (which may quote our requests). The
// program sees the IPv4 header first.
func filter4(ids idRange) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadMemShift{Off: 0},          // X = IP header length
		bpf.LoadIndirect{Off: 0, Size: 1}, // A = ICMP type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: v4Unreachable, SkipTrue: 6},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: v4TimeExceeded, SkipTrue: 5},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: v4EchoReply, SkipFalse: 3},
		bpf.LoadIndirect{Off: 4, Size: 2}, // A = echo id
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(ids.base), SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(ids.base) + uint32(ids.n), SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0xffff},
	}
}

// filter6 is filter4 for ICMPv6; the program sees the ICMPv6 header first.
func filter6(ids idRange) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: v6Unreachable, SkipTrue: 6},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: v6TimeExceeded, SkipTrue: 5},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: v6EchoReply, SkipFalse: 3},
		bpf.LoadAbsolute{Off: 4, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(ids.base), SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(ids.base) + uint32(ids.n), SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0xffff},
	}
}
