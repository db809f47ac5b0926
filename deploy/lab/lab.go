// Package lab builds a miniature internet in Linux network namespaces on one
// machine and injects faults into it, so that vantage's demo and end-to-end
// tests can watch real packets die in real routers: vantages, an exchange, a
// transit and upstream chain, a border router and target networks running a
// TCP service, all with kernel forwarding, so ping, TCP connects and
// traceroute behave as they do on the internet.
//
// The topology comes from a description file (topology.yaml, embedded as the
// default). Namespaces, veth pairs, addresses and routes are made with
// netlink; sysctls are written from a thread inside each namespace; packet
// filtering (loss, ICMP filtering, isolation) uses nftables through the nft
// binary, because the kernels this runs on have no netem and no tc
// classifiers. Congestion is a tc tbf (a capacity) filled by a UDP flood
// the lab sends to its own hosts. Blackouts and flaps are route
// withdrawals: static routes by default, or, in BGP mode (Options.BGP),
// real BGP: BIRD 2 in every router namespace, the border originating the
// networks, and faults that are withdrawals, re-announcements and flaps in
// BIRD's export policies, with a route collector (the controller) fed by
// the IX, the transit and monitor sessions with the upstreams.
//
// Everything needs root, or CAP_SYS_ADMIN (to create and enter namespaces)
// plus CAP_NET_ADMIN (to configure them).
package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// Errors callers can test for with errors.Is.
var (
	// ErrTopology wraps every topology decoding and validation error.
	ErrTopology = errors.New("invalid topology")
	// ErrPrivilege means the process lacks the capabilities the lab needs.
	ErrPrivilege = errors.New("the lab needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN: " +
		"CAP_SYS_ADMIN to create, bind-mount and enter network namespaces, " +
		"CAP_NET_ADMIN to configure their links, routes, sysctls and nftables")
	// ErrMissingTool means a required binary (ip, nft) is not installed.
	ErrMissingTool = errors.New("required tool not found in PATH")
	// ErrUnknownNode means a node or network name is not in the topology or
	// has the wrong role for the operation.
	ErrUnknownNode = errors.New("unknown node")
	// ErrNotUp means Open found no lab with that prefix.
	ErrNotUp = errors.New("lab is not up")
)

// StateDir holds per-prefix lab state: "<prefix>.yaml" (the topology the
// lab was built from), "<prefix>.pid" (the vantage-lab serve process) and
// "<prefix>.log" (its output).
const StateDir = "/run/vantage-lab"

// DefaultPrefix is the namespace prefix of the lab the CLI and demo use.
const DefaultPrefix = "vl"

const netnsDir = "/var/run/netns"

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// Options configure Up and Open.
type Options struct {
	// Prefix names the namespaces "<prefix>-<node>": 1-10 chars of [a-z0-9],
	// starting with a letter. Empty means DefaultPrefix.
	Prefix string
	// ICMPRateLimit keeps the kernel's ICMP rate limits (realistic); the
	// default switches them off so traceroutes and sweeps are fast.
	ICMPRateLimit bool
	// Logger receives progress at Debug and cleanup problems at Warn; nil
	// discards.
	Logger *slog.Logger
	// NoServices makes Up skip the TCP services on port 80 in the networks;
	// the caller runs them (vantage-lab up hands them to a detached
	// "vantage-lab serve" process, which calls StartServices).
	NoServices bool
	// BGP builds the lab in BGP mode: a BIRD in every router of the
	// topology's bgp section, eBGP sessions on the links, and the routes
	// to the networks learned over them instead of installed statically
	// (see bird.go). Needs bird2 (bird, birdc).
	BGP bool
	// BGPCollector overrides the collector the BIRDs connect to (zero
	// fields keep the topology's: the controller's IPv4 address, port
	// bgp.collector.port, AS bgp.collector.as).
	BGPCollector BGPCollector
	// BGPCollectorWait makes Up also wait until the sessions to the
	// collector are Established; by default nobody is expected to listen.
	BGPCollectorWait bool
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	topo   *Topology
	prefix string
	opts   Options
	log    *slog.Logger

	mu   sync.Mutex
	ns   map[string]netns.NsHandle
	svc  *services
	fl   *flood // the running flood (LossStep.Flood), or nil
	down bool

	bgp   bool       // BGP mode: BIRDs route the networks
	bgpMu sync.Mutex // serializes the rewrites of the BIRD policies
}

