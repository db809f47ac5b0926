// Package demo runs vantage for real inside the namespace lab: it builds a
// small internet (deploy/lab), starts a controller and one agent per vantage
// namespace as separate processes, and talks to the controller over gRPC the
// way an operator would. `make demo` and the end-to-end tests share it, so
// the story the demo tells is the one the tests assert.
package demo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/vantage-net/vantage/deploy/lab"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ControllerPort is where the controller listens inside its namespace.
const ControllerPort = 7443

// Config says where the binaries are and how to name things.
type Config struct {
	// BinDir holds vantage-controller and vantage-agent.
	BinDir string
	// Prefix names the lab's namespaces; distinct prefixes never clash.
	Prefix string
	// WorkDir receives the controller data dir, agent state dirs and logs.
	WorkDir string
	Logger  *slog.Logger
	// ControllerArgs and AgentArgs are extra flags for every controller and
	// agent start (e.g. "--spool-bytes", "65536").
	ControllerArgs []string
	AgentArgs      []string
	// Agents are the vantages Start starts an agent in; nil means every
	// vantage. Others can be started later with StartAgent.
	Agents []string
	// BGP runs the lab in BGP mode (BIRD in every router) and the
	// controller with its collector peering with the lab's routers.
	BGP bool
	// Web serves the dashboard (WebHTTPS or WebPlain; "" for none) on the
	// controller namespace's loopback, forwarded to 127.0.0.1:WebHostPort
	// on the host (0: any free port). See WebURL.
	Web         string
	WebHostPort int
}

// Harness is a running lab with a controller and agents.
type Harness struct {
	Lab      *lab.Lab
	Operator vantagev1.OperatorServiceClient
	Agent    vantagev1.AgentServiceClient

	cfg     Config
	log     *slog.Logger
	conn    *grpc.ClientConn
	token   string
	caPEM   []byte
	caHash  string
	join    string
	dataDir string
	web     *forward // nil unless Config.Web

	mu    sync.Mutex
	procs map[string]*proc // node -> process
}

// proc is one started process; done closes once it has been reaped, and
// err is then its exit (nil for status 0).
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start brings up the lab, the controller and an agent in every vantage
// namespace. On error everything already started is torn down.
func Start(ctx context.Context, cfg Config) (h *Harness, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	for _, bin := range []string{"vantage-controller", "vantage-agent"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, bin)); err != nil {
			return nil, fmt.Errorf("binary %s: %w (run `make build`)", bin, err)
		}
	}
	topo, err := lab.DefaultTopology()
	if err != nil {
		return nil, fmt.Errorf("load lab topology: %w", err)
	}
	l, err := lab.Up(ctx, topo, lab.Options{Prefix: cfg.Prefix, Logger: cfg.Logger, BGP: cfg.BGP})
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	h = &Harness{
		Lab:     l,
		cfg:     cfg,
		log:     cfg.Logger,
		dataDir: filepath.Join(cfg.WorkDir, "controller"),
		procs:   map[string]*proc{},
	}
	// "return nil, err" sets h to nil before deferred calls run, so the
	// cleanup holds its own reference.
	started := h
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	if err := h.startController(ctx); err != nil {
		return nil, err
	}
	if err := h.connect(ctx); err != nil {
		return nil, err
	}
	if cfg.Web != "" {
		if err := h.startWebForward(cfg.WebHostPort); err != nil {
			return nil, err
		}
	}
	tok, err := h.Operator.CreateJoinToken(h.ctx(ctx), &vantagev1.CreateJoinTokenRequest{TtlS: 3600})
	if err != nil {
		return nil, fmt.Errorf("create join token: %w", err)
	}
	h.join, h.caHash = tok.GetToken(), tok.GetCaHash()
	agents := cfg.Agents
	if agents == nil {
		agents = l.Vantages()
	}
	for _, v := range agents {
		if err := h.StartAgent(ctx, v); err != nil {
			return nil, err
		}
	}
	// As an operator would: campaigns are applied once the agents have
	// enrolled, so the controller can check a campaign's quorum against them.
	if err := h.WaitAgents(ctx, agents...); err != nil {
		return nil, err
	}
	return h, nil
}

