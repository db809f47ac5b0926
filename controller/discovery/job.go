package discovery

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/trigger"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The state machine of one campaign's discovery (the package comment).

type phase int

const (
	phaseWaiting phase = iota
	phaseSweep
	phaseTrace
	phaseFailed
)

// job is the discovery of one campaign version, started at started.
type job struct {
	name    string
	version uint64
	key     string
	spec    *campaign.Spec
	status  *vantagev1.DiscoveryStatus
	saved   string // the note last stored
	phase   phase
	agents  []string

	batches  [][]*vantagev1.Task
	next     int
	nextAt   time.Time
	deadline time.Time
	// expected and received count results per kind (sweep, trace).
	expected, received [2]int
	triggers           []string
	probes             []Probe
	traces             []Trace
	groups             map[string]string // agent id -> quorum group
	kept               map[string][]HostScore
	silent             []string
	// routers are addresses in the prefixes that answered for a router.
	routers []netip.Addr
}

const (
	kSweep = 0
	kTrace = 1
)

// selected lists the connected agents the campaign selects, by id.
func selected(spec *campaign.Spec, conn map[string]map[string]string) []string {
	var out []string
	for id, labels := range conn {
		if spec.SelectsAgent(labels) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// settle is how long results are awaited after the last probe was sent.
func (r *Runner) settle(spec *campaign.Spec, probe time.Duration) time.Duration {
	if r.opts.Settle > 0 {
		return r.opts.Settle
	}
	return max(2*spec.Round()+probe, 5*time.Second)
}

// sendLocked sends tasks to every agent of j as one trigger each and counts
// the results to expect.
func (r *Runner) sendLocked(j *job, kind int, tasks []*vantagev1.Task, now time.Time, reason string) int {
	sent := 0
	for _, id := range j.agents {
		tr := trigger.New(now, tasks, reason)
		if !r.opts.Sessions.SendTrigger(id, tr) {
			r.log.Warn("discovery trigger not sent", slog.String("campaign", j.name), slog.String("agent", id),
				slog.String("reason", "no session or send queue full"))
			continue
		}
		r.triggers[tr.GetId()] = j
		j.triggers = append(j.triggers, tr.GetId())
		j.expected[kind] += len(tasks)
		sent++
	}
	return sent
}

// advanceLocked moves j on; it returns a status to store when one changed.
func (r *Runner) advanceLocked(j *job, conn map[string]map[string]string, now time.Time) (save, bool) {
	finish := false
	switch j.phase {
	case phaseWaiting:
		finish = r.waitLocked(j, conn, now)
	case phaseSweep:
		finish = r.sweepLocked(j, now)
	case phaseTrace:
		if finish = j.received[kTrace] >= j.expected[kTrace] || !now.Before(j.deadline); !finish {
			j.status.Note = fmt.Sprintf("%s; tracing to %d host(s) from %d agent(s): %d of %d traces in",
				Describe(j.kept, j.silent), j.status.GetTraces(), len(j.agents), j.received[kTrace], j.expected[kTrace])
		}
	case phaseFailed:
	}
	if finish {
		return r.finishLocked(j, now)
	}
	if j.status.GetNote() == j.saved {
		return save{}, false
	}
	j.saved = j.status.GetNote()
	return save{j: j, status: proto.Clone(j.status).(*vantagev1.DiscoveryStatus), state: vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING}, true
}

// waitLocked starts j once a connected agent matches its selection: the
// sweep (and its first batch), or, when no network is to be swept, the
// traces to the listed hosts. It reports whether j is done already (every
// network lists its hosts and upstreams are not auto: nothing to find).
func (r *Runner) waitLocked(j *job, conn map[string]map[string]string, now time.Time) bool {
	spec := j.spec
	j.agents = selected(spec, conn)
	j.groups = map[string]string{}
	for _, id := range j.agents {
		j.groups[id] = QuorumGroup(id, conn[id], r.opts.QuorumLabel)
	}
	if len(j.agents) == 0 {
		j.status.Note = "waiting for agents: no connected agent matches vantages.select; discovery starts when one connects"
		return false
	}
	nets := spec.SweepNetworks()
	if len(nets) == 0 { // no network to sweep: trace to the listed hosts
		j.kept = map[string][]HostScore{}
		for _, t := range spec.Targets() {
			if t.Role == vantagev1.TargetRole_TARGET_ROLE_HOST {
				j.kept[t.Network] = append(j.kept[t.Network], HostScore{Addr: t.Addr, Network: t.Network})
			}
		}
		if !spec.UpstreamsAuto() {
			return true
		}
		r.startTraceLocked(j, now)
		return false
	}
	addrs, err := SweepAddrs(nets)
	if err != nil { // campaign validation prevents it
		j.phase, j.status.Note = phaseFailed, "discovery failed: "+err.Error()
		return false
	}
	timeout, retries := spec.SweepProbe()
	tasks := SweepTasks(j.name, addrs, uint32(timeout.Milliseconds()), uint32(retries),
		timestamppb.New(trigger.Expiry(now).Add(time.Duration(len(addrs))*time.Second)))
	j.batches = Batches(tasks, uint32(retries), spec.AgentPPS(), spec.Round().Seconds())
	j.phase, j.next, j.nextAt = phaseSweep, 0, now
	j.status.AddressesSwept = uint32(len(addrs))
	r.log.Info("discovery sweep", slog.String("campaign", j.name), slog.Int("addresses", len(addrs)),
		slog.Int("batches", len(j.batches)), slog.Int("agents", len(j.agents)))
	return r.sweepLocked(j, now)
}

// sweepLocked sends the sweep's next batch when it is due, or once all are
// sent and their results are in (or the settle time passed), keeps the
// hosts that answered. It reports whether j is done.
func (r *Runner) sweepLocked(j *job, now time.Time) bool {
	spec := j.spec
	if j.next < len(j.batches) {
		if !now.Before(j.nextAt) {
			r.sendBatchLocked(j, now)
		}
		return false
	}
	if j.received[kSweep] < j.expected[kSweep] && now.Before(j.deadline) {
		j.status.Note = fmt.Sprintf("sweeping %d addresses from %d agent(s): all %d batches sent, %d of %d results in",
			j.status.GetAddressesSwept(), len(j.agents), len(j.batches), j.received[kSweep], j.expected[kSweep])
		return false
	}
	if !r.keepHostsLocked(j) {
		j.phase = phaseFailed
		j.status.Note = fmt.Sprintf("nothing answered: %d addresses swept from %d agent(s) (%d of %d results in), no host replied to ICMP echo; "+
			"the campaign stays DISCOVERING - check the prefixes and the agents, then apply it again",
			j.status.GetAddressesSwept(), len(j.agents), j.received[kSweep], j.expected[kSweep])
		r.log.Warn("discovery found nothing", slog.String("campaign", j.name),
			slog.Any("addresses", j.status.GetAddressesSwept()), slog.Int("results", j.received[kSweep]))
		return false
	}
	if spec.UpstreamsAuto() {
		r.startTraceLocked(j, now)
		return false
	}
	return true
}

// sendBatchLocked sends the sweep's next batch, due now.
func (r *Runner) sendBatchLocked(j *job, now time.Time) {
	spec := j.spec
	timeout, retries := spec.SweepProbe()
	// Tasks expire with the trigger.
	for _, t := range j.batches[j.next] {
		t.ExpiresAt = timestamppb.New(trigger.Expiry(now))
	}
	r.sendLocked(j, kSweep, j.batches[j.next], now, fmt.Sprintf("discovery sweep of %s, batch %d of %d", j.name, j.next+1, len(j.batches)))
	j.next++
	j.nextAt = now.Add(spec.Round())
	j.deadline = now.Add(r.settle(spec, timeout*time.Duration(1+retries)))
	j.status.Note = fmt.Sprintf("sweeping %d addresses from %d agent(s): batch %d of %d sent, %d of %d results in",
		j.status.GetAddressesSwept(), len(j.agents), j.next, len(j.batches), j.received[kSweep], j.expected[kSweep])
}

// keepHostsLocked turns the sweep's results into the hosts kept per
// network, leaving out the addresses that answered for a router. It
// reports whether any host was kept.
func (r *Runner) keepHostsLocked(j *job) bool {
	nets := j.spec.Networks()
	// The border's (or a gateway's) own addresses in the prefixes
	// answer for the router: not hosts.
	j.routers = RouterAddrs(nets, j.probes)
	hostProbes := slices.DeleteFunc(slices.Clone(j.probes), func(p Probe) bool { return slices.Contains(j.routers, p.Target) })
	j.kept, j.silent = SelectHosts(nets, hostProbes, j.spec.PerNetwork())
	responsive := map[netip.Addr]bool{}
	for _, p := range hostProbes {
		if p.Up {
			responsive[p.Target] = true
		}
	}
	j.status.HostsResponsive = uint32(len(responsive))
	n := 0
	for _, hs := range j.kept {
		n += len(hs)
	}
	j.status.HostsSelected = uint32(n)
	return n > 0
}

func (r *Runner) startTraceLocked(j *job, now time.Time) {
	all := PickTraceHosts(traceCandidates(j), j.spec.Networks(), r.opts.TraceHosts)
	ttl := j.spec.DiscoveryTraceTTL()
	tasks := TraceTasks(j.name, all, uint32(ttl), uint32(trigger.TraceTimeout.Milliseconds()), timestamppb.New(trigger.Expiry(now)))
	j.phase = phaseTrace
	j.status.Traces = uint32(len(tasks))
	if len(tasks) > 0 {
		r.sendLocked(j, kTrace, tasks, now, "upstream discovery traces of "+j.name)
	}
	// The trace engine probes every TTL at once; a silent TTL costs two
	// timeouts. Give the slowest path that, plus the settle time.
	j.deadline = now.Add(r.settle(j.spec, 2*trigger.TraceTimeout*time.Duration(min(ttl, 4))))
	r.log.Info("discovery traces", slog.String("campaign", j.name), slog.Int("hosts", len(all)),
		slog.Int("agents", len(j.agents)))
}

// traceCandidates are the hosts upstream discovery may trace toward, per
// network: the kept ones, then, for a swept network, the listed hosts of
// its prefixes that were not swept (a dual-stack network may list its
// IPv6 hosts and sweep its IPv4 prefix; both families' paths are traced).
func traceCandidates(j *job) map[string][]HostScore {
	out := make(map[string][]HostScore, len(j.kept))
	kept := map[netip.Addr]bool{}
	for name, hs := range j.kept {
		out[name] = slices.Clone(hs)
		for _, h := range hs {
			kept[h.Addr] = true
		}
	}
	swept := map[string]bool{}
	for _, nw := range j.spec.SweepNetworks() {
		swept[nw.Name] = true
	}
	for _, t := range j.spec.Targets() {
		if t.Role == vantagev1.TargetRole_TARGET_ROLE_HOST && swept[t.Network] && !kept[t.Addr] {
			out[t.Network] = append(out[t.Network], HostScore{Addr: t.Addr, Network: t.Network})
		}
	}
	return out
}

// finishLocked turns what the job found into the campaign's targets.
func (r *Runner) finishLocked(j *job, now time.Time) (save, bool) {
	var found []campaign.Target
	for _, nw := range j.spec.SweepNetworks() {
		for _, h := range j.kept[nw.Name] {
			found = append(found, campaign.Target{Addr: h.Addr, Network: nw.Name, Role: vantagev1.TargetRole_TARGET_ROLE_HOST})
		}
	}
	note := Describe(j.kept, j.silent)
	if len(j.routers) > 0 {
		var rs []string
		for _, a := range j.routers {
			rs = append(rs, a.String())
		}
		note += fmt.Sprintf("; router interface(s) inside the prefixes not kept as hosts (fewer hops away than the hosts): %s", strings.Join(rs, ", "))
	}
	j.status.RoutersFound = nil
	if j.spec.UpstreamsAuto() {
		routers, routersNote := r.routersLocked(j)
		found = append(found, routers...)
		note += routersNote
	}
	with, err := j.spec.WithTargets(found)
	if err == nil && r.opts.Limits != nil {
		err = r.opts.Limits.Check(with)
	}
	if err != nil {
		j.phase = phaseFailed
		j.status.Note = "discovered targets refused: " + err.Error() + "; the campaign stays DISCOVERING"
		j.saved = j.status.GetNote()
		return save{j: j, status: proto.Clone(j.status).(*vantagev1.DiscoveryStatus), state: vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING}, true
	}
	var targets []*vantagev1.CampaignTarget
	for _, t := range found {
		targets = append(targets, &vantagev1.CampaignTarget{Address: t.Addr.String(), Network: t.Network, Role: t.Role, Name: t.Name})
	}
	j.status.FinishedAt = timestamppb.New(now)
	j.status.Note = note
	r.dropLocked(j)
	return save{j: j, status: proto.Clone(j.status).(*vantagev1.DiscoveryStatus), targets: targets,
		state: vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE}, true
}

// routersLocked labels the upstream and border routers from j's traces
// (Upstreams), records them in j's status, and returns them as targets
// with the note's part about them.
func (r *Runner) routersLocked(j *job) ([]campaign.Target, string) {
	var prefixes []netip.Prefix
	for _, nw := range j.spec.Networks() {
		prefixes = append(prefixes, nw.Prefixes...)
	}
	need := min(j.spec.Quorum(), 2)
	routers, ignored := Upstreams(prefixes, j.traces, need)
	var found []campaign.Target
	for _, rt := range routers {
		found = append(found, campaign.Target{Addr: rt.Addr, Role: rt.Role, Name: rt.Name})
		j.status.RoutersFound = append(j.status.RoutersFound, &vantagev1.CampaignTarget{Address: rt.Addr.String(), Role: rt.Role, Name: rt.Name})
	}
	j.status.Traces = uint32(len(j.traces))
	note := ""
	if len(routers) == 0 {
		note += fmt.Sprintf("; no upstream or border router found in %d traces (hops before the prefixes silent or absent)", len(j.traces))
	} else {
		var rs []string
		for _, rt := range routers {
			rs = append(rs, rt.Addr.String()+" "+strings.TrimPrefix(rt.Role.String(), "TARGET_ROLE_")+" ("+rt.Name+")")
		}
		note += fmt.Sprintf("; routers from %d traces: %s", len(j.traces), strings.Join(rs, ", "))
	}
	if len(ignored) > 0 {
		var rs []string
		for _, rt := range ignored {
			rs = append(rs, fmt.Sprintf("%s %s (%d traces)", rt.Addr, strings.TrimPrefix(rt.Role.String(), "TARGET_ROLE_"), rt.Traces))
		}
		note += fmt.Sprintf("; ignored, traced by agents of fewer than %d %s groups: %s", need, r.opts.QuorumLabel, strings.Join(rs, ", "))
	}
	return found, note
}