func (o Options) normalize() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if err := checkPrefix(o.Prefix); err != nil {
		return o, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// checkPrefix checks a lab prefix: it names the namespaces, the interfaces
// and the state file.
func checkPrefix(prefix string) error {
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("prefix: %q must be 1-10 chars of [a-z0-9], starting with a letter", prefix)
	}
	return nil
}

// attachable normalizes opts and checks what Up and Open both need: a
// usable host and a validated topology.
func attachable(topo *Topology, opts Options) (Options, error) {
	opts, err := opts.normalize()
	if err != nil {
		return opts, err
	}
	if err := CheckHost(); err != nil {
		return opts, err
	}
	if topo == nil || topo.byName == nil {
		return opts, fmt.Errorf("%w: nil or unvalidated topology", ErrTopology)
	}
	return opts, nil
}

// Up builds the lab: it first removes leftovers with the same prefix (a
// crashed earlier run), then creates every namespace, link, address, route,
// sysctl and nftables table, and starts the TCP services (unless
// opts.NoServices). On error nothing is left behind.
func Up(ctx context.Context, topo *Topology, opts Options) (*Lab, error) {
	opts, err := attachable(topo, opts)
	if err != nil {
		return nil, err
	}
	for i := range topo.Links {
		if n := len(ifName(opts.Prefix, i, 'a')); n > 15 {
			return nil, fmt.Errorf("prefix: %q with %d links gives %d-char interface names (max 15)", opts.Prefix, len(topo.Links), n)
		}
	}
	if opts.BGP {
		if err := checkBGP(topo); err != nil {
			return nil, err
		}
	}
	if err := Cleanup(opts.Prefix); err != nil {
		return nil, fmt.Errorf("remove leftovers of prefix %q: %w", opts.Prefix, err)
	}
	start := time.Now()
	l := newLab(topo, opts)
	if err := l.build(ctx); err != nil {
		l.closeHandles()
		if cerr := Cleanup(opts.Prefix); cerr != nil {
			l.log.Warn("cleanup after failed up", slog.String("prefix", opts.Prefix), slog.Any("error", cerr))
		}
		return nil, err
	}
	if err := writeState(opts.Prefix, topo.raw); err != nil {
		_ = l.Down()
		return nil, err
	}
	if !opts.NoServices {
		if err := l.StartServices(); err != nil {
			_ = l.Down()
			return nil, err
		}
	}
	l.log.Info("lab up", slog.String("prefix", opts.Prefix), slog.Int("nodes", len(topo.order)), slog.Int("links", len(topo.Links)), slog.Duration("took", time.Since(start)))
	return l, nil
}

// Open attaches to a lab that is already up (built by Up, possibly in
// another process) without creating anything, so faults can be injected
// from a separate invocation. It does not start the TCP services.
func Open(topo *Topology, opts Options) (*Lab, error) {
	opts, err := attachable(topo, opts)
	if err != nil {
		return nil, err
	}
	l := newLab(topo, opts)
	l.bgp = topo.BGP != nil && (opts.BGP || bgpStateExists(opts.Prefix))
	for _, n := range topo.order {
		h, err := netns.GetFromName(l.Namespace(n))
		if err != nil {
			l.closeHandles()
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: namespace %s missing", ErrNotUp, l.Namespace(n))
			}
			return nil, fmt.Errorf("open namespace %s: %w", l.Namespace(n), err)
		}
		l.ns[n] = h
	}
	return l, nil
}

// SavedTopology returns the topology the lab with this prefix was built
// from, as recorded by Up in StateDir.
func SavedTopology(prefix string) (*Topology, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	p := filepath.Join(StateDir, prefix+".yaml")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no lab with prefix %q (missing %s)", ErrNotUp, prefix, p)
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	return ParseTopology(b)
}

