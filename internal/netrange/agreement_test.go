package netrange_test

// These tests hold the two guards to one policy: the controller's campaign
// limits (controller/campaign, what ApplyCampaign calls) and the agent's
// guard (agent/guard, what every task passes). They live here, beside the
// table both use, because agent/ and controller/ never import each other.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/agent/guard"
	"github.com/vantage-net/vantage/agent/schedule"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/internal/netrange"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// hostSpec is a campaign whose one target is addr, in a network of its own.
func hostSpec(addr netip.Addr, schedule string) string {
	if schedule == "" {
		schedule = "{round: 10s}"
	}
	return fmt.Sprintf("name: agree\nscope: {country: KP}\ntargets:\n  networks:\n    - {name: n0, prefix: %q, hosts: [%q]}\n"+
		"probes:\n  - icmp: {}\nschedule: %s\n", netip.PrefixFrom(addr, addr.BitLen()), addr, schedule)
}

// controllerRefuses runs addr through the controller's path: Parse, then
// Limits.Check. The controller takes one spelling per host, so an
// IPv4-mapped address goes in as the IPv4 address, which is what the agent
// probes for it.
func controllerRefuses(t *testing.T, l *campaign.Limits, addr netip.Addr) (bool, string) {
	t.Helper()
	s, err := campaign.Parse([]byte(hostSpec(addr.Unmap(), "")))
	if err != nil {
		if !addr.Unmap().IsUnspecified() {
			t.Fatalf("%s: Parse: %v", addr, err)
		}
		return true, err.Error() // the unspecified address is refused by name
	}
	if err := l.Check(s); err != nil {
		return true, err.Error()
	}
	return false, ""
}

func agentRefuses(t *testing.T, g *guard.Guard, addr netip.Addr) (bool, string) {
	t.Helper()
	_, err := g.CheckTarget(addr.String())
	if err != nil && !errors.Is(err, guard.ErrSpecialRange) {
		t.Fatalf("%s: CheckTarget: %v", addr, err)
	}
	if err != nil {
		return true, err.Error()
	}
	return false, ""
}

