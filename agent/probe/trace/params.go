package trace

// A task's trace parameters: validated into the probe template and the
// limits of one trace.

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// newTrace validates t into a trace of this tracer: its probe template
// (with the source address towards the target) and its limits. res gets
// the engine name, and the port of a TCP trace, as soon as they are known.
func (tc *Tracer) newTrace(t *vantagev1.Task, res *vantagev1.ProbeResult) (*traceState, error) {
	id, spec, err := traceParams(t)
	res.Engine = engineName(id.proto, id.paris)
	if err != nil {
		return nil, err
	}
	if id.proto == protoTCP {
		res.Port = uint32(id.port)
	}
	f := tc.fam[b2i(id.dst.Is6())]
	if f == nil {
		return nil, fmt.Errorf("target %s: no raw socket for this address family", id.dst)
	}
	if id.proto == protoTCP && f.tcp == nil {
		return nil, errors.New("trace.protocol TCP_SYN: no raw TCP receive socket on this host")
	}
	if id.src, err = f.srcFor(id.dst); err != nil {
		return nil, err
	}
	return newTraceState(id, spec), nil
}

// newTraceState is a trace of id within spec's limits (the defaults for
// those left zero, capped).
func newTraceState(id probeID, spec *vantagev1.TraceSpec) *traceState {
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
	return &traceState{id: id, maxTTL: maxTTL, gapLimit: gapLimit, timeout: timeout,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// traceParams validates a task into the probe template of a trace.
func traceParams(t *vantagev1.Task) (probeID, *vantagev1.TraceSpec, error) {
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

const maxTimeoutMs = 30000

// engineName is the ProbeResult.engine of a trace: protocol and Paris.
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
