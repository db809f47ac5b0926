// Command vantage-bench runs vantage's probe engines side by side with
// fping, zmap and scamper in the namespace lab and prints the table of
// docs/BENCHMARKS.md with the targets marked PASS or FAIL.
// It needs root. `make bench-probe` builds, installs the peers and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vantage-net/vantage/deploy/bench"
	"github.com/vantage-net/vantage/deploy/lab"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vantage-bench:", err)
		if errors.Is(err, errTargetFailed) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// options is what the command line says: the bench config and the flags
// that only this command reads.
type options struct {
	cfg      bench.Config
	sweep    string
	topo     string
	skip     string
	verbose  bool
	keep     bool
	failExit bool
}

func run() error {
	o := parseFlags()
	if err := o.resolve(); err != nil {
		return err
	}
	cfg := o.cfg
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "vantage-bench-")
		if err != nil {
			return err
		}
		cfg.WorkDir = d
		if !o.keep {
			defer os.RemoveAll(d)
		}
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "raw output in %s\n", cfg.WorkDir)
	}
	// Ctrl-C or SIGTERM cancels: children are killed and the labs torn
	// down by Run's deferred cleanup before we return.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		rep.Print(os.Stdout)
	}
	if err != nil {
		return err
	}
	if o.failExit {
		for _, c := range rep.Checks() {
			if c.Status == "FAIL" {
				return errTargetFailed
			}
		}
	}
	return nil
}

// parseFlags defines and parses the command line.
func parseFlags() *options {
	o := &options{}
	cfg := &o.cfg
	flag.StringVar(&cfg.BinDir, "bin", "bin", "directory holding vantage-agent and vantage-controller")
	flag.StringVar(&cfg.WorkDir, "work", "", "directory for target lists and raw tool output (default: a temporary one, removed unless -keep)")
	flag.StringVar(&cfg.Prefix, "prefix", "vb", "lab namespace prefix (the idle run uses <prefix>i)")
	flag.StringVar(&o.topo, "topology", "", "bench lab topology file (default: the embedded deploy/bench/topology.yaml)")
	flag.StringVar(&o.sweep, "sweep", "", "prefix to sweep (default: the bench network's IPv4 AnyIP prefix, 198.19.0.0/16)")
	flag.IntVar(&cfg.VantageRate, "vantage-rate", 0, "vantage's --rate for the sweep (0 = unpaced, like fping -i 0)")
	flag.BoolVar(&cfg.NoSweep, "no-sweep", false, "skip the sweep (traces, RTT and idle still run)")
	flag.IntVar(&cfg.TraceRate, "trace-rate", 100000, "vantage's --rate for the traces, in probes per second (0 = unpaced)")
	flag.IntVar(&cfg.TraceRouterRate, "trace-router-rate", -1, "vantage's --router-rate for the traces (0 = no per-router pacing; default: 0, or 100 with -icmp-ratelimit)")
	flag.IntVar(&cfg.PoliteRouterRate, "polite-router-rate", 100, "also run vantage's traces with this --router-rate, the daemon's default (0 skips)")
	flag.IntVar(&cfg.Rate, "rate", 100000, "zmap's rate for the sweep in packets per second (scamper's sweep: at most 10000)")
	flag.IntVar(&cfg.Traces, "traces", 2000, "Paris traceroutes to compare (0 skips)")
	flag.IntVar(&cfg.RTTTargets, "rtt-targets", 2000, "targets of the RTT comparison (0 skips)")
	flag.IntVar(&cfg.RTTRate, "rtt-rate", 1000, "packets per second of the RTT comparison")
	flag.DurationVar(&cfg.Idle, "idle", 3*time.Minute, "how long to measure the idle agent (0 skips)")
	flag.DurationVar(&cfg.IdleWarmup, "idle-warmup", 30*time.Second, "wait between applying the idle campaign and measuring")
	flag.IntVar(&cfg.IdleTargets, "idle-targets", 1000, "targets of the idle agent's campaign")
	flag.BoolVar(&cfg.ICMPRateLimit, "icmp-ratelimit", false, "keep the routers' ICMP rate limits (realistic; off for the sweep)")
	flag.StringVar(&o.skip, "skip", "", "comma-separated tools not to run: vantage,fping,zmap,scamper")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "bound on each tool run")
	flag.BoolVar(&o.verbose, "v", false, "log every command")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.BoolVar(&o.failExit, "fail", false, "exit 2 when a target fails")
	flag.Parse()
	return o
}

// resolve turns the flags that need parsing or defaults into o.cfg: the
// trace router rate, the logger, the sweep prefix, the skip list and the
// topology.
func (o *options) resolve() error {
	cfg := &o.cfg
	if cfg.TraceRouterRate < 0 {
		// The lab's routers rate-limit ICMP only with -icmp-ratelimit.
		cfg.TraceRouterRate = 0
		if cfg.ICMPRateLimit {
			cfg.TraceRouterRate = 100
		}
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if o.sweep != "" {
		p, err := netip.ParsePrefix(o.sweep)
		if err != nil || p != p.Masked() || !p.Addr().Is4() || p.Bits() < 8 {
			return fmt.Errorf("-sweep: %q must be a canonical IPv4 prefix of /8 or longer", o.sweep)
		}
		cfg.Sweep = p
	}
	if o.skip != "" {
		cfg.Skip = strings.Split(o.skip, ",")
	}
	if o.topo != "" {
		t, err := lab.LoadTopology(o.topo)
		if err != nil {
			return err
		}
		cfg.Topology = t
	}
	return nil
}

var errTargetFailed = errors.New("a target failed")
