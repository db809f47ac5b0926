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
