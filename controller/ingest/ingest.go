// Package ingest implements AgentService: enrolment, and the one long-lived
// Session per agent over which assignments go down and results come up.
// It exists to make the delivery promise hold: every batch is validated,
// committed to the store in one transaction, and only then acknowledged;
// duplicates (re-sent after a lost ack) are acknowledged again but never
// counted twice. Each session is a send loop and a recv loop joined as in
// etcd's watch server, so a slow agent never blocks anyone else.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Limits and periods.
const (
	MaxBatchResults    = 10000
	AssignmentLifetime = 10 * time.Minute
	AssignmentRenew    = 5 * time.Minute
	MaxVersionLen      = 64
	sendQueue          = 64
)

// Campaigns gives the parsed ACTIVE campaigns (engine.Worker implements it).
type Campaigns interface {
	Active() []*campaign.Spec
}

// Voucher is implemented by a Campaigns that can vouch for a result of a
// task the session was not assigned: a stored campaign (paused, or edited
// since) whose selection matches the agent and whose expansion has the task
// (engine.Worker implements it). Without it such results are refused.
type Voucher interface {
	Vouches(ctx context.Context, campaign, taskID, target string, labels map[string]string) bool
}

// Observer is told about fresh results and session state (engine.Worker).
type Observer interface {
	Feed(agentID string, results []*vantagev1.ProbeResult)
	SetAgentConnected(agentID string, labels map[string]string, connected bool, at time.Time)
}

// Config wires a Server.
type Config struct {
	Store     store.Store
	Fleet     *fleet.Fleet
	Campaigns Campaigns
	Observer  Observer
	Log       *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// AssignmentRenew overrides the renewal period (tests).
	AssignmentRenew time.Duration
	// RatePerAgent limits the results per second each agent may upload
	// (burst: RatePerAgent or MaxBatchResults, whichever is larger); an
	// agent over it gets Throttle and RESOURCE_EXHAUSTED. 0: no limit.
	RatePerAgent float64
	// MaxQueuedResults (soft bound; twice it is the hard one),
	// MaxCommitLatency and GroupResults tune group commit and overload
	// (defaults: the Default* constants).
	MaxQueuedResults int
	MaxCommitLatency time.Duration
	GroupResults     int
}

// SessionInfo is what ListAgents shows about a live session.
type SessionInfo struct {
	ConnectedAt       time.Time
	RemoteAddr        string
	AssignmentVersion uint64
	Tasks             int
}

// Server implements vantagev1.AgentServiceServer.
type Server struct {
	vantagev1.UnimplementedAgentServiceServer
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	version atomic.Uint64

	mu       sync.Mutex
	sessions map[string]*session
	known    map[string]map[string]bool // agent -> task ids ever assigned
	limiters map[string]*rate.Limiter   // agent -> upload rate, kept across sessions
	wg       sync.WaitGroup             // Session handlers and their recv loops (which outlive them)
	closing  bool                       // under mu: Wait has begun, no new Session starts

	// Group commit: sessions queue batches, committer writes them.
	commits      chan *commitReq
	commitStop   chan struct{}
	commitDone   chan struct{}
	commitCtx    context.Context
	commitCancel context.CancelFunc
	stopOnce     sync.Once
	queued       atomic.Int64  // results queued or being committed
	lastCommit   atomic.Int64  // duration of the last commit, ns
	ackLat       ackHistogram  // commit -> ack handed to the stream
	refused      atomic.Uint64 // results refused (unknown task) and stored as gaps
	stats        stats         // event counters for Stats (stats.go)
}

// New returns a Server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Log, now: cfg.Now, sessions: map[string]*session{}, known: map[string]map[string]bool{},
		limiters: map[string]*rate.Limiter{}, commits: make(chan *commitReq, 4096),
		commitStop: make(chan struct{}), commitDone: make(chan struct{})}
	if s.cfg.MaxQueuedResults <= 0 {
		s.cfg.MaxQueuedResults = DefaultMaxQueuedResults
	}
	if s.cfg.MaxCommitLatency <= 0 {
		s.cfg.MaxCommitLatency = DefaultMaxCommitLatency
	}
	if s.cfg.GroupResults <= 0 {
		s.cfg.GroupResults = DefaultGroupResults
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.AssignmentRenew <= 0 {
		s.cfg.AssignmentRenew = AssignmentRenew
	}
	// Versions must increase across controller restarts too; the agent
	// also reports the version it holds, see nextVersion.
	s.version.Store(uint64(time.Now().UnixMicro()))
	// The writer outlives every session; Wait stops it.
	s.commitCtx, s.commitCancel = context.WithCancel(context.Background())
	go s.committer()
	return s
}

