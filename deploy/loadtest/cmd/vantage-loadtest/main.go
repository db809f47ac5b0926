// Command vantage-loadtest measures controller ingest: N simulated agents,
// each enrolled for real, stream results over mTLS on loopback to a real
// vantage-controller with SQLite. It prints sustained results/s, the p99 of
// batch send->ack, and the controller's RSS over time (make bench-ingest).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vantage-net/vantage/deploy/loadtest"
)

func main() { os.Exit(run()) }

// run returns the exit code, so that the deferred clean-ups run first.
func run() int {
	var cfg loadtest.Config
	var keep bool
	var minRate float64
	flag.StringVar(&cfg.BinDir, "bin", "bin", "directory holding vantage-controller")
	flag.IntVar(&cfg.Agents, "agents", 1000, "simulated agent sessions")
	flag.DurationVar(&cfg.Duration, "duration", 5*time.Minute, "measured run length")
	flag.DurationVar(&cfg.Warmup, "warmup", 10*time.Second, "excluded from the figures")
	flag.IntVar(&cfg.BatchResults, "batch", 250, "results per ResultBatch")
	flag.IntVar(&cfg.Window, "window", 1, "unacknowledged batches per agent")
	flag.DurationVar(&cfg.SampleEvery, "sample", 10*time.Second, "period of the rate and RSS samples")
	flag.BoolVar(&keep, "keep", false, "keep the work directory (controller data and log)")
	flag.Float64Var(&minRate, "min-rate", 0, "exit 1 when the sustained rate is below this (results/s)")
	flag.Parse()
	cfg.ControllerArgs = flag.Args()
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	dir, err := os.MkdirTemp("", "vantage-loadtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	cfg.WorkDir = dir
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadtest.Run(ctx, cfg)
	fmt.Print(rep.String())
	if keep {
		fmt.Println("work dir:", dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vantage-loadtest:", err)
		return 1
	}
	if rep.StoredRows < int64(rep.SentResults) {
		fmt.Fprintf(os.Stderr, "vantage-loadtest: %d results acked but only %d stored: acked results were lost\n", rep.SentResults, rep.StoredRows)
		return 1
	}
	if minRate > 0 && rep.ResultsPerS < minRate {
		fmt.Fprintf(os.Stderr, "vantage-loadtest: %.0f results/s is below -min-rate %.0f\n", rep.ResultsPerS, minRate)
		return 1
	}
	return 0
}
