// Package tracedefaults holds the traceroute settings agent and controller
// must agree on: what a TraceSpec field left zero means, and the highest
// max_ttl either side accepts. The controller fills the defaults into a
// campaign's trace probe (controller/campaign) and into the traces it
// triggers itself; the agent's trace engine applies them to a field left
// zero, and its guard refuses a max_ttl above the cap. probe.proto documents
// the same numbers. Written apart (they were, in four places), a campaign
// file that leaves a field out could mean one thing to the controller's
// budget check and another to the agent that runs it.
package tracedefaults

import "time"

const (
	// MaxTTL is the highest TTL a trace probes when max_ttl is zero.
	MaxTTL = 30
	// GapLimit is how many consecutive silent TTLs end a trace when
	// gap_limit is zero.
	GapLimit = 5
	// Timeout is the wait per TTL when timeout_ms is zero.
	Timeout = 2 * time.Second
	// MaxTTLCap is the highest max_ttl either side accepts (the
	// controller caps a campaign's gap_limit at it too).
	MaxTTLCap = 64
)
