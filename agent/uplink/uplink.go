// Package uplink is the agent's only connection to the controller. The agent
// only dials out. It enrols once (a join token and a CSR over TLS pinned by
// the controller's CA hash, as kubeadm join does), then keeps one long-lived
// mTLS Session stream: Hello first, then numbered result batches and
// heartbeats up; assignments, acks, triggers and throttles down.
//
// Delivery is at-least-once, and its books are the spool's: the scheduler
// submits results to a spool.Outbox, which numbers them and keeps them
// until acked; the uplink only takes batches from it, sends them, and
// hands it the acks. So results survive a broken stream (and, with the disk
// spool, a restart) and are re-sent after reconnecting, results of earlier
// epochs first with their original (epoch, seq). The controller dedupes on
// (agent, epoch, seq), so a batch whose ack was lost is stored once. The
// agent never names itself in a message: the controller takes its id from
// the client certificate.
//
// The stream is served by a send loop and a receive loop joined by an
// errgroup, as etcd's watch stream is; a failure of either ends the session,
// and Run opens a new one after a backoff with jitter. There is one backoff
// per cause, never two stacked: opening a session waits for the connection
// (gRPC wait-for-ready), whose reconnect attempts gRPC paces (at most
// ConnectBackoffMax apart, jittered), so an agent is back within about a
// second of its controller listening again; Run's own backoff (BackoffMin
// to BackoffMax) only paces sessions that opened and then failed. An
// overloaded controller is obeyed: a Throttle{retry_after_ms} pauses
// uploads, and a session ended with RESOURCE_EXHAUSTED delays the reconnect
// by the retry-after it carries (trailer "retry-after-ms" or a RetryInfo
// detail), whichever loop noticed the end first.
package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/agent/spool"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Handler receives what the controller sends down. The scheduler
// implements it in the agent.
type Handler interface {
	// Apply puts an assignment in force; an error refuses all of it.
	Apply(ctx context.Context, a *vantagev1.Assignment) error
	// Trigger runs one-off probes; an error refuses all of it.
	Trigger(ctx context.Context, tr *vantagev1.Trigger) error
	// AssignmentVersion is the version in force (0 for none), for Hello.
	AssignmentVersion() uint64
}

// Counters are agent-wide totals reported in heartbeats.
type Counters interface {
	ProbesSent() uint64
	PacketsIgnored() uint64
}

// Defaults for Config fields left zero.
const (
	DefaultBatchInterval     = 500 * time.Millisecond
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultBackoffMin        = 250 * time.Millisecond
	DefaultBackoffMax        = 10 * time.Second
	// DefaultConnectBackoffMax caps gRPC's pause between connection
	// attempts (jittered by 20%), so every agent tries again within about
	// a second once its controller is back; the attempts of many agents,
	// started at different moments and jittered each time, spread over
	// that second rather than arriving at once.
	DefaultConnectBackoffMax = time.Second
	// DefaultOpenTimeout bounds the wait for a connection when opening a
	// session; then the agent logs that the controller is unreachable
	// (with gRPC's last connection error) and keeps waiting.
	DefaultOpenTimeout   = 30 * time.Second
	DefaultSpoolCapacity = 200_000
	// DefaultAckTimeout: a batch unacknowledged this long ends the session
	// (the results are re-sent on the next one). The controller acks after
	// its commit and refuses work (Throttle, RESOURCE_EXHAUSTED) well before
	// its commits take this long, so a silent wait means the stream is
	// wedged somewhere gRPC's keepalive cannot see.
	DefaultAckTimeout = 60 * time.Second
	// flushTimeout bounds the final flush on shutdown.
	flushTimeout = 3 * time.Second
	// MaxRetryAfter caps a retry-after the controller asks for.
	MaxRetryAfter = 5 * time.Minute
	// RetryAfterTrailer is the trailer key carrying a retry-after in
	// milliseconds on a RESOURCE_EXHAUSTED status.
	RetryAfterTrailer = "retry-after-ms"
)

