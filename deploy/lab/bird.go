package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BGP mode: one BIRD per router with an AS (bgp.as), started in its
// namespace, daemonized, with its files in StateDir (see birdFile). The
// lab talks to each through its control socket with birdc.

// The BIRD binaries (Debian package bird2).
const (
	birdBin  = "bird"
	birdcBin = "birdc"
)

// bgpUpTimeout bounds how long Up waits for the sessions and routes.
const bgpUpTimeout = 30 * time.Second

// ErrRoutingMode means an operation needs the other routing mode: the BGP
// faults need a lab built with Options.BGP, the static-route faults
// (Blackout, Withdraw, ...) one without.
var ErrRoutingMode = errors.New("not available in this routing mode")

// checkBGP checks what BGP mode needs before anything is built.
func checkBGP(topo *Topology) error {
	if topo.BGP == nil {
		return fmt.Errorf("%w: BGP mode needs a bgp section (the AS plan)", ErrTopology)
	}
	for _, tool := range []string{birdBin, birdcBin} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s (install bird2: deploy/install-deps.sh bgp)", ErrMissingTool, tool)
		}
	}
	return nil
}

// bgpStateExists reports whether a BIRD config of the prefix is in
// StateDir, which is how Open knows a lab was built in BGP mode.
func bgpStateExists(prefix string) bool {
	m, _ := filepath.Glob(filepath.Join(StateDir, prefix+"-bird-*"+birdConfSuffix))
	return len(m) > 0
}

// startBGP writes every BIRD's config and empty policy, starts them and
// waits until the sessions are up and the routes have reached the edge
// and the collector's peers.
func (l *Lab) startBGP(ctx context.Context) error {
	c := l.topo.collector(l.opts.BGPCollector)
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	for _, node := range l.topo.bgpRouters() {
		conf, err := l.topo.birdConfig(StateDir, l.prefix, node, c)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(birdFile(l.prefix, node, birdConfSuffix), []byte(conf)); err != nil {
			return err
		}
		if err := writeFileAtomic(birdFile(l.prefix, node, birdPolicySuffix), []byte(l.topo.birdPolicy(nil))); err != nil {
			return err
		}
		if err := l.startBird(node); err != nil {
			return err
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, bgpUpTimeout)
	defer cancel()
	if err := l.waitSessions(ctx); err != nil {
		return err
	}
	if err := l.waitKernelRoutes(ctx); err != nil {
		return err
	}
	l.log.Debug("bgp up", slog.Duration("took", time.Since(start)))
	return nil
}

// startBird starts the node's BIRD inside its namespace; it daemonizes, so
// it outlives this process (Cleanup stops it).
func (l *Lab) startBird(node string) error {
	logPath := birdFile(l.prefix, node, birdLogSuffix)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("bird of %s: open log: %w", node, err)
	}
	defer logf.Close()
	cmd := exec.Command(birdBin, "-c", birdFile(l.prefix, node, birdConfSuffix),
		"-s", birdFile(l.prefix, node, birdCtlSuffix), "-P", birdFile(l.prefix, node, birdPIDSuffix))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := l.Run(node, cmd); err != nil {
		return fmt.Errorf("bird of %s: %w; log: %s", node, err, logTail(logPath))
	}
	l.log.Debug("bird started", slog.String("node", node))
	return nil
}

// waitSessions waits until every BGP session of every BIRD is Established
// (the collector's only with Options.BGPCollectorWait).
func (l *Lab) waitSessions(ctx context.Context) error {
	for {
		node, proto, state, err := l.firstDownSession(ctx)
		if err != nil {
			return err
		}
		if node == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bgp: session %s of %s not Established (%s): %w; log of %s: %s",
				proto, node, state, ctx.Err(), node, logTail(birdFile(l.prefix, node, birdLogSuffix)))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// firstDownSession returns the first session that should be and is not
// Established, or node "".
func (l *Lab) firstDownSession(ctx context.Context) (node, proto, state string, err error) {
	for _, n := range l.topo.bgpRouters() {
		ps, err := l.bgpProtocols(ctx, n)
		if err != nil {
			return "", "", "", err
		}
		for _, p := range ps {
			if p.name == collectorSession && !l.opts.BGPCollectorWait {
				continue
			}
			if !p.established {
				return n, p.name, p.state, nil
			}
		}
	}
	return "", "", "", nil
}

// bgpProtocol is a BGP row of "show protocols".
type bgpProtocol struct {
	name, state string
	established bool
}

// bgpProtocols lists the BGP protocols of the node's BIRD.
func (l *Lab) bgpProtocols(ctx context.Context, node string) ([]bgpProtocol, error) {
	out, err := l.birdc(ctx, node, "show", "protocols")
	if err != nil {
		return nil, err
	}
	return parseProtocols(out), nil
}

// parseProtocols reads the BGP rows of "show protocols": name, protocol,
// table, state, since (one or two words) and info.
func parseProtocols(out string) []bgpProtocol {
	var ps []bgpProtocol
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[1] != "BGP" {
			continue
		}
		state := strings.Join(f[3:], " ")
		ps = append(ps, bgpProtocol{name: f[0], state: state, established: slices.Contains(f[4:], "Established")})
	}
	return ps
}