// edgeAddrs are, for every range of the table and every IPv4-embedding
// form, its first and last address and the addresses just outside; and
// every IPv4 edge address written in each embedding form.
func edgeAddrs() []netip.Addr {
	var prefixes []netip.Prefix
	for _, r := range netrange.Special() {
		prefixes = append(prefixes, r.Prefix)
	}
	for _, f := range netrange.Forms() {
		prefixes = append(prefixes, f.Prefix)
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	add := func(a netip.Addr) {
		if a.IsValid() && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	var v4 []netip.Addr
	for _, p := range prefixes {
		first, last := p.Addr(), lastAddr(p)
		for _, a := range []netip.Addr{first, last, first.Prev(), last.Next()} {
			add(a)
			if a.IsValid() && a.Is4() {
				v4 = append(v4, a)
			}
		}
	}
	for _, a := range v4 {
		for _, e := range embed(a) {
			add(e)
		}
	}
	return out
}

// embed writes a in every IPv4-embedding form.
func embed(a netip.Addr) []netip.Addr {
	b := a.As4()
	v := binary.BigEndian.Uint32(b[:])
	last32 := func(prefix string, x uint32) netip.Addr {
		p := netip.MustParseAddr(prefix).As16()
		binary.BigEndian.PutUint32(p[12:], x)
		return netip.AddrFrom16(p)
	}
	sixToFour := netip.MustParseAddr("2002::1").As16()
	binary.BigEndian.PutUint32(sixToFour[2:6], v)
	return []netip.Addr{
		last32("64:ff9b::", v),                            // NAT64 well-known prefix
		netip.AddrFrom16(a.As16()),                        // IPv4-mapped
		last32("::", v),                                   // IPv4-compatible
		last32("::ffff:0:0:0", v),                         // IPv4-translated
		netip.AddrFrom16(sixToFour),                       // 6to4
		last32("2001:0:4136:e378:8000:63bf::", ^v),        // Teredo, a as the client
		last32("64:ff9b:1::", v),                          // local-use translation
		netip.MustParseAddr("2001:0:" + hex32(v) + "::1"), // Teredo, a as the server
	}
}

func hex32(v uint32) string { return fmt.Sprintf("%x:%x", v>>16, v&0xffff) }

// lastAddr sets p's host bits.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestSidesAgree: for every edge address of the table and of the embedding
// forms, the agent's guard refuses it exactly when the controller's campaign
// limits do; and with the lab flag, neither refuses any (beyond the
// controller refusing the unspecified address by name).
func TestSidesAgree(t *testing.T) {
	g := guard.New(guard.Config{})
	lab := guard.New(guard.Config{AllowSpecialRanges: true})
	limits, labLimits := &campaign.Limits{}, &campaign.Limits{AllowSpecial: true}
	var refused, accepted int
	for _, a := range edgeAddrs() {
		cr, cmsg := controllerRefuses(t, limits, a)
		ar, amsg := agentRefuses(t, g, a)
		if cr != ar {
			t.Errorf("%s: controller refuses %v (%s), agent refuses %v (%s)", a, cr, cmsg, ar, amsg)
		}
		if cr && ar {
			refused++
		} else if !cr && !ar {
			accepted++
		}
		if r, msg := agentRefuses(t, lab, a); r {
			t.Errorf("%s: agent with --allow-special-ranges refuses: %s", a, msg)
		}
		if r, msg := controllerRefuses(t, labLimits, a); r && !a.Unmap().IsUnspecified() {
			t.Errorf("%s: controller with --allow-special-ranges refuses: %s", a, msg)
		}
	}
	t.Logf("%d addresses refused by both sides, %d accepted by both", refused, accepted)
	if refused == 0 || accepted == 0 {
		t.Fatalf("refused %d, accepted %d: the edges should fall on both sides", refused, accepted)
	}
}

// TestEmbeddedIPv4Refused is the regression test for IPv4 hidden in IPv6:
// a campaign aimed at such addresses used to pass the controller's limits
// (the entry point ApplyCampaign uses) and then the agent's guard. Now the
// limits refuse it, naming the field and the range; and if a permissive
// controller assigns its tasks anyway, the agent's scheduler refuses every
// one of them (a TaskStatus each) and runs only the public control.
func TestEmbeddedIPv4Refused(t *testing.T) {
	special := []struct{ addr, want string }{
		{"64:ff9b::a00:1", "64:ff9b::a00:1/128 embeds 10.0.0.1/32 (NAT64 well-known prefix (RFC 6052) 64:ff9b::/96), which overlaps the special-purpose range 10.0.0.0/8 (private use (RFC 1918))"},
		{"64:ff9b::a9fe:a9fe", "embeds 169.254.169.254/32 (NAT64 well-known prefix (RFC 6052) 64:ff9b::/96), which overlaps the special-purpose range 169.254.0.0/16 (link local (RFC 3927))"},
		{"64:ff9b::7f00:1", "embeds 127.0.0.1/32"},
		{"::a00:1", "overlaps the special-purpose range ::/96 (IPv4-compatible, deprecated (RFC 4291)), a form refused whole; it embeds 10.0.0.1/32"},
		{"::ffff:0:a00:1", "overlaps the special-purpose range ::ffff:0:0:0/96 (IPv4-translated (RFC 2765)), a form refused whole; it embeds 10.0.0.1/32"},
		{"2002:a00:1::1", "overlaps the special-purpose range 2002::/16 (6to4 (RFC 3056)), a form refused whole; it embeds 10.0.0.1/32"},
		{"2001:0:4136:e378:8000:63bf:f5ff:fffe", "overlaps the special-purpose range 2001::/32 (Teredo (RFC 4380)), a form refused whole; it embeds 10.0.0.1/32"},
	}
	limits := &campaign.Limits{}
	for _, tc := range special {
		s, err := campaign.Parse([]byte(hostSpec(netip.MustParseAddr(tc.addr), "")))
		if err != nil {
			t.Fatalf("%s: Parse: %v", tc.addr, err)
		}
		err = limits.Check(s)
		if err == nil || !errors.Is(err, campaign.ErrInvalid) || !strings.Contains(err.Error(), "targets.networks[0].prefix: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Limits.Check = %v, want InvalidArgument naming the field and %q", tc.addr, err, tc.want)
		}
	}

	// One campaign holding all of them plus a public host, forced through
	// a controller that allows special ranges.
	var hosts []string
	for _, tc := range special {
		hosts = append(hosts, fmt.Sprintf("%q", tc.addr))
	}
	const public = "64:ff9b::808:808" // 8.8.8.8 through NAT64
	y := fmt.Sprintf("name: hidden\nscope: {country: KP}\ntargets:\n  networks:\n    - {name: n0, prefix: \"::/0\", hosts: [%s, %q]}\n"+
		"probes:\n  - icmp: {}\nschedule: {round: 10s}\n", strings.Join(hosts, ", "), public)
	s, err := campaign.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if err := (&campaign.Limits{}).Check(s); err == nil {
		t.Fatal("the campaign passed the controller's limits")
	}
	if err := (&campaign.Limits{AllowSpecial: true}).Check(s); err != nil {
		t.Fatalf("permissive controller: %v", err)
	}
	tasks := s.Tasks(time.Now().Add(time.Hour))
	statuses, probed := runAssignment(t, tasks)
	refused := map[string]string{}
	for _, st := range statuses {
		if st.GetRefused() {
			refused[st.GetTaskId()] = st.GetReason()
		}
	}
	for _, task := range tasks {
		reason, isRefused := refused[task.GetId()]
		if task.GetTarget() == public {
			if isRefused {
				t.Errorf("public control %s refused: %s", public, reason)
			}
			continue
		}
		if !isRefused || !strings.Contains(reason, "special-purpose address range") {
			t.Errorf("task %s: refused %v (%q), want refused as special-purpose", task.GetId(), isRefused, reason)
		}
	}
	if len(probed) != 1 || probed[0] != public {
		t.Errorf("probed %v, want only %s", probed, public)
	}
	t.Logf("%d tasks assigned, %d refused by the agent, probed %v", len(tasks), len(refused), probed)
}

// recordingProber sends nothing; it records which targets the scheduler
// handed it.
type recordingProber struct {
	mu      sync.Mutex
	targets []string
	got     chan struct{}
}

func (p *recordingProber) Probe(_ context.Context, t *vantagev1.Task) *vantagev1.ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets = append(p.targets, t.GetTarget())
	if len(p.targets) == 1 {
		close(p.got)
	}
	return &vantagev1.ProbeResult{Outcome: vantagev1.Outcome_OUTCOME_TIMEOUT}
}