// Config wires a Client.
type Config struct {
	// Controller is host:port.
	Controller   string
	Identity     *Identity
	AgentVersion string
	Labels       map[string]string
	Capabilities *vantagev1.Capabilities
	Handler      Handler
	// Counters may be nil.
	Counters Counters
	// Outbox is where the results to send wait (the scheduler submits to
	// it); it defaults to one over an in-memory spool of
	// DefaultSpoolCapacity.
	Outbox *spool.Outbox
	Logger *slog.Logger

	BatchInterval     time.Duration
	HeartbeatInterval time.Duration
	BackoffMin        time.Duration
	BackoffMax        time.Duration
	// ConnectBackoffMax caps the pause between connection attempts
	// (DefaultConnectBackoffMax); OpenTimeout bounds one wait for a
	// connection (DefaultOpenTimeout).
	ConnectBackoffMax time.Duration
	OpenTimeout       time.Duration
	AckTimeout        time.Duration

	// StateDir is where a renewed certificate is written (key.pem,
	// cert.pem, ca.pem); empty disables certificate renewal.
	StateDir string
	// RenewBefore: the certificate is renewed once it expires within this
	// (DefaultRenewBefore); RenewCheck is how often that is checked
	// (DefaultRenewCheck). The controller may also advise a renewal.
	RenewBefore time.Duration
	RenewCheck  time.Duration
}

// Client is the agent's uplink; Run owns the connection. What it sends
// and what is in flight is the Outbox's to keep.
type Client struct {
	cfg  Config
	host string
	conn *grpc.ClientConn // replaced by Run, between sessions, after a renewal
	api  vantagev1.AgentServiceClient
	log  *slog.Logger
	out  *spool.Outbox

	// ident is the identity new connections use (renew.go).
	ident atomic.Pointer[Identity]
	// renewNow carries a controller's RenewAdvice to the renew loop.
	renewNow chan string

	throttle atomic.Int64 // unix nanos before which no batch is sent
	sessions atomic.Uint64
	// retryAfter is the delay a RESOURCE_EXHAUSTED status asked for (nanos).
	retryAfter atomic.Int64
}

// New builds a Client; it does not connect until Run.
func New(cfg Config) (*Client, error) {
	if cfg.Identity == nil {
		return nil, fmt.Errorf("uplink: identity: missing: %w", ErrNotEnrolled)
	}
	host, _, err := net.SplitHostPort(cfg.Controller)
	if err != nil {
		return nil, fmt.Errorf("uplink: --controller %q: want host:port: %w", cfg.Controller, ErrBadFlag)
	}
	if cfg.Handler == nil {
		return nil, errors.New("uplink: handler: missing")
	}
	if cfg.BatchInterval <= 0 {
		cfg.BatchInterval = DefaultBatchInterval
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.ConnectBackoffMax <= 0 {
		cfg.ConnectBackoffMax = DefaultConnectBackoffMax
	}
	if cfg.OpenTimeout <= 0 {
		cfg.OpenTimeout = DefaultOpenTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Outbox == nil {
		cfg.Outbox = spool.NewOutbox(spool.NewMemory(cfg.Identity.Epoch, DefaultSpoolCapacity), spool.OutboxOptions{Logger: cfg.Logger})
	}
	if cfg.RenewBefore <= 0 {
		cfg.RenewBefore = DefaultRenewBefore
	}
	if cfg.RenewCheck <= 0 {
		cfg.RenewCheck = DefaultRenewCheck
	}
	conn, err := dial(cfg, host, cfg.Identity)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg: cfg, host: host, conn: conn, api: vantagev1.NewAgentServiceClient(conn),
		log:      cfg.Logger.With(slog.String("agent_id", cfg.Identity.AgentID), slog.Uint64("epoch", cfg.Identity.Epoch)),
		out:      cfg.Outbox,
		renewNow: make(chan string, 1),
	}
	c.ident.Store(cfg.Identity)
	return c, nil
}

// dial makes the controller connection with id's certificate and CAs.
func dial(cfg Config, host string, id *Identity) (*grpc.ClientConn, error) {
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		ServerName:   host,
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.CAs,
	}
	conn, err := grpc.NewClient(cfg.Controller,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		// The controller enforces a keepalive MinTime of 10s.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 20 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		// gRPC's own reconnect backoff grows to 120s and a connection attempt
		// may wait 20s: after a long outage the agent would sit out minutes
		// of a healthy link. Sessions wait for this connection (Run), so its
		// backoff alone decides how soon an agent is back.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay: min(cfg.BackoffMin, cfg.ConnectBackoffMax), Multiplier: 1.6, Jitter: 0.2, MaxDelay: cfg.ConnectBackoffMax,
			},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("uplink: dial %s: %w", cfg.Controller, err)
	}
	return conn, nil
}

