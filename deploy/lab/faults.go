package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// faultTimeout bounds each nft invocation made by a fault method.
const faultTimeout = 10 * time.Second

// resolveNetworks checks names (none = all networks).
func (l *Lab) resolveNetworks(nets []string) ([]string, error) {
	if len(nets) == 0 {
		return l.Networks(), nil
	}
	for _, n := range nets {
		if l.Role(n) != RoleNetwork {
			return nil, fmt.Errorf("%w: %q is not a network (have %s)", ErrUnknownNode, n, strings.Join(l.Networks(), ", "))
		}
	}
	return nets, nil
}

// Blackout withdraws the networks' routes everywhere (upstream, transit and
// the exchange in the default topology, like a BGP withdrawal propagating)
// and puts "throw" routes at the edge, so probes get an explicit ICMP net
// unreachable (ICMPv6 no route) from there. No names means every network.
func (l *Lab) Blackout(networks ...string) error {
	if err := l.needStatic("Blackout (use BGPWithdraw or OriginWithdraw)"); err != nil {
		return err
	}
	nets, err := l.resolveNetworks(networks)
	if err != nil {
		return err
	}
	for _, n := range nets {
		if err := l.setWithdrawn(n, true); err != nil {
			return err
		}
	}
	l.log.Info("blackout", slog.Any("networks", nets))
	return nil
}

// Restore announces the networks' routes again (none = all). Restoring a
// subset is a partial restoration.
func (l *Lab) Restore(networks ...string) error {
	if err := l.needStatic("Restore (use BGPAnnounce or OriginAnnounce)"); err != nil {
		return err
	}
	nets, err := l.resolveNetworks(networks)
	if err != nil {
		return err
	}
	for _, n := range nets {
		if err := l.setWithdrawn(n, false); err != nil {
			return err
		}
	}
	l.log.Info("restore", slog.Any("networks", nets))
	return nil
}

