package tcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/bpf"

	"github.com/vantage-net/vantage/agent/probe/internal/bulk"
	"github.com/vantage-net/vantage/agent/probe/rawsock"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// EngineSYN is the raw SYN engine's name in ProbeResult.engine.
const EngineSYN = "tcp/syn-raw"

// MaxTimeout caps TcpSpec.timeout_ms.
const MaxTimeout = 30 * time.Second

// Source ports the SYN engine owns (see portRange).
const (
	synPortBase  = 61440
	synPortCount = 4096
)

// SynConfig configures the SYN engine.
type SynConfig struct {
	// Rate caps SYNs per second; 0 is unlimited.
	Rate float64
	// Limiter, if set, is waited on for every packet (the agent's guard).
	Limiter Limiter
	Logger  *slog.Logger
}

// Syn probes TCP ports with raw SYNs: one raw TCP socket per family sends
// the SYNs and sees the answers, and one raw ICMP socket per family sees
// the unreachables. A SYN-ACK or an RST both mean the host is up; the
// kernel then resets the half-open connection itself, which is fine. The
// probe is matched without state on the wire: the source port is the slot,
// the sequence number a keyed cookie, checked against the
// acknowledgment number (or the sequence number an ICMP error quotes).
type Syn struct {
	mux   *bulk.Mux
	ports portRange

	mu    sync.Mutex
	route *rawsock.RouteSource
	src   map[netip.Addr]netip.Addr // IPv4 route source per destination
}

// NewSyn opens the raw sockets and starts the engine. IPv4 must work;
// IPv6 is used when its sockets open too.
func NewSyn(cfg SynConfig) (*Syn, error) {
	ports := portRange{base: synPortBase, n: synPortCount}
	s := &Syn{ports: ports, src: make(map[netip.Addr]netip.Addr)}
	var opened []*rawsock.Conn
	closeAll := func() {
		for _, c := range opened {
			_ = c.Close()
		}
	}
	open := func(v6 bool, p rawsock.Proto, o rawsock.Options) (*rawsock.Conn, error) {
		o.RecvBuf = 4 << 20
		c, err := rawsock.Listen(v6, p, o)
		if err == nil {
			opened = append(opened, c)
		}
		return c, err
	}
	route, err := rawsock.NewRouteSource(false)
	if err != nil {
		return nil, fmt.Errorf("tcp syn engine: %w", err)
	}
	s.route = route
	t4, err := open(false, rawsock.TCP, rawsock.Options{Filter: filterTCP(true, ports)})
	if err != nil {
		_ = route.Close()
		return nil, fmt.Errorf("tcp syn engine: %w", err)
	}
	i4, err := open(false, rawsock.ICMP, rawsock.Options{Filter: filterICMP4()})
	if err != nil {
		_ = route.Close()
		closeAll()
		return nil, fmt.Errorf("tcp syn engine: %w", err)
	}
	bc := bulk.Config{
		EngineName: EngineSYN, Kind: vantagev1.ProbeKind_PROBE_KIND_TCP,
		Send4: t4, Slots: synPortCount, MaxSlots: synPortCount,
		Rate: cfg.Rate, Limiter: cfg.Limiter, Logger: cfg.Logger,
		Recv: []bulk.Receiver{
			{Conn: t4, Decode: func(pkt []byte, _ netip.Addr, _ int, m *bulk.Match) bulk.Verdict { return decodeTCP4(ports, pkt, m) }},
			{Conn: i4, Decode: func(pkt []byte, _ netip.Addr, _ int, m *bulk.Match) bulk.Verdict { return decodeICMP4(ports, pkt, m) }},
		},
		Encode: s.encode,
	}
	t6, err6 := open(true, rawsock.TCP, rawsock.Options{Filter: filterTCP(false, ports), KernelChecksumOffset: 16})
	var i6 *rawsock.Conn
	if err6 == nil {
		i6, err6 = open(true, rawsock.ICMP, rawsock.Options{Filter: filterICMP6()})
	}
	if err6 == nil {
		bc.Send6 = t6
		bc.Recv = append(bc.Recv,
			bulk.Receiver{Conn: t6, Decode: func(pkt []byte, from netip.Addr, hop int, m *bulk.Match) bulk.Verdict {
				return decodeTCP6(ports, pkt, from, hop, m)
			}},
			bulk.Receiver{Conn: i6, Decode: func(pkt []byte, from netip.Addr, hop int, m *bulk.Match) bulk.Verdict {
				return decodeICMP6(ports, pkt, from, hop, m)
			}})
	} else if cfg.Logger != nil {
		cfg.Logger.Info("tcp syn engine without IPv6", slog.Any("error", err6))
	}
	s.mux, err = bulk.New(bc)
	if err != nil {
		_ = route.Close()
		closeAll()
		return nil, fmt.Errorf("tcp syn engine: %w", err)
	}
	return s, nil
}

// Close stops the engine; pending probes end in ERROR.
func (s *Syn) Close() error {
	err := s.mux.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(err, s.route.Close())
}