// runAssignment applies tasks to a real scheduler behind a real guard
// without the lab flag, until the first probe (or 20 s), and returns the
// TaskStatuses and the targets probed.
func runAssignment(t *testing.T, tasks []*vantagev1.Task) ([]*vantagev1.TaskStatus, []string) {
	t.Helper()
	var mu sync.Mutex
	var statuses []*vantagev1.TaskStatus
	p := &recordingProber{got: make(chan struct{})}
	sched := schedule.New(schedule.Config{
		Prober: p, Guard: guard.New(guard.Config{}),
		Emit:   func(*vantagev1.ProbeResult) {},
		Status: func(st *vantagev1.TaskStatus) { mu.Lock(); statuses = append(statuses, st); mu.Unlock() },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sched.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := sched.Apply(ctx, &vantagev1.Assignment{Version: 1, ExpiresAt: tasks[0].GetExpiresAt(), Tasks: tasks}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.got: // the round in progress runs at once: rounds are aligned to the epoch
	case <-time.After(20 * time.Second):
		t.Error("no probe within 20 s")
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	return statuses, append([]string(nil), p.targets...)
}

// TestScheduleStartAgrees: the controller's schedule.start and the agent's
// task.schedule_start accept the same window.
func TestScheduleStartAgrees(t *testing.T) {
	g := guard.New(guard.Config{})
	addr := netip.MustParseAddr("8.8.8.8")
	for _, start := range []string{"1700-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
		"2026-01-01T00:00:00Z", "2199-12-31T23:59:59Z", "2200-01-01T00:00:00Z", "9999-12-31T23:59:59Z"} {
		ts, err := time.Parse(time.RFC3339, start)
		if err != nil {
			t.Fatal(err)
		}
		_, perr := campaign.Parse([]byte(hostSpec(addr, "{round: 10s, start: "+start+"}")))
		if perr != nil && !strings.HasPrefix(perr.Error(), "schedule.start: ") {
			t.Fatalf("%s: Parse: %v", start, perr)
		}
		task := &vantagev1.Task{Id: "c/icmp/8.8.8.8", Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: addr.String(),
			RoundMs: 10000, ScheduleStart: timestamppb.New(ts)}
		gerr := g.CheckTask(task)
		if gerr != nil && !strings.HasPrefix(gerr.Error(), "task.schedule_start ") {
			t.Fatalf("%s: CheckTask: %v", start, gerr)
		}
		if (perr == nil) != (gerr == nil) {
			t.Errorf("%s: controller %v, agent %v", start, perr, gerr)
		}
	}
}
