// Package icmp runs ICMP (and ICMPv6) echo probes with pro-bing.
//
// Linux offers two kinds of ICMP socket. A raw socket ("ip4:icmp") needs
// root or CAP_NET_RAW and sees every ICMP packet the host receives; pro-bing
// filters them by echo id. A datagram ICMP socket ("udp4") needs no
// privilege when the process's group is inside net.ipv4.ping_group_range;
// the kernel then picks the echo id and delivers only our own replies. The
// agent detects at start which of the two it can open (Detect) and reports
// both in its capabilities; the prober uses raw when it can.
//
// A probe is adaptive, as in Trinocular: one echo request, and only after a
// miss up to IcmpSpec.retries more within the same round.
package icmp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	probing "github.com/prometheus-community/pro-bing"
	"golang.org/x/net/icmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Engine names reported in ProbeResult.engine.
const (
	EngineRaw  = "pro-bing/raw"
	EngineUDP  = "pro-bing/udp"
	engineNone = "pro-bing/none"
)

// Defaults applied when the spec leaves a field zero.
const (
	DefaultTimeout      = 2 * time.Second
	DefaultPayloadBytes = 16
	// minPayloadBytes is what pro-bing needs for its timestamp and tracker.
	minPayloadBytes = 24
)

// Limiter paces probe packets (the agent's guard).
type Limiter interface {
	Wait(ctx context.Context) error
}

// Support is what Detect found.
type Support struct {
	Raw4, Dgram4, Raw6, Dgram6 bool
}

// Raw reports whether raw sockets work for IPv4 (the family that decides the
// engine).
func (s Support) Raw() bool { return s.Raw4 }

// Dgram reports whether datagram ICMP sockets work for IPv4.
func (s Support) Dgram() bool { return s.Dgram4 }

// IPv6 reports whether any ICMPv6 socket can be opened.
func (s Support) IPv6() bool { return s.Raw6 || s.Dgram6 }

// Detect tries to open each kind of ICMP socket and closes it again.
func Detect() Support {
	try := func(network, addr string) bool {
		c, err := icmp.ListenPacket(network, addr)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	return Support{
		Raw4:   try("ip4:icmp", "0.0.0.0"),
		Dgram4: try("udp4", "0.0.0.0"),
		Raw6:   try("ip6:ipv6-icmp", "::"),
		Dgram6: try("udp6", "::"),
	}
}

// Prober sends echo requests.
type Prober struct {
	sup Support
	lim Limiter
}

// New returns a Prober that uses raw sockets where sup says they work and
// datagram sockets otherwise. lim may be nil (no pacing; tests only).
func New(sup Support, lim Limiter) *Prober {
	return &Prober{sup: sup, lim: lim}
}

// Engine is the engine the prober uses for addr's family.
func (p *Prober) Engine(v6 bool) string {
	raw, dgram := p.sup.Raw4, p.sup.Dgram4
	if v6 {
		raw, dgram = p.sup.Raw6, p.sup.Dgram6
	}
	switch {
	case raw:
		return EngineRaw
	case dgram:
		return EngineUDP
	default:
		return engineNone
	}
}

// Probe runs one echo probe (plus adaptive retries) to t.Target. It always
// returns a result; local failures are OUTCOME_ERROR with the cause.
func (p *Prober) Probe(ctx context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	res := &vantagev1.ProbeResult{Target: t.GetTarget(), Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO}
	addr, err := netip.ParseAddr(t.GetTarget())
	if err != nil {
		return fail(res, fmt.Errorf("target %q: not an IP address", t.GetTarget()))
	}
	addr = addr.Unmap()
	engine := p.Engine(addr.Is6())
	res.Engine = engine
	if engine == engineNone {
		return fail(res, errors.New("no ICMP socket available: need CAP_NET_RAW or net.ipv4.ping_group_range covering this group"))
	}
	spec := t.GetIcmp()
	timeout := time.Duration(spec.GetTimeoutMs()) * time.Millisecond
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	size := int(spec.GetPayloadBytes())
	if size == 0 {
		size = DefaultPayloadBytes
	}
	size = max(size, minPayloadBytes)

	for range spec.GetRetries() + 1 {
		if p.lim != nil {
			if err := p.lim.Wait(ctx); err != nil {
				return fail(res, err)
			}
		}
		pkt, sentAt, err := p.once(ctx, addr, engine == EngineRaw, timeout, size)
		res.Attempts++
		if res.SentAt == nil && !sentAt.IsZero() {
			res.SentAt = timestamppb.New(sentAt)
		}
		if err != nil {
			return fail(res, err)
		}
		if pkt != nil {
			res.Outcome = vantagev1.Outcome_OUTCOME_REPLY
			res.RttUs = uint32(min(pkt.Rtt.Microseconds(), 1<<32-1))
			res.ReplyFrom = pkt.IPAddr.IP.String()
			res.ReplyTtl = uint32(max(pkt.TTL, 0))
			return res
		}
	}
	res.Outcome = vantagev1.Outcome_OUTCOME_TIMEOUT
	return res
}

// once sends one echo request and waits up to timeout for its reply. A nil
// packet with a nil error is a miss.
func (p *Prober) once(ctx context.Context, addr netip.Addr, raw bool, timeout time.Duration, size int) (*probing.Packet, time.Time, error) {
	pinger := probing.New(addr.String())
	pinger.SetIPAddr(&net.IPAddr{IP: addr.AsSlice()})
	pinger.SetPrivileged(raw)
	pinger.SetLogger(probing.NoopLogger{})
	pinger.Count = 1
	pinger.Size = size
	pinger.Timeout = timeout
	pinger.Interval = timeout + time.Second // never a second request
	pinger.RecordRtts = false
	pinger.RecordTTLs = false
	var got *probing.Packet
	var sentAt time.Time
	// Callbacks run on pro-bing's loop goroutine, which has finished when
	// RunWithContext returns.
	pinger.OnSend = func(*probing.Packet) { sentAt = time.Now() }
	pinger.OnRecv = func(pkt *probing.Packet) {
		if got == nil {
			got = pkt
		}
	}
	if err := pinger.RunWithContext(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, sentAt, fmt.Errorf("icmp probe: %w", ctx.Err())
		}
		return nil, sentAt, fmt.Errorf("icmp probe: %w", err)
	}
	return got, sentAt, nil
}

func fail(res *vantagev1.ProbeResult, err error) *vantagev1.ProbeResult {
	res.Outcome = vantagev1.Outcome_OUTCOME_ERROR
	res.Error = err.Error()
	return res
}