// waitKernelRoutes waits until the kernels of the edge and of the
// collector's peers have a BIRD route to every announced prefix.
func (l *Lab) waitKernelRoutes(ctx context.Context) error {
	want := l.announced()
	nodes := append([]string{l.topo.Faults.Edge}, l.topo.BGP.Collector.Peers...)
	for _, node := range nodes {
		for {
			missing, err := l.missingBirdRoutes(node, want)
			if err != nil {
				return err
			}
			if len(missing) == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("bgp: no route to %v in the kernel of %s: %w", missing, node, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// announced returns the prefixes the origin announces to someone.
func (l *Lab) announced() []netip.Prefix {
	var nets []string
	for _, peer := range sortedKeys(l.topo.BGP.Origin.Announce) {
		nets = append(nets, l.topo.BGP.Origin.Announce[peer]...)
	}
	v4, v6 := l.topo.prefixesOf(nets)
	return append(v4, v6...)
}

// missingBirdRoutes returns the prefixes of want that have no route from
// BIRD (protocol bird) in node's main table.
func (l *Lab) missingBirdRoutes(node string, want []netip.Prefix) ([]netip.Prefix, error) {
	have := map[netip.Prefix]bool{}
	err := l.withNetlink(node, func(h *netlink.Handle) error {
		rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("list routes at %s: %w", node, err)
		}
		for _, r := range rs {
			if r.Dst != nil && int(r.Protocol) == unix.RTPROT_BIRD {
				if p, ok := netipPrefix(r.Dst); ok {
					have[p] = true
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var missing []netip.Prefix
	for _, p := range want {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// birdc runs birdc against the node's BIRD and returns its reply without
// the banner; a reply with an error code (8xxx, 9xxx) is an error.
func (l *Lab) birdc(ctx context.Context, node string, args ...string) (string, error) {
	if err := l.needBGP("birdc"); err != nil {
		return "", err
	}
	if _, ok := l.topo.BGP.AS[node]; !ok {
		return "", fmt.Errorf("%w: %q runs no BIRD (have %s)", ErrUnknownNode, node, strings.Join(l.topo.bgpRouters(), ", "))
	}
	ctx, cancel := context.WithTimeout(ctx, faultTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, birdcBin, append([]string{"-v", "-s", birdFile(l.prefix, node, birdCtlSuffix)}, args...)...)
	out, err := cmd.CombinedOutput()
	text, code := parseBirdc(out)
	if err != nil {
		return "", fmt.Errorf("birdc %s at %s: %w: %s", strings.Join(args, " "), node, err, strings.TrimSpace(string(out)))
	}
	if code != "" {
		return "", fmt.Errorf("birdc %s at %s: BIRD error %s: %s", strings.Join(args, " "), node, code, strings.TrimSpace(text))
	}
	return text, nil
}

// parseBirdc strips the reply codes of "birdc -v" output (a code and '-' or
// ' ' before the first line of a reply, five spaces before continuation
// lines) and the banner, and returns the first error code (8xxx, 9xxx).
func parseBirdc(out []byte) (text, errCode string) {
	var b strings.Builder
	for line := range strings.SplitSeq(string(out), "\n") {
		if len(line) >= 5 && isCode(line[:4]) && (line[4] == '-' || line[4] == ' ') {
			code := line[:4]
			if code == "0001" { // the banner
				continue
			}
			if (code[0] == '8' || code[0] == '9') && errCode == "" {
				errCode = code
			}
			line = line[5:]
		} else if rest, ok := strings.CutPrefix(line, "     "); ok {
			line = rest // birdc -v aligns continuation lines under the code
		} else {
			line = strings.TrimPrefix(line, " ")
		}
		if line != "" {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String(), errCode
}

func isCode(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// logTail returns the last lines of a log file, on one line.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, " | ")
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// stopBirds ends every BIRD of the prefix (found by their control socket
// in /proc, so a crashed run's too): SIGTERM, then SIGKILL after 3 s. It
// then removes their files.
func stopBirds(prefix string) error {
	pids, err := birdPIDs(prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("stop bird %d: %w", pid, err))
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill bird %d: %w", pid, err))
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(StateDir, prefix+"-bird-*"))
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove bird state: %w", err))
		}
	}
	return errors.Join(errs...)
}

// birdPIDs finds the live bird processes whose control socket belongs to
// the prefix.
func birdPIDs(prefix string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	sock := filepath.Join(StateDir, prefix+"-bird-")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if filepath.Base(args[0]) != birdBin || !alive(pid) {
			continue
		}
		if slices.ContainsFunc(args, func(a string) bool {
			return strings.HasPrefix(a, sock) && strings.HasSuffix(a, birdCtlSuffix)
		}) {
			out = append(out, pid)
		}
	}
	return out, nil
}
