package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/api"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// benchClientEnv, when set in a child process of the test binary, makes
// it vantagectl: TestMain runs the command line it holds (tab-separated)
// and exits with its code. The benchmark runs its client this way, so the
// client's memory is a process of its own, measured by the kernel.
const benchClientEnv = "VANTAGECTL_BENCH_CLIENT_ARGS"

// The child reports its own memory on stderr as it exits: VmRSS before the
// command ran and VmHWM (the peak resident set of its own address space)
// after, from /proc/self/status. Not the kernel's ru_maxrss of the child:
// Go starts a child with vfork, and at exec Linux folds the parent's
// resident set into the child's maxrss, so it reports the parent's size.
func TestMain(m *testing.M) {
	if args := os.Getenv(benchClientEnv); args != "" {
		before := procStatusKiB("VmRSS")
		code := run(context.Background(), strings.Split(args, "\t"), env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
			getenv: os.Getenv, now: time.Now, loc: time.UTC})
		fmt.Fprintf(os.Stderr, "rss_before_kib=%d hwm_kib=%d\n", before, procStatusKiB("VmHWM"))
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// procStatusKiB reads one "Name:  N kB" line of /proc/self/status (0 when
// it cannot).
func procStatusKiB(name string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			var n int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
			return n
		}
	}
	return 0
}

// storeResults stores n ICMP results of campaign kp through the store's
// group commit: agents agents, each sending one result every
// 10 ms × agents from t0 in batches of 1,000, so that every agent's
// batches overlap in time with every other's (the store's merge of
// chunks then holds one chunk per agent, as with a real fleet).
func storeResults(b *testing.B, db interface {
	CommitBatches(context.Context, []store.Batch) ([][]bool, error)
}, agents []string, n int, t0 time.Time) {
	const batch = 1000
	ctx := context.Background()
	per := n / len(agents)
	step := time.Duration(len(agents)) * 10 * time.Millisecond
	for first := 0; first < per; first += batch {
		var group []store.Batch
		for ai, agent := range agents {
			bt := store.Batch{AgentID: agent, Epoch: 1}
			for i := first; i < min(first+batch, per); i++ {
				sent := t0.Add(time.Duration(i)*step + time.Duration(ai)*10*time.Millisecond)
				bt.Results = append(bt.Results, &vantagev1.ProbeResult{Seq: uint64(i + 1), Campaign: "kp", TaskId: "kp/icmp/198.18.0.10",
					Target: fmt.Sprintf("198.18.%d.%d", i%4, 10+i%200), Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Round: int64(i / 100),
					SentAt: timestamppb.New(sent), Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: uint32(20000 + i%5000),
					ReplyFrom: "198.18.0.10", ReplyTtl: 60, Attempts: 1, Engine: "bulk"})
			}
			group = append(group, bt)
		}
		if _, err := db.CommitBatches(ctx, group); err != nil {
			b.Fatal(err)
		}
	}
}

