package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The faults of the country's own side and of its upstreams, one per cause
// a verdict tells apart: a cut inside the border (the border answers, the
// hosts behind it do not), a withdrawal at one upstream (paths through it
// die at it), the border's uplinks failing (the border itself goes silent)
// and loss rising at a router over rounds (congestion or an attack).

// CutInside takes the networks' links to the border down (none = all): the
// network's own end is set down, so the border's end loses its carrier. The
// border keeps its address on the link and its route to the network, and
// still answers (its uplink addresses and the network's gateway address);
// the hosts behind it do not: the border's neighbour resolution fails and
// it answers ICMP host unreachable, or nothing, as a router with a dead
// interface does. (Setting the border's end down instead would remove its
// connected route and send the network's traffic back up its default route,
// in a loop.) RepairInside undoes it.
func (l *Lab) CutInside(networks ...string) error {
	nets, err := l.resolveNetworks(networks)
	if err != nil {
		return err
	}
	for _, n := range nets {
		if err := l.setNetworkLink(n, false); err != nil {
			return err
		}
	}
	l.log.Info("cut inside", slog.Any("networks", nets))
	return nil
}

// RepairInside brings the networks' links up again (none = all), waits until
// both ends are up and puts the networks' routes back.
func (l *Lab) RepairInside(networks ...string) error {
	nets, err := l.resolveNetworks(networks)
	if err != nil {
		return err
	}
	for _, n := range nets {
		if err := l.setNetworkLink(n, true); err != nil {
			return err
		}
	}
	l.log.Info("repair inside", slog.Any("networks", nets))
	return nil
}

func (l *Lab) setNetworkLink(network string, up bool) error {
	node := l.topo.byName[network]
	f := node.ifaces[0]
	if err := l.setLinks(network, []iface{f}, up); err != nil {
		return err
	}
	if !up {
		return nil
	}
	if err := l.waitLinksUp(ends(network, []iface{f})); err != nil {
		return err
	}
	if err := l.flushNeighbours(f.peer, peerIface(f)); err != nil {
		return err
	}
	// Setting the link down removed the routes through it.
	return l.withNetlink(network, func(h *netlink.Handle) error { return replaceRoutes(h, network, node.routes) })
}

// setLinks sets node's ends of the given links up or down.
func (l *Lab) setLinks(node string, fs []iface, up bool) error {
	return l.withNetlink(node, func(h *netlink.Handle) error {
		for _, f := range fs {
			name := ifName(l.prefix, f.link, f.side)
			lk, err := h.LinkByName(name)
			if err != nil {
				return fmt.Errorf("%s: find %s: %w", node, name, err)
			}
			if up {
				err = h.LinkSetUp(lk)
			} else {
				err = h.LinkSetDown(lk)
			}
			if err != nil {
				return fmt.Errorf("%s: set %s up=%v: %w", node, name, up, err)
			}
		}
		return nil
	})
}

// peerIface is the other end of f, as seen from f.peer.
func peerIface(f iface) iface {
	side := byte('a')
	if f.side == 'a' {
		side = 'b'
	}
	return iface{link: f.link, side: side}
}

// flushNeighbours removes node's neighbour entries on its end f of a link
// that was down: the failed resolutions of the outage would otherwise
// answer "unreachable" for a while after the repair.
func (l *Lab) flushNeighbours(node string, f iface) error {
	name := ifName(l.prefix, f.link, f.side)
	return l.withNetlink(node, func(h *netlink.Handle) error {
		lk, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("%s: find %s: %w", node, name, err)
		}
		ns, err := h.NeighList(lk.Attrs().Index, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("%s: list neighbours on %s: %w", node, name, err)
		}
		for _, n := range ns {
			if n.State&netlink.NUD_PERMANENT != 0 || n.State == netlink.NUD_NOARP {
				continue
			}
			if err := h.NeighDel(&n); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("%s: delete neighbour %v on %s: %w", node, n.IP, name, err)
			}
		}
		return nil
	})
}

