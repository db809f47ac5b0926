package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Rising loss at a router over rounds, as congestion or an attack makes it.

// QueueDelay is how long a packet can wait in a capacity queue
// (LossStep.Capacity) before the queue is full and drops: the queue holds
// QueueDelay of full-size (1000-byte, the flood's) packets at the
// capacity's rate, counted in packets (see queuePackets).
const QueueDelay = 300 * time.Millisecond

// MinCapacity is the smallest LossStep.Capacity, in kbit/s.
const MinCapacity = 8

// capacityBurst is the tbf bucket in bytes: more than one full frame
// (1514 bytes), so a packet of any size can pass.
const capacityBurst = 2000

// LossStep is one step of rising loss at a router, on the packets it
// forwards to the target space.
type LossStep struct {
	// Pct of them are dropped at random (nftables numgen), 0-100.
	Pct int
	// Rate, if positive, is a capacity in packets per second: what exceeds
	// it (after a burst of Rate packets) is dropped (nftables limit rate
	// over), as by a saturated link, so the loss grows with the load.
	Rate int
	// Capacity, if positive, caps the router's links toward the networks
	// (its interfaces whose peer is a network node) at Capacity kbit/s with a
	// tc tbf qdisc: what exceeds it queues, up to QueueDelay, so RTT rises,
	// and then is dropped. At least MinCapacity.
	Capacity int
	// Flood, if positive, is UDP load in kbit/s that the lab sends from inside
	// the transit namespace to the networks' hosts (port 9, discard; spread
	// over every host of every network) through the upstreams and the border,
	// so it fills Capacity like an attack does. Each network's link gets its
	// share: Flood/4 in the default lab. The flood is forwarded traffic to
	// the target space, so Pct and Rate drop it too.
	Flood int
}

func (s LossStep) String() string {
	out := fmt.Sprintf("%d%% random, rate %d/s", s.Pct, s.Rate)
	if s.Capacity > 0 {
		out += fmt.Sprintf(", capacity %d kbit/s", s.Capacity)
	}
	if s.Flood > 0 {
		out += fmt.Sprintf(", flood %d kbit/s", s.Flood)
	}
	return out
}

// validate checks the step's values; each error names its field.
func (s LossStep) validate() error {
	switch {
	case s.Pct < 0 || s.Pct > 100:
		return fmt.Errorf("pct: %d must be within 0-100", s.Pct)
	case s.Rate < 0:
		return fmt.Errorf("rate: %d must not be negative", s.Rate)
	case s.Capacity < 0:
		return fmt.Errorf("capacity: %d must not be negative", s.Capacity)
	case s.Capacity > 0 && s.Capacity < MinCapacity:
		return fmt.Errorf("capacity: %d kbit/s is below the minimum of %d", s.Capacity, MinCapacity)
	case s.Flood < 0:
		return fmt.Errorf("flood: %d must not be negative", s.Flood)
	}
	return nil
}

// StepLoss sets router node's loss step, replacing the previous step: the
// nftables rules in one transaction (no packet sees both or neither), the
// capacity's qdiscs with "tc qdisc replace", the flood's rate in place.
// The zero step removes all of it: the nftables chain, the tbf on every
// link of the router toward a network, and the flood. The step has its own
// chain, so it combines with Loss. There is one flood per lab, whichever
// router the step is for: the last step sets its rate. A caller steps it up
// over rounds (or uses RampLoss).
func (l *Lab) StepLoss(node string, s LossStep) error {
	if err := l.router(node); err != nil {
		return err
	}
	if err := s.validate(); err != nil {
		return err
	}
	links, err := l.capacityLinks(node, s.Capacity)
	if err != nil {
		return err
	}
	var rules []string
	if s.Rate > 0 {
		rules = append(rules, l.targetRules(fmt.Sprintf("limit rate over %d/second burst %d packets drop", s.Rate, s.Rate))...)
	}
	if s.Pct > 0 {
		rules = append(rules, l.targetRules(randomDrop(s.Pct))...)
	}
	// Each part is set even if another failed, so the zero step removes
	// whatever it can.
	if err := errors.Join(l.setChain(node, chainStep, rules), l.setCapacity(node, links, s.Capacity), l.setFlood(s.Flood)); err != nil {
		return err
	}
	l.log.Info("step loss", slog.String("node", node), slog.Int("pct", s.Pct), slog.Int("rate", s.Rate),
		slog.Int("capacity_kbit", s.Capacity), slog.Int("flood_kbit", s.Flood))
	return nil
}

