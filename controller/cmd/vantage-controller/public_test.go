package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// childArgsEnv makes the test binary run the controller instead of the
// tests (TestPublicStreamsBounded measures its memory apart from the
// client's).
const childArgsEnv = "VANTAGE_TEST_CONTROLLER_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgsEnv); args != "" {
		cmd := newRootCmd()
		cmd.SetArgs(strings.Split(args, "\n"))
		if err := cmd.Execute(); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childController runs the controller in a process of its own and returns
// it with its listen address.
func childController(t *testing.T, dir string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(append([]string{"--data", dir, "--listen", "127.0.0.1:0"}, args...), "\n"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addrs := make(chan string, 1)
	go func() { // ends when the child closes stderr, at its exit
		re := regexp.MustCompile(`msg="controller listening" addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addrs:
		return cmd, a
	case <-time.After(sane):
		t.Fatal("child controller did not start")
	}
	return nil, ""
}

// rssKB reads a process's resident set size.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestPublicStreamsBounded opens 10,000 health Watch streams (they need
// no token) over 200 connections and checks that the controller serves
// no more than its limit of them, printing its RSS before and after.
func TestPublicStreamsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 streams")
	}
	dir := filepath.Join(t.TempDir(), "data")
	cmd, addr := childController(t, dir)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})
	time.Sleep(time.Second) // let the start-up settle before the baseline
	before := rssKB(t, cmd.Process.Pid)

	const conns, perConn = 200, 50
	ctx, cancel := context.WithTimeout(context.Background(), 2*sane)
	defer cancel() // ends every stream
	var accepted, refused, failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range conns {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		wg.Go(func() {
			hc := healthpb.NewHealthClient(conn)
			for range perConn {
				w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
				if err == nil {
					_, err = w.Recv()
				}
				switch status.Code(err) {
				case codes.OK:
					accepted.Add(1)
				case codes.ResourceExhausted:
					refused.Add(1)
				default:
					failed.Add(1)
					firstErr.Do(func() { t.Logf("a Watch failed: %v", err) })
				}
			}
		})
	}
	wg.Wait()
	after := rssKB(t, cmd.Process.Pid)
	t.Logf("%d health Watch streams asked on %d connections: %d served, %d refused (RESOURCE_EXHAUSTED), %d failed otherwise",
		conns*perConn, conns, accepted.Load(), refused.Load(), failed.Load())
	t.Logf("controller RSS: %.1f MB before, %.1f MB with the streams open (+%.1f MB)",
		float64(before)/1024, float64(after)/1024, float64(after-before)/1024)
	if accepted.Load() > DefaultMaxPublicStreams || accepted.Load() == 0 {
		t.Errorf("%d Watch streams served; want 1..%d (--max-public-streams)", accepted.Load(), DefaultMaxPublicStreams)
	}
}

// TestConnectionAndStreamLimits: a connection beyond --max-connections
// waits until one closes (it is served then), and a stream beyond --max-streams-per-conn
// waits for one of its connection's to end.
func TestConnectionAndStreamLimits(t *testing.T) {
	c := startController(t, func(cfg *Config) {
		cfg.Transport = TransportLimits{MaxConnections: 3, MaxStreamsPerConn: 8}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*sane)
	defer cancel()
	watch := func(conn *grpc.ClientConn, ctx context.Context) error {
		w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		return err
	}
	// The test's own conns: c.dial registers a Close at cleanup.
	var held []*grpc.ClientConn
	for range 3 {
		conn := c.dial(t)
		if err := watch(conn, ctx); err != nil {
			t.Fatal(err)
		}
		held = append(held, conn)
	}
	// A short wait is the evidence here: the fourth connection is not
	// served while three are open (it would be at once without a limit).
	fourth := c.dial(t)
	short, scancel := context.WithTimeout(ctx, 3*time.Second)
	err := watch(fourth, short)
	scancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("fourth connection served with three open (--max-connections 3): %v", err)
	}
	streams, scancel := context.WithCancel(ctx)
	for i := 1; i < 8; i++ { // the first connection has one Watch open
		if err := watch(held[0], streams); err != nil {
			t.Fatal(err)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	err = watch(held[0], short)
	cancelShort()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ninth stream on a connection served (--max-streams-per-conn 8): %v", err)
	}
	scancel()
	held[2].Close()
	if err := watch(fourth, ctx); err != nil {
		t.Errorf("the waiting connection once one closed: %v", err)
	}
}
