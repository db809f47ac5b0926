// Command vantage-lab builds, inspects, breaks and removes the namespace lab
// (package deploy/lab) from a shell, so the demo and a human can drive the
// same miniature internet the end-to-end tests use.
//
// "up" builds the namespaces and then starts a detached "vantage-lab serve"
// process (its own session, pid in /run/vantage-lab/<prefix>.pid, output in
// /run/vantage-lab/<prefix>.log) that holds the TCP services on port 80 in
// every network; "down" stops it and removes the namespaces. Every other
// command attaches to the running lab by its prefix, so faults can be
// injected from any shell.
//
// It needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vantage-net/vantage/deploy/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		// exec: the command's own status, without comment.
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vantage-lab:", err)
		os.Exit(1)
	}
}

type globals struct {
	prefix  string
	verbose bool
}

func (g *globals) logger() *slog.Logger {
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// open attaches to the running lab of the prefix.
func (g *globals) open() (*lab.Lab, error) {
	topo, err := lab.SavedTopology(g.prefix)
	if err != nil {
		return nil, fmt.Errorf("%w (run \"vantage-lab up --prefix %s\" first)", err, g.prefix)
	}
	return lab.Open(topo, lab.Options{Prefix: g.prefix, Logger: g.logger()})
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "vantage-lab",
		Short: "A miniature internet in network namespaces, with fault injection",
		Long: `vantage-lab builds the vantage lab: vantages, an exchange (ix), transit, upstream
and border routers, a controller namespace and target networks net0..net3, all
in network namespaces named <prefix>-<node>. It needs root, or CAP_SYS_ADMIN
(to create and enter namespaces) plus CAP_NET_ADMIN (to configure them).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.prefix, "prefix", lab.DefaultPrefix, "namespace prefix of the lab")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log progress to stderr")
	root.AddCommand(upCmd(g), serveCmd(g), downCmd(g), faultCmd(g), execCmd(g), statusCmd(g), birdCmd(g), mrtCmd(g))
	return root
}

func upCmd(g *globals) *cobra.Command {
	var topoFile string
	var rateLimit, bgp, collectorWait bool
	var collectorPort int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the lab (removing leftovers of the same prefix) and start its TCP services",
		Long: `up builds the lab and starts a detached "vantage-lab serve --prefix P" process
that holds the TCP services (port 80 in every network) until "down" stops it.
Its pid is in /run/vantage-lab/<prefix>.pid and its output in
/run/vantage-lab/<prefix>.log.

With --bgp the routers run BIRD (bird2) and learn the routes to the networks
over eBGP (the topology's bgp section); the BIRDs are daemons with their files
in /run/vantage-lab/<prefix>-bird-<node>.*, and "down" stops them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topo, err := lab.DefaultTopology()
			if topoFile != "" {
				topo, err = lab.LoadTopology(topoFile)
			}
			if err != nil {
				return err
			}
			start := time.Now()
			l, err := lab.Up(cmd.Context(), topo, lab.Options{
				Prefix: g.prefix, ICMPRateLimit: rateLimit, Logger: g.logger(), NoServices: true,
				BGP: bgp, BGPCollector: lab.BGPCollector{Port: collectorPort}, BGPCollectorWait: collectorWait,
			})
			if err != nil {
				return err
			}
			took := time.Since(start)
			pid, err := startServe(cmd.Context(), g.prefix)
			if err != nil {
				return errors.Join(err, l.Down())
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "lab %q up in %v; services held by pid %d\n", g.prefix, took.Round(time.Millisecond), pid)
			printNodes(out, l)
			return nil
		},
	}
	cmd.Flags().StringVar(&topoFile, "topology", "", "topology file (default: the embedded topology.yaml)")
	cmd.Flags().BoolVar(&rateLimit, "icmp-ratelimit", false, "keep the kernel's ICMP rate limits in the routers (realistic, slower traceroutes)")
	cmd.Flags().BoolVar(&bgp, "bgp", false, "route the networks with BGP: a BIRD in every router of the topology's bgp section")
	cmd.Flags().IntVar(&collectorPort, "bgp-collector-port", 0, "with --bgp: the collector's port in the controller namespace (default: the topology's, 1179)")
	cmd.Flags().BoolVar(&collectorWait, "bgp-collector-wait", false, "with --bgp: also wait until the sessions to the collector are up (it must be listening)")
	return cmd
}