// Submit is Outbox().Submit, for a producer that holds only the client
// (tests); the agent's scheduler submits to the outbox itself.
func (c *Client) Submit(r *vantagev1.ProbeResult) { c.out.Submit(r) }

// Outbox is where the client takes its batches from.
func (c *Client) Outbox() *spool.Outbox { return c.out }

// Sessions is how many sessions have been opened (Hello sent) since start.
func (c *Client) Sessions() uint64 { return c.sessions.Load() }

// Produced is the number of results numbered in this epoch (its last seq).
func (c *Client) Produced() uint64 { return c.out.Produced() }

// Acked is the highest (epoch, seq) the controller acknowledged.
func (c *Client) Acked() spool.Key { return c.out.Acked() }

var errSessionClosed = errors.New("controller closed the session")

// errOpenTimeout: no connection to the controller within OpenTimeout.
var errOpenTimeout = errors.New("no connection to the controller")

// session runs one Session stream until it fails or ctx ends. opened is
// when its Hello went out (zero if it never did).
func (c *Client) session(ctx context.Context) (opened time.Time, err error) {
	// The stream outlives ctx by the final flush; it is cancelled when the
	// send loop returns, or by ctx until Hello is out, or when no
	// connection came within OpenTimeout.
	sctx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStream()
	stopEarly := context.AfterFunc(ctx, cancelStream)
	var timedOut atomic.Bool
	openTimer := time.AfterFunc(c.cfg.OpenTimeout, func() {
		timedOut.Store(true)
		cancelStream()
	})
	// Wait for the connection rather than fail fast: gRPC's reconnect
	// backoff paces the attempts, and no second backoff is added on top.
	stream, err := c.api.Session(sctx, grpc.WaitForReady(true))
	if err != nil {
		stopEarly()
		if openTimer.Stop() || !timedOut.Load() {
			return time.Time{}, fmt.Errorf("open session: %w", err)
		}
		return time.Time{}, fmt.Errorf("%w within %s: %w", errOpenTimeout, c.cfg.OpenTimeout, err)
	}
	hello := &vantagev1.Hello{
		AgentVersion:      c.cfg.AgentVersion,
		Capabilities:      c.cfg.Capabilities,
		Labels:            c.cfg.Labels,
		Epoch:             c.cfg.Identity.Epoch,
		Spool:             c.out.State(),
		AssignmentVersion: c.cfg.Handler.AssignmentVersion(),
	}
	if err := stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: hello}}); err != nil {
		stopEarly()
		openTimer.Stop()
		return time.Time{}, fmt.Errorf("send hello: %w", err)
	}
	if !openTimer.Stop() {
		stopEarly()
		return time.Time{}, fmt.Errorf("%w within %s: hello not sent", errOpenTimeout, c.cfg.OpenTimeout)
	}
	if !stopEarly() {
		return time.Time{}, ctx.Err()
	}
	opened = time.Now()
	c.sessions.Add(1)
	c.out.Resend() // nothing sent on an earlier stream will be acked now
	c.log.Info("session open", slog.Uint64("pending", hello.GetSpool().GetPendingResults()))

	g, gctx := errgroup.WithContext(sctx)
	g.Go(func() error { return c.recvLoop(gctx, stream) })
	g.Go(func() error { return c.ackWatchdog(gctx, cancelStream) })
	g.Go(func() error { return c.renewLoop(gctx) })
	g.Go(func() error {
		defer cancelStream()
		return c.sendLoop(ctx, gctx, stream)
	})
	return opened, g.Wait()
}

