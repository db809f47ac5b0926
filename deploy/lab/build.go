package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// nftTable is the lab's nftables table in every router namespace.
const nftTable = "inet vantage_lab"

// ifName names the interface of link i on side 'a' or 'b': "<prefix>-<i><side>".
func ifName(prefix string, link int, side byte) string {
	return prefix + "-" + strconv.Itoa(link) + string(side)
}

func (l *Lab) build(ctx context.Context) error {
	if err := l.createNamespaces(ctx); err != nil {
		return err
	}
	if err := l.createLinks(ctx); err != nil {
		return err
	}
	if err := l.addRoutes(ctx); err != nil {
		return err
	}
	if err := l.installAnyIPs(ctx); err != nil {
		return err
	}
	if err := l.installNftables(ctx); err != nil {
		return err
	}
	if err := l.waitReady(ctx); err != nil {
		return err
	}
	if !l.bgp {
		return nil
	}
	if err := l.installDataPlaneChains(ctx); err != nil {
		return err
	}
	return l.startBGP(ctx)
}

// readyTimeout bounds how long Up waits for links to come up.
const readyTimeout = 5 * time.Second

// waitReady waits until every link is operationally up and no IPv6
// address is still tentative. Carrier changes reach IPv6 through the
// kernel's linkwatch worker, asynchronously; until then IPv6 addresses
// cannot be used and the first packets are lost.
func (l *Lab) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	for _, name := range l.topo.order {
		g.Go(func() error {
			h, err := netlink.NewHandleAt(l.ns[name])
			if err != nil {
				return fmt.Errorf("netlink in %s: %w", l.Namespace(name), err)
			}
			defer h.Close()
			for {
				waiting, err := notReady(h)
				if err != nil {
					return fmt.Errorf("%s: %w", l.Namespace(name), err)
				}
				if waiting == "" {
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("%s: %s not ready: %w", l.Namespace(name), waiting, ctx.Err())
				case <-time.After(5 * time.Millisecond):
				}
			}
		})
	}
	return g.Wait()
}

// notReady names the first link of the namespace that is not yet usable, or
// returns "".
func notReady(h *netlink.Handle) (string, error) {
	links, err := h.LinkList()
	if err != nil {
		return "", fmt.Errorf("list links: %w", err)
	}
	for _, lk := range links {
		a := lk.Attrs()
		if a.Name == "lo" || a.Flags&net.FlagUp == 0 {
			continue
		}
		if a.OperState != netlink.OperUp {
			return a.Name, nil
		}
		addrs, err := h.AddrList(lk, netlink.FAMILY_V6)
		if err != nil {
			return "", fmt.Errorf("list addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			if ad.Flags&unix.IFA_F_TENTATIVE != 0 {
				return a.Name + " " + ad.IP.String(), nil
			}
		}
	}
	return "", nil
}

// createNamespaces makes one named namespace per node, in parallel. Each is
// created on its own locked thread, which sets the sysctls from inside and
// then dies (it is never unlocked).
func (l *Lab) createNamespaces(ctx context.Context) error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	for _, name := range l.topo.order {
		node := l.topo.byName[name]
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			h, err := l.newNamespace(node)
			if err != nil {
				return err
			}
			mu.Lock()
			l.ns[name] = h
			mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

func (l *Lab) newNamespace(node *nodeInfo) (netns.NsHandle, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	rc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: this thread ends up in the new namespace and
		// must die with the goroutine.
		h, err := netns.NewNamed(l.Namespace(node.name))
		if err != nil {
			rc <- result{netns.None(), fmt.Errorf("create namespace %s: %w", l.Namespace(node.name), err)}
			return
		}
		if err := l.setSysctls(node); err != nil {
			_ = h.Close()
			rc <- result{netns.None(), fmt.Errorf("namespace %s: %w", l.Namespace(node.name), err)}
			return
		}
		rc <- result{h, nil}
	}()
	r := <-rc
	if r.err != nil {
		return r.h, r.err
	}
	nh, err := netlink.NewHandleAt(r.h)
	if err != nil {
		return r.h, fmt.Errorf("netlink in %s: %w", l.Namespace(node.name), err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		return r.h, fmt.Errorf("loopback up in %s: %w", l.Namespace(node.name), err)
	}
	return r.h, nil
}

// setSysctls runs on a thread inside the node's namespace: /proc/sys/net
// resolves to the calling thread's namespace.
func (l *Lab) setSysctls(node *nodeInfo) error {
	type kv struct{ k, v string }
	set := []kv{
		{"net/ipv4/conf/all/rp_filter", "0"},
		{"net/ipv4/conf/default/rp_filter", "0"},
		// Addresses must be usable at once, without duplicate address
		// detection; links come up after this, so "default" covers them.
		{"net/ipv6/conf/all/accept_dad", "0"},
		{"net/ipv6/conf/default/accept_dad", "0"},
		// IPv6 addresses survive a link set down (CutInside, FailBorder),
		// as IPv4 ones do, so setting it up again is a repair.
		{"net/ipv6/conf/all/keep_addr_on_down", "1"},
		{"net/ipv6/conf/default/keep_addr_on_down", "1"},
		// Unprivileged datagram ICMP, so agents need no CAP_NET_RAW here.
		{"net/ipv4/ping_group_range", "0 2147483647"},
	}
	if !l.opts.ICMPRateLimit {
		set = append(set,
			kv{"net/ipv4/icmp_ratelimit", "0"},
			// An empty mask also exempts every type from the global
			// icmp_msgs_per_sec budget.
			kv{"net/ipv4/icmp_ratemask", "0"},
			kv{"net/ipv6/icmp/ratelimit", "0"},
		)
	}
	if node.role == RoleRouter {
		set = append(set,
			kv{"net/ipv4/ip_forward", "1"},
			kv{"net/ipv6/conf/all/forwarding", "1"},
			kv{"net/ipv6/conf/default/forwarding", "1"},
		)
	}
	for _, s := range set {
		if err := os.WriteFile("/proc/sys/"+s.k, []byte(s.v), 0); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(s.k, "/", "."), s.v, err)
		}
	}
	return nil
}