// Wait waits for every session goroutine to finish, then stops the group
// committer; call it after the gRPC server has stopped.
func (s *Server) Wait() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.wg.Wait()
	s.stopCommitter()
}

// RefusedResults returns how many results this controller has refused
// because their task was not one given to the sending agent; each was acked
// and recorded as (part of) a gap of that agent. A re-sent batch counts
// again; its gaps are stored once.
func (s *Server) RefusedResults() uint64 { return s.refused.Load() }

// limiter returns the agent's upload rate limiter, nil when unlimited.
func (s *Server) limiter(agentID string) *rate.Limiter {
	if s.cfg.RatePerAgent <= 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limiters[agentID]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(s.cfg.RatePerAgent), max(int(s.cfg.RatePerAgent), MaxBatchResults))
		s.limiters[agentID] = l
	}
	return l
}

// Enroll exchanges a join token and a CSR for a client certificate.
func (s *Server) Enroll(ctx context.Context, req *vantagev1.EnrollRequest) (*vantagev1.EnrollResponse, error) {
	e, err := s.cfg.Fleet.Enroll(ctx, fleet.EnrollRequest{JoinToken: req.GetJoinToken(), CSRDER: req.GetCsrDer(),
		Name: req.GetName(), Labels: req.GetLabels()})
	if err != nil {
		if errors.Is(err, store.ErrTokenInvalid) {
			s.log.Info("enrolment refused", "reason", "bad join token", "name", req.GetName())
		}
		return nil, rpcerr.Status(s.log, "Enroll", err)
	}
	return &vantagev1.EnrollResponse{AgentId: e.AgentID, CertificatePem: e.CertificatePEM,
		CaBundlePem: e.CABundlePEM, ApprovalPending: e.ApprovalPending}, nil
}

// Connected returns the live session of an agent.
func (s *Server) Connected(agentID string) (SessionInfo, bool) {
	s.mu.Lock()
	sess := s.sessions[agentID]
	s.mu.Unlock()
	if sess == nil {
		return SessionInfo{}, false
	}
	return sess.info(), true
}

// Reassign makes every live session send a fresh Assignment (campaigns
// changed).
func (s *Server) Reassign() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		select {
		case sess.reassign <- struct{}{}:
		default: // one is pending already
		}
	}
}

// CloseAll ends every live session with Unavailable (shutdown).
func (s *Server) CloseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		sess.kill(status.Error(codes.Unavailable, "controller shutting down"))
	}
}

// Disconnect ends an agent's live session at once with err (e.g. revoked).
func (s *Server) Disconnect(agentID string, err error) bool {
	s.mu.Lock()
	sess := s.sessions[agentID]
	s.mu.Unlock()
	if sess == nil {
		return false
	}
	sess.kill(err)
	return true
}

type session struct {
	s        *Server
	agent    store.Agent
	labels   map[string]string
	stream   vantagev1.AgentService_SessionServer
	out      chan *vantagev1.ControllerMessage
	reassign chan struct{}
	done     chan struct{} // closed when the handler returns
	killc    chan struct{}
	killOnce sync.Once
	killErr  error

	lastHint atomic.Int64 // unix ns of the last soft Throttle sent
	// ackTimes holds, in order, the commit time of each queued Ack.
	ackTimes chan time.Time

	mu          sync.Mutex
	connectedAt time.Time
	remote      string
	version     uint64
	tasks       map[string]*vantagev1.Task
	triggers    map[string]bool
}

func (ss *session) info() SessionInfo {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return SessionInfo{ConnectedAt: ss.connectedAt, RemoteAddr: ss.remote, AssignmentVersion: ss.version, Tasks: len(ss.tasks)}
}

func (ss *session) kill(err error) {
	ss.killOnce.Do(func() {
		ss.killErr = err
		close(ss.killc)
	})
}

