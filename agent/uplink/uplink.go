// Package uplink is the agent's only connection to the controller. The agent
// only dials out. It enrols once (a join token and a CSR over TLS pinned by
// the controller's CA hash, as kubeadm join does), then keeps one long-lived
// mTLS Session stream: Hello first, then numbered result batches and
// heartbeats up; assignments, acks, triggers and throttles down.
//
// Delivery is at-least-once: every result gets the next sequence number of
// the agent's epoch and stays in the spool until the controller acks it, so
// results survive a broken stream (and, with the disk spool, a restart) and
// are re-sent after reconnecting, results of earlier epochs first with their
// original (epoch, seq). The controller dedupes on (agent, epoch, seq), so
// a batch whose ack was lost is stored once. The agent never names itself
// in a message: the controller takes its id from the client certificate.
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
	"sync"
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
	DefaultBatchMax          = 500
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
	// statusQueue bounds TaskStatus messages waiting for the send loop.
	statusQueue = 1024
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
	// Spool defaults to an in-memory spool of DefaultSpoolCapacity.
	Spool  spool.Spool
	Logger *slog.Logger

	BatchInterval     time.Duration
	BatchMax          int
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

// Client is the agent's uplink. Submit and ReportStatus may be called from
// any goroutine; Run owns the connection.
type Client struct {
	cfg   Config
	host  string
	conn  *grpc.ClientConn // replaced by Run, between sessions, after a renewal
	api   vantagev1.AgentServiceClient
	log   *slog.Logger
	spool spool.Spool

	// ident is the identity new connections use (renew.go).
	ident atomic.Pointer[Identity]
	// renewNow carries a controller's RenewAdvice to the renew loop.
	renewNow chan string

	seqMu sync.Mutex
	seq   uint64

	wake     chan struct{} // a full batch is waiting
	unsent   atomic.Int64  // results submitted since the last flush
	statuses chan *vantagev1.TaskStatus
	acked    chan struct{} // an Ack arrived
	throttle atomic.Int64  // unix nanos before which no batch is sent
	sessions atomic.Uint64
	// retryAfter is the delay a RESOURCE_EXHAUSTED status asked for (nanos).
	retryAfter atomic.Int64

	ackMu    sync.Mutex
	ackedKey spool.Key  // highest key acknowledged
	inflight []inflight // batches sent on the current stream, not yet acked
	acks     uint64     // acks applied
}