// createLinks makes the veth pairs, addresses them and brings them up.
func (l *Lab) createLinks(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i := range l.topo.Links {
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return l.createLink(i)
		})
	}
	return g.Wait()
}

func (l *Lab) createLink(i int) error {
	lk := l.topo.Links[i]
	a, b := l.topo.byName[lk.A], l.topo.byName[lk.B]
	ha, err := netlink.NewHandleAt(l.ns[lk.A])
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", l.Namespace(lk.A), err)
	}
	defer ha.Close()
	hb, err := netlink.NewHandleAt(l.ns[lk.B])
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", l.Namespace(lk.B), err)
	}
	defer hb.Close()
	nameA, nameB := ifName(l.prefix, i, 'a'), ifName(l.prefix, i, 'b')
	veth := &netlink.Veth{
		// An explicit index on the a side keeps the two ends' ifindexes
		// different (each namespace numbers from 1). The kernel treats a
		// carrier change on a device whose peer has another ifindex as
		// urgent; with equal numbers it batches it for up to a second,
		// and IPv6 stays unusable meanwhile.
		LinkAttrs:     netlink.LinkAttrs{Name: nameA, Index: 1000 + i},
		PeerName:      nameB,
		PeerNamespace: netlink.NsFd(l.ns[lk.B]),
	}
	if err := ha.LinkAdd(veth); err != nil {
		return fmt.Errorf("links[%d] %s-%s: create veth: %w", i, lk.A, lk.B, err)
	}
	setup := func(h *netlink.Handle, node *nodeInfo, name string, side byte) error {
		link, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("links[%d]: find %s in %s: %w", i, name, node.name, err)
		}
		var addrs []netip.Prefix
		for _, f := range node.ifaces {
			if f.link == i && f.side == side {
				addrs = append(addrs, f.addrs...)
			}
		}
		if node.role == RoleNetwork {
			addrs = append(addrs, node.hosts...)
		}
		for _, p := range addrs {
			a := &netlink.Addr{IPNet: ipNet(p)}
			if p.Addr().Is6() {
				a.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(link, a); err != nil {
				return fmt.Errorf("links[%d]: add %s on %s in %s: %w", i, p, name, node.name, err)
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("links[%d]: up %s in %s: %w", i, name, node.name, err)
		}
		return nil
	}
	if err := setup(ha, a, nameA, 'a'); err != nil {
		return err
	}
	return setup(hb, b, nameB, 'b')
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

func (r route) netlink() *netlink.Route {
	nr := &netlink.Route{Dst: ipNet(r.dst.Masked()), Gw: r.via.AsSlice(), Family: unix.AF_INET6, Table: r.table}
	if r.via.Is4() {
		nr.Family = unix.AF_INET
	}
	return nr
}

// sourceRules returns the policy rules a node's source routes need: per
// family in use, "lookup main suppress_prefixlength 0" first (the main
// table decides unless all it has is a default route), then one "from
// <src> lookup <table>" per source prefix.
func sourceRules(node *nodeInfo) []*netlink.Rule {
	var out []*netlink.Rule
	suppressed := map[int]bool{}
	seen := map[int]bool{}
	for _, r := range node.routes {
		if !r.src.IsValid() || seen[r.table] {
			continue
		}
		seen[r.table] = true
		fam := unix.AF_INET6
		if r.src.Addr().Is4() {
			fam = unix.AF_INET
		}
		if !suppressed[fam] {
			suppressed[fam] = true
			main := netlink.NewRule()
			main.Family, main.Table, main.Priority, main.SuppressPrefixlen = fam, unix.RT_TABLE_MAIN, suppressMainPriority, 0
			out = append(out, main)
		}
		rule := netlink.NewRule()
		rule.Family, rule.Src, rule.Table = fam, ipNet(r.src), r.table
		rule.Priority = sourceRulePriority + r.table - firstSourceTable
		out = append(out, rule)
	}
	return out
}

// withdrawnRoute is what a blacked-out prefix gets at the edge: a "throw"
// route. It ends the lookup in the main table without a match, so the
// kernel answers with ICMP net unreachable (ICMPv6 no route), as a
// default-free router does, even if the edge had a default route. (An
// "unreachable" route would answer host unreachable.)
func withdrawnRoute(dst netip.Prefix) *netlink.Route {
	nr := &netlink.Route{Dst: ipNet(dst.Masked()), Type: unix.RTN_THROW, Family: unix.AF_INET6}
	if dst.Addr().Is4() {
		nr.Family = unix.AF_INET
	}
	return nr
}

func (l *Lab) addRoutes(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, name := range l.topo.order {
		node := l.topo.byName[name]
		if len(node.routes) == 0 {
			continue
		}
		g.Go(func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			h, err := netlink.NewHandleAt(l.ns[name])
			if err != nil {
				return fmt.Errorf("netlink in %s: %w", l.Namespace(name), err)
			}
			defer h.Close()
			for _, rule := range sourceRules(node) {
				if err := h.RuleAdd(rule); err != nil {
					return fmt.Errorf("node %s: rule %v: %w", name, rule, err)
				}
			}
			return replaceRoutes(h, name, l.staticRoutes(name))
		})
	}
	return g.Wait()
}

