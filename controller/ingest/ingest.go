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
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
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
	// DefaultHelloTimeout bounds how long a session may take to send its
	// Hello: an agent sends it at once, and a stream that never does (a
	// stuck or hostile agent) would otherwise hold its goroutine until the
	// connection ends.
	DefaultHelloTimeout = 30 * time.Second
)

// Campaigns gives the parsed ACTIVE campaigns, which assignments are made
// of (catalogue.Catalogue implements it).
type Campaigns interface {
	Active() []*campaign.Spec
}

// Voucher is implemented by a Campaigns that can vouch for a result of a
// task the session was not assigned: a stored campaign (paused, or edited
// since) whose selection matches the agent and whose expansion has the task
// (catalogue.Catalogue implements it). Without it such results are refused.
type Voucher interface {
	Vouches(ctx context.Context, campaign, taskID, target string, labels map[string]string) bool
}

// Observer is told about fresh results and session state (the live
// verdict worker and discovery).
type Observer interface {
	Feed(agentID string, results []*vantagev1.ProbeResult)
	SetAgentConnected(agentID string, labels map[string]string, connected bool, at time.Time)
}

// Config wires a Server.
type Config struct {
	Store     SessionStore
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
	// SessionRate is how many agent sessions may start per second
	// (0: DefaultSessionRate, negative: no limit), SessionBurst how many
	// at once (0: DefaultSessionBurst), SessionStarts how many may be
	// starting at once (0: DefaultSessionStarts). Beyond them a session
	// ends at once with RESOURCE_EXHAUSTED and a retry-after (admission.go).
	// HelloTimeout ends a session whose first message has not arrived
	// this long after it began (DeadlineExceeded); 0: DefaultHelloTimeout.
	HelloTimeout  time.Duration
	SessionRate   float64
	SessionBurst  int
	SessionStarts int
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
	adm          *admission    // session starts (admission.go)

	// Drain (drain.go): drainc is closed when it begins, drainCtx is its
	// grace (set before drainc closes).
	drainc       chan struct{}
	drainOnce    sync.Once
	drainCtx     context.Context
	drainBatches atomic.Uint64 // batches committed after the drain began
	drainAcks    atomic.Uint64 // acks sent after the drain began
	health       storeHealth   // store write failures and whether the store fails now (commit.go)
	commitStore  SessionStore  // the store as given, which the committer writes to (cfg.Store is watched)
}

// New returns a Server.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Log, now: cfg.Now, sessions: map[string]*session{}, known: map[string]map[string]taskRef{},
		triggers: map[string]map[string]*triggerRef{}, limiters: map[string]*rate.Limiter{}, gapSeqs: map[string]*rate.Limiter{},
		commits: make(chan *commitReq, 4096), commitStop: make(chan struct{}), commitDone: make(chan struct{}), clock: time.Now(),
		drainc: make(chan struct{})}
	s.cfg.defaults()
	s.cfg.sessionDefaults()
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.adm = newAdmission(s.cfg.SessionRate, s.cfg.SessionBurst, s.cfg.SessionStarts, s.now, s.log)
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
			s.log.Info("enrolment refused", slog.String("reason", "bad join token"), slog.String("name", req.GetName()))
		}
		return nil, agentService.Status(s.log, "Enroll", err)
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
		sess.kill(ErrShuttingDown)
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
	busy     chan struct{} // held by the recv loop while it handles a message (drain.go)
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

// Session is the agent's long-lived stream. Its end is converted here,
// once, through AgentService's table (a throttle's retry-after goes in the
// trailer).
func (s *Server) Session(stream vantagev1.AgentService_SessionServer) error {
	return agentService.StreamStatus(s.log, "Session", stream, s.session(stream))
}

func (s *Server) session(stream vantagev1.AgentService_SessionServer) error {
	// Counted from the start, so Wait never races a handler that is
	// about to start its recv loop.
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrStopping
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	ctx := stream.Context()
	ss, hello, release, err := s.open(stream)
	if err != nil {
		return err
	}
	defer release()
	agent, labels := ss.agent, ss.labels
	log := s.log.With(slog.String("agent", agent.ID))
	log.Info("agent session started", slog.String("remote", ss.remote), slog.Uint64("epoch", hello.GetEpoch()),
		slog.String("version", hello.GetAgentVersion()))
	if m := ss.renewAdvice(ctx); m != nil {
		select {
		case ss.out <- m: // sent after the first assignment
		default: // queue full: advised again at the next session
		}
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.SetAgentConnected(agent.ID, labels, true, ss.connectedAt)
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
	killed, err := ss.serve(ctx, release)
	var th *throttled
	if errors.As(err, &th) {
		log.Info("agent session throttled", slog.String("reason", th.reason), slog.Duration("retry_after", th.retry))
		return err
	}
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case killed: // revoked, replaced or shutting down: expected
		log.Info("agent session closed by controller", slog.String("reason", status.Convert(err).Message()))
	case status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled):
		log.Debug("agent session cancelled")
	case err != nil:
		log.Warn("agent session failed", slog.Any("error", err))
	}
	return err
}

