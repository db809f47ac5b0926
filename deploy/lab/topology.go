package lab

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"
)

//go:embed topology.yaml
var defaultTopology []byte

// Role says what a node is for; it decides its sysctls, its nftables chains
// and whether it runs the TCP service.
type Role string

// The node roles a topology may use.
const (
	RoleVantage    Role = "vantage"
	RoleRouter     Role = "router"
	RoleController Role = "controller"
	RoleNetwork    Role = "network"
)

// Topology is a decoded and validated lab description (see topology.yaml for
// the format). Build one with DefaultTopology, LoadTopology or
// ParseTopology; the zero value is not usable.
type Topology struct {
	Nodes  []Node       `yaml:"nodes"`
	Links  []Link       `yaml:"links"`
	Faults FaultsConfig `yaml:"faults"`
	// BGP is the AS plan for BGP mode (Options.BGP); optional.
	BGP *BGPConfig `yaml:"bgp,omitempty"`

	raw []byte
	// resolved by validate
	byName map[string]*nodeInfo
	order  []string
	target []netip.Prefix
}

// Node is one namespace.
type Node struct {
	Name  string   `yaml:"name"`
	Role  Role     `yaml:"role"`
	Hosts []string `yaml:"hosts"`
	// AnyIP (network only): prefixes every address of which answers from
	// inside the network (a "local" route on lo), routed along the
	// network's own path. See anyip.go.
	AnyIP  []string `yaml:"anyip"`
	Routes []Route  `yaml:"routes"`
}

// Route is a static route: To is a prefix or "default", Via a gateway
// address. From, if set, makes it a source route: it applies only to packets
// from that prefix (a table and a rule of its own; see topology.yaml).
type Route struct {
	To   string `yaml:"to"`
	Via  string `yaml:"via"`
	From string `yaml:"from,omitempty"`
}

// Link is a veth pair between A (the router side) and B.
type Link struct {
	A      string   `yaml:"a"`
	B      string   `yaml:"b"`
	AAddrs []string `yaml:"a_addrs"`
	BAddrs []string `yaml:"b_addrs"`
}

// FaultsConfig says where fault injection acts.
type FaultsConfig struct {
	// Edge is the router the vantages attach to.
	Edge string `yaml:"edge"`
	// TargetSpace is what Loss and FilterICMP match (destination prefixes).
	TargetSpace []string `yaml:"target_space"`
}

// nodeInfo is a node with its parsed addresses, routes and interfaces.
type nodeInfo struct {
	name   string
	role   Role
	addrs  []netip.Prefix // every address, in file order (hosts first)
	hosts  []netip.Prefix
	anyip  []netip.Prefix
	routes []route
	ifaces []iface
}

type route struct {
	dst netip.Prefix // zero-bits prefix for default
	via netip.Addr
	// src and table are set for a source route ("from"): it lives in its
	// own table, looked up for packets from src.
	src   netip.Prefix
	table int
}

// firstSourceTable is the table of a node's first distinct "from" prefix;
// the next ones follow. Their rules have priority
// sourceRulePriority+(table-firstSourceTable), after suppressMainPriority.
const (
	firstSourceTable     = 100
	sourceRulePriority   = 1000
	suppressMainPriority = 999
)

// iface is one end of a link as seen from its node.
type iface struct {
	link  int // index into Topology.Links
	side  byte
	peer  string
	addrs []netip.Prefix
}

var nodeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// DefaultTopology returns the embedded default topology (topology.yaml).
func DefaultTopology() (*Topology, error) {
	return ParseTopology(defaultTopology)
}

// LoadTopology reads and validates a topology file.
func LoadTopology(path string) (*Topology, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := ParseTopology(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseTopology decodes a topology strictly (unknown fields are errors) and
// validates it.
func ParseTopology(b []byte) (*Topology, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var t Topology
	if err := dec.Decode(&t); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty document", ErrTopology)
		}
		return nil, fmt.Errorf("%w: %w", ErrTopology, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: more than one YAML document", ErrTopology)
	}
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTopology, err)
	}
	t.raw = slices.Clone(b)
	return &t, nil
}

// Bytes returns the source the topology was decoded from.
func (t *Topology) Bytes() []byte { return slices.Clone(t.raw) }

