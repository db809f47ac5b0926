package campaign

import (
	"net/netip"
	"slices"
	"time"
)

type scopeSpec struct {
	country, name string
}

// networkSpec is one network: its prefixes (at most one per family, in
// file order; the first is the proto's CampaignNetwork.prefix) and its
// listed hosts, each inside one of them.
type networkSpec struct {
	name     string
	prefixes []netip.Prefix
	// listed: the prefixes were written as a list (prefixes: [...]), so
	// errors name prefixes[k]; otherwise as prefix.
	listed bool
	hosts  []netip.Addr
}

// maxPrefixes is the most prefixes a network may have: one IPv4 and one
// IPv6.
const maxPrefixes = 2

// prefixPath is the field that wrote prefix k of the network at path.
func (nw networkSpec) prefixPath(path string, k int) string {
	if nw.listed {
		return index(join(path, "prefixes"), k)
	}
	return join(path, "prefix")
}

// hostsIn counts the network's listed hosts inside p.
func (nw networkSpec) hostsIn(p netip.Prefix) int {
	n := 0
	for _, h := range nw.hosts {
		if p.Contains(h) {
			n++
		}
	}
	return n
}

// contains reports whether a is inside one of the network's prefixes.
func (nw networkSpec) contains(a netip.Addr) bool {
	return slices.ContainsFunc(nw.prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
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