// RampLoss applies the steps at router node one after the other, every
// period, holds the last until ctx is done, then removes the step loss. It
// returns nil when ctx ends, or the first fault error.
func (l *Lab) RampLoss(ctx context.Context, node string, period time.Duration, steps ...LossStep) error {
	if period <= 0 {
		return fmt.Errorf("period: %v must be positive", period)
	}
	if len(steps) == 0 {
		return errors.New("steps: at least one is required")
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for i := 0; ; i++ {
		if i < len(steps) {
			if err := l.StepLoss(node, steps[i]); err != nil {
				return errors.Join(err, l.StepLoss(node, LossStep{}))
			}
		}
		select {
		case <-ctx.Done():
			return l.StepLoss(node, LossStep{})
		case <-t.C:
		}
	}
}

// randomDrop is the nftables statement dropping pct percent at random.
func randomDrop(pct int) string {
	if pct >= 100 {
		return "drop" // nft rejects "< 100" for a 0-99 value
	}
	return fmt.Sprintf("numgen random mod 100 < %d drop", pct)
}

// targetRules returns one rule per family of the target space: a match on
// its destination prefixes, then body.
func (l *Lab) targetRules(body string) []string {
	v4, v6 := l.targets()
	var rules []string
	if len(v4) > 0 {
		rules = append(rules, fmt.Sprintf("ip daddr { %s } %s", strings.Join(v4, ", "), body))
	}
	if len(v6) > 0 {
		rules = append(rules, fmt.Sprintf("ip6 daddr { %s } %s", strings.Join(v6, ", "), body))
	}
	return rules
}

// The capacity is a tc tbf qdisc at the root of each of the router's links
// toward a network (its egress there: the probes and the flood on their way
// in), with a pfifo child queue. The tbf is put there with the tc command
// rather than with netlink's Tbf: tc turns the bucket (bytes) into the
// scheduler ticks the kernel wants and checks the parameters, which
// netlink.Tbf leaves to the caller (Buffer in ticks from /proc/net/psched),
// and getting them wrong would not fail, only shape differently. Reading
// the qdiscs back and deleting them is plain netlink.
//
// The child queue counts packets (pfifo), as a router's buffer does. The
// tbf's default child (bfifo) counts bytes: with full-size flood packets
// queued, a small probe nearly always fits in the last bytes, so the
// probes would see the delay and never the loss.

// capacityHandle is the tbf's handle; its child is capacityChild.
const (
	capacityHandle = "1:"
	capacityChild  = "10:"
)

// queuePackets is the capacity queue's length: QueueDelay of full-size
// (floodPacket) packets at kbit/s, at least one.
func queuePackets(kbit int) int {
	n := int64(kbit) * 1000 / 8 * QueueDelay.Milliseconds() / 1000 / floodPacket
	return int(max(n, 1))
}

// capacityLinks returns the router's links toward networks, the links a
// capacity caps; a positive capacity needs at least one, and tc.
func (l *Lab) capacityLinks(router string, kbit int) ([]iface, error) {
	var out []iface
	for _, f := range l.topo.byName[router].ifaces {
		if l.Role(f.peer) == RoleNetwork {
			out = append(out, f)
		}
	}
	if kbit == 0 {
		return out, nil
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("capacity: router %s has no link to a network", router)
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return nil, fmt.Errorf("capacity: %w: tc (install iproute2)", ErrMissingTool)
	}
	return out, nil
}

// setCapacity caps the router's links at kbit/s (tbf and its queue
// replaced in one tc batch), or, at 0, removes the tbf from every one of
// them that has one.
func (l *Lab) setCapacity(router string, links []iface, kbit int) error {
	if kbit == 0 {
		return l.removeCapacity(router, links)
	}
	var sb strings.Builder
	for _, f := range links {
		name := ifName(l.prefix, f.link, f.side)
		// Replacing the tbf gives it a fresh default child, so the pfifo
		// is put back each time.
		fmt.Fprintf(&sb, "qdisc replace dev %s root handle %s tbf rate %dkbit burst %d latency %dms\n",
			name, capacityHandle, kbit, capacityBurst, QueueDelay.Milliseconds())
		fmt.Fprintf(&sb, "qdisc replace dev %s parent %s1 handle %s pfifo limit %d\n",
			name, capacityHandle, capacityChild, queuePackets(kbit))
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	cmd := l.Command(ctx, router, "tc", "-batch", "-")
	cmd.Stdin = strings.NewReader(sb.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("capacity: tc in %s: %w: %s", l.Namespace(router), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeCapacity deletes the root tbf of each of the links that has one.
func (l *Lab) removeCapacity(router string, links []iface) error {
	return l.withNetlink(router, func(h *netlink.Handle) error {
		for _, f := range links {
			q, err := rootTbf(h, ifName(l.prefix, f.link, f.side))
			if err != nil {
				return fmt.Errorf("%s: %w", router, err)
			}
			if q == nil {
				continue
			}
			if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("capacity: delete tbf on %s in %s: %w", ifName(l.prefix, f.link, f.side), router, err)
			}
		}
		return nil
	})
}

// rootTbf returns the link's root qdisc if it is a tbf, else nil.
func rootTbf(h *netlink.Handle, name string) (*netlink.Tbf, error) {
	lk, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", name, err)
	}
	qs, err := h.QdiscList(lk)
	if err != nil {
		return nil, fmt.Errorf("list qdiscs of %s: %w", name, err)
	}
	for _, q := range qs {
		if t, ok := q.(*netlink.Tbf); ok && t.Parent == netlink.HANDLE_ROOT {
			return t, nil
		}
	}
	return nil, nil
}

// congestionFaults reads back the capacities in force (from the kernel) and
// the flood, if this Lab runs one (it lives in this process, not in the
// kernel, so another process's Lab does not see it).
func (l *Lab) congestionFaults() ([]string, error) {
	var out []string
	for _, r := range l.Routers() {
		links, _ := l.capacityLinks(r, 0)
		if len(links) == 0 {
			continue
		}
		err := l.withNetlink(r, func(h *netlink.Handle) error {
			for _, f := range links {
				name := ifName(l.prefix, f.link, f.side)
				q, err := rootTbf(h, name)
				if err != nil {
					return fmt.Errorf("%s: %w", r, err)
				}
				if q != nil {
					out = append(out, fmt.Sprintf("capacity %d kbit at %s on %s", q.Rate*8/1000, r, name))
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if st, ok := l.FloodStats(); ok {
		out = append(out, fmt.Sprintf("flood %d kbit/s from %s to %d hosts", st.Kbit, st.Source, st.Hosts))
	}
	return out, nil
}