// Session is the agent's long-lived stream.
func (s *Server) Session(stream vantagev1.AgentService_SessionServer) error {
	// Counted from the start, so Wait never races a handler that is
	// about to start its recv loop.
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "controller is stopping")
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ctx := stream.Context()
	agent, err := s.cfg.Fleet.AgentFromPeer(ctx)
	if err != nil {
		return rpcerr.Status(s.log, "Session", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "msg: the first message must be hello")
	}
	if err := validateHello(hello); err != nil {
		return rpcerr.Status(s.log, "Session", err)
	}
	now := s.now()
	labels := maps.Clone(hello.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, agent.Labels) // enrolment (and join token) labels win
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	err = s.cfg.Store.UpdateAgentHello(ctx, agent.ID, store.AgentHello{At: now, RemoteAddr: remote,
		AgentVersion: hello.GetAgentVersion(), Capabilities: hello.GetCapabilities(), Labels: labels,
		Spool: hello.GetSpool(), Epoch: hello.GetEpoch()})
	if err != nil {
		return rpcerr.Status(s.log, "Session", fmt.Errorf("record hello: %w: %w", rpcerr.ErrUnavailable, err))
	}
	ss := &session{s: s, agent: agent, labels: labels, stream: stream,
		out: make(chan *vantagev1.ControllerMessage, sendQueue), reassign: make(chan struct{}, 1),
		done: make(chan struct{}), killc: make(chan struct{}), connectedAt: now, remote: remote,
		ackTimes: make(chan time.Time, 2*sendQueue),
		version:  hello.GetAssignmentVersion(), triggers: map[string]bool{}}

	s.mu.Lock()
	if old := s.sessions[agent.ID]; old != nil {
		old.kill(status.Error(codes.Aborted, "replaced by a newer session of the same agent"))
	}
	s.sessions[agent.ID] = ss
	s.mu.Unlock()
	// A revoke between the identity check and the registration above would
	// have found no session to close: check again now that it is visible.
	if cur, err := s.cfg.Store.GetAgent(ctx, agent.ID); err == nil && cur.State != vantagev1.AgentState_AGENT_STATE_ACTIVE {
		ss.kill(status.Error(codes.PermissionDenied, "agent "+agent.ID+" is "+cur.State.String()))
	}
	log := s.log.With("agent", agent.ID)
	log.Info("agent session started", "remote", remote, "epoch", hello.GetEpoch(), "version", hello.GetAgentVersion())
	if m := ss.renewAdvice(ctx); m != nil {
		select {
		case ss.out <- m: // sent after the first assignment
		default: // queue full: advised again at the next session
		}
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.SetAgentConnected(agent.ID, labels, true, now)
	}
	defer func() {
		close(ss.done)
		s.mu.Lock()
		if s.sessions[agent.ID] == ss {
			delete(s.sessions, agent.ID)
		}
		s.mu.Unlock()
		if s.cfg.Observer != nil {
			s.cfg.Observer.SetAgentConnected(agent.ID, labels, false, s.now())
		}
		log.Info("agent session ended")
	}()

	// The send loop is the only caller of stream.Send. The recv loop runs
	// in its own goroutine because Recv only returns once the handler has
	// returned; s.wg waits for it.
	errc := make(chan error, 2)
	stopSend := make(chan struct{})
	var sendWG sync.WaitGroup
	// The first assignment is made before any batch is read: screening a
	// backlog re-sent right after a reconnect checks results against it
	// (and a restarted controller has no other memory of past tasks).
	assignment := ss.nextAssignment()
	sendWG.Add(1)
	go func() {
		defer sendWG.Done()
		errc <- ss.sendLoop(ctx, stopSend, assignment)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		errc <- ss.recvLoop(ctx)
	}()

	killed := false
	select {
	case err = <-errc:
	case <-ss.killc:
		err, killed = ss.killErr, true
	case <-ctx.Done():
		err = ctx.Err()
	}
	close(stopSend)
	sendWG.Wait()
	var th *throttled
	if errors.As(err, &th) {
		stream.SetTrailer(th.trailer())
		log.Info("agent session throttled", "reason", th.reason, "retry_after", th.retry)
		return status.Error(codes.ResourceExhausted, th.Error())
	}
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case killed: // revoked, replaced or shutting down: expected
		log.Info("agent session closed by controller", "reason", status.Convert(err).Message())
	case status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled):
		log.Debug("agent session cancelled")
	case err != nil:
		log.Warn("agent session failed", "err", err)
	}
	return err
}