// PIDFile is where the "vantage-lab serve" process of a prefix records its pid.
func PIDFile(prefix string) string { return filepath.Join(StateDir, prefix+".pid") }

func newLab(topo *Topology, opts Options) *Lab {
	return &Lab{
		topo:   topo,
		prefix: opts.Prefix,
		opts:   opts,
		log:    opts.Logger.With("lab", opts.Prefix),
		ns:     make(map[string]netns.NsHandle, len(topo.order)),
		bgp:    opts.BGP,
	}
}

func writeState(prefix string, raw []byte) error {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(StateDir, prefix+".yaml"), raw, 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// Down stops the flood (waiting for it) and the services and deletes the
// namespaces (and with them every link, route, qdisc and nftables rule) and
// the lab state. It is idempotent.
func (l *Lab) Down() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return nil
	}
	l.down = true
	l.stopFloodLocked()
	if l.svc != nil {
		l.svc.close()
		l.svc = nil
	}
	l.closeHandlesLocked()
	return Cleanup(l.prefix)
}

func (l *Lab) closeHandles() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeHandlesLocked()
}

func (l *Lab) closeHandlesLocked() {
	for n, h := range l.ns {
		_ = h.Close()
		delete(l.ns, n)
	}
}

// Cleanup stops the prefix's BIRDs (BGP mode) and its "vantage-lab serve"
// process if one is recorded, removes every namespace named "<prefix>-*",
// and removes the lab state.
// It is safe to call when nothing is there.
func Cleanup(prefix string) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	var errs []error
	if err := stopServe(prefix); err != nil {
		errs = append(errs, err)
	}
	if err := stopBirds(prefix); err != nil {
		errs = append(errs, err)
	}
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list namespaces: %w", err))
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix+"-") {
			continue
		}
		if err := netns.DeleteNamed(e.Name()); err != nil {
			// A file left without its bind mount (EINVAL on unmount) is
			// just removed.
			if rerr := os.Remove(filepath.Join(netnsDir, e.Name())); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("delete namespace %s: %w", e.Name(), err))
			}
		}
	}
	for _, suffix := range []string{".yaml", ".pid", ".log"} {
		if err := os.Remove(filepath.Join(StateDir, prefix+suffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove lab state: %w", err))
		}
	}
	return errors.Join(errs...)
}

// stopServe terminates the serve process recorded in the prefix's pidfile,
// after checking that the pid really is a "vantage-lab serve" for this
// prefix (pids get reused).
func stopServe(prefix string) error {
	b, err := os.ReadFile(PIDFile(prefix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pidfile: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return nil
	}
	if !isServe(pid, prefix) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("stop serve process %d: %w", pid, err)
	}
	for range 300 {
		if !alive(pid) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill serve process %d: %w", pid, err)
	}
	return nil
}

// isServe reports whether pid runs "... serve ... --prefix <prefix>".
func isServe(pid int, prefix string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	hasServe, hasPrefix := false, false
	for i, a := range args {
		if a == "serve" {
			hasServe = true
		}
		if a == "--prefix="+prefix || (a == "--prefix" && i+1 < len(args) && args[i+1] == prefix) {
			hasPrefix = true
		}
	}
	return hasServe && hasPrefix
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after "(comm)".
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// ServeRunning returns the pid of the prefix's serve process, or 0.
func ServeRunning(prefix string) int {
	b, err := os.ReadFile(PIDFile(prefix))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !alive(pid) || !isServe(pid, prefix) {
		return 0
	}
	return pid
}

// CheckHost reports whether this process can build and drive a lab: it needs
// the capabilities (ErrPrivilege) and the ip and nft tools (ErrMissingTool).
func CheckHost() error {
	if err := checkCaps(); err != nil {
		return err
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s (install iproute2 and nftables)", ErrMissingTool, tool)
		}
	}
	return nil
}

const (
	capNetAdmin = 12
	capSysAdmin = 21
)

