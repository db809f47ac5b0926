package campaign

import (
	"time"

	"github.com/vantage-net/vantage/internal/tracedefaults"
)

// Defaults, matching the comments in probe.proto.
const (
	defaultTimeout      = 2 * time.Second
	defaultPayloadBytes = 16
	defaultMaxTTL       = tracedefaults.MaxTTL
	defaultGapLimit     = tracedefaults.GapLimit
	defaultTraceEvery   = 10 * time.Minute
	defaultUDPPort      = 33434
	defaultTCPTracePort = 80
	defaultPerTargetPPS = 1
	defaultAgentPPS     = 500
	defaultQuorum       = 1
	maxTimeout          = 30 * time.Second
	maxRound            = 24 * time.Hour
	maxPorts            = 64
)

// applyDefaults fills every field the file may leave out. Parse applies it
// once, between decoding and Validate. A default only fills a zero value
// and no check is about a zero the default replaces, so every error and
// every resulting value is the same as if each section were defaulted just
// before its checks.
func (s *Spec) applyDefaults() {
	for i := range s.probes {
		s.probes[i].applyDefaults()
	}
	if s.vantages.quorum == 0 {
		s.vantages.quorum = defaultQuorum
	}
	if s.budget.perTargetPPS == 0 {
		s.budget.perTargetPPS = defaultPerTargetPPS
	}
	if s.budget.agentPPS == 0 {
		s.budget.agentPPS = defaultAgentPPS
	}
	s.quality.applyDefaults()
}

// applyDefaults fills the probe's zero fields; the probe's sections are
// pointers, so this fills the spec's own copy.
func (p probeSpec) applyDefaults() {
	switch {
	case p.icmp != nil:
		if p.icmp.timeout == 0 {
			p.icmp.timeout = defaultTimeout
		}
		if p.icmp.payloadBytes == 0 {
			p.icmp.payloadBytes = defaultPayloadBytes
		}
	case p.tcp != nil:
		if p.tcp.mode == "" {
			p.tcp.mode = "connect"
		}
		if p.tcp.timeout == 0 {
			p.tcp.timeout = defaultTimeout
		}
	case p.trace != nil:
		p.trace.applyDefaults()
	}
}

func (t *traceSpec) applyDefaults() {
	if t.protocol == "" {
		t.protocol = "icmp"
	}
	switch {
	case t.protocol == "udp" && t.port == 0:
		t.port = defaultUDPPort
	case t.protocol == "tcp" && t.port == 0:
		t.port = defaultTCPTracePort
	}
	if t.maxTTL == 0 {
		t.maxTTL = defaultMaxTTL
	}
	if t.gapLimit == 0 {
		t.gapLimit = min(defaultGapLimit, t.maxTTL)
	}
	if t.timeout == 0 {
		t.timeout = tracedefaults.Timeout
	}
	if t.every == 0 {
		t.every = defaultTraceEvery
	}
}