// heapPeak samples the live heap (runtime/metrics' heap objects, no
// stop-the-world) every 5 ms until stop, and returns its peak.
func heapPeak(stop <-chan struct{}) func() uint64 {
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			mu.Lock()
			peak = max(peak, s[0].Value.Uint64())
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkExport1MResults stores 1,000,000 results (10 agents whose
// batches overlap in time) in a real SQLite store, serves the real
// ExportService over TLS on loopback, and runs vantagectl export results
// --format jsonl in a child process (this test binary as vantagectl,
// its stdout's lines counted, 32 KiB at a time), first for the first 100,000 results' window, then
// for all 1,000,000. Memory is measured on both sides for both exports:
//   - the controller side (this process: ExportService, gRPC, the store)
//     as the peak of the live heap (runtime/metrics heap objects, sampled
//     every 5 ms during the export) minus the live heap after a GC just
//     before it: server-heap-growth-MB-100k and -1M;
//   - the client side as the child's peak resident set (VmHWM of its own
//     /proc/self/status as it exits; see TestMain), and its growth over
//     the resident set before the command ran: client-peak-rss-MB-100k
//     and -1M, client-rss-growth-MB-100k and -1M.
//
// Constant memory is growth that does not follow the export's length:
// the 1M figures stay near the 100k ones. results/s is the 1M export's
// rate. Run it with: go test -run '^$' -bench Export1MResults -benchtime 1x
// ./controller/cmd/vantagectl/
func BenchmarkExport1MResults(b *testing.B) {
	const n = 1_000_000
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db, ca, dir := fixture.StoreAndCA(b)
	fixture.PutCampaign(b, db, "kp", fixture.Campaign{Name: "kp"}.YAML(), t0)
	fixture.OperatorTokens(b, db, t0)
	var agents []string
	for i := range 10 {
		id := fmt.Sprintf("agt-%016x", i+1)
		fixture.ActiveAgent(b, db, id, nil, t0)
		agents = append(agents, id)
	}
	start := time.Now()
	storeResults(b, db, agents, n, t0)
	b.Logf("stored %d results in %v", n, time.Since(start).Round(time.Millisecond))
	s := api.New(api.Config{Store: db, Fleet: fleet.New(db, ca, fleet.Options{})})
	addr := fixture.ServeTLS(b, ca, func(g *grpc.Server) {
		vantagev1.RegisterOperatorServiceServer(g, s)
		vantagev1.RegisterExportServiceServer(g, s.Exporter())
	}, s.Wait, grpc.UnaryInterceptor(s.UnaryInterceptor()), grpc.StreamInterceptor(s.StreamInterceptor()))
	end := t0.Add(time.Duration(n/len(agents)) * time.Duration(len(agents)) * 10 * time.Millisecond)
	// The first 100,000 results: a tenth of the window.
	windows := []struct {
		name string
		to   time.Time
		want int
	}{{"100k", t0.Add(end.Sub(t0) / 10), n / 10}, {"1M", end, n}}
	b.ResetTimer()
	for range b.N {
		for _, w := range windows {
			args := []string{"export", "results", "--campaign", "kp", "--from", t0.Format(time.RFC3339), "--to", w.to.Format(time.RFC3339),
				"--format", "jsonl"}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			var stderr bytes.Buffer
			lines := &lineCounter{}
			cmd.Stdout, cmd.Stderr = lines, &stderr
			cmd.Env = append(os.Environ(), benchClientEnv+"="+strings.Join(args, "\t"), envController+"="+addr,
				envToken+"=viewer-secret", envCA+"="+filepath.Join(dir, fleet.CACertFile))
			base := liveHeap()
			stop := make(chan struct{})
			peak := heapPeak(stop)
			began := time.Now()
			err := cmd.Run()
			took := time.Since(began)
			close(stop)
			if err != nil {
				b.Fatalf("export %s: %v: %s", w.name, err, stderr.String())
			}
			if lines.n != w.want {
				b.Fatalf("export %s: %d lines, want %d", w.name, lines.n, w.want)
			}
			var before, hwm int64
			if _, err := fmt.Sscanf(stderr.String(), "rss_before_kib=%d hwm_kib=%d", &before, &hwm); err != nil || hwm == 0 {
				b.Fatalf("export %s: no memory report from the client (%v): %q", w.name, err, stderr.String())
			}
			growth := float64(int64(peak())-int64(base)) / (1 << 20)
			b.ReportMetric(growth, "server-heap-growth-MB-"+w.name)
			b.ReportMetric(float64(hwm)/1024, "client-peak-rss-MB-"+w.name)
			b.ReportMetric(float64(hwm-before)/1024, "client-rss-growth-MB-"+w.name)
			if w.name == "1M" {
				b.ReportMetric(float64(w.want)/took.Seconds(), "results/s")
			}
			b.Logf("export %s: %d results in %v", w.name, w.want, took.Round(time.Millisecond))
		}
	}
}

// lineCounter counts the lines written to it, keeping none.
type lineCounter struct{ n int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}