// open starts a session: the agent's identity, its Hello, admission (a
// refusal is RESOURCE_EXHAUSTED with a retry-after), the Hello's store
// write, and the session registered as the agent's live one. release ends
// the start for admission.
func (s *Server) open(stream vantagev1.AgentService_SessionServer) (*session, *vantagev1.Hello, func(), error) {
	ctx := stream.Context()
	agent, err := s.cfg.Fleet.AgentFromPeer(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	first, err := s.recvFirst(stream)
	if err != nil {
		return nil, nil, nil, err
	}
	hello := first.GetHello()
	if hello == nil {
		return nil, nil, nil, rpcerr.Reasonf(ErrInvalid, "msg: the first message must be hello")
	}
	if err := validateHello(hello); err != nil {
		return nil, nil, nil, err
	}
	// Admission before the Hello's store write: in a reconnect storm the
	// agents beyond the start rate cost a read and this refusal.
	release, refused := s.adm.enter(agent.ID)
	if refused != nil {
		return nil, nil, nil, refused
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
		release()
		return nil, nil, nil, fmt.Errorf("record hello: %w: %w", ErrStore, err)
	}
	ss := &session{s: s, agent: agent, labels: labels, stream: stream,
		out: make(chan *vantagev1.ControllerMessage, sendQueue), reassign: make(chan struct{}, 1),
		done: make(chan struct{}), busy: make(chan struct{}, 1), killc: make(chan struct{}), connectedAt: now, remote: remote,
		ackTimes: make(chan time.Time, 2*sendQueue),
		version:  hello.GetAssignmentVersion()}

	s.mu.Lock()
	if old := s.sessions[agent.ID]; old != nil {
		old.kill(ErrReplaced)
	}
	s.sessions[agent.ID] = ss
	s.mu.Unlock()
	// A revoke between the identity check and the registration above would
	// have found no session to close: check again now that it is visible.
	if cur, err := s.cfg.Store.GetAgent(ctx, agent.ID); err == nil && cur.State != vantagev1.AgentState_AGENT_STATE_ACTIVE {
		ss.kill(rpcerr.Reasonf(ErrNotActive, "agent %s is %s", agent.ID, cur.State))
	}
	return ss, hello, release, nil
}

// serve runs the session's send and recv loops until one ends, the
// session is killed, the server drains or the stream ends; killed says the
// controller ended it. release ends the start once the first assignment
// is made.
func (ss *session) serve(ctx context.Context, release func()) (killed bool, err error) {
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
	release() // the start is over: the rest is the session's own work
	sendWG.Add(1)
	go func() {
		defer sendWG.Done()
		errc <- ss.sendLoop(ctx, stopSend, assignment)
	}()
	ss.s.wg.Add(1)
	go func() {
		defer ss.s.wg.Done()
		errc <- ss.recvLoop(ctx)
	}()
	select {
	case err = <-errc:
	case <-ss.killc:
		err, killed = ss.killErr, true
	case <-ss.s.drainc:
		err, killed = ss.drain(ctx), true
	case <-ctx.Done():
		err = ctx.Err()
	}
	if errors.Is(err, errDraining) {
		err, killed = ss.drain(ctx), true
	}
	close(stopSend)
	sendWG.Wait()
	return killed, err
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
		ss.s.log.Debug("assignment sent", slog.String("agent", ss.agent.ID), slog.Uint64("version", a.GetVersion()),
			slog.Int("tasks", len(a.GetTasks())))
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
					ss.sentDuringDrain(m)
				default:
					return nil
				}
			}
		case m := <-ss.out:
			if err := ss.stream.Send(m); err != nil {
				return err
			}
			ss.sentAck(m)
			ss.sentDuringDrain(m)
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