func validateHello(h *vantagev1.Hello) error {
	if h.GetEpoch() == 0 {
		return fmt.Errorf("%w: hello.epoch: must be > 0", rpcerr.ErrInvalid)
	}
	if len(h.GetAgentVersion()) > MaxVersionLen {
		return fmt.Errorf("%w: hello.agent_version: longer than %d", rpcerr.ErrInvalid, MaxVersionLen)
	}
	if err := fleet.ValidateLabels("hello.labels", h.GetLabels()); err != nil {
		return err
	}
	if n := len(h.GetCapabilities().GetEngines()); n > 32 {
		return fmt.Errorf("%w: hello.capabilities.engines: %d entries, at most 32", rpcerr.ErrInvalid, n)
	}
	return nil
}

// nextAssignment builds the agent's full task set with a fresh version.
func (ss *session) nextAssignment() *vantagev1.Assignment {
	now := ss.s.now()
	expires := now.Add(AssignmentLifetime)
	var tasks []*vantagev1.Task
	if ss.s.cfg.Campaigns != nil {
		for _, spec := range ss.s.cfg.Campaigns.Active() {
			if spec.SelectsAgent(ss.labels) {
				tasks = append(tasks, spec.Tasks(expires)...)
			}
		}
	}
	ss.mu.Lock()
	v := max(ss.s.version.Add(1), ss.version+1)
	ss.version = v
	ss.tasks = make(map[string]*vantagev1.Task, len(tasks))
	for _, t := range tasks {
		ss.tasks[t.GetId()] = t
	}
	ss.mu.Unlock()
	ss.s.mu.Lock()
	k := ss.s.known[ss.agent.ID]
	if k == nil {
		k = map[string]bool{}
		ss.s.known[ss.agent.ID] = k
	}
	for _, t := range tasks {
		k[t.GetId()] = true
	}
	ss.s.mu.Unlock()
	return &vantagev1.Assignment{Version: v, IssuedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(expires), Tasks: tasks}
}

func (ss *session) sendLoop(ctx context.Context, stop <-chan struct{}, first *vantagev1.Assignment) error {
	renew := time.NewTicker(ss.s.cfg.AssignmentRenew)
	defer renew.Stop()
	send := func(a *vantagev1.Assignment) error {
		ss.s.log.Debug("assignment sent", "agent", ss.agent.ID, "version", a.GetVersion(), "tasks", len(a.GetTasks()))
		return ss.stream.Send(&vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Assignment{Assignment: a}})
	}
	sendAssignment := func() error { return send(ss.nextAssignment()) }
	if err := send(first); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			// Flush what is queued (acks of committed batches, a
			// throttle) before the stream ends; a failed send only
			// means the agent resends, which dedupe absorbs.
			for {
				select {
				case m := <-ss.out:
					if err := ss.stream.Send(m); err != nil {
						return nil
					}
				default:
					return nil
				}
			}
		case m := <-ss.out:
			if err := ss.stream.Send(m); err != nil {
				return err
			}
			ss.sentAck(m)
		case <-renew.C:
			if err := sendAssignment(); err != nil {
				return err
			}
		case <-ss.reassign:
			if err := sendAssignment(); err != nil {
				return err
			}
		}
	}
}

// sentAck records the commit->ack time of an Ack just sent.
func (ss *session) sentAck(m *vantagev1.ControllerMessage) {
	if m.GetAck() == nil {
		return
	}
	select {
	case t := <-ss.ackTimes:
		ss.s.ackLat.observe(time.Since(t))
	default:
	}
}

// enqueue hands a message to the send loop; false when the session is over.
func (ss *session) enqueue(ctx context.Context, m *vantagev1.ControllerMessage) bool {
	select {
	case ss.out <- m:
		return true
	case <-ss.done:
		return false
	case <-ctx.Done():
		return false
	}
}

