package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"
)

// The faults of BGP mode are real BGP events: BIRD's export filters change
// (a generated policy file, then "birdc configure" and "reload out"), so
// the routes are withdrawn or announced over the sessions and the kernels
// follow. DataPlaneDown is the one that keeps BGP running while packets
// die.

// BGPMode reports whether the lab routes the networks with BGP.
func (l *Lab) BGPMode() bool { return l.bgp }

func (l *Lab) needBGP(op string) error {
	if !l.bgp {
		return fmt.Errorf("%w: %s needs a lab in BGP mode (Options.BGP, vantage-lab up --bgp)", ErrRoutingMode, op)
	}
	return nil
}

func (l *Lab) needStatic(op string) error {
	if l.bgp {
		return fmt.Errorf("%w: %s acts on static routes, and this lab routes the networks with BGP", ErrRoutingMode, op)
	}
	return nil
}

// BGPWithdraw makes router, one of the origin's neighbours (an upstream),
// stop exporting the networks' prefixes (none = every network it carries,
// that is, the origin announces to it) to its other neighbours: transit
// and everything beyond it lose the routes, and the data plane follows.
// The origin keeps announcing them to it. BGPAnnounce undoes it.
func (l *Lab) BGPWithdraw(router string, networks ...string) error {
	return l.upstreamPolicy(router, networks, true)
}

// BGPAnnounce makes router export the networks again (none = all it
// carries).
func (l *Lab) BGPAnnounce(router string, networks ...string) error {
	return l.upstreamPolicy(router, networks, false)
}

func (l *Lab) upstreamPolicy(router string, networks []string, withdraw bool) error {
	if err := l.needBGP("BGPWithdraw and BGPAnnounce"); err != nil {
		return err
	}
	o := l.topo.BGP.Origin
	if router == o.Router {
		return fmt.Errorf("router %s is the origin: use OriginWithdraw and OriginAnnounce", router)
	}
	carried, ok := o.Announce[router]
	if !ok {
		return fmt.Errorf("%w: %q is not a neighbour the origin announces to (have %s)", ErrUnknownNode, router, strings.Join(sortedKeys(o.Announce), ", "))
	}
	nets, err := l.pickNetworks(networks, carried, router)
	if err != nil {
		return err
	}
	if err := l.updatePolicy(router, nets, withdraw); err != nil {
		return err
	}
	l.log.Info("bgp policy", slog.String("router", router), slog.Bool("withdraw", withdraw), slog.Any("networks", nets))
	return nil
}

// OriginWithdraw makes the origin (the border) stop announcing the
// networks (none = all it announces) to every neighbour. OriginAnnounce
// undoes it.
func (l *Lab) OriginWithdraw(networks ...string) error { return l.originPolicy(networks, true) }

// OriginAnnounce makes the origin announce the networks again (none = all).
func (l *Lab) OriginAnnounce(networks ...string) error { return l.originPolicy(networks, false) }

func (l *Lab) originPolicy(networks []string, withdraw bool) error {
	if err := l.needBGP("OriginWithdraw and OriginAnnounce"); err != nil {
		return err
	}
	o := l.topo.BGP.Origin
	var all []string
	for _, n := range l.Networks() {
		for _, peer := range sortedKeys(o.Announce) {
			if slices.Contains(o.Announce[peer], n) && !slices.Contains(all, n) {
				all = append(all, n)
			}
		}
	}
	nets, err := l.pickNetworks(networks, all, o.Router)
	if err != nil {
		return err
	}
	if err := l.updatePolicy(o.Router, nets, withdraw); err != nil {
		return err
	}
	l.log.Info("origin policy", slog.String("router", o.Router), slog.Bool("withdraw", withdraw), slog.Any("networks", nets))
	return nil
}

// pickNetworks checks networks against what router carries (none = all).
func (l *Lab) pickNetworks(networks, carried []string, router string) ([]string, error) {
	if len(networks) == 0 {
		return carried, nil
	}
	nets, err := l.resolveNetworks(networks)
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if !slices.Contains(carried, n) {
			return nil, fmt.Errorf("router %s does not carry network %s (it carries %s)", router, n, strings.Join(carried, ", "))
		}
	}
	return nets, nil
}

// updatePolicy adds the networks to (or removes them from) the router's
// withdrawn set, rewrites its policy file and has BIRD reload it and
// re-export every route through the new filters.
func (l *Lab) updatePolicy(router string, nets []string, withdraw bool) error {
	l.bgpMu.Lock()
	defer l.bgpMu.Unlock()
	path := birdFile(l.prefix, router, birdPolicySuffix)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read bird policy of %s: %w", router, err)
	}
	cur := parsePolicy(b)
	var next []string
	for _, n := range l.Networks() {
		in := slices.Contains(cur, n)
		if slices.Contains(nets, n) {
			in = withdraw
		}
		if in {
			next = append(next, n)
		}
	}
	if err := writeFileAtomic(path, []byte(l.topo.birdPolicy(next))); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	if _, err := l.birdc(ctx, router, "configure"); err != nil {
		return err
	}
	// configure may not see a change inside a function as a filter
	// change; re-exporting makes sure every route meets the new policy.
	_, err = l.birdc(ctx, router, "reload", "out", "all")
	return err
}