func (l *Lab) setWithdrawn(network string, withdraw bool) error {
	prefixes := l.topo.networkPrefixes(network)
	edge := l.topo.Faults.Edge
	routed := false
	for _, name := range l.topo.order {
		for _, r := range l.topo.byName[name].routes {
			routed = routed || slices.Contains(prefixes, r.dst)
		}
	}
	if !routed {
		return fmt.Errorf("network %s: no route in the topology leads to %v, nothing to withdraw", network, prefixes)
	}
	for _, name := range l.topo.order {
		node := l.topo.byName[name]
		var rs []route
		for _, r := range node.routes {
			if slices.Contains(prefixes, r.dst) {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 && name != edge {
			continue
		}
		if err := l.withNetlink(name, func(h *netlink.Handle) error {
			for _, r := range rs {
				var err error
				switch {
				case withdraw && name == edge:
					continue // replaced by the throw route below
				case withdraw:
					err = h.RouteDel(r.netlink())
					if isNoSuchRoute(err) {
						err = nil
					}
				default:
					err = h.RouteReplace(r.netlink())
				}
				if err != nil {
					return fmt.Errorf("%s route %s via %s: %w", name, r.dst, r.via, err)
				}
			}
			if name != edge {
				return nil
			}
			for _, p := range prefixes {
				var err error
				if withdraw {
					err = h.RouteReplace(withdrawnRoute(p))
				} else if !slices.ContainsFunc(rs, func(r route) bool { return r.dst == p }) {
					err = h.RouteDel(withdrawnRoute(p))
					if isNoSuchRoute(err) {
						err = nil
					}
				}
				if err != nil {
					return fmt.Errorf("%s throw route %s: %w", name, p, err)
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) withNetlink(node string, fn func(*netlink.Handle) error) error {
	ns, err := l.handle(node)
	if err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", l.Namespace(node), err)
	}
	defer h.Close()
	return fn(h)
}

// Flap alternates Blackout and Restore of the networks (none = all) every
// period until ctx is done, then restores them. It returns nil when ctx
// ends, or the first fault error.
func (l *Lab) Flap(ctx context.Context, period time.Duration, networks ...string) error {
	if period <= 0 {
		return fmt.Errorf("period: %v must be positive", period)
	}
	nets, err := l.resolveNetworks(networks)
	if err != nil {
		return err
	}
	t := time.NewTicker(period)
	defer t.Stop()
	down := false
	for {
		down = !down
		if down {
			err = l.Blackout(nets...)
		} else {
			err = l.Restore(nets...)
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
	if rerr := l.Restore(nets...); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// targets splits the target space by family.
func (l *Lab) targets() (v4, v6 []string) {
	for _, p := range l.topo.target {
		if p.Addr().Is4() {
			v4 = append(v4, p.String())
		} else {
			v6 = append(v6, p.String())
		}
	}
	return v4, v6
}

func (l *Lab) router(node string) error {
	if l.Role(node) != RoleRouter {
		return fmt.Errorf("%w: %q is not a router (have %s)", ErrUnknownNode, node, strings.Join(l.Routers(), ", "))
	}
	return nil
}

// setChain replaces the rules of one fault chain in node's nftables table
// (no rules = fault removed).
func (l *Lab) setChain(node, chain string, rules []string) error {
	if _, err := l.handle(node); err != nil {
		return err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "flush chain %s %s\n", nftTable, chain)
	for _, r := range rules {
		fmt.Fprintf(&sb, "add rule %s %s %s\n", nftTable, chain, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), faultTimeout)
	defer cancel()
	return l.nft(ctx, node, sb.String())
}

// Loss makes router node drop pct percent of the packets it forwards to the
// target space (numgen random); 0 removes the loss.
func (l *Lab) Loss(node string, pct int) error {
	if err := l.router(node); err != nil {
		return err
	}
	if pct < 0 || pct > 100 {
		return fmt.Errorf("pct: %d must be within 0-100", pct)
	}
	var rules []string
	if pct > 0 {
		rules = l.targetRules(randomDrop(pct))
	}
	if err := l.setChain(node, chainLoss, rules); err != nil {
		return err
	}
	l.log.Info("loss", slog.String("node", node), slog.Int("pct", pct))
	return nil
}

// FilterICMP makes router node drop the ICMP and ICMPv6 echo requests it
// forwards to the target space; TCP still passes.
func (l *Lab) FilterICMP(node string) error {
	if err := l.router(node); err != nil {
		return err
	}
	v4, v6 := l.targets()
	var rules []string
	if len(v4) > 0 {
		rules = append(rules, fmt.Sprintf("ip daddr { %s } icmp type echo-request drop", strings.Join(v4, ", ")))
	}
	if len(v6) > 0 {
		rules = append(rules, fmt.Sprintf("ip6 daddr { %s } icmpv6 type echo-request drop", strings.Join(v6, ", ")))
	}
	if err := l.setChain(node, chainICMP, rules); err != nil {
		return err
	}
	l.log.Info("filter icmp", slog.String("node", node))
	return nil
}

// UnfilterICMP removes FilterICMP.
func (l *Lab) UnfilterICMP(node string) error {
	if err := l.router(node); err != nil {
		return err
	}
	if err := l.setChain(node, chainICMP, nil); err != nil {
		return err
	}
	l.log.Info("unfilter icmp", slog.String("node", node))
	return nil
}

// vantageIface returns the edge's interface name towards a vantage and the
// link index.
func (l *Lab) vantageIface(vantage string) (string, int, error) {
	if l.Role(vantage) != RoleVantage {
		return "", 0, fmt.Errorf("%w: %q is not a vantage (have %s)", ErrUnknownNode, vantage, strings.Join(l.Vantages(), ", "))
	}
	f, _ := edgeIface(l.topo.byName[l.topo.Faults.Edge], vantage)
	return ifName(l.prefix, f.link, f.side), f.link, nil
}

// controllerAddrs returns the controller's addresses by family.
func (l *Lab) controllerAddrs() (v4, v6 []netip.Addr) {
	c := l.topo.names(RoleController)[0]
	for _, p := range l.topo.byName[c].addrs {
		if p.Addr().Is4() {
			v4 = append(v4, p.Addr())
		} else {
			v6 = append(v6, p.Addr())
		}
	}
	return v4, v6
}

func addrSet(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return "{ " + strings.Join(s, ", ") + " }"
}

// Isolate makes the edge drop everything it forwards from the vantage's link
// except traffic to the controller: the vantage keeps its controller session
// and loses everything else.
func (l *Lab) Isolate(vantage string) error {
	ifn, link, err := l.vantageIface(vantage)
	if err != nil {
		return err
	}
	c4, c6 := l.controllerAddrs()
	rules := []string{
		fmt.Sprintf("iifname %q meta nfproto ipv4 ip daddr != %s drop", ifn, addrSet(c4)),
		fmt.Sprintf("iifname %q meta nfproto ipv6 ip6 daddr != %s drop", ifn, addrSet(c6)),
	}
	if len(c4) == 0 {
		rules[0] = fmt.Sprintf("iifname %q meta nfproto ipv4 drop", ifn)
	}
	if len(c6) == 0 {
		rules[1] = fmt.Sprintf("iifname %q meta nfproto ipv6 drop", ifn)
	}
	if err := l.setChain(l.topo.Faults.Edge, chainIso+strconv.Itoa(link), rules); err != nil {
		return err
	}
	l.log.Info("isolate", slog.String("vantage", vantage))
	return nil
}

// Unisolate removes Isolate.
func (l *Lab) Unisolate(vantage string) error {
	_, link, err := l.vantageIface(vantage)
	if err != nil {
		return err
	}
	if err := l.setChain(l.topo.Faults.Edge, chainIso+strconv.Itoa(link), nil); err != nil {
		return err
	}
	l.log.Info("unisolate", slog.String("vantage", vantage))
	return nil
}

// CutUplink makes the edge drop what it forwards between the vantage and the
// controller, both ways; the vantage's probes still flow.
func (l *Lab) CutUplink(vantage string) error {
	ifn, link, err := l.vantageIface(vantage)
	if err != nil {
		return err
	}
	c4, c6 := l.controllerAddrs()
	var rules []string
	if len(c4) > 0 {
		rules = append(rules,
			fmt.Sprintf("iifname %q ip daddr %s drop", ifn, addrSet(c4)),
			fmt.Sprintf("oifname %q ip saddr %s drop", ifn, addrSet(c4)))
	}
	if len(c6) > 0 {
		rules = append(rules,
			fmt.Sprintf("iifname %q ip6 daddr %s drop", ifn, addrSet(c6)),
			fmt.Sprintf("oifname %q ip6 saddr %s drop", ifn, addrSet(c6)))
	}
	if err := l.setChain(l.topo.Faults.Edge, chainUplink+strconv.Itoa(link), rules); err != nil {
		return err
	}
	l.log.Info("cut uplink", slog.String("vantage", vantage))
	return nil
}

// RestoreUplink removes CutUplink.
func (l *Lab) RestoreUplink(vantage string) error {
	_, link, err := l.vantageIface(vantage)
	if err != nil {
		return err
	}
	if err := l.setChain(l.topo.Faults.Edge, chainUplink+strconv.Itoa(link), nil); err != nil {
		return err
	}
	l.log.Info("restore uplink", slog.String("vantage", vantage))
	return nil
}

// Faults describes the faults currently in force, read back from the
// kernel (routes, links, qdiscs and nftables), one human-readable line
// each, and the flood if this Lab runs one.
func (l *Lab) Faults(ctx context.Context) ([]string, error) {
	var out []string
	edge := l.topo.Faults.Edge
	for _, n := range l.Networks() {
		var withdrawn bool
		err := l.withNetlink(edge, func(h *netlink.Handle) error {
			for _, p := range l.topo.networkPrefixes(n) {
				rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Dst: ipNet(p), Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
				if err != nil {
					return fmt.Errorf("list routes at %s: %w", edge, err)
				}
				for _, r := range rs {
					if r.Type == unix.RTN_THROW {
						withdrawn = true
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if withdrawn {
			out = append(out, "blackout "+n)
		}
	}
	country, err := l.countryFaults()
	if err != nil {
		return nil, err
	}
	out = append(out, country...)
	congestion, err := l.congestionFaults()
	if err != nil {
		return nil, err
	}
	out = append(out, congestion...)
	bgp, err := l.bgpFaults()
	if err != nil {
		return nil, err
	}
	out = append(out, bgp...)
	label := map[string]string{chainLoss: "loss", chainStep: "step-loss", chainICMP: "filter-icmp"}
	for _, v := range l.Vantages() {
		_, link, _ := l.vantageIface(v)
		label[chainIso+strconv.Itoa(link)] = "isolate " + v
		label[chainUplink+strconv.Itoa(link)] = "cut-uplink " + v
	}
	for _, r := range l.Routers() {
		cmd := l.Command(ctx, r, "nft", "list", "table", nftTable)
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("nft list in %s: %w", l.Namespace(r), err)
		}
		chain := ""
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if c, ok := strings.CutPrefix(line, "chain "); ok {
				chain = strings.TrimSuffix(c, " {")
				continue
			}
			if line == "}" || line == "" {
				continue
			}
			switch chain {
			case "", "forward", "input", "output", chainSilent, chainDataIn, chainDataOut:
				continue
			case chainDataFwd:
				out = append(out, "dataplane-down "+r)
				continue
			}
			out = append(out, fmt.Sprintf("%s at %s: %s", label[chain], r, line))
		}
	}
	return out, nil
}