func checkCaps() error {
	if os.Geteuid() == 0 {
		return nil
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Errorf("%w (cannot read /proc/self/status: %w)", ErrPrivilege, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			break
		}
		if eff&(1<<capNetAdmin) != 0 && eff&(1<<capSysAdmin) != 0 {
			return nil
		}
	}
	return fmt.Errorf("%w (running as uid %d without them)", ErrPrivilege, os.Geteuid())
}

// Prefix returns the namespace prefix.
func (l *Lab) Prefix() string { return l.prefix }

// Topology returns the lab's topology.
func (l *Lab) Topology() *Topology { return l.topo }

// Namespace returns the full network namespace name of node.
func (l *Lab) Namespace(node string) string { return l.prefix + "-" + node }

// Nodes returns every node name in topology order.
func (l *Lab) Nodes() []string { return append([]string(nil), l.topo.order...) }

// Role returns the node's role, or "" for an unknown node.
func (l *Lab) Role(node string) Role {
	if n, ok := l.topo.byName[node]; ok {
		return n.role
	}
	return ""
}

// Addr returns the node's primary IPv4 address: its first IPv4 address in
// file order (a network's first host). Zero for an unknown node.
func (l *Lab) Addr(node string) netip.Addr { return l.firstAddr(node, true) }

// Addr6 is Addr for IPv6.
func (l *Lab) Addr6(node string) netip.Addr { return l.firstAddr(node, false) }

func (l *Lab) firstAddr(node string, v4 bool) netip.Addr {
	n, ok := l.topo.byName[node]
	if !ok {
		return netip.Addr{}
	}
	for _, p := range n.addrs {
		if p.Addr().Is4() == v4 {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// Networks returns the target networks ("net0".."net3" by default).
func (l *Lab) Networks() []string { return l.topo.names(RoleNetwork) }

// Vantages returns the vantage nodes ("vantage-a".."vantage-c" by default).
func (l *Lab) Vantages() []string { return l.topo.names(RoleVantage) }

// Routers returns the router nodes.
func (l *Lab) Routers() []string { return l.topo.names(RoleRouter) }

// Hosts returns a network's IPv4 host addresses (nil for an unknown network).
func (l *Lab) Hosts(network string) []netip.Addr { return l.hosts(network, true) }

// Hosts6 returns a network's IPv6 host addresses.
func (l *Lab) Hosts6(network string) []netip.Addr { return l.hosts(network, false) }

func (l *Lab) hosts(network string, v4 bool) []netip.Addr {
	n, ok := l.topo.byName[network]
	if !ok || n.role != RoleNetwork {
		return nil
	}
	var out []netip.Addr
	for _, p := range n.hosts {
		if p.Addr().Is4() == v4 {
			out = append(out, p.Addr())
		}
	}
	return out
}

// Command returns a command that runs inside node's namespace (through
// "ip netns exec").
func (l *Lab) Command(ctx context.Context, node, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.Namespace(node), name}, args...)...)
}

// Listen opens a listener inside node's namespace (net.Listen semantics).
// The caller owns and closes it.
func (l *Lab) Listen(node, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := l.inNamespace(node, func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, address, node, err)
	}
	return ln, nil
}

// Dial connects from inside node's namespace (net.Dialer semantics).
func (l *Lab) Dial(ctx context.Context, node, network, address string) (net.Conn, error) {
	var c net.Conn
	err := l.inNamespace(node, func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from %s: %w", network, address, node, err)
	}
	return c, nil
}

// handle returns the namespace handle of node.
func (l *Lab) handle(node string) (netns.NsHandle, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return netns.None(), fmt.Errorf("%w: lab %s is down", ErrNotUp, l.prefix)
	}
	h, ok := l.ns[node]
	if !ok {
		return netns.None(), fmt.Errorf("%w: %q", ErrUnknownNode, node)
	}
	return h, nil
}

// inNamespace runs fn on a dedicated OS thread switched into node's
// namespace. The thread is never unlocked, so the runtime discards it when
// the goroutine ends and no other goroutine ever runs in the wrong
// namespace.
func (l *Lab) inNamespace(node string, fn func() error) error {
	h, err := l.handle(node)
	if err != nil {
		return err
	}
	return onThreadIn(h, fn)
}

func onThreadIn(h netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread dies with this goroutine.
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
