// The pure logic: which addresses to sweep, how to pace them, which hosts
// to keep, which routers are the upstream and the border.

package discovery

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/internal/taskid"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ErrInvalid is wrapped by errors about the request itself.
var ErrInvalid = errors.New("discovery: invalid request")

// SweepAddrs lists every address of the networks' prefixes that a sweep
// probes (every prefix of a dual-stack network): for IPv4 all but the
// network and broadcast addresses of prefixes up to /30 (/31 and /32 keep
// every address). IPv6 prefixes shorter than /112 are refused: 2^64
// addresses cannot be swept. The cap, campaign.MaxSweep, is on the sum.
func SweepAddrs(nets []campaign.Network) ([]netip.Addr, error) {
	var out []netip.Addr
	for i, n := range nets {
		for _, p := range n.Prefixes {
			var err error
			if out, err = sweepPrefix(out, i, n.Name, p.Masked()); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// sweepPrefix appends the addresses of p, network i's, to out.
func sweepPrefix(out []netip.Addr, i int, name string, p netip.Prefix) ([]netip.Addr, error) {
	host := p.Addr().BitLen() - p.Bits()
	if p.Addr().Is6() && host > 16 {
		return nil, fmt.Errorf("%w: networks[%d] %s (%s): an IPv6 /%d cannot be swept; list its hosts", ErrInvalid, i, name, p, p.Bits())
	}
	size := 1 << host
	if len(out)+size > campaign.MaxSweep {
		return nil, fmt.Errorf("%w: networks[%d] %s (%s): the sweep would probe more than %d addresses", ErrInvalid, i, name, p, campaign.MaxSweep)
	}
	a := p.Addr()
	for j := 0; j < size; j, a = j+1, a.Next() {
		if p.Addr().Is4() && host >= 2 && (j == 0 || j == size-1) {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// SweepTasks turns addresses into one-off ICMP echo tasks for Triggers (ids
// "<campaign>/icmp/<addr>", the shared convention of internal/taskid).
func SweepTasks(campaign string, addrs []netip.Addr, timeoutMs, retries uint32, expires *timestamppb.Timestamp) []*vantagev1.Task {
	out := make([]*vantagev1.Task, 0, len(addrs))
	for _, a := range addrs {
		s := a.String()
		out = append(out, &vantagev1.Task{
			Id: taskid.New(campaign, taskid.ICMP, s), Campaign: campaign, Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO,
			Target: s, Role: vantagev1.TargetRole_TARGET_ROLE_HOST, EveryRounds: 1, ExpiresAt: expires,
			Spec: &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{Retries: retries, TimeoutMs: timeoutMs, PayloadBytes: 16}},
		})
	}
	return out
}

// Batches paces a sweep by the campaign budget: each batch is at most what
// one agent may send in one round (agentPPS x round packets, 1+retries per
// address), so sending one batch per round as a Trigger keeps every agent
// within budget.agent_pps. perTarget limits are met because a sweep probes
// each address once.
func Batches(tasks []*vantagev1.Task, retries uint32, agentPPS, roundSeconds float64) [][]*vantagev1.Task {
	per := max(int(agentPPS*roundSeconds)/int(1+retries), 1)
	var out [][]*vantagev1.Task
	for len(tasks) > 0 {
		n := min(per, len(tasks))
		out = append(out, tasks[:n:n])
		tasks = tasks[n:]
	}
	return out
}

// Probe is one sweep result as discovery needs it.
type Probe struct {
	Agent  string
	Target netip.Addr
	// Up: an echo reply (or any answer proving the host is there).
	Up bool
	// ReplyTTL is the answer's IP TTL (hop limit), 0 when unknown.
	ReplyTTL uint32
}

// hopsAway infers how many hops an answer travelled from its TTL: the
// sender started at the nearest usual initial TTL (32, 64, 128 or 255) at
// or above it.
func hopsAway(ttl uint32) int {
	for _, initial := range []uint32{32, 64, 128, 255} {
		if ttl <= initial {
			return int(initial - ttl)
		}
	}
	return 0
}

// RouterAddrs finds the addresses inside the networks that answer for a
// router rather than for a host: the border's (or a gateway's) own
// interface address in the prefix, e.g. 198.18.0.1. They answer echo from
// fewer hops away than the network's hosts (inferred from the reply TTL),
// and watching them would report the router, not the network. Per network,
// the most common distance among answering addresses is the hosts'
// distance (ties: the farther); answering addresses closer than that are
// routers. Hosts farther away (behind an internal router) stay hosts. A
// network whose answers carry no TTL yields nothing. A dual-stack
// network's prefixes are judged each on its own: IPv4 TTLs and IPv6 hop
// limits need not start from the same value.
func RouterAddrs(nets []campaign.Network, probes []Probe) []netip.Addr {
	dist := map[netip.Addr]int{}
	for _, p := range probes {
		if !p.Up || p.ReplyTTL == 0 {
			continue
		}
		d := hopsAway(p.ReplyTTL)
		if old, ok := dist[p.Target]; !ok || d < old {
			dist[p.Target] = d
		}
	}
	var out []netip.Addr
	for _, n := range nets {
		for _, p := range n.Prefixes {
			out = append(out, closerThanHosts(p, dist)...)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// closerThanHosts returns the addresses of p in dist that are fewer hops
// away than the most common distance in p (ties: the farther).
func closerThanHosts(p netip.Prefix, dist map[netip.Addr]int) []netip.Addr {
	count := map[int]int{}
	for a, d := range dist {
		if p.Contains(a) {
			count[d]++
		}
	}
	mode, best := -1, 0
	for d, c := range count {
		if c > best || (c == best && d > mode) {
			mode, best = d, c
		}
	}
	var out []netip.Addr
	for a, d := range dist {
		if p.Contains(a) && d < mode {
			out = append(out, a)
		}
	}
	return out
}

// HostScore is what the sweep saw of one host.
type HostScore struct {
	Addr    netip.Addr
	Network string
	// Vantages that saw it answer at least once.
	Vantages int
	// Probes sent to it and answered, over all vantages.
	Sent, Answered int
}

// Loss is the fraction of probes to the host that got no answer.
func (h HostScore) Loss() float64 {
	if h.Sent == 0 {
		return 1
	}
	return 1 - float64(h.Answered)/float64(h.Sent)
}

// SelectHosts keeps, per network and prefix (a dual-stack network keeps
// perNetwork IPv4 and perNetwork IPv6 hosts, the IPv4 ones first if its
// IPv4 prefix comes first), the perNetwork hosts that answered most
// reliably: seen by the most vantages, then the lowest loss, then the
// lowest address (so the choice is deterministic). Hosts that never
// answered are never kept. The result has one entry per network that has
// at least one answering host, in network order; a network with none is
// listed in silent.
func SelectHosts(nets []campaign.Network, probes []Probe, perNetwork int) (kept map[string][]HostScore, silent []string) {
	scores := map[netip.Addr]*HostScore{}
	seen := map[netip.Addr]map[string]bool{}
	networkOf := func(a netip.Addr) string {
		for _, n := range nets {
			if n.Contains(a) {
				return n.Name
			}
		}
		return ""
	}
	for _, p := range probes {
		nw := networkOf(p.Target)
		if nw == "" {
			continue // not ours: ignore rather than trust
		}
		h := scores[p.Target]
		if h == nil {
			h = &HostScore{Addr: p.Target, Network: nw}
			scores[p.Target] = h
			seen[p.Target] = map[string]bool{}
		}
		h.Sent++
		if p.Up {
			h.Answered++
			if !seen[p.Target][p.Agent] {
				seen[p.Target][p.Agent] = true
				h.Vantages++
			}
		}
	}
	by := map[string][]HostScore{}
	for _, h := range scores {
		if h.Answered > 0 {
			by[h.Network] = append(by[h.Network], *h)
		}
	}
	kept = map[string][]HostScore{}
	for _, n := range nets {
		hs := by[n.Name]
		if len(hs) == 0 {
			silent = append(silent, n.Name)
			continue
		}
		slices.SortFunc(hs, func(a, b HostScore) int {
			return cmp.Or(b.Vantages-a.Vantages, cmp.Compare(a.Loss(), b.Loss()), a.Addr.Compare(b.Addr))
		})
		for _, p := range n.Prefixes {
			kept[n.Name] = append(kept[n.Name], firstIn(hs, p, perNetwork)...)
		}
	}
	return kept, silent
}

// firstIn returns the first n hosts of hs inside p.
func firstIn(hs []HostScore, p netip.Prefix, n int) []HostScore {
	var out []HostScore
	for _, h := range hs {
		if len(out) == n {
			break
		}
		if p.Contains(h.Addr) {
			out = append(out, h)
		}
	}
	return out
}

// TraceTasks builds one-off Paris ICMP traceroutes (ids
// "<campaign>/trace/<addr>") to the given hosts, for upstream discovery.
func TraceTasks(campaign string, hosts []netip.Addr, maxTTL, timeoutMs uint32, expires *timestamppb.Timestamp) []*vantagev1.Task {
	out := make([]*vantagev1.Task, 0, len(hosts))
	for _, a := range hosts {
		s := a.String()
		out = append(out, &vantagev1.Task{
			Id: taskid.New(campaign, taskid.Trace, s), Campaign: campaign, Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: s,
			Role: vantagev1.TargetRole_TARGET_ROLE_HOST, EveryRounds: 1, ExpiresAt: expires,
			Spec: &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{Protocol: vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP,
				Paris: true, MaxTtl: maxTTL, GapLimit: 3, TimeoutMs: timeoutMs}},
		})
	}
	return out
}

// Router is a discovered router with its role, how many traces put it
// there and from how many distinct quorum groups of agents, and its name
// (campaign.RouterName of role and address: the same router keeps its
// name whatever order, or with whatever other routers, a later discovery
// finds it).
type Router struct {
	Addr   netip.Addr
	Role   vantagev1.TargetRole // UPSTREAM or BORDER
	Traces int
	Groups int
	Name   string
}

// Trace is one traceroute toward a host, with the quorum group of the
// agent that ran it (QuorumGroup).
type Trace struct {
	Group string
	Hops  []*vantagev1.Hop
}

// QuorumGroup is an agent's group as the verdict engine counts the quorum:
// agents sharing the value of label (the engine's quorum label, "provider"
// by default) are one group; an agent without it, or every agent when
// label is "-", is a group of its own.
func QuorumGroup(agentID string, labels map[string]string, label string) string {
	if label != "-" {
		if v := labels[label]; v != "" {
			return "label:" + v
		}
	}
	return "agent:" + agentID
}

// Upstreams reads traceroutes toward hosts inside prefixes and labels the
// routers before them: on each trace that entered the prefixes (a hop, or
// the destination's reply, inside them), the responsive hop immediately
// before the first hop inside is the BORDER, and the responsive hop
// immediately before the border is the UPSTREAM. "Immediately": a silent
// TTL in between makes the label unknown for that trace rather than
// pinning it on an earlier router. Traces that never entered the prefixes
// say nothing.
//
// One agent's traces cannot label a router: a router keeps a role only if
// traces from at least need distinct quorum groups put it there (need is
// min(the campaign's quorum, 2): a campaign that trusts one vantage trusts
// one group's traces), so a lying or misrouted agent cannot make any router
// an UPSTREAM or BORDER target for every agent. A router labelled both ways
// keeps the role more groups gave it (then more traces, then BORDER: it is
// the nearer one). kept is ordered by role (UPSTREAM first), then traces,
// then address; ignored lists, in the same order, the routers seen by too
// few groups, with the role they would have had.
func Upstreams(prefixes []netip.Prefix, traces []Trace, need int) (kept, ignored []Router) {
	inside := func(a netip.Addr) bool {
		return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	type tally struct {
		traces int
		groups map[string]bool
	}
	votes := map[netip.Addr]map[vantagev1.TargetRole]*tally{}
	vote := func(a netip.Addr, r vantagev1.TargetRole, group string) {
		if votes[a] == nil {
			votes[a] = map[vantagev1.TargetRole]*tally{}
		}
		t := votes[a][r]
		if t == nil {
			t = &tally{groups: map[string]bool{}}
			votes[a][r] = t
		}
		t.traces++
		t.groups[group] = true
	}
	for _, tr := range traces {
		border, up, ok := routersBefore(tr.Hops, inside)
		if !ok {
			continue
		}
		vote(border, vantagev1.TargetRole_TARGET_ROLE_BORDER, tr.Group)
		if up.IsValid() {
			vote(up, vantagev1.TargetRole_TARGET_ROLE_UPSTREAM, tr.Group)
		}
	}
	for a, v := range votes {
		rt := Router{Addr: a}
		for _, role := range []vantagev1.TargetRole{vantagev1.TargetRole_TARGET_ROLE_BORDER, vantagev1.TargetRole_TARGET_ROLE_UPSTREAM} {
			if t := v[role]; t != nil && cmp.Or(cmp.Compare(len(t.groups), rt.Groups), cmp.Compare(t.traces, rt.Traces)) > 0 {
				rt.Role, rt.Traces, rt.Groups = role, t.traces, len(t.groups)
			}
		}
		rt.Name = campaign.RouterName(rt.Role, rt.Addr)
		if rt.Groups >= need {
			kept = append(kept, rt)
		} else {
			ignored = append(ignored, rt)
		}
	}
	order := func(x, y Router) int {
		return cmp.Or(cmp.Compare(x.Role, y.Role), y.Traces-x.Traces, x.Addr.Compare(y.Addr))
	}
	slices.SortFunc(kept, order)
	slices.SortFunc(ignored, order)
	return kept, ignored
}

// routersBefore finds, on one trace, the responsive hop just before the
// first hop inside the prefixes (the border) and the one just before that
// (the upstream; invalid when silent, inside or the border again). ok is
// false when the trace says nothing.
func routersBefore(hops []*vantagev1.Hop, inside func(netip.Addr) bool) (border, up netip.Addr, ok bool) {
	byTTL := map[uint32]netip.Addr{}
	entry := uint32(0)
	for _, h := range hops {
		a, err := netip.ParseAddr(h.GetAddr())
		if err != nil || h.GetTtl() == 0 {
			continue
		}
		a = a.Unmap()
		byTTL[h.GetTtl()] = a
		if inside(a) && (entry == 0 || h.GetTtl() < entry) {
			entry = h.GetTtl()
		}
	}
	if entry < 2 {
		return border, up, false
	}
	border, found := byTTL[entry-1]
	if !found || inside(border) {
		return netip.Addr{}, up, false
	}
	if entry >= 3 {
		if u, found := byTTL[entry-2]; found && !inside(u) && u != border {
			up = u
		}
	}
	return border, up, true
}

// PickTraceHosts chooses up to n hosts per network and prefix to trace
// toward (a dual-stack network's IPv6 paths may cross other routers than
// its IPv4 ones): the best-scored ones from a sweep when there is one,
// otherwise the network's listed hosts.
func PickTraceHosts(kept map[string][]HostScore, nets []campaign.Network, n int) []netip.Addr {
	var out []netip.Addr
	for _, nw := range nets {
		for _, p := range nw.Prefixes {
			for _, h := range firstIn(kept[nw.Name], p, n) {
				out = append(out, h.Addr)
			}
		}
	}
	return out
}

// Describe is a one-line summary for logs and campaign status.
func Describe(kept map[string][]HostScore, silent []string) string {
	n := 0
	for _, hs := range kept {
		n += len(hs)
	}
	s := strconv.Itoa(n) + " hosts in " + strconv.Itoa(len(kept)) + " networks"
	if len(silent) > 0 {
		s += fmt.Sprintf("; no host answered in %v", silent)
	}
	return s
}
