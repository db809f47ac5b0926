package campaign

import (
	"net/netip"
	"time"
)

type scopeSpec struct {
	country, name string
}

type networkSpec struct {
	name   string
	prefix netip.Prefix
	hosts  []netip.Addr
}

type targetsSpec struct {
	networks      []networkSpec
	perNetwork    int64
	discover      bool
	upstreams     []routerSpec
	upstreamsAuto bool
	borders       []routerSpec
	controls      []netip.Addr
}

type probeSpec struct {
	icmp  *icmpSpec
	tcp   *tcpSpec
	trace *traceSpec
}

type icmpSpec struct {
	retries      int64
	timeout      time.Duration
	payloadBytes int64
}

type tcpSpec struct {
	ports   []int64
	mode    string
	timeout time.Duration
}

type traceSpec struct {
	protocol string
	paris    bool
	every    time.Duration
	maxTTL   int64
	gapLimit int64
	timeout  time.Duration
	port     int64
	onChange bool
}

type scheduleSpec struct {
	round, jitter time.Duration
	start         time.Time
	hasStart      bool
}

type vantagesSpec struct {
	selector map[string]string
	quorum   int64
}

type budgetSpec struct {
	perTargetPPS, agentPPS float64
}

// kind names the probe kind for paths and task ids.
func (p probeSpec) kind() string {
	switch {
	case p.icmp != nil:
		return "icmp"
	case p.tcp != nil:
		return "tcp"
	default:
		return "trace"
	}
}