func parsePrefixes(field string, in []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(in))
	for i, s := range in {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %q is not an address/length: %w", field, i, s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// validate checks the decoded topology and resolves byName, order and target,
// step by step in file order: nodes, links, what needs both, faults, then
// the AS plan.
func (t *Topology) validate() error {
	if len(t.Nodes) == 0 {
		return errors.New("nodes: none defined")
	}
	if err := t.validateNodes(); err != nil {
		return err
	}
	if err := t.validateLinks(); err != nil {
		return err
	}
	if err := t.validateNodeLinks(); err != nil {
		return err
	}
	if err := t.validateFaults(); err != nil {
		return err
	}
	return t.validateBGP()
}

// validateNodes parses every node into byName and order and checks that there
// is exactly one controller.
func (t *Topology) validateNodes() error {
	t.byName = make(map[string]*nodeInfo, len(t.Nodes))
	t.order = nil
	controllers := 0
	for i, n := range t.Nodes {
		info, err := t.parseNode(fmt.Sprintf("nodes[%d]", i), n)
		if err != nil {
			return err
		}
		if n.Role == RoleController {
			controllers++
		}
		t.byName[n.Name] = info
		t.order = append(t.order, n.Name)
	}
	if controllers != 1 {
		return fmt.Errorf("nodes: want exactly one node with role controller, have %d", controllers)
	}
	return nil
}

// parseNode checks one node (f is its field path) against the nodes before it.
func (t *Topology) parseNode(f string, n Node) (*nodeInfo, error) {
	if !nodeNameRE.MatchString(n.Name) {
		return nil, fmt.Errorf("%s.name: %q must be 1-40 chars of [a-z0-9-], starting with a letter or digit", f, n.Name)
	}
	if _, dup := t.byName[n.Name]; dup {
		return nil, fmt.Errorf("%s.name: %q defined twice", f, n.Name)
	}
	switch n.Role {
	case RoleVantage, RoleRouter, RoleNetwork, RoleController:
	default:
		return nil, fmt.Errorf("%s.role: %q must be one of vantage, router, controller, network", f, n.Role)
	}
	if len(n.Hosts) > 0 && n.Role != RoleNetwork {
		return nil, fmt.Errorf("%s.hosts: only nodes with role network have hosts", f)
	}
	hosts, err := parsePrefixes(f+".hosts", n.Hosts)
	if err != nil {
		return nil, err
	}
	if len(n.AnyIP) > 0 && n.Role != RoleNetwork {
		return nil, fmt.Errorf("%s.anyip: only nodes with role network answer on AnyIP prefixes", f)
	}
	anyip, err := parsePrefixes(f+".anyip", n.AnyIP)
	if err != nil {
		return nil, err
	}
	info := &nodeInfo{name: n.Name, role: n.Role, hosts: hosts, anyip: anyip, addrs: slices.Clone(hosts)}
	var sources []netip.Prefix
	for j, r := range n.Routes {
		rt, err := parseRoute(fmt.Sprintf("%s.routes[%d]", f, j), r)
		if err != nil {
			return nil, err
		}
		if rt.src.IsValid() {
			k := slices.Index(sources, rt.src)
			if k < 0 {
				k = len(sources)
				sources = append(sources, rt.src)
			}
			rt.table = firstSourceTable + k
		}
		info.routes = append(info.routes, rt)
	}
	return info, nil
}

// parseRoute checks one static route; rf is its field path.
func parseRoute(rf string, r Route) (route, error) {
	via, err := netip.ParseAddr(r.Via)
	if err != nil {
		return route{}, fmt.Errorf("%s.via: %q is not an IP address", rf, r.Via)
	}
	var dst netip.Prefix
	if r.To == "default" {
		dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		if via.Is4() {
			dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
	} else {
		dst, err = netip.ParsePrefix(r.To)
		if err != nil {
			return route{}, fmt.Errorf("%s.to: %q is neither \"default\" nor a prefix", rf, r.To)
		}
		if dst != dst.Masked() {
			return route{}, fmt.Errorf("%s.to: %q has host bits set (want %s)", rf, r.To, dst.Masked())
		}
	}
	if dst.Addr().Is4() != via.Is4() {
		return route{}, fmt.Errorf("%s: to %s and via %s are different address families", rf, r.To, r.Via)
	}
	rt := route{dst: dst, via: via}
	if r.From == "" {
		return rt, nil
	}
	src, err := netip.ParsePrefix(r.From)
	if err != nil {
		return route{}, fmt.Errorf("%s.from: %q is not a prefix", rf, r.From)
	}
	if src != src.Masked() {
		return route{}, fmt.Errorf("%s.from: %q has host bits set (want %s)", rf, r.From, src.Masked())
	}
	if src.Addr().Is4() != via.Is4() {
		return route{}, fmt.Errorf("%s: from %s and via %s are different address families", rf, r.From, r.Via)
	}
	rt.src = src
	return rt, nil
}

// validateLinks resolves every link's ends and gives both nodes their
// interface and addresses.
func (t *Topology) validateLinks() error {
	for i, l := range t.Links {
		f := fmt.Sprintf("links[%d]", i)
		a, ok := t.byName[l.A]
		if !ok {
			return fmt.Errorf("%s.a: unknown node %q", f, l.A)
		}
		b, ok := t.byName[l.B]
		if !ok {
			return fmt.Errorf("%s.b: unknown node %q", f, l.B)
		}
		if l.A == l.B {
			return fmt.Errorf("%s: a and b are both %q", f, l.A)
		}
		aa, err := parsePrefixes(f+".a_addrs", l.AAddrs)
		if err != nil {
			return err
		}
		ba, err := parsePrefixes(f+".b_addrs", l.BAddrs)
		if err != nil {
			return err
		}
		a.ifaces = append(a.ifaces, iface{link: i, side: 'a', peer: l.B, addrs: aa})
		b.ifaces = append(b.ifaces, iface{link: i, side: 'b', peer: l.A, addrs: ba})
		a.addrs = append(a.addrs, aa...)
		b.addrs = append(b.addrs, ba...)
	}
	return nil
}

// validateNodeLinks checks, once the links are known, that every node is
// linked (a network exactly once) and that its AnyIP prefixes are usable.
func (t *Topology) validateNodeLinks() error {
	for i, n := range t.Nodes {
		info := t.byName[n.Name]
		if n.Role == RoleNetwork && len(info.ifaces) != 1 {
			return fmt.Errorf("nodes[%d]: network %q must have exactly one link, has %d", i, n.Name, len(info.ifaces))
		}
		if len(info.ifaces) == 0 {
			return fmt.Errorf("nodes[%d]: node %q has no links", i, n.Name)
		}
	}
	for i, n := range t.Nodes {
		for j, p := range t.byName[n.Name].anyip {
			if err := t.checkAnyIP(n.Name, p); err != nil {
				return fmt.Errorf("nodes[%d].anyip[%d]: %w", i, j, err)
			}
		}
	}
	return nil
}

// validateFaults checks the faults section: an edge router every vantage and
// the controller hang off, and a non-empty, masked target space.
func (t *Topology) validateFaults() error {
	edge, ok := t.byName[t.Faults.Edge]
	if !ok {
		return fmt.Errorf("faults.edge: unknown node %q", t.Faults.Edge)
	}
	if edge.role != RoleRouter {
		return fmt.Errorf("faults.edge: %q has role %s, want router", t.Faults.Edge, edge.role)
	}
	for _, n := range t.order {
		info := t.byName[n]
		if info.role != RoleVantage && info.role != RoleController {
			continue
		}
		if _, ok := edgeIface(edge, n); !ok {
			return fmt.Errorf("faults.edge: %s %q is not linked to edge %q", info.role, n, edge.name)
		}
	}
	ts, err := parsePrefixes("faults.target_space", t.Faults.TargetSpace)
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		return errors.New("faults.target_space: at least one prefix is required")
	}
	for i, p := range ts {
		if p != p.Masked() {
			return fmt.Errorf("faults.target_space[%d]: %s has host bits set (want %s)", i, p, p.Masked())
		}
	}
	t.target = ts
	return nil
}

// edgeIface returns the edge router's interface towards node.
func edgeIface(edge *nodeInfo, node string) (iface, bool) {
	for _, f := range edge.ifaces {
		if f.peer == node {
			return f, true
		}
	}
	return iface{}, false
}

// names returns the node names with the given role, in file order.
func (t *Topology) names(role Role) []string {
	var out []string
	for _, n := range t.order {
		if t.byName[n].role == role {
			out = append(out, n)
		}
	}
	return out
}

// networkPrefixes returns the prefixes a network owns: its link's prefixes
// and its hosts' prefixes.
func (t *Topology) networkPrefixes(network string) []netip.Prefix {
	n := t.byName[network]
	var out []netip.Prefix
	add := func(p netip.Prefix) {
		p = p.Masked()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	for _, p := range n.hosts {
		add(p)
	}
	peer := t.byName[n.ifaces[0].peer]
	for _, f := range peer.ifaces {
		if f.peer == network {
			for _, p := range f.addrs {
				add(p)
			}
		}
	}
	return out
}

// nodeWithAddr returns the node that has address a (on a link, or as a
// host), or "".
func (t *Topology) nodeWithAddr(a netip.Addr) string {
	for _, n := range t.order {
		for _, p := range t.byName[n].addrs {
			if p.Addr() == a {
				return n
			}
		}
	}
	return ""
}