// startServe launches "vantage-lab serve" in its own session and waits until
// it has written its pidfile, which it does once the listeners are open.
func startServe(ctx context.Context, prefix string) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(lab.StateDir, prefix+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("open serve log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(self, "serve", "--prefix", prefix)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start serve: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if lab.ServeRunning(prefix) == cmd.Process.Pid {
			return cmd.Process.Pid, nil
		}
		select {
		case err := <-exited:
			return 0, fmt.Errorf("serve exited early (%v); see %s", err, filepath.Join(lab.StateDir, prefix+".log"))
		case <-deadline.C:
			_ = cmd.Process.Kill()
			return 0, errors.New("serve did not become ready within 10s")
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
}

func serveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Hold the TCP services of a running lab until SIGTERM (started by up)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			if err := l.StartServices(); err != nil {
				return err
			}
			defer l.StopServices()
			pidfile := lab.PIDFile(g.prefix)
			if err := os.WriteFile(pidfile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
				return fmt.Errorf("write pidfile: %w", err)
			}
			<-cmd.Context().Done()
			// Remove the pidfile only if it is still ours.
			if b, err := os.ReadFile(pidfile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
				_ = os.Remove(pidfile)
			}
			return nil
		},
	}
}

func downCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the services and remove every namespace <prefix>-* and the lab state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckHost(); err != nil {
				return err
			}
			start := time.Now()
			if err := lab.Cleanup(g.prefix); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %q down in %v\n", g.prefix, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
}

