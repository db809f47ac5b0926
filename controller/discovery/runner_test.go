package discovery_test

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/discovery"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	"github.com/vantage-net/vantage/controller/trigger"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	kindICMP  = vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO
	kindTrace = vantagev1.ProbeKind_PROBE_KIND_TRACE

	discovering = vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING
	active      = vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE

	// waitLimit bounds every poll; the conditions normally hold within
	// milliseconds.
	waitLimit = 5 * time.Second
)

var (
	vps   = map[string]string{"role": "vps"}
	other = map[string]string{"role": "db"}
	t0    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// spec29 is a small discovery campaign: one /29 (6 addresses swept), the
// per_network best hosts kept, agents labelled role=vps only, at most pps
// probes a second per agent; upstreams adds upstreams: auto.
func spec29(name string, perNetwork int, pps string, upstreams bool) string {
	return fixture.Campaign{Name: name, Networks: []string{"198.18.0.0/29"}, PerNetwork: perNetwork, Discover: true, Upstreams: upstreams,
		Probes: []string{"icmp: {timeout: 200ms}"}, Round: "1s", Vantages: "{select: {role: vps}}", Budget: "{agent_pps: " + pps + "}"}.YAML()
}

// harness is one runner over a real SQLite store, with fake sessions and
// a fake clock.
type harness struct {
	t       *testing.T
	ctx     context.Context
	db      *sqlite.DB
	sess    *fakeSessions
	clock   *fixture.Clock
	logs    *logRecorder
	r       *discovery.Runner
	changed atomic.Int32
}

// newHarness opens the store and builds the runner; start runs it (Close
// at cleanup, before the store closes).
func newHarness(t *testing.T, opt func(*discovery.Options)) *harness {
	t.Helper()
	db := fixture.Store(t)
	h := &harness{t: t, ctx: t.Context(), db: db, sess: newFakeSessions(), clock: fixture.NewClock(t0), logs: &logRecorder{}}
	opts := discovery.Options{Store: db, Sessions: h.sess, Log: slog.New(h.logs), Now: h.clock.Now,
		Changed: func(context.Context) { h.changed.Add(1) },
		// Real timers stay tiny; the store is read only when kicked (and
		// at the first tick), so a test decides when the runner sees a
		// change made behind its back.
		Tick: time.Millisecond, Scan: time.Hour}
	if opt != nil {
		opt(&opts)
	}
	h.r = discovery.New(opts)
	return h
}

// startedWithTwoVPS is a started harness with agents agt-a and agt-b
// connected, both role=vps.
func startedWithTwoVPS(t *testing.T, opt func(*discovery.Options)) *harness {
	t.Helper()
	h := newHarness(t, opt)
	h.sess.connect("agt-a", vps)
	h.sess.connect("agt-b", vps)
	h.start()
	return h
}

func (h *harness) start() {
	h.r.Start(h.ctx)
	h.t.Cleanup(h.r.Close)
}

// apply stores the YAML and begins its discovery, as the api does.
func (h *harness) apply(yaml string) store.Campaign {
	h.t.Helper()
	c := h.put(yaml)
	c, err := h.r.Begin(h.ctx, c.Name, c.Version, store.AuditEntry{})
	if err != nil {
		h.t.Fatalf("Begin: %v", err)
	}
	if c.State != discovering {
		h.t.Fatalf("after Begin: state %v, want DISCOVERING", c.State)
	}
	return c
}

// put stores the YAML, a valid campaign, under its name.
func (h *harness) put(yaml string) store.Campaign {
	h.t.Helper()
	return fixture.PutCampaign(h.t, h.db, fixture.Spec(h.t, yaml).Name(), yaml, h.clock.Now())
}

// seed stores the YAML as DISCOVERING with a fresh discovery status, as
// Begin does but without kicking the runner: a runner started afterwards
// finds it at its first read of the store (as after a restart), and no
// kick is left pending to read the store again later.
func (h *harness) seed(yaml string) {
	h.t.Helper()
	c := h.put(yaml)
	st := &vantagev1.DiscoveryStatus{StartedAt: timestamppb.New(h.clock.Now()), Note: "starting"}
	if _, err := h.db.PutDiscovery(h.ctx, c.Name, store.Discovery{Version: c.Version, Status: st}, discovering, h.clock.Now(), store.AuditEntry{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) campaign(name string) store.Campaign {
	h.t.Helper()
	c, err := h.db.GetCampaign(h.ctx, name)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// waitCampaign polls the store until cond holds.
func (h *harness) waitCampaign(name, what string, cond func(store.Campaign) bool) store.Campaign {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c := h.campaign(name)
		if cond(c) {
			return c
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("campaign %s: %s: not within %v; state %v, discovery %+v", name, what, waitLimit, c.State, c.Discovery)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitNote waits until the stored discovery note contains s.
func (h *harness) waitNote(name, s string) store.Campaign {
	h.t.Helper()
	return h.waitCampaign(name, "note containing "+s, func(c store.Campaign) bool {
		return c.Discovery != nil && strings.Contains(c.Discovery.Status.GetNote(), s)
	})
}

// waitTriggers waits until at least n triggers of kind were sent.
func (h *harness) waitTriggers(kind vantagev1.ProbeKind, n int) []sent {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		ts := h.sess.triggers(kind)
		if len(ts) >= n {
			return ts
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("%d %v triggers sent within %v, want %d", len(ts), kind, waitLimit, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitSteps waits until the runner finished at least one whole step that
// began after the call.
func (h *harness) waitSteps() {
	h.t.Helper()
	from := h.sess.stepCount()
	deadline := time.Now().Add(waitLimit)
	for h.sess.stepCount() < from+2 {
		if time.Now().After(deadline) {
			h.t.Fatalf("the runner took no step within %v", waitLimit)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitChanged waits until Changed was called n times, and checks it is
// not called again at the next step.
func (h *harness) waitChanged(n int32) {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for h.changed.Load() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("Changed called %d times within %v, want %d", h.changed.Load(), waitLimit, n)
		}
		time.Sleep(time.Millisecond)
	}
	h.waitSteps()
	if got := h.changed.Load(); got != n {
		h.t.Fatalf("Changed called %d times, want %d", got, n)
	}
}

// answerSweep feeds the results of a sweep trigger as its agent's ingest
// would: ttl(agent, addr) is the reply TTL, 0 for no reply (TIMEOUT).
func (h *harness) answerSweep(s sent, ttl func(agent string, a netip.Addr) uint32) {
	h.t.Helper()
	var rs []*vantagev1.ProbeResult
	for _, task := range s.tr.GetTasks() {
		r := result(s.tr.GetId(), task)
		if t := ttl(s.agent, netip.MustParseAddr(task.GetTarget())); t > 0 {
			r.Outcome, r.ReplyTtl, r.ReplyFrom = vantagev1.Outcome_OUTCOME_REPLY, t, task.GetTarget()
		}
		rs = append(rs, r)
	}
	h.r.Feed(s.agent, rs)
}

// answerTrace feeds the results of a trace trigger: hops(target) is what
// the trace saw.
func (h *harness) answerTrace(s sent, outcome vantagev1.Outcome, hops func(target string) []*vantagev1.Hop) {
	var rs []*vantagev1.ProbeResult
	for _, task := range s.tr.GetTasks() {
		r := result(s.tr.GetId(), task)
		r.Outcome, r.Hops = outcome, hops(task.GetTarget())
		rs = append(rs, r)
	}
	h.r.Feed(s.agent, rs)
}

func result(triggerID string, task *vantagev1.Task) *vantagev1.ProbeResult {
	return &vantagev1.ProbeResult{TaskId: task.GetId(), Campaign: task.GetCampaign(), Target: task.GetTarget(), Kind: task.GetKind(),
		Outcome: vantagev1.Outcome_OUTCOME_TIMEOUT, Attempts: 1, TriggerId: triggerID}
}

// up answers from every agent for the listed addresses with TTL 61.
func up(addrs ...string) func(string, netip.Addr) uint32 {
	return func(_ string, a netip.Addr) uint32 {
		if slices.Contains(addrs, a.String()) {
			return 61
		}
		return 0
	}
}

// path is a trace through a transit hop, the upstream and the border to
// the target; "" is a silent TTL and "target" the destination.
func path(addrs ...string) func(string) []*vantagev1.Hop {
	return func(target string) []*vantagev1.Hop {
		var hs []*vantagev1.Hop
		for i, a := range addrs {
			if a == "target" {
				a = target
			}
			hs = append(hs, &vantagev1.Hop{Ttl: uint32(i + 1), Addr: a})
		}
		return hs
	}
}

// hostTargets lists the stored discovered hosts' addresses in order.
func targetsOf(c store.Campaign, role vantagev1.TargetRole) []string {
	var out []string
	if c.Discovery == nil {
		return nil
	}
	for _, t := range c.Discovery.Targets {
		if t.GetRole() == role {
			out = append(out, t.GetAddress())
		}
	}
	return out
}

func finished(c store.Campaign) bool { return c.State == active && c.Discovery.Done(c.Version) }

func TestWaitsForAMatchingAgent(t *testing.T) {
	h := newHarness(t, nil)
	h.sess.connect("agt-db", other) // connected, but vantages.select wants role=vps
	h.start()
	h.apply(spec29("wait", 2, "10", false))
	c := h.waitNote("wait", "waiting for agents")
	if c.State != discovering {
		t.Fatalf("state %v while waiting, want DISCOVERING", c.State)
	}
	h.waitSteps()
	if ts := h.sess.triggers(kindICMP); len(ts) != 0 {
		t.Fatalf("%d sweep triggers sent with no matching agent, want 0", len(ts))
	}

	h.sess.connect("agt-vps", vps)
	h.r.SetAgentConnected("agt-vps", vps, true, h.clock.Now())
	ts := h.waitTriggers(kindICMP, 1)
	h.waitNote("wait", "sweeping 6 addresses from 1 agent(s)")
	for _, s := range ts {
		if s.agent != "agt-vps" {
			t.Fatalf("sweep trigger sent to %s, want only agt-vps", s.agent)
		}
	}
}

// TestSweepPacing checks that each selected agent gets one batch per round
// and never more than budget.agent_pps x round packets in it, and that the
// batches cover every address of the prefixes once.
func TestSweepPacing(t *testing.T) {
	example, err := os.ReadFile("../../deploy/examples/discover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		yaml    string
		round   time.Duration
		pps     float64
		retries int
		swept   int
		batches []int // tasks per batch
		// never are network and broadcast addresses.
		never []string
	}{
		{"deploy/examples/discover.yaml", string(example), 2 * time.Second, 500, 1, 4 * 254, []int{500, 500, 16},
			[]string{"198.18.0.0", "198.18.0.255", "198.18.3.0", "198.18.3.255"}},
		{"two per round", spec29("pace", 2, "2", false), time.Second, 2, 0, 6, []int{2, 2, 2}, []string{"198.18.0.0", "198.18.0.7"}},
		{"retries count against the budget", strings.NewReplacer("round: 1s", "round: 2s", "timeout: 200ms", "timeout: 200ms, retries: 1").
			Replace(spec29("pace", 2, "3", false)), 2 * time.Second, 3, 1, 6, []int{3, 3}, []string{"198.18.0.0", "198.18.0.7"}},
		{"one batch", spec29("pace", 2, "100", false), time.Second, 100, 0, 6, []int{6}, []string{"198.18.0.0", "198.18.0.7"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.sess.connect("agt-a", vps)
			h.sess.connect("agt-b", vps)
			h.sess.connect("agt-db", other)
			h.start()
			c := h.apply(tc.yaml)
			perAgent := map[string]map[string]bool{"agt-a": {}, "agt-b": {}}
			for i, want := range tc.batches {
				if i > 0 {
					// Not before the round is over.
					h.clock.Add(tc.round - time.Millisecond)
					h.waitSteps()
					if got := len(h.sess.triggers(kindICMP)); got != 2*i {
						t.Fatalf("%d sweep triggers before round %d began, want %d", got, i, 2*i)
					}
					h.clock.Add(time.Millisecond)
				}
				ts := h.waitTriggers(kindICMP, 2*(i+1))[2*i:]
				for _, s := range ts {
					if len(s.tr.GetTasks()) != want {
						t.Fatalf("batch %d to %s: %d tasks, want %d", i+1, s.agent, len(s.tr.GetTasks()), want)
					}
					if packets := float64(want * (1 + tc.retries)); packets > tc.pps*tc.round.Seconds() {
						t.Fatalf("batch %d: %g packets in a round, budget %g", i+1, packets, tc.pps*tc.round.Seconds())
					}
					if !s.tr.GetIssuedAt().AsTime().Equal(h.clock.Now()) {
						t.Fatalf("batch %d issued at %v, want %v", i+1, s.tr.GetIssuedAt().AsTime(), h.clock.Now())
					}
					seen, ok := perAgent[s.agent]
					if !ok {
						t.Fatalf("sweep trigger sent to unselected agent %s", s.agent)
					}
					for _, task := range s.tr.GetTasks() {
						if task.GetKind() != kindICMP || task.GetIcmp().GetRetries() != uint32(tc.retries) || task.GetCampaign() != c.Name {
							t.Fatalf("sweep task %v", task)
						}
						if seen[task.GetTarget()] {
							t.Fatalf("%s swept %s twice", s.agent, task.GetTarget())
						}
						seen[task.GetTarget()] = true
					}
				}
			}
			h.clock.Add(10 * tc.round)
			h.waitSteps()
			if got := len(h.sess.triggers(kindICMP)); got != 2*len(tc.batches) {
				t.Fatalf("%d sweep triggers in all, want %d", got, 2*len(tc.batches))
			}
			for agent, seen := range perAgent {
				if len(seen) != tc.swept {
					t.Fatalf("%s swept %d addresses, want %d", agent, len(seen), tc.swept)
				}
				for _, a := range tc.never {
					if seen[a] {
						t.Fatalf("%s swept %s, a network or broadcast address", agent, a)
					}
				}
			}
			if got := h.campaign(c.Name).Discovery.Status.GetAddressesSwept(); got != uint32(tc.swept) {
				t.Fatalf("status addresses_swept %d, want %d", got, tc.swept)
			}
		})
	}
}

// TestKeepsHostsThatAnswered runs whole sweeps (no upstreams) and checks
// what is stored: the per_network hosts that answered best, none that did
// not, and not the router's own address in the prefix.
func TestKeepsHostsThatAnswered(t *testing.T) {
	cases := []struct {
		name       string
		ttl        func(agent string, a netip.Addr) uint32
		hosts      []string
		responsive uint32
		note       string
	}{
		{"one host answered", up("198.18.0.3"), []string{"198.18.0.3"}, 1, "1 hosts in 1 networks"},
		{"seen by more vantages first, then the lower address", func(agent string, a netip.Addr) uint32 {
			switch {
			case a.String() == "198.18.0.5",
				agent == "agt-a" && a.String() == "198.18.0.2",
				agent == "agt-b" && a.String() == "198.18.0.6":
				return 61
			}
			return 0
		}, []string{"198.18.0.5", "198.18.0.2"}, 3, "2 hosts in 1 networks"},
		{"router interface in the prefix is not a host", func(_ string, a netip.Addr) uint32 {
			switch a.String() {
			case "198.18.0.1":
				return 63 // one hop away: the border's own address
			case "198.18.0.2", "198.18.0.3", "198.18.0.4":
				return 61
			}
			return 0
		}, []string{"198.18.0.2", "198.18.0.3"}, 3, "router interface(s) inside the prefixes not kept as hosts (fewer hops away than the hosts): 198.18.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startedWithTwoVPS(t, nil)
			h.apply(spec29("keep", 2, "10", false))
			for _, s := range h.waitTriggers(kindICMP, 2) {
				h.answerSweep(s, tc.ttl)
			}
			c := h.waitCampaign("keep", "ACTIVE with targets", finished)
			if got := targetsOf(c, vantagev1.TargetRole_TARGET_ROLE_HOST); !slices.Equal(got, tc.hosts) {
				t.Fatalf("stored hosts %v, want %v", got, tc.hosts)
			}
			if len(c.Discovery.Targets) != len(tc.hosts) {
				t.Fatalf("stored targets %v, want only the hosts %v", c.Discovery.Targets, tc.hosts)
			}
			for _, tg := range c.Discovery.Targets {
				if tg.GetNetwork() != "net0" {
					t.Fatalf("host %s stored in network %q, want net0", tg.GetAddress(), tg.GetNetwork())
				}
			}
			st := c.Discovery.Status
			if st.GetHostsSelected() != uint32(len(tc.hosts)) || st.GetHostsResponsive() != tc.responsive || st.GetAddressesSwept() != 6 {
				t.Fatalf("status %v: want %d selected, %d responsive, 6 swept", st, len(tc.hosts), tc.responsive)
			}
			if !strings.Contains(st.GetNote(), tc.note) {
				t.Fatalf("note %q, want it to contain %q", st.GetNote(), tc.note)
			}
			if got := h.sess.triggers(kindTrace); len(got) != 0 {
				t.Fatalf("%d trace triggers without upstreams: auto", len(got))
			}
			// The engine can run what was stored.
			spec, err := catalogue.SpecFor(c)
			if err != nil {
				t.Fatalf("catalogue.SpecFor: %v", err)
			}
			var hosts []string
			for _, tg := range spec.Targets() {
				hosts = append(hosts, tg.Addr.String())
			}
			if !slices.Equal(hosts, tc.hosts) {
				t.Fatalf("engine targets %v, want %v", hosts, tc.hosts)
			}
			// Changed follows the write.
			h.waitChanged(1)
		})
	}
}

// TestNothingAnswered: no host answered, so the campaign stays
// DISCOVERING with a note and no (empty) target set is stored; discovery
// does not start over by itself.
func TestNothingAnswered(t *testing.T) {
	cases := []struct {
		name string
		// feed answers the sweep triggers; then the clock moves by wait.
		feed func(h *harness, ts []sent)
		wait time.Duration
		note string
	}{
		{"every address timed out", func(h *harness, ts []sent) {
			for _, s := range ts {
				h.answerSweep(s, up())
			}
		}, 0, "(12 of 12 results in)"},
		{"no result within the settle time", func(*harness, []sent) {}, 5 * time.Second, "(0 of 12 results in)"},
		{"results for unknown triggers or other campaigns are ignored", func(h *harness, ts []sent) {
			everyone := func(string, netip.Addr) uint32 { return 61 }
			for _, s := range ts {
				forged := s
				forged.tr = &vantagev1.Trigger{Id: "trg-unknown", Tasks: s.tr.GetTasks()}
				h.answerSweep(forged, everyone)
				other := s
				other.tr = &vantagev1.Trigger{Id: s.tr.GetId()}
				for _, task := range s.tr.GetTasks() {
					o := proto.Clone(task).(*vantagev1.Task)
					o.Campaign = "other"
					other.tr.Tasks = append(other.tr.Tasks, o)
				}
				h.answerSweep(other, everyone)
			}
			for _, s := range ts {
				h.answerSweep(s, up())
			}
		}, 0, "(12 of 12 results in)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startedWithTwoVPS(t, func(o *discovery.Options) { o.Settle = 5 * time.Second })
			h.apply(spec29("none", 2, "10", false))
			ts := h.waitTriggers(kindICMP, 2)
			tc.feed(h, ts)
			if tc.wait > 0 {
				h.clock.Add(tc.wait - time.Millisecond)
				h.waitSteps()
				if c := h.campaign("none"); strings.Contains(c.Discovery.Status.GetNote(), "nothing answered") {
					t.Fatalf("failed before the settle time: %q", c.Discovery.Status.GetNote())
				}
				h.clock.Add(time.Millisecond)
			}
			c := h.waitNote("none", "nothing answered")
			if !strings.Contains(c.Discovery.Status.GetNote(), tc.note) {
				t.Fatalf("note %q, want it to contain %q", c.Discovery.Status.GetNote(), tc.note)
			}
			// Later steps change nothing: no new sweep, no empty target set.
			h.clock.Add(time.Hour)
			h.waitSteps()
			c = h.campaign("none")
			if c.State != discovering || c.Discovery.Done(c.Version) || len(c.Discovery.Targets) != 0 ||
				c.Discovery.Status.GetHostsSelected() != 0 {
				t.Fatalf("after failing: state %v, discovery %+v; want DISCOVERING, unfinished, no targets", c.State, c.Discovery)
			}
			if got := len(h.sess.triggers(kindICMP)) + len(h.sess.triggers(kindTrace)); got != 2 {
				t.Fatalf("%d triggers in all, want the 2 sweep triggers only", got)
			}
			if _, err := catalogue.SpecFor(c); !errors.Is(err, catalogue.ErrNotDiscovered) {
				t.Fatalf("catalogue.SpecFor = %v, want ErrNotDiscovered", err)
			}
			if h.changed.Load() != 0 || h.logs.count("discovery found nothing") != 1 {
				t.Fatalf("Changed %d times, %d 'found nothing' logs; want 0 and 1", h.changed.Load(), h.logs.count("discovery found nothing"))
			}
		})
	}
}

// TestUpstreamsAuto: after the sweep, every vantage traces to the best
// hosts of each network, and the hop lists fed back name the upstream and
// the border.
func TestUpstreamsAuto(t *testing.T) {
	const (
		upstream = "198.51.100.42"
		border   = "198.51.100.50"
	)
	twoNets := `name: up
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefix: 198.18.0.0/29}
    - {name: net1, prefix: 198.18.1.0/29}
  hosts: {per_network: 3, discover: true}
  upstreams: auto
probes:
  - icmp: {timeout: 200ms}
  - trace: {max_ttl: 12, every: 10m}
schedule: {round: 10s}
vantages: {select: {role: vps}}
budget: {per_target_pps: 2, agent_pps: 100}
`
	listed := `name: up
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefix: 198.18.0.0/29, hosts: [198.18.0.2, 198.18.0.3]}
  upstreams: auto
probes:
  - icmp: {timeout: 200ms}
schedule: {round: 1s}
vantages: {select: {role: vps}}
`
	// A dual-stack network: the IPv4 prefix swept, the IPv6 hosts listed
	// (a /64 cannot be swept); both families' paths are traced.
	dual := `name: up
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefixes: [198.18.0.0/29, "2001:db8:18::/64"], hosts: ["2001:db8:18::10"]}
  hosts: {per_network: 3, discover: true}
  upstreams: auto
probes:
  - icmp: {timeout: 200ms}
schedule: {round: 10s}
vantages: {select: {role: vps}}
`
	full := path("10.0.0.1", upstream, border, "target")
	cases := []struct {
		name    string
		yaml    string
		sweep   bool
		maxTTL  uint32
		outcome vantagev1.Outcome
		hops    func(string) []*vantagev1.Hop
		traced  []string // per agent, in order
		routers []string // "addr ROLE"
		note    string
	}{
		{"upstream and border", twoNets, true, 12, vantagev1.Outcome_OUTCOME_REPLY, full,
			[]string{"198.18.0.2", "198.18.0.3", "198.18.1.4"}, []string{upstream + " UPSTREAM", border + " BORDER"},
			"routers from 6 traces: 198.51.100.42 UPSTREAM (upstream-198-51-100-42), 198.51.100.50 BORDER (border-198-51-100-50)"},
		{"a dual-stack network's swept and listed hosts", dual, true, 16, vantagev1.Outcome_OUTCOME_REPLY, full,
			[]string{"198.18.0.2", "198.18.0.3", "2001:db8:18::10"}, []string{upstream + " UPSTREAM", border + " BORDER"},
			"routers from 6 traces: 198.51.100.42 UPSTREAM (upstream-198-51-100-42), 198.51.100.50 BORDER (border-198-51-100-50)"},
		{"listed hosts are traced without a sweep", listed, false, 16, vantagev1.Outcome_OUTCOME_REPLY, full,
			[]string{"198.18.0.2", "198.18.0.3"}, []string{upstream + " UPSTREAM", border + " BORDER"}, "routers from 4 traces"},
		{"a silent TTL before the prefix labels nothing", twoNets, true, 12, vantagev1.Outcome_OUTCOME_REPLY,
			path("10.0.0.1", upstream, "", "target"), []string{"198.18.0.2", "198.18.0.3", "198.18.1.4"}, nil,
			"no upstream or border router found in 6 traces"},
		{"traces that never entered the prefixes say nothing", twoNets, true, 12, vantagev1.Outcome_OUTCOME_TIMEOUT,
			path("10.0.0.1", upstream, border), []string{"198.18.0.2", "198.18.0.3", "198.18.1.4"}, nil,
			"no upstream or border router found in 6 traces"},
		{"failed traces are not evidence", twoNets, true, 12, vantagev1.Outcome_OUTCOME_ERROR, full,
			[]string{"198.18.0.2", "198.18.0.3", "198.18.1.4"}, nil, "no upstream or border router found in 0 traces"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := startedWithTwoVPS(t, nil)
			h.apply(tc.yaml)
			if tc.sweep {
				for _, s := range h.waitTriggers(kindICMP, 2) {
					// net0: .2 and .3 by both agents, .4 by one; net1: .4.
					h.answerSweep(s, func(agent string, a netip.Addr) uint32 {
						switch a.String() {
						case "198.18.0.2", "198.18.0.3", "198.18.1.4":
							return 61
						case "198.18.0.4":
							if agent == "agt-a" {
								return 61
							}
						}
						return 0
					})
				}
			}
			ts := h.waitTriggers(kindTrace, 2)
			for _, s := range ts {
				var got []string
				for _, task := range s.tr.GetTasks() {
					tr := task.GetTrace()
					if task.GetKind() != kindTrace || !tr.GetParis() || tr.GetProtocol() != vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP ||
						tr.GetTimeoutMs() != uint32(trigger.TraceTimeout.Milliseconds()) || tr.GetMaxTtl() != tc.maxTTL {
						t.Fatalf("trace task %v: want a Paris ICMP trace, max_ttl %d", task, tc.maxTTL)
					}
					got = append(got, task.GetTarget())
				}
				if !slices.Equal(got, tc.traced) {
					t.Fatalf("%s traced to %v, want %v (the best %d hosts per network and prefix)", s.agent, got, tc.traced, discovery.DefaultTraceHosts)
				}
			}
			if c := h.campaign("up"); c.State != discovering {
				t.Fatalf("state %v while tracing, want DISCOVERING", c.State)
			}
			for _, s := range ts {
				h.answerTrace(s, tc.outcome, tc.hops)
			}
			c := h.waitCampaign("up", "ACTIVE with targets", finished)
			var routers []string
			for _, r := range c.Discovery.Status.GetRoutersFound() {
				routers = append(routers, r.GetAddress()+" "+strings.TrimPrefix(r.GetRole().String(), "TARGET_ROLE_"))
			}
			if !slices.Equal(routers, tc.routers) {
				t.Fatalf("routers found %v, want %v", routers, tc.routers)
			}
			var stored []string
			stored = append(stored, targetsOf(c, vantagev1.TargetRole_TARGET_ROLE_UPSTREAM)...)
			stored = append(stored, targetsOf(c, vantagev1.TargetRole_TARGET_ROLE_BORDER)...)
			var want []string
			for _, r := range tc.routers {
				want = append(want, strings.Fields(r)[0])
			}
			if !slices.Equal(stored, want) {
				t.Fatalf("stored routers %v, want %v", stored, want)
			}
			if !strings.Contains(c.Discovery.Status.GetNote(), tc.note) {
				t.Fatalf("note %q, want it to contain %q", c.Discovery.Status.GetNote(), tc.note)
			}
			h.waitChanged(1)
			spec, err := catalogue.SpecFor(c)
			if err != nil {
				t.Fatalf("catalogue.SpecFor: %v", err)
			}
			roles := map[string]vantagev1.TargetRole{}
			for _, tg := range spec.Targets() {
				roles[tg.Addr.String()] = tg.Role
			}
			for _, r := range tc.routers {
				f := strings.Fields(r)
				if roles[f[0]].String() != "TARGET_ROLE_"+f[1] {
					t.Fatalf("engine target %s has role %v, want %s", f[0], roles[f[0]], f[1])
				}
			}
		})
	}
}

// TestUpstreamsIgnoreOneLyingAgent: three agents of three providers,
// quorum 2; one of them reports that 203.0.113.66 and 203.0.113.77 sit
// just before the prefixes on every trace it ran. Only the routers the two
// honest providers agree on become targets; the planted ones are named in
// the note as ignored.
func TestUpstreamsIgnoreOneLyingAgent(t *testing.T) {
	const yaml = `name: up
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefix: 198.18.0.0/29, hosts: [198.18.0.2, 198.18.0.3]}
    - {name: net1, prefix: 198.18.1.0/29, hosts: [198.18.1.2]}
  upstreams: auto
probes:
  - icmp: {timeout: 200ms}
schedule: {round: 1s}
vantages: {select: {role: vps}, quorum: 2}
`
	h := newHarness(t, nil)
	for _, a := range []string{"agt-a", "agt-b", "agt-evil"} {
		h.sess.connect(a, map[string]string{"role": "vps", "provider": "isp-" + a})
	}
	h.start()
	h.apply(yaml)
	honest := path("10.0.0.1", "198.51.100.42", "198.51.100.50", "target")
	lies := path("10.0.0.1", "203.0.113.66", "203.0.113.77", "target")
	for _, s := range h.waitTriggers(kindTrace, 3) {
		hops := honest
		if s.agent == "agt-evil" {
			hops = lies
		}
		h.answerTrace(s, vantagev1.Outcome_OUTCOME_REPLY, hops)
	}
	c := h.waitCampaign("up", "ACTIVE with targets", finished)
	var routers []string
	for _, r := range c.Discovery.Status.GetRoutersFound() {
		routers = append(routers, r.GetAddress()+" "+strings.TrimPrefix(r.GetRole().String(), "TARGET_ROLE_"))
	}
	note := c.Discovery.Status.GetNote()
	t.Logf("routers %v; note %q", routers, note)
	if want := []string{"198.51.100.42 UPSTREAM", "198.51.100.50 BORDER"}; !slices.Equal(routers, want) {
		t.Errorf("routers found %v, want %v (the lying agent's hops ignored)", routers, want)
	}
	if stored := append(targetsOf(c, vantagev1.TargetRole_TARGET_ROLE_UPSTREAM), targetsOf(c, vantagev1.TargetRole_TARGET_ROLE_BORDER)...); slices.Contains(stored, "203.0.113.66") || slices.Contains(stored, "203.0.113.77") {
		t.Errorf("planted routers stored as targets: %v", stored)
	}
	if !strings.Contains(note, "ignored, traced by agents of fewer than 2 provider groups: 203.0.113.66 UPSTREAM (3 traces), 203.0.113.77 BORDER (3 traces)") {
		t.Errorf("note %q does not name the ignored routers", note)
	}
}

// TestLimitsRefuseDiscoveredTargets: a discovered router on the
// controller's blocklist keeps the campaign DISCOVERING with the reason.
func TestLimitsRefuseDiscoveredTargets(t *testing.T) {
	limits := &campaign.Limits{AllowSpecial: true, Blocklist: []netip.Prefix{netip.MustParsePrefix("198.51.100.50/32")}}
	h := newHarness(t, func(o *discovery.Options) { o.Limits = limits })
	h.sess.connect("agt-a", vps)
	h.start()
	h.apply(spec29("lim", 2, "10", true))
	h.answerSweep(h.waitTriggers(kindICMP, 1)[0], up("198.18.0.2"))
	h.answerTrace(h.waitTriggers(kindTrace, 1)[0], vantagev1.Outcome_OUTCOME_REPLY, path("198.51.100.42", "198.51.100.50", "target"))
	c := h.waitNote("lim", "discovered targets refused")
	if !strings.Contains(c.Discovery.Status.GetNote(), "198.51.100.50/32 on the controller's blocklist") {
		t.Fatalf("note %q does not name the blocklisted router", c.Discovery.Status.GetNote())
	}
	if c.State != discovering || c.Discovery.Done(c.Version) || len(c.Discovery.Targets) != 0 || h.changed.Load() != 0 {
		t.Fatalf("refused discovery: state %v, discovery %+v, Changed %d", c.State, c.Discovery, h.changed.Load())
	}
}

// TestReapplied: a campaign applied again while its discovery runs gets a
// fresh discovery; the stale one stores nothing, and its late results do
// not count.
func TestReapplied(t *testing.T) {
	v2 := strings.Replace(spec29("re", 2, "10", false), "198.18.0.0/29", "198.18.2.0/29", 1)
	cases := []struct {
		name string
		// reapply changes the campaign while the v1 sweep is out; it
		// returns the version that must finish.
		reapply func(h *harness) uint64
		// conflict: the stale discovery's write is refused by the store.
		conflict bool
	}{
		{"applied again through Begin", func(h *harness) uint64 {
			return h.apply(v2).Version
		}, false},
		{"applied again with the same spec", func(h *harness) uint64 {
			h.clock.Add(time.Second) // a new start time tells the runs apart
			return h.apply(spec29("re", 2, "10", false)).Version
		}, false},
		{"changed behind the runner's back: the stale write is refused", func(h *harness) uint64 {
			c, _, err := h.db.PutCampaign(h.ctx, "re", v2, h.clock.Now(), store.AuditEntry{})
			if err != nil {
				h.t.Fatal(err)
			}
			return c.Version
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.sess.connect("agt-a", vps)
			h.seed(spec29("re", 2, "10", false))
			h.start()
			stale := h.waitTriggers(kindICMP, 1)[0]
			h.waitNote("re", "all 1 batches sent, 0 of 6 results in") // no status write pending
			version := tc.reapply(h)
			if tc.conflict {
				// The v1 run finishes but cannot store: it is abandoned.
				h.answerSweep(stale, up("198.18.0.2"))
				deadline := time.Now().Add(waitLimit)
				for h.logs.count("discovery abandoned") == 0 {
					if time.Now().After(deadline) {
						t.Fatalf("the stale discovery was not abandoned; logs %v; campaign %+v", h.logs.msgs, h.campaign("re"))
					}
					time.Sleep(time.Millisecond)
				}
				c := h.campaign("re")
				if c.State != discovering || c.Discovery.Version != 1 || c.Discovery.Done(1) || len(c.Discovery.Targets) != 0 || h.changed.Load() != 0 {
					t.Fatalf("after the refused write: state %v, discovery %+v, Changed %d", c.State, c.Discovery, h.changed.Load())
				}
				h.r.Kick() // the next read of the store begins the new version
			}
			fresh := h.waitTriggers(kindICMP, 2)[1]
			// Late answers to the stale trigger change nothing.
			h.answerSweep(stale, up("198.18.0.2", "198.18.0.3"))
			h.waitSteps()
			if c := h.campaign("re"); c.State != discovering {
				t.Fatalf("stale results finished the discovery: %+v", c.Discovery)
			}
			want := fresh.tr.GetTasks()[1].GetTarget()
			h.answerSweep(fresh, up(want))
			c := h.waitCampaign("re", "ACTIVE with targets", finished)
			if c.Version != version || c.Discovery.Version != version {
				t.Fatalf("finished version %d (discovery %d), want %d", c.Version, c.Discovery.Version, version)
			}
			if got := targetsOf(c, vantagev1.TargetRole_TARGET_ROLE_HOST); !slices.Equal(got, []string{want}) {
				t.Fatalf("stored hosts %v, want [%s] from the fresh sweep only", got, want)
			}
			if n := len(h.sess.triggers(kindICMP)); n != 2 {
				t.Fatalf("%d sweep triggers, want 2 (one per run)", n)
			}
		})
	}
}

// TestReappliedDuringAStep: Begin for the same version (an unchanged file
// applied again) lands between a step's decision and its status write.
// The stale write must not undo Begin: the discovery starts over.
func TestReappliedDuringAStep(t *testing.T) {
	h := newHarness(t, nil)
	h.sess.connect("agt-a", vps)
	h.seed(spec29("race", 2, "2", false)) // 3 batches, one per 1s round
	h.start()
	h.waitTriggers(kindICMP, 1)
	h.waitNote("race", "batch 1 of 3 sent")
	gate := h.sess.holdSend()
	h.clock.Add(time.Second) // batch 2 is due: the step holds in SendTrigger
	deadline := time.Now().Add(waitLimit)
	for !h.sess.isSendBlocked() {
		if time.Now().After(deadline) {
			t.Fatal("batch 2 was not sent")
		}
		time.Sleep(time.Millisecond)
	}
	begun := make(chan error, 1)
	go func() {
		_, err := h.r.Begin(h.ctx, "race", 1, store.AuditEntry{})
		begun <- err
	}()
	fresh := h.clock.Now()
	h.waitCampaign("race", "Begin's status stored", func(c store.Campaign) bool {
		return c.Discovery.Status.GetStartedAt().AsTime().Equal(fresh)
	})
	close(gate)
	if err := <-begun; err != nil {
		t.Fatalf("Begin: %v", err)
	}
	// The discovery starts over: batch 1 again, under Begin's start time.
	deadline = time.Now().Add(waitLimit)
	for {
		n := 0
		for _, s := range h.sess.triggers(kindICMP) {
			if strings.Contains(s.tr.GetReason(), "batch 1 of 3") {
				n++
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("discovery did not start over after Begin; stored status %v", h.campaign("race").Discovery.Status)
		}
		time.Sleep(time.Millisecond)
	}
	h.waitSteps()
	if st := h.campaign("race").Discovery.Status; !st.GetStartedAt().AsTime().Equal(fresh) {
		t.Fatalf("stored status started at %v, want Begin's %v: a stale write undid it (%v)", st.GetStartedAt().AsTime(), fresh, st)
	}
}

// TestSendRefused: an agent whose send queue is full gets no trigger and
// no result is awaited from it.
func TestSendRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.sess.connect("agt-a", vps)
	h.sess.connect("agt-b", vps)
	h.sess.full["agt-b"] = true
	h.start()
	h.apply(spec29("full", 2, "10", false))
	ts := h.waitTriggers(kindICMP, 1)
	h.waitNote("full", "0 of 6 results in")
	h.answerSweep(ts[0], up("198.18.0.4"))
	c := h.waitCampaign("full", "ACTIVE with targets", finished)
	if got := targetsOf(c, vantagev1.TargetRole_TARGET_ROLE_HOST); !slices.Equal(got, []string{"198.18.0.4"}) {
		t.Fatalf("stored hosts %v", got)
	}
	if h.logs.count("discovery trigger not sent") != 1 {
		t.Fatalf("%d 'trigger not sent' logs, want 1", h.logs.count("discovery trigger not sent"))
	}
}

// TestStop: the runner's goroutine ends promptly on Close or when its
// context ends, also in the middle of a discovery.
func TestStop(t *testing.T) {
	cases := []struct {
		name string
		stop func(cancel context.CancelFunc, r *discovery.Runner)
	}{
		{"Close", func(_ context.CancelFunc, r *discovery.Runner) { r.Close() }},
		{"context cancelled", func(cancel context.CancelFunc, _ *discovery.Runner) {
			cancel()
			deadline := time.Now().Add(waitLimit)
			for runnerLoops() > 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.sess.connect("agt-a", vps)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			h.r.Start(ctx)
			h.apply(spec29("stop", 2, "10", false))
			h.waitTriggers(kindICMP, 1)
			if runnerLoops() != 1 {
				t.Fatalf("%d runner loops running, want 1", runnerLoops())
			}
			done := make(chan struct{})
			go func() {
				tc.stop(cancel, h.r)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(waitLimit):
				t.Fatal("the runner did not stop")
			}
			waitNoLoops(t)
			h.r.Close() // Close after the loop ended (or a second Close) returns too
		})
	}
	t.Run("Close waits for a step in progress", func(t *testing.T) {
		h := newHarness(t, nil)
		h.start()
		gate := h.sess.hold()
		deadline := time.Now().Add(waitLimit)
		for !h.sess.isBlocked() {
			if time.Now().After(deadline) {
				t.Fatal("no step began")
			}
			time.Sleep(time.Millisecond)
		}
		done := make(chan struct{})
		go func() { h.r.Close(); close(done) }()
		select {
		case <-done:
			close(gate)
			t.Fatal("Close returned while the loop was still inside a step")
		case <-time.After(50 * time.Millisecond): // the step is held: Close must still be waiting
		}
		close(gate)
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Fatal("Close did not return once the step ended")
		}
		waitNoLoops(t)
	})
	t.Run("Close without Start", func(t *testing.T) {
		h := newHarness(t, nil)
		done := make(chan struct{})
		go func() { h.r.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Fatal("Close without Start blocked")
		}
	})
}

// waitNoLoops waits until no runner loop is left (a loop whose Close
// returned may still be returning from its deferred calls).
func waitNoLoops(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for n := runnerLoops(); n != 0; n = runnerLoops() {
		if time.Now().After(deadline) {
			t.Fatalf("%d runner loops left after stopping", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// runnerLoops counts the goroutines running a Runner's loop.
func runnerLoops() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "discovery.(*Runner).Start.func")
}
