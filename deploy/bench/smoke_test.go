package bench

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/deploy/lab"
)

// TestRealBenchSmoke runs the bench end to end on a /24 instead of the /16,
// with 20 traces, 20 RTT targets and a few seconds of idle agent: the lab
// goes up, every installed tool runs in the vantage's namespace, the
// outputs parse, and everything is torn down. Tools that are missing (or a
// vantage-agent without the probe subcommand) are skipped individually,
// with the reason logged. Every packet stays inside the vbs-* namespaces.
func TestRealBenchSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces and raw sockets")
	}
	if err := lab.CheckHost(); err != nil {
		t.Skip("lab unavailable: ", err)
	}
	if _, err := os.Stat(GNUTime); err != nil {
		t.Skip("needs GNU time (apt-get install time)")
	}
	bin := t.TempDir()
	var skip []string
	var idle time.Duration
	build := exec.Command("go", "build", "-o", bin+"/", "./agent/cmd/vantage-agent", "./controller/cmd/vantage-controller")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Logf("vantage skipped: agent and controller do not build: %v\n%s", err, out)
		skip = append(skip, ToolVantage)
		if err := os.WriteFile(filepath.Join(bin, "vantage-agent"), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		idle = 3 * time.Second
		if out, err := exec.Command(filepath.Join(bin, "vantage-agent"), "probe", "--help").CombinedOutput(); err != nil || !bytes.Contains(out, []byte("icmp")) {
			t.Logf("vantage skipped: vantage-agent has no probe subcommand yet (%v)", err)
			skip = append(skip, ToolVantage)
		}
	}
	for _, tool := range []string{ToolFping, ToolZmap, ToolScamper} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Logf("%s skipped: not installed (Debian package %s; make deps installs it)", tool, tool)
		}
	}
	var logs bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		BinDir: bin, WorkDir: t.TempDir(), Prefix: "vbs",
		Sweep: netip.MustParsePrefix("198.19.7.0/24"), Rate: 20000, VantageRate: 20000,
		Traces: 20, TraceRate: 20000, PoliteRouterRate: 100, RTTTargets: 20, RTTRate: 1000,
		Idle: idle, IdleWarmup: 2 * time.Second, IdleTargets: 50,
		Skip: skip, Timeout: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	t.Log(logs.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var out strings.Builder
	rep.Print(&out)
	t.Log("\n" + out.String())

	for _, rows := range [][]Row{rep.Sweeps, rep.Traces, rep.RTT} {
		for _, r := range rows {
			if r.Skipped != "" {
				continue
			}
			if r.Err != nil {
				t.Errorf("%s: %v", r.Tool, r.Err)
				continue
			}
			// Every address is live, but a loaded machine makes tools
			// (scamper first) drop answers; the harness only has to
			// have run the tool and parsed what it got.
			if r.Count.Targets == 0 || r.Count.Replies == 0 {
				t.Errorf("%s: %d replies from %d targets, want some", r.Tool, r.Count.Replies, r.Count.Targets)
			} else if r.Count.Replies != r.Count.Targets {
				t.Logf("%s: %d replies from %d targets (answers lost; load average %s)", r.Tool, r.Count.Replies, r.Count.Targets, rep.Machine.Load)
			}
			if r.Measure.MaxRSS <= 0 || r.Measure.Wall <= 0 {
				t.Errorf("%s: no measurement: %+v", r.Tool, r.Measure)
			}
		}
	}
	v, _ := row(rep.Traces, ToolVantage)
	s, _ := row(rep.Traces, ToolScamper)
	if v.OK() && s.OK() && !rep.TraceCompared {
		t.Error("both traces ran but their hop lists were not compared")
	}
	if rep.TraceCompared && rep.TraceSame != rep.TraceTargets {
		t.Logf("identical hop lists %d/%d (a tool lost answers?): %q", rep.TraceSame, rep.TraceTargets, rep.TraceDiffs)
	}
	if idle > 0 && rep.Idle == nil {
		t.Errorf("idle measurement missing: %s", rep.IdleSkipped)
	}
	for _, p := range []string{"vbs", "vbsi"} {
		if left, _ := filepath.Glob("/var/run/netns/" + p + "-*"); len(left) > 0 {
			t.Errorf("namespaces left behind: %v", left)
		}
	}
}