// PacketsIgnored counts malformed, foreign, spoofed and late packets.
func (s *Syn) PacketsIgnored() uint64 { return s.mux.Stats().Ignored() }

// Stats returns the engine's counters.
func (s *Syn) Stats() bulk.Stats { return s.mux.Stats() }

// Run implements the sweep API (probe.Sweeper).
func (s *Syn) Run(ctx context.Context, tasks <-chan *vantagev1.Task, emit func(*vantagev1.ProbeResult)) error {
	return s.mux.Run(ctx, tasks, s.prepare, emit)
}

// Probe sends one SYN for t through the shared engine and waits.
func (s *Syn) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	res := &vantagev1.ProbeResult{Target: t.GetTarget(), Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Engine: EngineSYN, Port: t.GetTcp().GetPort()}
	j, err := s.prepare(t, res)
	if err != nil {
		return fail(res, err)
	}
	r, taken, err := s.mux.Probe(ctx, j)
	switch {
	case err == nil:
		return r
	case taken: // the Mux still owns res
		res = &vantagev1.ProbeResult{Target: res.Target, Kind: res.Kind, Engine: EngineSYN, Port: res.Port}
	}
	return fail(res, fmt.Errorf("tcp probe: %w", err))
}

func (s *Syn) prepare(t *vantagev1.Task, res *vantagev1.ProbeResult) (*bulk.Job, error) {
	spec := t.GetTcp()
	res.Port = spec.GetPort()
	addr, err := netip.ParseAddr(t.GetTarget())
	if err != nil {
		return nil, fmt.Errorf("target %q: not an IP address", t.GetTarget())
	}
	addr = addr.Unmap()
	if !s.mux.Supports(addr) {
		return nil, fmt.Errorf("target %s: no raw IPv6 TCP socket on this host", addr)
	}
	if spec.GetPort() == 0 || spec.GetPort() > 65535 {
		return nil, fmt.Errorf("tcp.port %d: must be 1..65535", spec.GetPort())
	}
	timeout := time.Duration(spec.GetTimeoutMs()) * time.Millisecond
	if timeout > MaxTimeout {
		return nil, fmt.Errorf("tcp.timeout_ms %d: at most %d", spec.GetTimeoutMs(), MaxTimeout.Milliseconds())
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	j := s.mux.NewJob(res, addr, nil)
	j.Port, j.Timeout = uint16(spec.GetPort()), timeout
	return j, nil
}

func (s *Syn) encode(b []byte, j *bulk.Job, slot uint32, cookie uint64) (int, error) {
	var src netip.Addr
	if j.Addr.Is4() {
		var err error
		if src, err = s.source(j.Addr); err != nil {
			return 0, err
		}
	}
	return encodeSYN(b, src, j.Addr, s.ports.base+uint16(slot), j.Port, uint32(cookie)), nil
}

// source is the address the kernel would send from to reach dst (needed
// for the IPv4 checksum), from a route lookup in the engine's namespace,
// cached.
func (s *Syn) source(dst netip.Addr) (netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src, ok := s.src[dst]; ok {
		return src, nil
	}
	src, err := s.route.Lookup(dst)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(s.src) >= 4096 {
		clear(s.src) // bounded: a sweep touches each address once anyway
	}
	s.src[dst] = src
	return src, nil
}

// filterTCP passes segments to our source ports that are SYN-ACKs or RSTs.
// On IPv4 the program sees the IP header first, on IPv6 the TCP header.
func filterTCP(v4 bool, ports portRange) []bpf.Instruction {
	var load func(off uint32) bpf.Instruction
	var prog []bpf.Instruction
	if v4 {
		prog = append(prog, bpf.LoadMemShift{Off: 0})
		load = func(off uint32) bpf.Instruction { return bpf.LoadIndirect{Off: off, Size: 2} }
	} else {
		load = func(off uint32) bpf.Instruction { return bpf.LoadAbsolute{Off: off, Size: 2} }
	}
	flags := func() bpf.Instruction {
		if v4 {
			return bpf.LoadIndirect{Off: 13, Size: 1}
		}
		return bpf.LoadAbsolute{Off: 13, Size: 1}
	}
	return append(prog,
		load(2), // destination port
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(ports.base), SkipTrue: 5},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(ports.base) + uint32(ports.n), SkipFalse: 4},
		flags(),
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: flagRST, SkipTrue: 3},
		bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: flagSYN | flagACK},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: flagSYN | flagACK, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0xffff},
	)
}

// filterICMP4 passes destination unreachables quoting a TCP packet.
func filterICMP4() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadMemShift{Off: 0},
		bpf.LoadIndirect{Off: 0, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 3, SkipFalse: 2},
		bpf.LoadIndirect{Off: 8 + 9, Size: 1}, // quoted protocol
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoTCP, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0xffff},
	}
}

// filterICMP6 passes ICMPv6 destination unreachables quoting TCP.
func filterICMP6() []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: 0, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipFalse: 2},
		bpf.LoadAbsolute{Off: 8 + 6, Size: 1}, // quoted next header
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoTCP, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0xffff},
	}
}
