// Command vantage-demo tells the story of North Korea's December 2014 outage
// in a namespace lab: steady, instability, blackout, partial restoration, full
// restoration. It starts a real controller and three real agents, prints the
// verdict transitions as they happen, then the timeline and the detection
// latencies, and removes everything it made. `make demo` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vantage-net/vantage/deploy/demo"
	"github.com/vantage-net/vantage/internal/bgpwords"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const needRoot = `vantage-demo needs root.
It builds a private miniature internet on this machine: network namespaces,
veth links, routes and nftables rules (CAP_SYS_ADMIN and CAP_NET_ADMIN), and
its agents send ICMP with raw sockets inside those namespaces (CAP_NET_RAW).
No packet leaves the machine. Run it as root, for example: sudo make demo`

func main() {
	os.Exit(run())
}

func run() int {
	bin := flag.String("bin", "bin", "directory with vantage-controller and vantage-agent")
	campaignPath := flag.String("campaign", "deploy/examples/country.yaml", "campaign file to apply")
	prefix := flag.String("prefix", "vd", "namespace name prefix for the lab")
	keep := flag.Bool("keep", false, "keep the work directory (logs, SQLite database) after the demo")
	verbose := flag.Bool("v", false, "log the harness's own steps")
	static := flag.Bool("static", false, "tell the story with static routes (no BGP: the lab's routers run no BIRD, the controller no collector)")
	dashboard := flag.Bool("dashboard", false, "serve the dashboard on 127.0.0.1 (-web-port), print its URL and a viewer token, and after the story keep the lab and the controller up until Ctrl-C")
	webPort := flag.Int("web-port", 8080, "with -dashboard: the host loopback port the dashboard is forwarded to (0: any free port)")
	flag.Parse()

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, needRoot)
		return 2
	}
	tools := []string{"ip", "nft"}
	if !*static {
		tools = append(tools, "bird", "birdc")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "vantage-demo needs %q on PATH (Debian packages iproute2, nftables and bird2; or -static without BGP): %v\n", tool, err)
			return 2
		}
	}
	spec, err := os.ReadFile(*campaignPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vantage-demo: read campaign: %v\n", err)
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := os.MkdirTemp("", "vantage-demo-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "vantage-demo: %v\n", err)
		return 1
	}
	cfg := demo.Config{BinDir: *bin, Prefix: *prefix, WorkDir: work, Logger: logger, BGP: !*static}
	if *dashboard {
		// Plain HTTP on the controller namespace's loopback, forwarded to
		// the host's: a browser here opens it without a certificate warning.
		cfg.Web, cfg.WebHostPort = demo.WebPlain, *webPort
	}
	if err := play(ctx, cfg, spec, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "vantage-demo: %v\n(logs kept in %s)\n", err, work)
		return 1
	}
	if *keep {
		fmt.Printf("work directory kept: %s\n", work)
	} else {
		os.RemoveAll(work)
	}
	return 0
}

// show is one demo run: the harness, where the binaries are, when it
// started and where it prints. campaign and round are set once the
// campaign is applied.
type show struct {
	h        *demo.Harness
	bgp      bool
	binDir   string
	t0       time.Time
	out      io.Writer
	campaign string
	round    time.Duration
}

func play(ctx context.Context, cfg demo.Config, spec []byte, out io.Writer) (err error) {
	s := &show{binDir: cfg.BinDir, t0: time.Now(), out: out, bgp: cfg.BGP}
	routing := "static routes"
	if cfg.BGP {
		routing = "BGP: BIRD in every router, the controller's collector peering with them"
	}
	fmt.Fprintf(out, "vantage demo: building the lab (3 vantages, ix, transit, two upstreams, border, 4 target networks; %s)\n", routing)
	h, err := demo.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(out, "cleaning up: agents, controller, namespaces")
		if cerr := h.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("cleanup: %w", cerr)
		}
	}()
	s.h = h
	fmt.Fprintf(out, "controller up at %s, 3 agents enrolled and connected (logs in %s)\n", h.ControllerAddr(), cfg.WorkDir)
	viewer := ""
	if cfg.Web != "" {
		if viewer, err = h.OperatorToken(ctx, "dashboard", "viewer"); err != nil {
			return err
		}
		fmt.Fprintf(out, "dashboard: %s/ (log in with the viewer token %s)\n", h.WebURL(), viewer)
	}

	if err := s.applySteady(ctx, spec); err != nil {
		return err
	}
	records, err := s.tell(ctx)
	if err != nil {
		return err
	}
	if err := s.summarise(ctx, records); err != nil || cfg.Web == "" {
		return err
	}
	fmt.Fprintf(out, "\nthe lab and the controller stay up for the dashboard: %s/campaigns/%s\nviewer token: %s\nCtrl-C to stop and clean up\n",
		h.WebURL(), s.campaign, viewer)
	<-ctx.Done()
	return nil
}