// staticRoutes returns the node's routes that are installed statically:
// all of them, except in BGP mode, where a BGP router's routes to the
// networks come from BIRD.
func (l *Lab) staticRoutes(node string) []route {
	rs := l.topo.byName[node].routes
	if !l.bgp {
		return rs
	}
	if _, ok := l.topo.BGP.AS[node]; !ok {
		return rs
	}
	var out []route
	for _, r := range rs {
		if !l.topo.isNetworkPrefix(r.dst) {
			out = append(out, r)
		}
	}
	return out
}

// replaceRoutes installs (or puts back) routes in node's namespace.
func replaceRoutes(h *netlink.Handle, node string, rs []route) error {
	for _, r := range rs {
		if err := h.RouteReplace(r.netlink()); err != nil {
			if r.src.IsValid() {
				return fmt.Errorf("node %s: route %s via %s from %s: %w", node, r.dst, r.via, r.src, err)
			}
			return fmt.Errorf("node %s: route %s via %s: %w", node, r.dst, r.via, err)
		}
	}
	return nil
}

// Chain names in the lab's nftables table. Every fault owns one chain that
// the forward base chain always jumps to; injecting a fault fills its chain
// and removing it flushes the chain, so faults are independent, idempotent
// and can be changed from another process without any state but the
// kernel's.
const (
	chainLoss = "loss"
	chainStep = "step_loss"
	// chainSilent drops what the router would forward to the prefixes in
	// its sets silent4 and silent6 (Withdraw with WithdrawSilent).
	chainSilent = "withdraw_silent"
	chainICMP   = "filter_icmp"
	chainIso    = "isolate_"
	chainUplink = "uplink_"
)

func (l *Lab) installNftables(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, name := range l.topo.names(RoleRouter) {
		chains := []string{chainLoss, chainStep, chainICMP, chainSilent}
		if name == l.topo.Faults.Edge {
			for _, v := range l.topo.names(RoleVantage) {
				f, _ := edgeIface(l.topo.byName[name], v)
				chains = append(chains, chainIso+strconv.Itoa(f.link), chainUplink+strconv.Itoa(f.link))
			}
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "add table %s\n", nftTable)
		for _, c := range chains {
			fmt.Fprintf(&sb, "add chain %s %s\n", nftTable, c)
		}
		fmt.Fprintf(&sb, "add set %s %s { type ipv4_addr; flags interval; }\n", nftTable, silentSet4)
		fmt.Fprintf(&sb, "add set %s %s { type ipv6_addr; flags interval; }\n", nftTable, silentSet6)
		fmt.Fprintf(&sb, "add rule %s %s ip daddr @%s drop\n", nftTable, chainSilent, silentSet4)
		fmt.Fprintf(&sb, "add rule %s %s ip6 daddr @%s drop\n", nftTable, chainSilent, silentSet6)
		fmt.Fprintf(&sb, "add chain %s forward { type filter hook forward priority filter; policy accept; }\n", nftTable)
		for _, c := range chains {
			fmt.Fprintf(&sb, "add rule %s forward jump %s\n", nftTable, c)
		}
		g.Go(func() error { return l.nft(ctx, name, sb.String()) })
	}
	return g.Wait()
}

// nft runs an nft script inside node's namespace.
func (l *Lab) nft(ctx context.Context, node, script string) error {
	cmd := l.Command(ctx, node, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft in %s: %w: %s", l.Namespace(node), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// isNoSuchRoute matches the errors netlink returns for deleting a missing route.
func isNoSuchRoute(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT)
}
