package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/deploy/demo"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// IdleResult is the cost of an agent monitoring a campaign between rounds.
type IdleResult struct {
	Targets int
	Round   time.Duration
	Window  time.Duration
	CPU     time.Duration
	// Results is how many results the controller stored from the agent
	// during the window: proof it was working, not stuck.
	Results int
	RSS     int64 // bytes, VmRSS at the end
}

// Percent is CPU time as a percentage of one core over the window.
func (r *IdleResult) Percent() float64 {
	if r == nil || r.Window <= 0 {
		return 0
	}
	return 100 * r.CPU.Seconds() / r.Window.Seconds()
}

// idleNetwork is where the idle campaign's targets live: the default lab's
// net0 gets this AnyIP prefix (the bench prefix, clear of the 198.18.N.0/24
// plan).
var idlePrefix = netip.MustParsePrefix("198.19.0.0/16")

const idleRound = time.Minute

// IdleCampaign is the campaign the idle agent runs: n hosts of the prefix,
// one ICMP echo each per one-minute round, selected to vantage-a only.
func IdleCampaign(n int) string {
	return fmt.Sprintf(`name: bench-idle
scope: {country: AQ, name: "bench idle"}
targets:
  networks:
    - {name: bench, prefix: %s}
  hosts: {per_network: %d}
probes:
  - icmp: {retries: 0, timeout: 1s}
schedule: {round: %s, jitter: 30s}
vantages: {select: {provider: lab-a}, quorum: 1}
budget: {per_target_pps: 1, agent_pps: 500}
`, idlePrefix, n, idleRound)
}

// measureIdle starts the real controller and agents in a default lab
// (deploy/demo), gives net0 the AnyIP prefix, applies IdleCampaign to
// vantage-a, waits cfg.IdleWarmup and reads the agent's CPU time over
// cfg.Idle.
func measureIdle(ctx context.Context, cfg Config) (*IdleResult, error) {
	work := filepath.Join(cfg.WorkDir, "idle")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, fmt.Errorf("idle work dir: %w", err)
	}
	h, err := demo.Start(ctx, demo.Config{BinDir: cfg.BinDir, Prefix: cfg.Prefix + "i", WorkDir: work, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("idle harness: %w", err)
	}
	defer func() {
		if err := h.Close(); err != nil {
			cfg.Logger.Warn("idle harness close", slog.Any("error", err))
		}
	}()
	if err := h.Lab.AddAnyIP("net0", idlePrefix); err != nil {
		return nil, err
	}
	camp, err := h.Operator.ApplyCampaign(h.Authed(ctx), &vantagev1.ApplyCampaignRequest{SpecYaml: IdleCampaign(cfg.IdleTargets)})
	if err != nil {
		return nil, fmt.Errorf("apply idle campaign: %w", err)
	}
	state := filepath.Join(work, "agent-"+VantageNode)
	// The harness starts the agent through "ip netns exec", which may not
	// have exec'd the agent yet on a loaded machine.
	var pid int
	for deadline := time.Now().Add(10 * time.Second); ; {
		pid, err = findAgent(state)
		if err == nil || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w (agent log: %s)", err, tail(filepath.Join(work, VantageNode+".log")))
	}
	cfg.Logger.Info("idle agent", slog.Int("pid", pid), slog.Int("targets", len(camp.GetTargets())), slog.Duration("warmup", cfg.IdleWarmup), slog.Duration("window", cfg.Idle))
	if err := sleep(ctx, cfg.IdleWarmup); err != nil {
		return nil, err
	}
	c0, err := procCPU(pid)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := sleep(ctx, cfg.Idle); err != nil {
		return nil, err
	}
	c1, err := procCPU(pid)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	res := &IdleResult{Targets: len(camp.GetTargets()), Round: idleRound, Window: t1.Sub(t0), CPU: c1 - c0, RSS: procRSS(pid)}
	res.Results, err = countResults(ctx, h, camp.GetName(), t0, t1)
	if err != nil {
		return nil, err
	}
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// findAgent returns the pid of the agent whose state dir is state.
func findAgent(state string) (int, error) {
	es, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("list /proc: %w", err)
	}
	for _, e := range es {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "vantage-agent" && slices.Contains(args, state) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no vantage-agent process with --state %s", state)
}

// procRSS returns VmRSS in bytes (0 if unreadable).
func procRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// countResults counts the results the controller stored for the campaign
// with sent_at in [from, to).
func countResults(ctx context.Context, h *demo.Harness, campaign string, from, to time.Time) (int, error) {
	st, err := h.Operator.QueryResults(h.Authed(ctx), &vantagev1.QueryResultsRequest{
		Campaign: campaign, From: timestamppb.New(from), To: timestamppb.New(to), Limit: 100000,
	})
	if err != nil {
		return 0, fmt.Errorf("query idle results: %w", err)
	}
	n := 0
	for {
		_, err := st.Recv()
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return n, err
			}
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, fmt.Errorf("query idle results: %w", err)
		}
		n++
	}
}