// uplinks returns the router's interfaces towards other routers.
func (l *Lab) uplinks(router string) ([]iface, error) {
	if err := l.router(router); err != nil {
		return nil, err
	}
	var out []iface
	for _, f := range l.topo.byName[router].ifaces {
		if l.Role(f.peer) == RoleRouter {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("router %s has no link to another router", router)
	}
	return out, nil
}

// BorderDown fails a router abruptly: its ends of every link to another
// router (the border's uplinks to both upstreams) are set down at once, as
// when its line cards or its power go. The router stops answering from
// everywhere, on every one of its addresses; the neighbours keep their
// routes through it, lose its carrier, and their neighbour resolution for
// it fails (host unreachable, or silence). BorderUp undoes it.
func (l *Lab) BorderDown(router string) error {
	fs, err := l.uplinks(router)
	if err != nil {
		return err
	}
	if err := l.setLinks(router, fs, false); err != nil {
		return err
	}
	l.log.Info("border down", slog.String("router", router))
	return nil
}

// BorderUp brings the router's uplinks up again, waits until they are up at
// both ends and puts back the router's routes through them (source routes
// included).
func (l *Lab) BorderUp(router string) error {
	fs, err := l.uplinks(router)
	if err != nil {
		return err
	}
	if err := l.setLinks(router, fs, true); err != nil {
		return err
	}
	if err := l.waitLinksUp(ends(router, fs)); err != nil {
		return err
	}
	for _, f := range fs {
		if err := l.flushNeighbours(f.peer, peerIface(f)); err != nil {
			return err
		}
	}
	var rs []route
	for _, r := range l.topo.byName[router].routes {
		if slices.ContainsFunc(fs, func(f iface) bool {
			return slices.ContainsFunc(f.addrs, func(p netip.Prefix) bool { return p.Masked().Contains(r.via) })
		}) {
			rs = append(rs, r)
		}
	}
	if err := l.withNetlink(router, func(h *netlink.Handle) error { return replaceRoutes(h, router, rs) }); err != nil {
		return err
	}
	l.log.Info("border up", slog.String("router", router))
	return nil
}

// linkEnd is one end of a link: its node and its interface there.
type linkEnd struct {
	node string
	f    iface
}

// ends returns both ends of node's links fs.
func ends(node string, fs []iface) []linkEnd {
	var out []linkEnd
	for _, f := range fs {
		out = append(out, linkEnd{node, f}, linkEnd{f.peer, peerIface(f)})
	}
	return out
}

// waitLinksUp waits until every given link end is operationally up and has
// no tentative IPv6 address (see waitReady). Other links of the same nodes
// may be down (another fault) and are not waited for.
func (l *Lab) waitLinksUp(es []linkEnd) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, e := range es {
		name := ifName(l.prefix, e.f.link, e.f.side)
		err := l.withNetlink(e.node, func(h *netlink.Handle) error {
			for {
				ok, err := linkReady(h, name)
				if err != nil || ok {
					return err
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s: %s not ready: %w", l.Namespace(e.node), name, ctx.Err())
				case <-time.After(5 * time.Millisecond):
				}
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// linkReady reports whether the named link is up with no tentative address.
func linkReady(h *netlink.Handle, name string) (bool, error) {
	lk, err := h.LinkByName(name)
	if err != nil {
		return false, fmt.Errorf("find %s: %w", name, err)
	}
	if lk.Attrs().OperState != netlink.OperUp {
		return false, nil
	}
	addrs, err := h.AddrList(lk, netlink.FAMILY_V6)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		if a.Flags&unix.IFA_F_TENTATIVE != 0 {
			return false, nil
		}
	}
	return true, nil
}

// WithdrawMode says how a router answers for a prefix it no longer routes.
type WithdrawMode int

const (
	// WithdrawUnreachable puts a "throw" route in the router: it answers
	// ICMP net unreachable (ICMPv6 no route), as a default-free router
	// without the route does.
	WithdrawUnreachable WithdrawMode = iota
	// WithdrawSilent makes the router drop (nftables, forward hook, sets
	// silent4/silent6) what it would forward to the prefixes, without a
	// word, as a router that rate-limits or filters its unreachables does.
	// It still answers its own hop (time exceeded comes before the forward
	// hook), so a traceroute's last responsive hop is that router.
	WithdrawSilent
)

func (m WithdrawMode) String() string {
	if m == WithdrawSilent {
		return "silent"
	}
	return "unreachable"
}

// Silent sets in every router's table (see chainSilent).
const (
	silentSet4 = "silent4"
	silentSet6 = "silent6"
)

// Withdraw removes, at one router (an upstream), its routes to the networks
// (none = every network it routes, the ones it carries), so the paths
// through it die at it, while the other upstream's networks still answer.
// Only that router changes: the routers above keep sending it the traffic,
// as they do while a withdrawal has not propagated, or when the upstream
// itself filters the country. Withdrawing again with another mode switches
// the mode. Reannounce undoes it.
func (l *Lab) Withdraw(router string, mode WithdrawMode, networks ...string) error {
	rs, nets, err := l.carried(router, networks)
	if err != nil {
		return err
	}
	err = l.withNetlink(router, func(h *netlink.Handle) error {
		if mode == WithdrawSilent {
			return replaceRoutes(h, router, rs)
		}
		for _, r := range rs {
			if err := h.RouteReplace(rejectRoute(r.dst, r.table, unix.RTN_THROW)); err != nil {
				return fmt.Errorf("%s: throw route %s: %w", router, r.dst, err)
			}
		}
		return nil
	})
	if err == nil {
		err = l.setSilent(router, rs, mode == WithdrawSilent)
	}
	if err != nil {
		return err
	}
	l.log.Info("withdraw", slog.String("router", router), slog.String("mode", mode.String()), slog.Any("networks", nets))
	return nil
}

// Reannounce puts back the router's routes to the networks (none = every
// network it routes), whichever way they were withdrawn.
func (l *Lab) Reannounce(router string, networks ...string) error {
	rs, nets, err := l.carried(router, networks)
	if err != nil {
		return err
	}
	if err := l.withNetlink(router, func(h *netlink.Handle) error { return replaceRoutes(h, router, rs) }); err != nil {
		return err
	}
	if err := l.setSilent(router, rs, false); err != nil {
		return err
	}
	l.log.Info("reannounce", slog.String("router", router), slog.Any("networks", nets))
	return nil
}

// setSilent adds the routes' destinations to the router's silent sets, or
// removes them ("add" first, so that "delete" never fails on a missing
// element; nft runs the script as one transaction).
func (l *Lab) setSilent(router string, rs []route, silent bool) error {
	var sb strings.Builder
	for _, r := range rs {
		set := silentSet6
		if r.dst.Addr().Is4() {
			set = silentSet4
		}
		fmt.Fprintf(&sb, "add element %s %s { %s }\n", nftTable, set, r.dst)
		if !silent {
			fmt.Fprintf(&sb, "delete element %s %s { %s }\n", nftTable, set, r.dst)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	return l.nft(ctx, router, sb.String())
}

// carried returns the router's routes to the networks and the networks'
// names; none means every network the router has a route to.
func (l *Lab) carried(router string, networks []string) ([]route, []string, error) {
	if err := l.needStatic("Withdraw and Reannounce (use BGPWithdraw and BGPAnnounce)"); err != nil {
		return nil, nil, err
	}
	if err := l.router(router); err != nil {
		return nil, nil, err
	}
	if router == l.topo.Faults.Edge {
		return nil, nil, fmt.Errorf("router %s is the edge (faults.edge): use Blackout there", router)
	}
	all := len(networks) == 0
	nets, err := l.resolveNetworks(networks)
	if err != nil {
		return nil, nil, err
	}
	var rs []route
	var carried []string
	for _, n := range nets {
		prefixes := l.topo.networkPrefixes(n)
		before := len(rs)
		for _, r := range l.topo.byName[router].routes {
			if slices.Contains(prefixes, r.dst) {
				rs = append(rs, r)
			}
		}
		switch {
		case len(rs) > before:
			carried = append(carried, n)
		case !all:
			return nil, nil, fmt.Errorf("router %s has no route to network %s (%v)", router, n, prefixes)
		}
	}
	if len(rs) == 0 {
		return nil, nil, fmt.Errorf("router %s routes no network, nothing to withdraw", router)
	}
	return rs, carried, nil
}

// rejectRoute is a route of type typ (throw, blackhole) for dst in table.
func rejectRoute(dst netip.Prefix, table, typ int) *netlink.Route {
	nr := &netlink.Route{Dst: ipNet(dst.Masked()), Type: typ, Table: table, Family: unix.AF_INET6}
	if dst.Addr().Is4() {
		nr.Family = unix.AF_INET
	}
	return nr
}

// countryFaults reads back, from the kernel, the faults of this file in
// force: withdrawals at routers other than the edge, networks cut inside
// the border and routers with their uplinks down.
func (l *Lab) countryFaults() ([]string, error) {
	var out []string
	for _, r := range l.Routers() {
		if r == l.topo.Faults.Edge {
			continue
		}
		got, err := l.withdrawnAt(r)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	for _, n := range l.Networks() {
		down, err := l.linksDown(n, l.topo.byName[n].ifaces)
		if err != nil {
			return nil, err
		}
		if down {
			out = append(out, "cut-inside "+n)
		}
	}
	for _, r := range l.Routers() {
		fs, err := l.uplinks(r)
		if err != nil {
			continue // a router with no router neighbour cannot fail that way
		}
		down, err := l.linksDown(r, fs)
		if err != nil {
			return nil, err
		}
		if down {
			out = append(out, "border-down "+r)
		}
	}
	return out, nil
}

// withdrawnAt lists the networks withdrawn at router: with a throw route
// (unreachable) or in its silent sets (silent).
func (l *Lab) withdrawnAt(router string) ([]string, error) {
	silent, err := l.silentPrefixes(router)
	if err != nil {
		return nil, err
	}
	var thrown []netip.Prefix
	err = l.withNetlink(router, func(h *netlink.Handle) error {
		rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("list routes at %s: %w", router, err)
		}
		for _, r := range rs {
			if r.Dst != nil && r.Type == unix.RTN_THROW {
				if p, ok := netipPrefix(r.Dst); ok {
					thrown = append(thrown, p)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range l.Networks() {
		prefixes := l.topo.networkPrefixes(n)
		in := func(set []netip.Prefix) bool {
			return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return slices.Contains(set, p) })
		}
		if in(thrown) {
			out = append(out, fmt.Sprintf("withdraw %s at %s (unreachable)", n, router))
		}
		if in(silent) {
			out = append(out, fmt.Sprintf("withdraw %s at %s (silent)", n, router))
		}
	}
	return out, nil
}

// silentPrefixes reads the elements of the router's silent sets.
func (l *Lab) silentPrefixes(router string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, set := range []string{silentSet4, silentSet6} {
		ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
		b, err := l.Command(ctx, router, "nft", "list", "set", "inet", "vantage_lab", set).Output()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("nft list set %s in %s: %w", set, l.Namespace(router), err)
		}
		_, elems, ok := strings.Cut(string(b), "elements = {")
		if !ok {
			continue
		}
		elems, _, _ = strings.Cut(elems, "}")
		for _, e := range strings.Split(elems, ",") {
			if p, err := netip.ParsePrefix(strings.TrimSpace(e)); err == nil {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// linksDown reports whether any of node's ends of the links is set down.
func (l *Lab) linksDown(node string, fs []iface) (bool, error) {
	down := false
	err := l.withNetlink(node, func(h *netlink.Handle) error {
		for _, f := range fs {
			name := ifName(l.prefix, f.link, f.side)
			lk, err := h.LinkByName(name)
			if err != nil {
				return fmt.Errorf("%s: find %s: %w", node, name, err)
			}
			down = down || lk.Attrs().Flags&net.FlagUp == 0
		}
		return nil
	})
	return down, err
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
