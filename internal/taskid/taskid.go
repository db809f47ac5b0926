// Package taskid is the one spelling of a task id, which agent and
// controller must agree on: "<campaign>/<kind>/<target>", where kind is
// icmp, tcp or trace and target is the probed address ("<addr>:<port>" for
// tcp). The controller names every task it gives this way (a campaign's
// expansion, discovery's sweeps and traces, localisation's traces) and reads
// a task's campaign back from its id (an agent's task statuses are grouped
// by campaign); the agent's one-shot mode names its tasks the same way, so
// its output reads like a campaign's results. Written apart, the spellings
// drift, and a task id no longer says which campaign it belongs to.
package taskid

import (
	"strconv"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The kinds as ids spell them.
const (
	ICMP  = "icmp"
	TCP   = "tcp"
	Trace = "trace"
)

// Kind is the name ids give a probe kind: ICMP, TCP or Trace ("" for any
// other kind).
func Kind(k vantagev1.ProbeKind) string {
	switch k {
	case vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:
		return ICMP
	case vantagev1.ProbeKind_PROBE_KIND_TCP:
		return TCP
	case vantagev1.ProbeKind_PROBE_KIND_TRACE:
		return Trace
	}
	return ""
}

// New returns the id "<campaign>/<kind>/<target>".
func New(campaign, kind, target string) string {
	return Prefix(campaign, kind) + target
}

// Prefix returns "<campaign>/<kind>/", how every id of that campaign and
// kind begins (for builders that append the target themselves).
func Prefix(campaign, kind string) string {
	return campaign + "/" + kind + "/"
}

// TCPTarget is the target part of a tcp task's id: "<addr>:<port>", with
// the address as written (an IPv6 address is not bracketed).
func TCPTarget(addr string, port int64) string {
	return addr + ":" + strconv.FormatInt(port, 10)
}

// Campaign returns the campaign an id names: the text before its first
// "/" (the whole id when it has none).
func Campaign(id string) string {
	c, _, _ := strings.Cut(id, "/")
	return c
}

// Parse splits an id into its campaign, kind and target. ok is false when
// the id has fewer than three parts or one of them is empty.
func Parse(id string) (campaign, kind, target string, ok bool) {
	campaign, rest, ok1 := strings.Cut(id, "/")
	kind, target, ok2 := strings.Cut(rest, "/")
	if !ok1 || !ok2 || campaign == "" || kind == "" || target == "" {
		return "", "", "", false
	}
	return campaign, kind, target, true
}