func (ss *session) recvLoop(ctx context.Context) error {
	for {
		m, err := ss.stream.Recv()
		if err != nil {
			return err
		}
		switch msg := m.GetMsg().(type) {
		case *vantagev1.AgentMessage_Results:
			if err := ss.handleBatch(ctx, msg.Results); err != nil {
				return err
			}
		case *vantagev1.AgentMessage_Heartbeat:
			if err := ss.s.cfg.Store.UpdateAgentSeen(ctx, ss.agent.ID, ss.s.now(), msg.Heartbeat.GetSpool()); err != nil {
				return rpcerr.Status(ss.s.log, "Session", fmt.Errorf("%w: heartbeat: %w", rpcerr.ErrUnavailable, err))
			}
		case *vantagev1.AgentMessage_TaskStatus:
			if err := ss.handleTaskStatus(ctx, msg.TaskStatus); err != nil {
				return err
			}
		case *vantagev1.AgentMessage_Hello:
			return status.Error(codes.InvalidArgument, "msg: hello sent twice in one session")
		default:
			return status.Error(codes.InvalidArgument, "msg: empty or unknown agent message")
		}
	}
}

func (ss *session) handleTaskStatus(ctx context.Context, ts *vantagev1.TaskStatus) error {
	// An empty task_id is about the whole assignment (e.g. refused by the
	// agent's guard).
	if len(ts.GetTaskId()) > 256 {
		return status.Error(codes.InvalidArgument, "task_status.task_id: longer than 256")
	}
	if len(ts.GetReason()) > 1024 || len(ts.GetEngine()) > 64 {
		return status.Error(codes.InvalidArgument, "task_status: reason longer than 1024 or engine longer than 64")
	}
	ss.s.log.Info("agent task status", "agent", ss.agent.ID, "task", ts.GetTaskId(), "refused", ts.GetRefused(),
		"reason", ts.GetReason(), "engine", ts.GetEngine())
	err := ss.s.cfg.Store.SetTaskStatus(ctx, store.TaskStatus{AgentID: ss.agent.ID, TaskID: ts.GetTaskId(),
		Refused: ts.GetRefused(), Reason: ts.GetReason(), Engine: ts.GetEngine(), At: ss.s.now()})
	if err != nil {
		return rpcerr.Status(ss.s.log, "Session", fmt.Errorf("%w: task status: %w", rpcerr.ErrUnavailable, err))
	}
	return nil
}

// refusal says why a result cannot be stored for this agent, or "" when
// its task is one the agent was given (in this session, earlier in this
// controller's life, or by a live trigger) with the result's campaign and
// target.
func (ss *session) refusal(ctx context.Context, r *vantagev1.ProbeResult) string {
	id := r.GetTaskId()
	ss.mu.Lock()
	t, ok := ss.tasks[id]
	trig := r.GetTriggerId() != "" && ss.triggers[r.GetTriggerId()]
	ss.mu.Unlock()
	if ok {
		if t.GetCampaign() == r.GetCampaign() && t.GetTarget() == r.GetTarget() {
			return ""
		}
		return fmt.Sprintf("refused by controller: task %.128q does not match the result's campaign and target", id)
	}
	if trig {
		return ""
	}
	ss.s.mu.Lock()
	known := ss.s.known[ss.agent.ID][id]
	ss.s.mu.Unlock()
	if known {
		return ""
	}
	if v, ok := ss.s.cfg.Campaigns.(Voucher); ok && v.Vouches(ctx, r.GetCampaign(), id, r.GetTarget(), ss.labels) {
		return ""
	}
	return fmt.Sprintf("refused by controller: task %.128q is not assigned to this agent", id)
}

// screen splits a valid batch's results into those the agent may store and,
// for the rest, one Gap per contiguous run of refused seqs (reason: the
// first refused result's; refused is their count). Refused results are not
// stored, so an agent cannot inject results for tasks it was not given;
// they are acked and counted as a gap so that one stale result (a campaign
// deleted or edited while the agent was offline, a controller restart that
// forgot past assignments) never blocks the agent's stream behind it.
func (ss *session) screen(ctx context.Context, b *vantagev1.ResultBatch) (accepted []*vantagev1.ProbeResult, gaps []*vantagev1.Gap, refused int) {
	rs := b.GetResults()
	var cur *vantagev1.Gap // the run being extended
	for i, r := range rs {
		why := ss.refusal(ctx, r)
		if why == "" {
			if refused > 0 {
				accepted = append(accepted, r)
			}
			cur = nil
			continue
		}
		if refused == 0 {
			accepted = slices.Clone(rs[:i])
		}
		refused++
		if cur != nil && cur.LastSeq+1 == r.GetSeq() {
			cur.LastSeq = r.GetSeq()
			continue
		}
		cur = &vantagev1.Gap{Epoch: b.GetEpoch(), FirstSeq: r.GetSeq(), LastSeq: r.GetSeq(), Reason: why}
		gaps = append(gaps, cur)
	}
	if refused == 0 {
		return rs, nil, 0
	}
	return accepted, gaps, refused
}