func faultCmd(g *globals) *cobra.Command {
	var silent bool
	cmd := &cobra.Command{
		Use:   "fault <kind> [args]",
		Short: "Inject or remove a fault in the running lab",
		Long: `Kinds:
  blackout [net...]          withdraw the networks' routes (none = all)
  restore [net...]           announce them again (none = all; some = partial)
  flap <period> [net...]     blackout/restore every period until Ctrl-C, then restore
  loss <router> <pct>        drop pct% of packets the router forwards to the targets (0 removes)
  isolate <vantage>          the vantage reaches only the controller
  unisolate <vantage>
  cut-uplink <vantage>       the vantage loses the controller but keeps probing
  restore-uplink <vantage>
  filter-icmp <router>       drop echo requests to the targets at the router (TCP passes)
  unfilter-icmp <router>
  cut-inside [net...]        the networks' links to the border go down (none = all):
                             the border answers, the hosts behind it do not
  repair-inside [net...]
  withdraw <router> [net...] the router (an upstream) loses its routes to the networks
                             (none = those it carries): paths through it die at it,
                             answered net unreachable, or silently with --silent
  reannounce <router> [net...]
  border-down <router>       the router's links to other routers go down at once:
                             it stops answering from everywhere
  border-up <router>
  step-loss <router> <pct> [rate [capacity [flood]]]
                             set the router's loss step: pct% random drop and, with
                             rate, a limit of rate packets/s; with capacity, its links
                             to the networks capped at capacity kbit/s (tbf, queue up
                             to 300ms); with flood, flood kbit/s of UDP from transit
                             to every host, held until Ctrl-C, then the step removed
                             (the flood lives in this process). 0 removes
  ramp-loss <router> <period> <pct>[/rate[/capacity[/flood]]]...
                             one step every period, the last held until Ctrl-C,
                             then removed
BGP mode (up --bgp):
  bgp-withdraw <router> [net...]  the upstream stops exporting the networks toward
                             transit (none = those the border announces to it)
  bgp-announce <router> [net...]
  bgp-flap <period> <router> [net...]  bgp-withdraw/bgp-announce every period
                             until Ctrl-C, then announced
  origin-withdraw [net...]   the border stops originating the networks (none = all)
  origin-announce [net...]
  dataplane-down <router>    the router drops what it forwards and answers nothing,
                             its BGP sessions stay up (routes stay announced)
  dataplane-up <router>`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			kinds := faultKinds(cmd.Context(), l, silent)
			run, ok := kinds[args[0]]
			if !ok {
				return fmt.Errorf("fault: unknown kind %q (see vantage-lab fault --help)", args[0])
			}
			if err := run(args[1:]); err != nil {
				return fmt.Errorf("fault %s: %w", args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&silent, "silent", false, "withdraw: the router drops instead of answering net unreachable")
	return cmd
}

// faultKinds maps each fault kind to its handler, given the arguments after
// the kind.
func faultKinds(ctx context.Context, l *lab.Lab, silent bool) map[string]func([]string) error {
	one := func(f func(string) error) func([]string) error {
		return func(rest []string) error {
			if len(rest) != 1 {
				return fmt.Errorf("want exactly one node argument, got %d", len(rest))
			}
			return f(rest[0])
		}
	}
	nets := func(f func(...string) error) func([]string) error {
		return func(rest []string) error { return f(rest...) }
	}
	routerNets := func(f func(string, []string) error) func([]string) error {
		return func(rest []string) error {
			if len(rest) < 1 {
				return errors.New("want <router> [net...]")
			}
			return f(rest[0], rest[1:])
		}
	}
	mode := lab.WithdrawUnreachable
	if silent {
		mode = lab.WithdrawSilent
	}
	return map[string]func([]string) error{
		"blackout":        nets(l.Blackout),
		"restore":         nets(l.Restore),
		"flap":            func(rest []string) error { return flap(ctx, l, rest) },
		"loss":            func(rest []string) error { return loss(l, rest) },
		"isolate":         one(l.Isolate),
		"unisolate":       one(l.Unisolate),
		"cut-uplink":      one(l.CutUplink),
		"restore-uplink":  one(l.RestoreUplink),
		"filter-icmp":     one(l.FilterICMP),
		"unfilter-icmp":   one(l.UnfilterICMP),
		"cut-inside":      nets(l.CutInside),
		"repair-inside":   nets(l.RepairInside),
		"withdraw":        routerNets(func(r string, ns []string) error { return l.Withdraw(r, mode, ns...) }),
		"reannounce":      routerNets(func(r string, ns []string) error { return l.Reannounce(r, ns...) }),
		"border-down":     one(l.BorderDown),
		"border-up":       one(l.BorderUp),
		"step-loss":       func(rest []string) error { return stepLoss(ctx, l, rest) },
		"ramp-loss":       func(rest []string) error { return rampLoss(ctx, l, rest) },
		"bgp-withdraw":    routerNets(func(r string, ns []string) error { return l.BGPWithdraw(r, ns...) }),
		"bgp-announce":    routerNets(func(r string, ns []string) error { return l.BGPAnnounce(r, ns...) }),
		"bgp-flap":        func(rest []string) error { return bgpFlap(ctx, l, rest) },
		"origin-withdraw": nets(l.OriginWithdraw),
		"origin-announce": nets(l.OriginAnnounce),
		"dataplane-down":  one(l.DataPlaneDown),
		"dataplane-up":    one(l.DataPlaneUp),
	}
}

func flap(ctx context.Context, l *lab.Lab, rest []string) error {
	if len(rest) < 1 {
		return errors.New("want <period> [net...]")
	}
	period, err := time.ParseDuration(rest[0])
	if err != nil {
		return fmt.Errorf("period: %w", err)
	}
	return l.Flap(ctx, period, rest[1:]...)
}

func bgpFlap(ctx context.Context, l *lab.Lab, rest []string) error {
	if len(rest) < 2 {
		return errors.New("want <period> <router> [net...]")
	}
	period, err := time.ParseDuration(rest[0])
	if err != nil {
		return fmt.Errorf("period: %w", err)
	}
	return l.BGPFlap(ctx, period, rest[1], rest[2:]...)
}

func loss(l *lab.Lab, rest []string) error {
	if len(rest) != 2 {
		return errors.New("want <router> <pct>")
	}
	pct, err := strconv.Atoi(strings.TrimSuffix(rest[1], "%"))
	if err != nil {
		return fmt.Errorf("pct %q is not an integer", rest[1])
	}
	return l.Loss(rest[0], pct)
}

func stepLoss(ctx context.Context, l *lab.Lab, rest []string) error {
	if len(rest) < 2 || len(rest) > 5 {
		return errors.New("want <router> <pct> [rate [capacity [flood]]]")
	}
	s, err := parseStep(strings.Join(rest[1:], "/"))
	if err != nil {
		return err
	}
	if err := l.StepLoss(rest[0], s); err != nil {
		return err
	}
	if s.Flood == 0 {
		return nil
	}
	// The flood dies with this process: hold the step until Ctrl-C.
	fmt.Fprintln(os.Stderr, "flooding; Ctrl-C removes the step")
	<-ctx.Done()
	return l.StepLoss(rest[0], lab.LossStep{})
}

func rampLoss(ctx context.Context, l *lab.Lab, rest []string) error {
	if len(rest) < 3 {
		return errors.New("want <router> <period> <pct>[/rate[/capacity[/flood]]]...")
	}
	period, err := time.ParseDuration(rest[1])
	if err != nil {
		return fmt.Errorf("period: %w", err)
	}
	var steps []lab.LossStep
	for _, a := range rest[2:] {
		s, err := parseStep(a)
		if err != nil {
			return err
		}
		steps = append(steps, s)
	}
	return l.RampLoss(ctx, rest[0], period, steps...)
}

// parseStep reads "pct[/rate[/capacity[/flood]]]".
func parseStep(a string) (lab.LossStep, error) {
	var s lab.LossStep
	fields := strings.Split(a, "/")
	if len(fields) > 4 {
		return s, fmt.Errorf("step %q: want pct[/rate[/capacity[/flood]]]", a)
	}
	names := []string{"pct", "rate", "capacity", "flood"}
	dst := []*int{&s.Pct, &s.Rate, &s.Capacity, &s.Flood}
	for i, f := range fields {
		v, err := strconv.Atoi(strings.TrimSuffix(f, "%"))
		if err != nil {
			return s, fmt.Errorf("step %q: %s %q is not an integer", a, names[i], f)
		}
		*dst[i] = v
	}
	return s, nil
}

func execCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "exec <node> -- <command> [args...]",
		Short: "Run a command inside a node's namespace",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			if l.Role(args[0]) == "" {
				return fmt.Errorf("exec: unknown node %q (have %s)", args[0], strings.Join(l.Nodes(), ", "))
			}
			c := l.Command(cmd.Context(), args[0], args[1], args[2:]...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			return c.Run()
		},
	}
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the lab's nodes, its service process and the faults in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if pid := lab.ServeRunning(g.prefix); pid > 0 {
				fmt.Fprintf(out, "lab %q up; services held by pid %d\n", g.prefix, pid)
			} else {
				fmt.Fprintf(out, "lab %q up; services NOT running (no live serve process)\n", g.prefix)
			}
			if l.BGPMode() {
				fmt.Fprintln(out, "routing: BGP (BIRD in every router of the AS plan)")
			}
			printNodes(out, l)
			faults, err := l.Faults(cmd.Context())
			if err != nil {
				return err
			}
			if len(faults) == 0 {
				fmt.Fprintln(out, "faults: none")
			}
			for _, f := range faults {
				fmt.Fprintln(out, "fault:", f)
			}
			return nil
		},
	}
}