// applySteady applies the campaign and waits until its scope is reachable
// from all three vantages: the steady state the story starts from.
func (s *show) applySteady(ctx context.Context, spec []byte) error {
	h, out := s.h, s.out
	camp, err := h.Operator.ApplyCampaign(h.Authed(ctx), &vantagev1.ApplyCampaignRequest{SpecYaml: string(spec)})
	if err != nil {
		return fmt.Errorf("apply campaign: %w", err)
	}
	s.campaign = camp.GetName()
	s.round = time.Duration(camp.GetRoundMs()) * time.Millisecond
	fmt.Fprintf(out, "campaign %q applied: scope %s, %d networks, %d targets, round %s, quorum %d\n",
		camp.GetName(), camp.GetScope(), len(camp.GetNetworks()), len(camp.GetTargets()), s.round, camp.GetQuorum())

	scopeID := camp.GetName() + "/scope/" + camp.GetScope()
	wctx, cancel := context.WithTimeout(ctx, 20*s.round)
	_, err = h.WaitVerdict(wctx, camp.GetName(), scopeID, func(v *vantagev1.Verdict) bool {
		return v.GetState() == vantagev1.State_STATE_REACHABLE && v.GetHealthyVantages() == 3
	})
	cancel()
	if err != nil {
		return fmt.Errorf("waiting for a reachable scope seen by 3 vantages: %w", err)
	}
	if s.bgp {
		st, err := h.WaitBGP(ctx, s.campaign, 30*time.Second)
		if err != nil {
			return fmt.Errorf("waiting for the collector's BGP view: %w", err)
		}
		fmt.Fprintf(out, "BGP: %d collector sessions established; %d monitored prefixes visible\n", len(st.GetPeers()), len(st.GetPrefixes()))
	}
	fmt.Fprintf(out, "scope %s reachable from 3 healthy vantages after %.1fs; the story begins\n\n", scopeID, time.Since(s.t0).Seconds())
	return nil
}

// tell plays the 2014 story while a watcher prints the transitions, then
// lets the last round close.
func (s *show) tell(ctx context.Context) ([]demo.PhaseRecord, error) {
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		watch(watchCtx, s.h, s.campaign, s.t0, s.out)
	}()
	story := demo.Story2014()
	if s.bgp {
		story = demo.Story2014BGP(s.round)
	}
	records, err := s.h.Play(ctx, story, s.round, s.out)
	// Let the last round close before reading the timeline.
	if err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(s.round):
		}
	}
	stopWatch()
	<-watchDone
	return records, err
}

// summarise prints the timeline, the detection latencies and the CLI's view
// of the scope, and fails when a phase that expects a state went undetected.
func (s *show) summarise(ctx context.Context, records []demo.PhaseRecord) error {
	h, out := s.h, s.out
	timeline, err := h.Timeline(ctx, s.campaign)
	if err != nil {
		return err
	}
	demo.MatchDetections(records, timeline)
	fmt.Fprintf(out, "\nverdict timeline (scope and networks; T+ from demo start, round %s):\n", s.round)
	demo.WriteTimeline(out, s.t0, timeline)
	fmt.Fprintln(out, "\ndetection latency (fault injected -> controller's transition):")
	demo.WriteDetections(out, records, s.round)
	fmt.Fprintln(out, "\nthe same scope timeline through the operator CLI (vantagectl timeline --level scope):")
	ctl := h.Lab.Command(ctx, "controller", filepath.Join(s.binDir, "vantagectl"),
		"--controller", h.ControllerAddr(), "--ca", filepath.Join(h.DataDir(), "ca.pem"),
		"--token-file", filepath.Join(h.DataDir(), "admin.token"),
		"timeline", "--campaign", s.campaign, "--level", "scope")
	ctl.Stdout, ctl.Stderr = out, out
	if err := ctl.Run(); err != nil {
		return fmt.Errorf("vantagectl timeline: %w", err)
	}
	if s.bgp {
		fmt.Fprintln(out, "\nthe controller's BGP view at the end (vantagectl bgp status):")
		ctl := h.Lab.Command(ctx, "controller", filepath.Join(s.binDir, "vantagectl"),
			"--controller", h.ControllerAddr(), "--ca", filepath.Join(h.DataDir(), "ca.pem"),
			"--token-file", filepath.Join(h.DataDir(), "admin.token"), "bgp", "status", "--campaign", s.campaign)
		ctl.Stdout, ctl.Stderr = out, out
		if err := ctl.Run(); err != nil {
			return fmt.Errorf("vantagectl bgp status: %w", err)
		}
	}
	var missing []string
	for _, r := range records {
		if r.Phase.Expect != vantagev1.State_STATE_UNSPECIFIED && r.Detected == nil {
			missing = append(missing, r.Phase.Name)
		}
	}
	if len(missing) > 0 {
		return errors.New("not detected: " + strings.Join(missing, "; "))
	}
	return nil
}

// watch prints scope and network transitions as the controller announces
// them, until ctx ends.
func watch(ctx context.Context, h *demo.Harness, campaign string, t0 time.Time, out io.Writer) {
	stream, err := h.Operator.WatchVerdicts(h.Authed(ctx), &vantagev1.WatchVerdictsRequest{Campaign: campaign})
	if err != nil {
		fmt.Fprintf(out, "  (watch failed: %v)\n", err)
		return
	}
	for {
		upd, err := stream.Recv()
		if err != nil {
			return
		}
		tr := upd.GetTransition()
		if tr == nil || tr.GetLevel() == vantagev1.Level_LEVEL_TARGET {
			continue
		}
		change := strings.TrimPrefix(tr.GetFrom().String(), "STATE_") + " -> " + strings.TrimPrefix(tr.GetTo().String(), "STATE_")
		if tr.GetFrom() == tr.GetTo() {
			change = strings.TrimPrefix(tr.GetTo().String(), "STATE_") + " located"
		}
		fmt.Fprintf(out, "    T+%5.1fs  %-7s %-8s %s at %s  down=[%s]  bgp: %s\n",
			tr.GetDetectedAt().AsTime().Sub(t0).Seconds(),
			strings.TrimPrefix(tr.GetLevel().String(), "LEVEL_"), tr.GetSubject(), change,
			strings.TrimPrefix(tr.GetLocation().String(), "LOCATION_"),
			strings.Join(tr.GetDownChildren(), ","), bgpwords.Finding(tr.GetCause().GetBgp()))
	}
}