// recvLoop handles everything the controller sends.
func (c *Client) recvLoop(ctx context.Context, stream vantagev1.AgentService_SessionClient) error {
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errSessionClosed
		}
		if err != nil {
			// Kept for Run whichever loop's error ends the session: the
			// send loop often sees the end first, as a bare io.EOF.
			if status.Code(err) == codes.ResourceExhausted {
				c.retryAfter.Store(int64(max(RetryAfter(err), trailerRetryAfter(stream))))
			}
			return fmt.Errorf("recv: %w", err)
		}
		switch m := msg.GetMsg().(type) {
		case *vantagev1.ControllerMessage_Ack:
			c.ack(m.Ack)
		case *vantagev1.ControllerMessage_Assignment:
			if err := c.cfg.Handler.Apply(ctx, m.Assignment); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c.log.Warn("assignment refused", slog.Uint64("version", m.Assignment.GetVersion()), slog.Any("error", err))
				c.out.ReportStatus(&vantagev1.TaskStatus{Refused: true, Reason: fmt.Sprintf("assignment version %d refused: %v", m.Assignment.GetVersion(), err)})
			}
		case *vantagev1.ControllerMessage_Trigger:
			if err := c.cfg.Handler.Trigger(ctx, m.Trigger); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c.log.Warn("trigger refused", slog.String("trigger_id", m.Trigger.GetId()), slog.Any("error", err))
				for _, t := range m.Trigger.GetTasks() {
					c.out.ReportStatus(&vantagev1.TaskStatus{TaskId: t.GetId(), Refused: true, Reason: fmt.Sprintf("trigger %s refused: %v", m.Trigger.GetId(), err)})
				}
			}
		case *vantagev1.ControllerMessage_Renew:
			c.log.Info("certificate renewal advised by controller", slog.String("reason", m.Renew.GetReason()))
			select {
			case c.renewNow <- m.Renew.GetReason():
			default: // one is pending already
			}
		case *vantagev1.ControllerMessage_Throttle:
			d := min(time.Duration(m.Throttle.GetRetryAfterMs())*time.Millisecond, MaxRetryAfter)
			c.throttle.Store(time.Now().Add(d).UnixNano())
			c.log.Info("throttled by controller", slog.Duration("retry_after", d), slog.String("reason", m.Throttle.GetReason()))
		default:
			c.log.Debug("unknown controller message ignored")
		}
	}
}

// ack hands an Ack to the outbox, which forgets what it covers. An ack
// matching nothing sent is ignored: the agent never trusts an ack beyond
// what it sent.
func (c *Client) ack(a *vantagev1.Ack) {
	matched, err := c.out.Ack(a)
	if !matched {
		c.log.Warn("ack for nothing in flight ignored", slog.Uint64("ack_epoch", a.GetEpoch()), slog.Uint64("ack_seq", a.GetUpToSeq()))
		return
	}
	if err != nil {
		c.log.Error("spool ack failed; results will be re-sent", slog.Any("error", err))
	}
}

// sender is the send loop of one stream.
type sender struct {
	c      *Client
	stream vantagev1.AgentService_SessionClient
}