// ValidateBatch checks a ResultBatch's framing and every result's shape.
func ValidateBatch(b *vantagev1.ResultBatch) error {
	if b.GetEpoch() == 0 {
		return fmt.Errorf("%w: results.epoch: must be > 0", rpcerr.ErrInvalid)
	}
	first, last := b.GetFirstSeq(), b.GetLastSeq()
	if first == 0 && last == 0 && len(b.GetResults()) == 0 {
		// Gaps only: an agent reporting lost results with nothing else
		// to send. It is acked with up_to_seq 0.
		if len(b.GetGaps()) == 0 {
			return fmt.Errorf("%w: results: no results and no gaps", rpcerr.ErrInvalid)
		}
		if b.GetEpoch() > math.MaxInt64 {
			return fmt.Errorf("%w: results.epoch %d: at most 2^63-1 (stored as SQL integers)", rpcerr.ErrInvalid, b.GetEpoch())
		}
		return validateGaps(b.GetGaps())
	}
	if first == 0 || first > last {
		return fmt.Errorf("%w: results.first_seq %d, last_seq %d: want 1 <= first_seq <= last_seq", rpcerr.ErrInvalid, first, last)
	}
	if last > math.MaxInt64 || b.GetEpoch() > math.MaxInt64 {
		return fmt.Errorf("%w: results.last_seq %d, epoch %d: at most 2^63-1 (stored as SQL integers)", rpcerr.ErrInvalid, last, b.GetEpoch())
	}
	n := len(b.GetResults())
	if n > MaxBatchResults {
		return fmt.Errorf("%w: results.results: %d results, at most %d", rpcerr.ErrInvalid, n, MaxBatchResults)
	}
	if uint64(n) != last-first+1 {
		return fmt.Errorf("%w: results.results: %d results for seq %d..%d", rpcerr.ErrInvalid, n, first, last)
	}
	for i, r := range b.GetResults() {
		if r.GetSeq() != first+uint64(i) {
			return fmt.Errorf("%w: results.results[%d].seq: %d, want %d (contiguous)", rpcerr.ErrInvalid, i, r.GetSeq(), first+uint64(i))
		}
		if _, err := netip.ParseAddr(r.GetTarget()); err != nil {
			return fmt.Errorf("%w: results.results[%d].target: %.64q is not an IP address", rpcerr.ErrInvalid, i, r.GetTarget())
		}
		if r.GetSentAt() == nil || !r.GetSentAt().IsValid() {
			return fmt.Errorf("%w: results.results[%d].sent_at: missing or invalid", rpcerr.ErrInvalid, i)
		}
		if len(r.GetHops()) > 255 {
			return fmt.Errorf("%w: results.results[%d].hops: %d hops, at most 255", rpcerr.ErrInvalid, i, len(r.GetHops()))
		}
	}
	return validateGaps(b.GetGaps())
}

// validateGaps checks a batch's gap records.
func validateGaps(gaps []*vantagev1.Gap) error {
	if len(gaps) > MaxBatchResults {
		return fmt.Errorf("%w: results.gaps: %d gaps, at most %d", rpcerr.ErrInvalid, len(gaps), MaxBatchResults)
	}
	for i, g := range gaps {
		if g.GetEpoch() == 0 || g.GetFirstSeq() == 0 || g.GetFirstSeq() > g.GetLastSeq() {
			return fmt.Errorf("%w: results.gaps[%d]: want epoch > 0 and 1 <= first_seq <= last_seq", rpcerr.ErrInvalid, i)
		}
		if g.GetLastSeq() > math.MaxInt64 || g.GetEpoch() > math.MaxInt64 {
			return fmt.Errorf("%w: results.gaps[%d]: last_seq and epoch at most 2^63-1", rpcerr.ErrInvalid, i)
		}
	}
	return nil
}