// inflight is a batch sent and not yet acknowledged.
type inflight struct {
	end  spool.Key
	gaps []*vantagev1.Gap
	sent time.Time
	// gapsOnly: a batch of gaps without results, acked with up_to_seq 0.
	gapsOnly bool
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
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = DefaultBatchMax
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
	if cfg.Spool == nil {
		cfg.Spool = spool.NewMemory(cfg.Identity.Epoch, DefaultSpoolCapacity)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
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
		spool:    cfg.Spool,
		wake:     make(chan struct{}, 1),
		statuses: make(chan *vantagev1.TaskStatus, statusQueue),
		acked:    make(chan struct{}, 1),
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

// Submit numbers r with the epoch's next sequence number and spools it.
// It never blocks on the network.
func (c *Client) Submit(r *vantagev1.ProbeResult) {
	c.seqMu.Lock()
	c.seq++
	r.Seq = c.seq
	err := c.spool.Append(r)
	if err != nil {
		c.seq-- // the seq stays free: the controller never sees a hole
	}
	c.seqMu.Unlock()
	if err != nil {
		c.log.Error("spool append failed; result lost", slog.String("task_id", r.GetTaskId()), slog.String("error", err.Error()))
		return
	}
	if c.unsent.Add(1) >= int64(c.cfg.BatchMax) {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// ReportStatus queues a TaskStatus (refusal or fallback) for the controller.
// Statuses are not spooled: when the queue is full the newest is dropped.
func (c *Client) ReportStatus(s *vantagev1.TaskStatus) {
	select {
	case c.statuses <- s:
	default:
		c.log.Warn("task status dropped: queue full", slog.String("task_id", s.GetTaskId()))
	}
}

// Sessions is how many sessions have been opened (Hello sent) since start.
func (c *Client) Sessions() uint64 { return c.sessions.Load() }

// Produced is the number of results numbered in this epoch (its last seq).
func (c *Client) Produced() uint64 {
	c.seqMu.Lock()
	defer c.seqMu.Unlock()
	return c.seq
}

// Acked is the highest (epoch, seq) the controller acknowledged.
func (c *Client) Acked() spool.Key {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	return c.ackedKey
}

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
		Spool:             c.spool.State(),
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
	c.ackMu.Lock()
	c.inflight = nil // nothing sent on an earlier stream will be acked now
	c.ackMu.Unlock()
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
				c.log.Warn("assignment refused", slog.Uint64("version", m.Assignment.GetVersion()), slog.String("reason", err.Error()))
				c.ReportStatus(&vantagev1.TaskStatus{Refused: true, Reason: fmt.Sprintf("assignment version %d refused: %v", m.Assignment.GetVersion(), err)})
			}
		case *vantagev1.ControllerMessage_Trigger:
			if err := c.cfg.Handler.Trigger(ctx, m.Trigger); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				c.log.Warn("trigger refused", slog.String("trigger_id", m.Trigger.GetId()), slog.String("reason", err.Error()))
				for _, t := range m.Trigger.GetTasks() {
					c.ReportStatus(&vantagev1.TaskStatus{TaskId: t.GetId(), Refused: true, Reason: fmt.Sprintf("trigger %s refused: %v", m.Trigger.GetId(), err)})
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

// ack applies an Ack: the batches sent on this stream up to (epoch,
// up_to_seq) are forgotten by the spool, with the gaps they carried. An ack
// matching nothing sent is ignored: the agent never trusts an ack beyond
// what it sent.
func (c *Client) ack(a *vantagev1.Ack) {
	key := spool.Key{Epoch: a.GetEpoch(), Seq: a.GetUpToSeq()}
	c.ackMu.Lock()
	n := 0
	var upTo spool.Key
	var gaps []*vantagev1.Gap
	if a.GetUpToSeq() == 0 {
		// The ack of a gaps-only batch: acks come in the order batches
		// were sent, so it is the oldest in flight.
		if len(c.inflight) > 0 && c.inflight[0].gapsOnly {
			gaps, n = c.inflight[0].gaps, 1
		}
	} else {
		for n < len(c.inflight) && !c.inflight[n].gapsOnly && c.inflight[n].end.Compare(key) <= 0 {
			upTo = c.inflight[n].end
			gaps = append(gaps, c.inflight[n].gaps...)
			n++
		}
	}
	if n == 0 {
		c.ackMu.Unlock()
		c.log.Warn("ack for nothing in flight ignored", slog.Uint64("ack_epoch", a.GetEpoch()), slog.Uint64("ack_seq", a.GetUpToSeq()))
		return
	}
	c.inflight = c.inflight[n:]
	if err := c.spool.Ack(upTo, gaps); err != nil {
		c.log.Error("spool ack failed; results will be re-sent", slog.String("error", err.Error()))
	}
	if upTo.Compare(c.ackedKey) > 0 {
		c.ackedKey = upTo
	}
	c.acks++
	c.ackMu.Unlock()
	select {
	case c.acked <- struct{}{}:
	default:
	}
}

// sender is the per-stream state of the send loop.
type sender struct {
	c        *Client
	stream   vantagev1.AgentService_SessionClient
	cursor   spool.Key          // highest key sent on this stream
	gapsSent map[spool.Key]bool // (epoch, first_seq) of gaps sent on this stream
}

// sendLoop is the only goroutine that sends on the stream.
func (c *Client) sendLoop(parent, ctx context.Context, stream vantagev1.AgentService_SessionClient) error {
	s := &sender{c: c, stream: stream, gapsSent: make(map[spool.Key]bool)}
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
		case <-c.wake:
			if err := s.flush(false); err != nil {
				return err
			}
		case st := <-c.statuses:
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
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	if len(c.inflight) == 0 {
		return nil
	}
	if age := time.Since(c.inflight[0].sent); age > c.cfg.AckTimeout {
		return fmt.Errorf("%w for %s (batch up to seq %d, timeout %s)", errAckTimeout, age.Round(time.Second), c.inflight[0].end.Seq, c.cfg.AckTimeout)
	}
	return nil
}

func (c *Client) heartbeat() *vantagev1.Heartbeat {
	h := &vantagev1.Heartbeat{SentAt: timestamppb.Now(), Spool: c.spool.State()}
	if c.cfg.Counters != nil {
		h.ProbesSent = c.cfg.Counters.ProbesSent()
		h.PacketsIgnored = c.cfg.Counters.PacketsIgnored()
	}
	return h
}

// flush sends everything spooled beyond the cursor, in batches of at most
// BatchMax contiguous results of one epoch, unless the controller asked to
// wait. Gaps ride along with results (a batch carries at least one result).
func (s *sender) flush(ignoreThrottle bool) error {
	c := s.c
	c.unsent.Store(0)
	for {
		if !ignoreThrottle && time.Now().UnixNano() < c.throttle.Load() {
			return nil
		}
		// Never re-send what is already acked.
		after := s.cursor
		if a := c.Acked(); a.Compare(after) > 0 {
			after = a
		}
		sb, err := c.spool.Read(after, c.cfg.BatchMax)
		if err != nil {
			return fmt.Errorf("read spool: %w", err)
		}
		var unsent []*vantagev1.Gap
		for _, g := range sb.Gaps {
			if !s.gapsSent[spool.Key{Epoch: g.GetEpoch(), Seq: g.GetFirstSeq()}] {
				unsent = append(unsent, g)
			}
		}
		if len(sb.Results) == 0 {
			if len(unsent) == 0 {
				return nil
			}
			// Nothing to send but lost results to report: a batch of
			// gaps only, so the controller hears of them now rather than
			// with some later result.
			return s.sendGaps(unsent)
		}
		b := &vantagev1.ResultBatch{Epoch: sb.Epoch, Results: sb.Results,
			FirstSeq: sb.Results[0].GetSeq(), LastSeq: sb.Results[len(sb.Results)-1].GetSeq(), Gaps: unsent}
		// In flight before the send: the ack may beat Send's return.
		c.ackMu.Lock()
		c.inflight = append(c.inflight, inflight{end: sb.End(), gaps: b.Gaps, sent: time.Now()})
		c.ackMu.Unlock()
		if err := s.stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			return fmt.Errorf("send results: %w", err)
		}
		for _, g := range b.Gaps {
			s.gapsSent[spool.Key{Epoch: g.GetEpoch(), Seq: g.GetFirstSeq()}] = true
		}
		s.cursor = sb.End()
		if len(sb.Results) < c.cfg.BatchMax {
			return nil
		}
	}
}

// sendGaps sends a ResultBatch holding only gaps (first_seq = last_seq =
// 0); the controller acks it with up_to_seq 0.
func (s *sender) sendGaps(gaps []*vantagev1.Gap) error {
	c := s.c
	c.ackMu.Lock()
	c.inflight = append(c.inflight, inflight{gaps: gaps, sent: time.Now(), gapsOnly: true})
	c.ackMu.Unlock()
	b := &vantagev1.ResultBatch{Epoch: c.cfg.Identity.Epoch, Gaps: gaps}
	if err := s.stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
		return fmt.Errorf("send gaps: %w", err)
	}
	for _, g := range gaps {
		s.gapsSent[spool.Key{Epoch: g.GetEpoch(), Seq: g.GetFirstSeq()}] = true
	}
	return nil
}

// final flushes on shutdown, half-closes the stream and waits a little for
// the acks of what was sent.
func (s *sender) final(ctx context.Context) error {
	if err := s.flush(true); err != nil {
		return err
	}
	_ = s.stream.CloseSend()
	timer := time.NewTimer(flushTimeout)
	defer timer.Stop()
	for s.c.Acked().Compare(s.cursor) < 0 {
		select {
		case <-s.c.acked:
		case <-ctx.Done():
			return nil
		case <-timer.C:
			a := s.c.Acked()
			s.c.log.Warn("shutdown before all results were acknowledged",
				slog.Uint64("acked_epoch", a.Epoch), slog.Uint64("acked_seq", a.Seq),
				slog.Uint64("sent_epoch", s.cursor.Epoch), slog.Uint64("sent_seq", s.cursor.Seq))
			return nil
		}
	}
	return nil
}
