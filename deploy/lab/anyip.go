package lab

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AnyIP makes a whole prefix answer from inside a network namespace, so a
// sweep or a traceroute bench has 65,536 live hosts without 65,536
// addresses: a route of type "local" for the prefix on lo (the kernel then
// treats every address in it as its own, answers ICMP echo, and accepts TCP
// on wildcard listeners such as the service on :80). The routers get a
// route for the prefix along the network's own path: every router that
// routes one of the network's prefixes of that family routes the AnyIP
// prefix the same way, and the router the network hangs off routes it via
// the network's first host of that family.
//
// AnyIP routes are not withdrawn by Blackout: they are bench fixtures, not
// part of a scope's address plan.

// checkAnyIP validates an AnyIP prefix p for network: canonical, clear of
// every address in the topology (the network's gateway must stay a
// neighbour), and routable (the network has a host of p's family).
func (t *Topology) checkAnyIP(network string, p netip.Prefix) error {
	if p != p.Masked() {
		return fmt.Errorf("%s has host bits set (want %s)", p, p.Masked())
	}
	for _, name := range t.order {
		n := t.byName[name]
		for _, a := range n.addrs {
			if a.Masked().Overlaps(p) {
				return fmt.Errorf("%s overlaps %s of node %q", p, a, name)
			}
		}
		for _, q := range n.anyip {
			if q != p && q.Overlaps(p) {
				return fmt.Errorf("%s overlaps AnyIP prefix %s of node %q", p, q, name)
			}
		}
	}
	if !t.firstHost(network, p.Addr().Is4()).IsValid() {
		fam := "IPv6"
		if p.Addr().Is4() {
			fam = "IPv4"
		}
		return fmt.Errorf("network %q has no %s host to route %s to", network, fam, p)
	}
	return nil
}

func (t *Topology) firstHost(network string, v4 bool) netip.Addr {
	for _, h := range t.byName[network].hosts {
		if h.Addr().Is4() == v4 {
			return h.Addr()
		}
	}
	return netip.Addr{}
}

// nodeRoute is a route to install in one node.
type nodeRoute struct {
	node string
	r    route
}

// anyIPRoutes returns the router routes that lead p to network (see the
// AnyIP comment above).
func (t *Topology) anyIPRoutes(network string, p netip.Prefix) []nodeRoute {
	own := t.networkPrefixes(network)
	var out []nodeRoute
	for _, name := range t.order {
		n := t.byName[name]
		if n.role != RoleRouter {
			continue
		}
		for _, r := range n.routes {
			if !r.src.IsValid() && r.dst.Addr().Is4() == p.Addr().Is4() && slices.Contains(own, r.dst) {
				out = append(out, nodeRoute{name, route{dst: p, via: r.via}})
				break
			}
		}
	}
	gw := t.byName[network].ifaces[0].peer
	out = append(out, nodeRoute{gw, route{dst: p, via: t.firstHost(network, p.Addr().Is4())}})
	return out
}

// AnyIP returns the AnyIP prefixes the topology gives network.
func (l *Lab) AnyIP(network string) []netip.Prefix {
	n, ok := l.topo.byName[network]
	if !ok {
		return nil
	}
	return slices.Clone(n.anyip)
}

// AddAnyIP makes every address of p answer from inside network, on a lab
// that is up, as the topology's "anyip" field does at build time. The
// prefix is not recorded in the saved topology; Down removes it with the
// namespaces.
func (l *Lab) AddAnyIP(network string, p netip.Prefix) error {
	n, ok := l.topo.byName[network]
	if !ok || n.role != RoleNetwork {
		return fmt.Errorf("%w: %q is not a network", ErrUnknownNode, network)
	}
	if err := l.topo.checkAnyIP(network, p); err != nil {
		return fmt.Errorf("anyip for %s: %w", network, err)
	}
	return l.installAnyIP(network, p)
}

func (l *Lab) installAnyIPs(ctx context.Context) error {
	for _, name := range l.topo.names(RoleNetwork) {
		for _, p := range l.topo.byName[name].anyip {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := l.installAnyIP(name, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Lab) installAnyIP(network string, p netip.Prefix) error {
	err := l.withNetlink(network, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		fam := unix.AF_INET6
		if p.Addr().Is4() {
			fam = unix.AF_INET
		}
		return h.RouteReplace(&netlink.Route{
			LinkIndex: lo.Attrs().Index,
			Dst:       ipNet(p),
			Type:      unix.RTN_LOCAL,
			Table:     unix.RT_TABLE_LOCAL,
			Scope:     netlink.SCOPE_HOST,
			Family:    fam,
		})
	})
	if err != nil {
		return fmt.Errorf("node %s: local route %s: %w", network, p, err)
	}
	for _, nr := range l.topo.anyIPRoutes(network, p) {
		err := l.withNetlink(nr.node, func(h *netlink.Handle) error { return h.RouteReplace(nr.r.netlink()) })
		if err != nil {
			return fmt.Errorf("node %s: route %s via %s: %w", nr.node, nr.r.dst, nr.r.via, err)
		}
	}
	l.log.Debug("anyip", slog.String("network", network), slog.String("prefix", p.String()))
	return nil
}

// Uplink returns the interface of a single-link node (a vantage, a network)
// inside its namespace and the MAC address of the router end of that link,
// which tools that write their own Ethernet frames (zmap -i/-G) need.
func (l *Lab) Uplink(node string) (ifname, gatewayMAC string, err error) {
	n, ok := l.topo.byName[node]
	if !ok {
		return "", "", fmt.Errorf("%w: %q", ErrUnknownNode, node)
	}
	if len(n.ifaces) != 1 {
		return "", "", fmt.Errorf("node %s has %d links, want exactly one", node, len(n.ifaces))
	}
	f := n.ifaces[0]
	peerSide := byte('a')
	if f.side == 'a' {
		peerSide = 'b'
	}
	peerIf := ifName(l.prefix, f.link, peerSide)
	err = l.withNetlink(f.peer, func(h *netlink.Handle) error {
		lk, err := h.LinkByName(peerIf)
		if err != nil {
			return fmt.Errorf("find %s in %s: %w", peerIf, f.peer, err)
		}
		gatewayMAC = lk.Attrs().HardwareAddr.String()
		return nil
	})
	if err != nil {
		return "", "", err
	}
	return ifName(l.prefix, f.link, f.side), gatewayMAC, nil
}