// throttleHint reports whether a soft Throttle may be sent now.
func (ss *session) throttleHint() bool {
	now := ss.s.now().UnixNano()
	last := ss.lastHint.Load()
	return now-last >= int64(DefaultRetryAfter) && ss.lastHint.CompareAndSwap(last, now)
}

// throttle tells the agent to wait, then ends the session with
// RESOURCE_EXHAUSTED (trailer retry-after-ms); the batch is not acked, so
// the agent keeps it and sends it again.
func (ss *session) throttle(ctx context.Context, th *throttled) error {
	ss.enqueue(ctx, th.message())
	return th
}

func (ss *session) handleBatch(ctx context.Context, b *vantagev1.ResultBatch) error {
	if err := ValidateBatch(b); err != nil {
		return rpcerr.Status(ss.s.log, "Session", err)
	}
	results, refusedGaps, refused := ss.screen(ctx, b)
	n := len(b.GetResults())
	if l := ss.s.limiter(ss.agent.ID); l != nil {
		r := l.ReserveN(ss.s.now(), max(n, 1))
		if !r.OK() || r.Delay() > 0 {
			retry := DefaultRetryAfter
			if r.OK() {
				retry = max(r.Delay(), 100*time.Millisecond)
				r.Cancel()
			}
			ss.s.stats.throttled(ThrottleRate)
			return ss.throttle(ctx, &throttled{retry: retry,
				reason: fmt.Sprintf("agent over its ingest rate of %g results/s", ss.s.cfg.RatePerAgent)})
		}
	}
	if why, hard := ss.s.overloaded(n); hard {
		ss.s.stats.throttled(ThrottleHard)
		return ss.throttle(ctx, &throttled{retry: DefaultRetryAfter, reason: why})
	} else if why != "" && ss.throttleHint() {
		// Soft: take the batch, ask the agent to pause (at most one
		// hint per session per retry-after).
		th := &throttled{retry: DefaultRetryAfter, reason: why}
		ss.s.stats.throttled(ThrottleSoft)
		ss.enqueue(ctx, th.message())
	}
	// Encode here, in the session's goroutine, so the one writer only
	// writes.
	bodies := make([][]byte, len(results))
	for i, r := range results {
		var err error
		if bodies[i], err = proto.Marshal(r); err != nil {
			return rpcerr.Status(ss.s.log, "Session", fmt.Errorf("%w: results.results (seq %d): %w", rpcerr.ErrInvalid, r.GetSeq(), err))
		}
	}
	gaps := b.GetGaps()
	if refused > 0 {
		gaps = append(slices.Clip(gaps), refusedGaps...)
	}
	fresh, committedAt, err := ss.s.commit(ctx, store.Batch{AgentID: ss.agent.ID, Epoch: b.GetEpoch(), Results: results,
		Bodies: bodies, Gaps: gaps})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return rpcerr.Status(ss.s.log, "Session", fmt.Errorf("%w: commit batch: %w", rpcerr.ErrUnavailable, err))
	}
	ss.s.stats.committedBatch(fresh, b.GetGaps())
	if refused > 0 {
		ss.s.refused.Add(uint64(refused))
		ss.s.log.Warn("results refused", "agent", ss.agent.ID, "epoch", b.GetEpoch(), "refused", refused,
			"accepted", len(results), "gaps", len(refusedGaps), "first_seq", refusedGaps[0].GetFirstSeq(),
			"reason", refusedGaps[0].GetReason())
	}
	// The commit returned: only now may the agent forget these results
	// (refused ones included: they are recorded as gaps).
	ack := &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Ack{Ack: &vantagev1.Ack{Epoch: b.GetEpoch(), UpToSeq: b.GetLastSeq()}}}
	select {
	case ss.ackTimes <- committedAt:
	default: // only a statistic
	}
	if !ss.enqueue(ctx, ack) {
		return ctx.Err()
	}
	if ss.s.cfg.Observer != nil {
		var feed []*vantagev1.ProbeResult
		for i, r := range results { // fresh is indexed like results
			if fresh[i] {
				feed = append(feed, r)
			}
		}
		if len(feed) > 0 {
			ss.s.cfg.Observer.Feed(ss.agent.ID, feed)
		}
	}
	return nil
}
