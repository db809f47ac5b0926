package loadtest

// The controller process under load: started, stopped and read from /proc
// and its debug endpoint.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/vantage-net/vantage/controller/ingest"
)

type controller struct {
	debug    string // --debug-addr
	cmd      *exec.Cmd
	done     chan struct{}
	addr     string
	dataDir  string
	caPEM    []byte
	token    string
	stopOnce sync.Once
	stopErr  error
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startController(ctx context.Context, cfg Config) (*controller, error) {
	addr, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("pick a port: %w", err)
	}
	debug, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("pick a port: %w", err)
	}
	c := &controller{addr: addr, debug: debug, dataDir: filepath.Join(cfg.WorkDir, "controller"), done: make(chan struct{})}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(cfg.WorkDir, "controller.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// The load campaign aims at the benchmarking range 198.18.0.0/15.
	args := append([]string{"--data", c.dataDir, "--listen", addr, "--log-level", "warn", "--allow-special-ranges", "--debug-addr", debug}, cfg.ControllerArgs...)
	c.cmd = exec.Command(filepath.Join(cfg.BinDir, "vantage-controller"), args...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start controller: %w", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ca, e1 := os.ReadFile(filepath.Join(c.dataDir, "ca.pem"))
		tok, e2 := os.ReadFile(filepath.Join(c.dataDir, "admin.token"))
		if e1 == nil && e2 == nil && len(ca) > 0 && len(tok) > 0 {
			c.caPEM, c.token = ca, strings.TrimSpace(string(tok))
			break
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("controller exited at start (see %s)", logf.Name())
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, errors.New("controller did not start within 20s")
		}
	}
	return c, nil
}

// stop ends the controller with SIGTERM (graceful stop) and waits.
func (c *controller) stop() error {
	c.stopOnce.Do(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
			c.stopErr = errors.New("controller ignored SIGTERM for 30s")
		}
	})
	return c.stopErr
}

func (c *controller) rss() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// ackBuckets reads the controller's commit->ack histogram.
func (c *controller) ackBuckets() ([ingest.AckBuckets]uint64, error) {
	var v struct {
		B [ingest.AckBuckets]uint64 `json:"ack_us_log2_buckets"`
	}
	resp, err := http.Get("http://" + c.debug + "/debug/ingest")
	if err != nil {
		return v.B, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v.B, err
}

// cpu is the controller's user+system CPU time so far (/proc/<pid>/stat,
// in clock ticks of 1/100 s).
func (c *controller) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" closing the command name: state is field 3,
	// utime 14 and stime 15.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func (c *controller) tlsConfig(certs ...tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, Certificates: certs, ServerName: "127.0.0.1"}
}

func (c *controller) dial(certs ...tls.Certificate) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+c.addr, grpc.WithTransportCredentials(credentials.NewTLS(c.tlsConfig(certs...))))
}