// WaitAgents waits until the agents of these vantages (by name) have
// enrolled and hold a live session, polling ListAgents, for at most 60s.
func (h *Harness) WaitAgents(ctx context.Context, vantages ...string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := h.Operator.ListAgents(h.ctx(ctx), &vantagev1.ListAgentsRequest{})
		missing := slices.Clone(vantages)
		if err == nil {
			for _, a := range resp.GetAgents() {
				if a.GetConnected() && a.GetState() == vantagev1.AgentState_AGENT_STATE_ACTIVE {
					missing = slices.DeleteFunc(missing, func(v string) bool { return v == a.GetName() })
				}
			}
			if len(missing) == 0 {
				return nil
			}
		}
		for _, v := range missing {
			if perr := h.exited(v); perr != nil {
				return perr
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agents %v not enrolled and connected after 60s (last error: %v)", missing, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ControllerAddr is the controller's address as agents dial it.
func (h *Harness) ControllerAddr() string {
	return fmt.Sprintf("%s:%d", h.Lab.Addr("controller"), ControllerPort)
}

// DataDir is the controller's data directory.
func (h *Harness) DataDir() string { return h.dataDir }

// AgentStateDir is the state directory of the agent in a vantage (its
// spool is in "spool" under it).
func (h *Harness) AgentStateDir(vantage string) string {
	return filepath.Join(h.cfg.WorkDir, "agent-"+vantage)
}

// LogPath is where a node's process ("controller" or a vantage) logs.
func (h *Harness) LogPath(node string) string { return filepath.Join(h.cfg.WorkDir, node+".log") }

// Pid is the process id of a node's running process ("controller" or a
// vantage), 0 when none runs. "ip netns exec" execs the binary, so this is
// the controller's or agent's own pid.
func (h *Harness) Pid(node string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p := h.procs[node]; p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// CAPEM is the controller's CA certificate.
func (h *Harness) CAPEM() []byte { return h.caPEM }

// Dial opens another gRPC connection to the controller from inside the
// lab, with the given extra options (for example client certificates).
func (h *Harness) Dial(tlsCfg *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts = append([]grpc.DialOption{
		grpc.WithContextDialer(namespaceDialer(h.Lab.Namespace("controller"))),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		// The tests stop and restart the controller: reconnect within a
		// second of it coming back, not after gRPC's default backoff (up
		// to 120s), during which calls fail fast with Unavailable.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}, opts...)
	return grpc.NewClient("passthrough:///"+h.ControllerAddr(), opts...)
}

// TLSConfig trusts the controller's CA.
func (h *Harness) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(h.caPEM)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
}

// ctx adds the admin bearer token to an outgoing call.
func (h *Harness) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+h.token)
}

// Authed is ctx with the admin token attached, for callers of Operator.
func (h *Harness) Authed(ctx context.Context) context.Context { return h.ctx(ctx) }

func (h *Harness) startController(ctx context.Context) error {
	if err := os.MkdirAll(h.dataDir, 0o700); err != nil {
		return fmt.Errorf("controller data dir: %w", err)
	}
	args := []string{
		"--data", h.dataDir,
		"--listen", h.ControllerAddr(),
		"--evaluate-every", "250ms",
		// The lab's networks are benchmarking and documentation ranges.
		"--allow-special-ranges",
	}
	args = append(append(append(args, h.collectorArgs()...), h.webArgs()...), h.cfg.ControllerArgs...)
	if err := h.startProcess(ctx, "controller", filepath.Join(h.cfg.BinDir, "vantage-controller"), args...); err != nil {
		return err
	}
	// The controller writes its CA and admin token at first start.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ca, errCA := os.ReadFile(filepath.Join(h.dataDir, "ca.pem"))
		tok, errTok := os.ReadFile(filepath.Join(h.dataDir, "admin.token"))
		if errCA == nil && errTok == nil && len(ca) > 0 && len(tok) > 0 {
			h.caPEM, h.token = ca, strings.TrimSpace(string(tok))
			return nil
		}
		if err := h.exited("controller"); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("controller did not write ca.pem and admin.token within 20s (see controller.log)")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *Harness) connect(ctx context.Context) error {
	conn, err := h.Dial(h.TLSConfig())
	if err != nil {
		return fmt.Errorf("dial controller: %w", err)
	}
	h.conn = conn
	h.Operator = vantagev1.NewOperatorServiceClient(conn)
	h.Agent = vantagev1.NewAgentServiceClient(conn)
	return h.waitServing(ctx)
}

// waitServing polls the gRPC health service until the controller serves.
func (h *Harness) waitServing(ctx context.Context) error {
	health := healthpb.NewHealthClient(h.conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := health.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if perr := h.exited("controller"); perr != nil {
			return perr
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("controller not serving after 20s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StartAgent starts (or restarts) the agent in a vantage namespace, with
// Config.AgentArgs and then extra appended to its flags. Its state directory
// survives restarts, so a restarted agent reuses its certificate and spool.
func (h *Harness) StartAgent(ctx context.Context, vantage string, extra ...string) error {
	args := []string{
		"--controller", h.ControllerAddr(),
		"--state", h.AgentStateDir(vantage),
		"--join-token", h.join,
		"--ca-hash", h.caHash,
		"--name", vantage,
		"--label", "role=vps",
		"--label", "provider=lab-" + strings.TrimPrefix(vantage, "vantage-"),
		"--allow-special-ranges",
	}
	args = append(append(args, h.cfg.AgentArgs...), extra...)
	return h.startProcess(ctx, vantage, filepath.Join(h.cfg.BinDir, "vantage-agent"), args...)
}

// StopAgent stops one agent with SIGTERM.
func (h *Harness) StopAgent(vantage string) error { return h.stopProcess(vantage) }

// KillNode sends SIGKILL to a node's process ("controller" or a vantage) and
// waits until it is gone: a crash, with no chance to flush or say goodbye.
func (h *Harness) KillNode(node string) error { return h.endNode(node, syscall.SIGKILL) }

// DumpNode sends SIGQUIT to a node's process: the Go runtime writes every
// goroutine's stack to the node's log and exits. Tests call it when they
// fail, so a stuck process says where it is stuck.
func (h *Harness) DumpNode(node string) error { return h.endNode(node, syscall.SIGQUIT) }

// DumpAll sends SIGQUIT to every node's process at once (the controller
// and each vantage), so each stack shows the process as it was, not after
// another one's dump ended its sessions, and waits for them. It returns
// why a node has no dump (nil when it has one).
func (h *Harness) DumpAll() map[string]error {
	nodes := append([]string{"controller"}, h.Lab.Vantages()...)
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = h.DumpNode(n) })
	}
	wg.Wait()
	out := make(map[string]error, len(nodes))
	for i, n := range nodes {
		out[n] = errs[i]
	}
	return out
}

// endNode sends sig to a node's process group and waits until it is gone.
func (h *Harness) endNode(node string, sig syscall.Signal) error {
	h.mu.Lock()
	p := h.procs[node]
	delete(h.procs, node)
	h.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s is not running", node)
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s had already exited: %v", node, exitString(p.err))
	default:
	}
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, sig); err != nil {
		return fmt.Errorf("signal %s to %s: %w", sig, node, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return fmt.Errorf("%s outlived %s for 10s; killed", node, sig)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// StartController starts the controller again (after KillNode or
// StopController) on the same data directory and waits until it serves. The
// existing Operator client reconnects by itself.
func (h *Harness) StartController(ctx context.Context) error {
	if err := h.startController(ctx); err != nil {
		return err
	}
	return h.waitServing(ctx)
}

// StopController stops the controller with SIGTERM (graceful stop).
func (h *Harness) StopController() error { return h.stopProcess("controller") }

func (h *Harness) startProcess(ctx context.Context, node, bin string, args ...string) error {
	logPath := h.LogPath(node)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file for %s: %w", node, err)
	}
	// Not tied to ctx: processes are stopped by Close, gracefully.
	cmd := h.Lab.Command(context.WithoutCancel(ctx), node, bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig: if the harness dies, its children die with it. StartChild
	// keeps the forking thread alive for as long as the child lives, so
	// nothing else sends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	waited, err := StartChild(cmd)
	logFile.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", node, err)
	}
	h.log.Debug("process started", slog.String("node", node), slog.Int("pid", cmd.Process.Pid), slog.String("log", logPath))
	p := &proc{cmd: cmd, done: make(chan struct{})}
	h.mu.Lock()
	h.procs[node] = p
	h.mu.Unlock()
	go func() {
		// Reaps the process and notes how it ended in its log, so a log
		// that stops short says why (a signal, an exit status).
		p.err = <-waited
		close(p.done)
		noteExit(logPath, node, cmd.Process.Pid, p.err)
	}()
	return nil
}

// noteExit appends how a process ended to its log.
func noteExit(logPath, node string, pid int, err error) {
	f, ferr := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0o644)
	if ferr != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "harness: %s %s (pid %d) exited: %s\n", time.Now().Format(time.RFC3339Nano), node, pid, exitString(err))
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// exited reports an error if the node's process has already died.
func (h *Harness) exited(node string) error {
	h.mu.Lock()
	p := h.procs[node]
	h.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s exited early: %s (see %s)", node, exitString(p.err), filepath.Join(h.cfg.WorkDir, node+".log"))
	default:
		return nil
	}
}

func (h *Harness) stopProcess(node string) error {
	h.mu.Lock()
	p := h.procs[node]
	delete(h.procs, node)
	h.mu.Unlock()
	if p == nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(-pgid, 0) != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return fmt.Errorf("%s ignored SIGTERM for 10s; killed", node)
}

// Close stops agents, then the controller, then removes the lab.
func (h *Harness) Close() error {
	var errs []error
	if h.Lab != nil {
		for _, v := range h.Lab.Vantages() {
			errs = append(errs, h.stopProcess(v))
		}
	}
	if h.conn != nil {
		errs = append(errs, h.conn.Close())
	}
	if h.web != nil {
		errs = append(errs, h.web.Close())
	}
	errs = append(errs, h.stopProcess("controller"))
	if h.Lab != nil {
		errs = append(errs, h.Lab.Down())
	}
	return errors.Join(errs...)
}