// BGPFlap alternates BGPWithdraw and BGPAnnounce of the networks at router
// (none = all it carries) every period until ctx is done, then announces
// them. It returns nil when ctx ends, or the first fault error.
func (l *Lab) BGPFlap(ctx context.Context, period time.Duration, router string, networks ...string) error {
	if period <= 0 {
		return fmt.Errorf("period: %v must be positive", period)
	}
	t := time.NewTicker(period)
	defer t.Stop()
	var err error
	for down := true; ; down = !down {
		if down {
			err = l.BGPWithdraw(router, networks...)
		} else {
			err = l.BGPAnnounce(router, networks...)
		}
		if err != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-t.C:
			continue
		}
		break
	}
	if aerr := l.BGPAnnounce(router, networks...); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// The data-plane chains of BGP mode: jumped to from the forward base chain
// and from input and output base chains that only BGP mode adds.
const (
	chainDataFwd = "dataplane"
	chainDataIn  = "dataplane_in"
	chainDataOut = "dataplane_out"
)

// ndTypes are the ICMPv6 types neighbour discovery needs; DataPlaneDown
// lets them through, or the IPv6 sessions would die with the data plane.
const ndTypes = "{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert }"

func (l *Lab) installDataPlaneChains(ctx context.Context) error {
	for _, r := range l.Routers() {
		var sb strings.Builder
		for _, c := range []string{chainDataFwd, chainDataIn, chainDataOut} {
			fmt.Fprintf(&sb, "add chain %s %s\n", nftTable, c)
		}
		fmt.Fprintf(&sb, "add chain %s input { type filter hook input priority filter; policy accept; }\n", nftTable)
		fmt.Fprintf(&sb, "add chain %s output { type filter hook output priority filter; policy accept; }\n", nftTable)
		fmt.Fprintf(&sb, "add rule %s forward jump %s\n", nftTable, chainDataFwd)
		fmt.Fprintf(&sb, "add rule %s input jump %s\n", nftTable, chainDataIn)
		fmt.Fprintf(&sb, "add rule %s output jump %s\n", nftTable, chainDataOut)
		if err := l.nft(ctx, r, sb.String()); err != nil {
			return err
		}
	}
	return nil
}

// DataPlaneDown makes the router drop every packet it would forward and
// answer nothing itself (no ICMP of its own, nothing to its addresses),
// while its BGP sessions (TCP port 179, and the collector's port) and
// IPv6 neighbour discovery go on: its routes stay announced while the
// packets die. DataPlaneUp undoes it.
func (l *Lab) DataPlaneDown(router string) error {
	return l.setDataPlane(router, true)
}

// DataPlaneUp lets the router forward and answer again.
func (l *Lab) DataPlaneUp(router string) error { return l.setDataPlane(router, false) }

func (l *Lab) setDataPlane(router string, down bool) error {
	if err := l.needBGP("DataPlaneDown and DataPlaneUp"); err != nil {
		return err
	}
	if err := l.router(router); err != nil {
		return err
	}
	ports := fmt.Sprintf("{ 179, %d }", l.topo.collector(l.opts.BGPCollector).port)
	rules := map[string][]string{chainDataFwd: nil, chainDataIn: nil, chainDataOut: nil}
	if down {
		rules[chainDataFwd] = []string{"drop"}
		rules[chainDataIn] = []string{
			`iifname "lo" accept`, "tcp dport " + ports + " accept", "tcp sport " + ports + " accept",
			"icmpv6 type " + ndTypes + " accept", "drop",
		}
		rules[chainDataOut] = []string{
			`oifname "lo" accept`, "meta l4proto icmp drop", "icmpv6 type != " + ndTypes + " drop",
		}
	}
	for _, c := range []string{chainDataOut, chainDataIn, chainDataFwd} {
		if err := l.setChain(router, c, rules[c]); err != nil {
			return err
		}
	}
	l.log.Info("data plane", slog.String("router", router), slog.Bool("down", down))
	return nil
}

// bgpFaults reads back the BGP faults in force from the policy files:
// withdrawals at the origin's neighbours and at the origin.
func (l *Lab) bgpFaults() ([]string, error) {
	if !l.bgp {
		return nil, nil
	}
	var out []string
	for _, r := range l.topo.bgpRouters() {
		b, err := os.ReadFile(birdFile(l.prefix, r, birdPolicySuffix))
		if err != nil {
			return nil, fmt.Errorf("read bird policy of %s: %w", r, err)
		}
		for _, n := range parsePolicy(b) {
			if r == l.topo.BGP.Origin.Router {
				out = append(out, fmt.Sprintf("origin-withdraw %s at %s", n, r))
			} else {
				out = append(out, fmt.Sprintf("bgp-withdraw %s at %s", n, r))
			}
		}
	}
	return out, nil
}

// BirdShow runs "birdc show ARGS..." against the node's BIRD (e.g.
// BirdShow("ix", "route") or BirdShow("transit", "protocols", "all")) and
// returns the reply, without reply codes.
func (l *Lab) BirdShow(node string, args ...string) (string, error) {
	return l.birdc(context.Background(), node, append([]string{"show"}, args...)...)
}
