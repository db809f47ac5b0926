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
	// (defaults: the Default* constants). All three count work: a result
	// is 1, a gap record GapWork.
	MaxQueuedResults int
	MaxCommitLatency time.Duration
	GroupResults     int
	// MaxGapRows caps the gap rows stored per agent (0: DefaultMaxGapRows,
	// negative: no cap). GapSeqRate and GapSeqBurst are each agent's
	// budget of seqs its gap records may claim, per second and at once (0:
	// DefaultGapSeqRate, DefaultGapSeqBurst); a gap beyond it is cut.
	MaxGapRows  int
	GapSeqRate  float64
	GapSeqBurst int
	// MaxResultAge and MaxClockSkew are the window around its receipt in
	// which a result's sent_at must fall (0: DefaultMaxResultAge,
	// DefaultMaxClockSkew); results outside it are refused (acked and
	// recorded as a gap).
	MaxResultAge time.Duration
	MaxClockSkew time.Duration
	// TriggerGrace: a trigger's results are accepted until its expiry
	// plus this (0: DefaultTriggerGrace).
	TriggerGrace time.Duration
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

	mu        sync.Mutex
	sessions  map[string]*session
	known     map[string]map[string]taskRef     // agent -> task id -> the task as last assigned
	triggers  map[string]map[string]*triggerRef // agent -> trigger id -> its tasks, until its grace ends
	limiters  map[string]*rate.Limiter          // agent -> upload rate, kept across sessions
	gapSeqs   map[string]*rate.Limiter          // agent -> seqs its gaps may claim
	lastIndex taskIndex                         // the last trigger task list, indexed
	wg        sync.WaitGroup                    // Session handlers and their recv loops (which outlive them)
	closing   bool                              // under mu: Wait has begun, no new Session starts

	// Group commit: sessions queue batches, committer writes them.
	commits      chan *commitReq
	commitStop   chan struct{}
	commitDone   chan struct{}
	commitCtx    context.Context
	commitCancel context.CancelFunc
	stopOnce     sync.Once
	queued       atomic.Int64  // work (results, GapWork per gap) queued or being committed
	clock        time.Time     // monotonic base of commitStart
	commitStart  atomic.Int64  // when the running commit began (ns since clock, +1); 0: none running
	ackLat       ackHistogram  // commit -> ack handed to the stream
	refused      atomic.Uint64 // results refused (unknown task) and stored as gaps
	stats        stats         // event counters for Stats (stats.go)
	health       storeHealth   // store write failures and whether the store fails now (commit.go)
	commitStore  store.Store   // the store as given, which the committer writes to (cfg.Store is watched)
}

// New returns a Server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Log, now: cfg.Now, sessions: map[string]*session{}, known: map[string]map[string]taskRef{},
		triggers: map[string]map[string]*triggerRef{}, limiters: map[string]*rate.Limiter{}, gapSeqs: map[string]*rate.Limiter{},
		commits: make(chan *commitReq, 4096), commitStop: make(chan struct{}), commitDone: make(chan struct{}), clock: time.Now()}
	s.cfg.defaults()
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
	s.watchStore()
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
	// spool is the agent's spool state from its last heartbeat (Stats
	// counts the agents whose spool disk refuses writes).
	spool atomic.Pointer[vantagev1.SpoolState]
	// ackTimes holds, in order, the commit time of each queued Ack.
	ackTimes chan time.Time

	mu          sync.Mutex
	connectedAt time.Time
	remote      string
	version     uint64
	tasks       map[string]taskRef // the current assignment's, by id
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
		version:  hello.GetAssignmentVersion()}

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
	refs := make(map[string]taskRef, len(tasks))
	for _, t := range tasks {
		refs[t.GetId()] = refOf(t)
	}
	ss.mu.Lock()
	v := max(ss.s.version.Add(1), ss.version+1)
	ss.version = v
	ss.tasks = refs
	ss.mu.Unlock()
	ss.s.mu.Lock()
	k := ss.s.known[ss.agent.ID]
	if k == nil {
		k = map[string]taskRef{}
		ss.s.known[ss.agent.ID] = k
	}
	for id, ref := range refs {
		k[id] = ref
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
			if err := validateSpool("heartbeat.spool", msg.Heartbeat.GetSpool()); err != nil {
				return rpcerr.Status(ss.s.log, "Session", err)
			}
			ss.spool.Store(msg.Heartbeat.GetSpool())
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

// handleBatch validates, admits (rate and overload), screens, commits
// and only then acks one batch.
func (ss *session) handleBatch(ctx context.Context, b *vantagev1.ResultBatch) error {
	if err := ValidateBatch(b); err != nil {
		return rpcerr.Status(ss.s.log, "Session", err)
	}
	// Admission first: screening may read the store (Voucher), and a
	// batch over the agent's rate or into an overloaded controller must
	// cost nothing more.
	if err := ss.admit(ctx, batchWork(len(b.GetResults()), len(b.GetGaps()))); err != nil {
		return err
	}
	results, refusedGaps, refused := ss.screen(ctx, b)
	ss.charge(GapWork * len(refusedGaps))
	// Encode here, in the session's goroutine, so the one writer only
	// writes.
	bodies := make([][]byte, len(results))
	for i, r := range results {
		var err error
		if bodies[i], err = proto.Marshal(r); err != nil {
			return rpcerr.Status(ss.s.log, "Session", fmt.Errorf("%w: results.results (seq %d): %w", rpcerr.ErrInvalid, r.GetSeq(), err))
		}
	}
	agentGaps := ss.clipGaps(b.GetEpoch(), b.GetGaps())
	gaps := agentGaps
	if refused > 0 {
		gaps = append(slices.Clip(gaps), refusedGaps...)
	}
	fresh, committedAt, err := ss.s.commit(ctx, store.Batch{AgentID: ss.agent.ID, Epoch: b.GetEpoch(), Results: results,
		Bodies: bodies, Gaps: gaps, MaxGapRows: ss.s.cfg.MaxGapRows}, batchWork(len(results), len(gaps)))
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var th *throttled // the store failed: the agent waits and sends again
		if errors.As(err, &th) {
			ss.s.stats.throttled(ThrottleStore)
			return ss.throttle(ctx, th)
		}
		return rpcerr.Status(ss.s.log, "Session", fmt.Errorf("%w: commit batch: %w", rpcerr.ErrUnavailable, err))
	}
	ss.s.stats.committedBatch(fresh, agentGaps)
	if refused > 0 {
		ss.s.refused.Add(uint64(refused))
		ss.s.log.Warn("results refused", "agent", ss.agent.ID, "epoch", b.GetEpoch(), "refused", refused,
			"accepted", len(results), "gaps", len(refusedGaps), "first_seq", refusedGaps[0].GetFirstSeq(),
			"reason", refusedGaps[0].GetReason())
	}
	return ss.acked(ctx, b, results, fresh, committedAt)
}

// acked acks a committed batch and feeds its fresh results to the
// observer.
func (ss *session) acked(ctx context.Context, b *vantagev1.ResultBatch, results []*vantagev1.ProbeResult, fresh []bool, committedAt time.Time) error {
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