func printNodes(out io.Writer, l *lab.Lab) {
	for _, n := range l.Nodes() {
		line := fmt.Sprintf("  %-11s %-10s %-16s %-22s %s", n, l.Role(n), l.Addr(n), l.Addr6(n), l.Namespace(n))
		if l.Role(n) == lab.RoleNetwork {
			var hs []string
			for _, h := range l.Hosts(n) {
				hs = append(hs, h.String())
			}
			line += "  hosts " + strings.Join(hs, " ")
		}
		fmt.Fprintln(out, line)
	}
}

func birdCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "bird <router> [show-args...]",
		Short: "Show a router's BIRD state (birdc show ...; default: protocols) in a BGP lab",
		Example: `  vantage-lab bird ix route
  vantage-lab bird transit protocols all`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			show := args[1:]
			if len(show) == 0 {
				show = []string{"protocols"}
			}
			out, err := l.BirdShow(args[0], show...)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), out)
			return nil
		},
	}
}

func mrtCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mrt <router> <file>",
		Short: "Dump a router's BIRD tables to an MRT TABLE_DUMP_V2 file in a BGP lab",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := g.open()
			if err != nil {
				return err
			}
			if err := l.DumpMRT(args[0], args[1]); err != nil {
				return err
			}
			b, err := os.ReadFile(args[1])
			if err != nil {
				return fmt.Errorf("read dump: %w", err)
			}
			sum, err := lab.CheckMRT(b)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d bytes, %d records (%d peer tables, %d IPv4 and %d IPv6 prefixes)\n",
				args[1], len(b), sum.Records, sum.PeerTables, sum.RIB4, sum.RIB6)
			return nil
		},
	}
}