// sendLoop is the only goroutine that sends on the stream.
func (c *Client) sendLoop(parent, ctx context.Context, stream vantagev1.AgentService_SessionClient) error {
	s := &sender{c: c, stream: stream}
	batch := time.NewTicker(c.cfg.BatchInterval)
	defer batch.Stop()
	hb := time.NewTicker(c.cfg.HeartbeatInterval)
	defer hb.Stop()
	for {
		select {
		case <-parent.Done():
			return s.final(ctx)
		case <-ctx.Done():
			return ctx.Err()
		case <-batch.C:
			if err := s.flush(false); err != nil {
				return err
			}
		case <-c.out.Ready():
			if err := s.flush(false); err != nil {
				return err
			}
		case st := <-c.out.Statuses():
			if err := stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_TaskStatus{TaskStatus: st}}); err != nil {
				return fmt.Errorf("send task status: %w", err)
			}
		case <-hb.C:
			if err := stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Heartbeat{Heartbeat: c.heartbeat()}}); err != nil {
				return fmt.Errorf("send heartbeat: %w", err)
			}
		}
	}
}

// ackWatchdog ends the stream when a batch goes unacknowledged for
// AckTimeout. It runs beside the send loop because that loop may be the
// thing stuck (a Send blocked on flow control toward a controller that
// stopped reading).
func (c *Client) ackWatchdog(ctx context.Context, cancelStream context.CancelFunc) error {
	t := time.NewTicker(min(time.Second, c.cfg.AckTimeout/4))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.ackOverdue(); err != nil {
				cancelStream()
				return err
			}
		}
	}
}

// errAckTimeout ends a session whose oldest batch went unacknowledged for
// AckTimeout.
var errAckTimeout = errors.New("no ack from the controller")

// ackOverdue reports errAckTimeout when the oldest batch in flight was sent
// more than AckTimeout ago.
func (c *Client) ackOverdue() error {
	at, end, ok := c.out.OldestInFlight()
	if !ok {
		return nil
	}
	if age := time.Since(at); age > c.cfg.AckTimeout {
		return fmt.Errorf("%w for %s (batch up to seq %d, timeout %s)", errAckTimeout, age.Round(time.Second), end.Seq, c.cfg.AckTimeout)
	}
	return nil
}

func (c *Client) heartbeat() *vantagev1.Heartbeat {
	h := &vantagev1.Heartbeat{SentAt: timestamppb.Now(), Spool: c.out.State()}
	if c.cfg.Counters != nil {
		h.ProbesSent = c.cfg.Counters.ProbesSent()
		h.PacketsIgnored = c.cfg.Counters.PacketsIgnored()
	}
	return h
}

// flush sends what the outbox hands out, batch after batch, unless the
// controller asked to wait.
func (s *sender) flush(ignoreThrottle bool) error {
	for {
		if !ignoreThrottle && time.Now().UnixNano() < s.c.throttle.Load() {
			return nil
		}
		b, more, err := s.c.out.Next()
		if err != nil || b == nil {
			return err
		}
		if err := s.stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			if len(b.GetResults()) == 0 {
				return fmt.Errorf("send gaps: %w", err)
			}
			return fmt.Errorf("send results: %w", err)
		}
		if !more {
			return nil
		}
	}
}

// final flushes on shutdown, half-closes the stream and waits a little for
// the acks of what was sent.
func (s *sender) final(ctx context.Context) error {
	if err := s.flush(true); err != nil {
		return err
	}
	_ = s.stream.CloseSend()
	wctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	if !s.c.out.WaitAcked(wctx) && ctx.Err() == nil {
		a, sent := s.c.out.Acked(), s.c.out.Sent()
		s.c.log.Warn("shutdown before all results were acknowledged",
			slog.Uint64("acked_epoch", a.Epoch), slog.Uint64("acked_seq", a.Seq),
			slog.Uint64("sent_epoch", sent.Epoch), slog.Uint64("sent_seq", sent.Seq))
	}
	return nil
}
