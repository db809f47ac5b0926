// Package api implements OperatorService, what vantagectl, grpcurl and the
// dashboard call. It exists to keep the operator surface thin and uniform:
// one interceptor checks the bearer token and the role per method from one
// table, every error is translated once, in the interceptors, by one table
// (rpcerr.Operator), and every change writes an audit entry. The work
// itself is done by store, fleet, the campaign catalogue, the live verdict
// worker, discovery, ingest and the BGP view (bgp.go).
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/catalogue"
	"github.com/vantage-net/vantage/controller/discovery"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/ingest"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict/live"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Limits of the query methods.
const (
	DefaultResultLimit   = 1000
	MaxResultLimit       = 100000
	DefaultTimelineLimit = 1000
	MaxTimelineLimit     = 10000
	DefaultAgentPage     = 500
	MaxAgentPage         = 1000
	DefaultAuditLimit    = 100
	MaxAuditLimit        = 10000
	DefaultExplainRounds = 3
	MaxExplainRounds     = 100
	maxExplainResults    = 10000
)

// Config wires a Server.
type Config struct {
	Store Records
	Fleet *fleet.Fleet
	// Campaigns is the campaign catalogue: the specs of the ACTIVE
	// campaigns, and Changed after every change a method stores.
	Campaigns *catalogue.Catalogue
	Verdicts  *live.Worker
	Sessions  *ingest.Server
	// Limits refuses campaigns aimed at special-purpose, blocklisted or
	// opted-out ranges or over the rate caps; nil checks nothing (tests).
	Limits *campaign.Limits
	// Discovery runs targets.hosts.discover and upstreams: auto; nil
	// refuses such campaigns as unimplemented (tests).
	Discovery *discovery.Runner
	Log       *slog.Logger
	// StreamLimits bound each token's queries and streams; zero fields
	// take the defaults.
	StreamLimits StreamLimits
	// RIB is the routing view (the one the verdicts read); nil: an empty
	// one of the server's own, so the BGP methods answer with nothing.
	RIB *bgp.RIB
	// BGP is the stored BGP evidence; nil: Store when it implements
	// BGPRecords, else ListBgpUpdates and ImportBgpUpdates are refused.
	BGP BGPRecords
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Server implements vantagev1.OperatorServiceServer.
type Server struct {
	vantagev1.UnimplementedOperatorServiceServer
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	limits  StreamLimits
	gate    *tokenGate
	senders sync.WaitGroup // of pacedStream senders

	rib      *bgp.RIB
	bgpStore BGPRecords
}

// New returns a Server. Register its interceptors with the gRPC server,
// and call Wait once the gRPC server has stopped.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, log: cfg.Log, now: cfg.Now, limits: cfg.StreamLimits.withDefaults()}
	s.gate = &tokenGate{running: map[string]int{}, most: s.limits.QueriesPerToken}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.rib, s.bgpStore = cfg.RIB, cfg.BGP
	if s.rib == nil {
		s.rib = bgp.NewRIB(bgp.Options{})
	}
	if br, ok := cfg.Store.(BGPRecords); ok && s.bgpStore == nil {
		s.bgpStore = br
	}
	return s
}

// fail converts a method's error through OperatorService's table; only the
// interceptors call it, once per call.
func (s *Server) fail(method string, err error) error { return rpcerr.Status(s.log, method, err) }

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func (s *Server) audit(ctx context.Context, action, subject, detail string) store.AuditEntry {
	return store.AuditEntry{At: s.now(), Actor: actor(ctx), Action: action, Subject: subject, Detail: detail}
}

// ---- agents ----

func (s *Server) agentInfo(ctx context.Context, a store.Agent) (*vantagev1.AgentInfo, error) {
	info := &vantagev1.AgentInfo{
		Id: a.ID, Name: a.Name, Labels: a.Labels, State: a.State, EnrolledAt: ts(a.EnrolledAt), LastSeen: ts(a.LastSeen),
		RemoteAddr: a.RemoteAddr, AgentVersion: a.AgentVersion, Capabilities: a.Capabilities, Spool: a.Spool, Epoch: a.Epoch,
		ResultsStored: a.ResultsStored, DuplicatesDropped: a.DuplicatesDropped, Gaps: a.Gaps,
	}
	var reasons []string
	if si, ok := s.cfg.Sessions.Connected(a.ID); ok {
		info.Connected = true
		info.RemoteAddr = si.RemoteAddr
		info.AssignmentVersion = si.AssignmentVersion
		info.Tasks = uint32(si.Tasks)
		healthy, reason, known := s.cfg.Verdicts.AgentHealth(a.ID)
		switch {
		case known:
			info.Healthy = healthy
			if reason != "" {
				reasons = append(reasons, reason)
			}
		case si.Tasks == 0:
			info.Healthy = true
			reasons = append(reasons, "no campaign selects this agent")
		default:
			reasons = append(reasons, "no verdict evidence yet")
		}
	} else {
		switch a.State {
		case vantagev1.AgentState_AGENT_STATE_REVOKED:
			reasons = append(reasons, "revoked: "+a.StateReason)
		case vantagev1.AgentState_AGENT_STATE_PENDING:
			reasons = append(reasons, "awaiting approval")
		default:
			reasons = append(reasons, "session down")
		}
	}
	sts, err := s.cfg.Store.TaskStatuses(ctx, a.ID)
	if err != nil {
		return nil, err
	}
	// Summarised per campaign: one line, not one per task (an agent
	// refusing every task of a large campaign made a 49,817-char cell).
	reasons = append(reasons, live.TaskStatusReasons(sts)...)
	info.HealthReason = strings.Join(reasons, "; ")
	return info, nil
}

// ApproveAgent activates a PENDING agent.
func (s *Server) ApproveAgent(ctx context.Context, req *vantagev1.ApproveAgentRequest) (*vantagev1.AgentInfo, error) {
	a, err := s.cfg.Store.GetAgent(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if a.State == vantagev1.AgentState_AGENT_STATE_REVOKED {
		return nil, fmt.Errorf("%w: agent %s is revoked; enrol it again", rpcerr.ErrFailedPrecondition, a.ID)
	}
	if a.State != vantagev1.AgentState_AGENT_STATE_ACTIVE {
		a, err = s.cfg.Store.SetAgentState(ctx, a.ID, vantagev1.AgentState_AGENT_STATE_ACTIVE, "",
			s.audit(ctx, "agent.approve", a.ID, "name="+a.Name))
		if err != nil {
			return nil, err
		}
	}
	info, err := s.agentInfo(ctx, a)
	if err != nil {
		return nil, err
	}
	return info, nil
}

// RevokeAgent revokes an agent and closes its live session at once.
func (s *Server) RevokeAgent(ctx context.Context, req *vantagev1.RevokeAgentRequest) (*vantagev1.AgentInfo, error) {
	if len(req.GetReason()) > 1024 {
		return nil, fmt.Errorf("%w: reason: longer than 1024", rpcerr.ErrInvalid)
	}
	a, err := s.cfg.Store.SetAgentState(ctx, req.GetId(), vantagev1.AgentState_AGENT_STATE_REVOKED, req.GetReason(),
		s.audit(ctx, "agent.revoke", req.GetId(), req.GetReason()))
	if err != nil {
		return nil, err
	}
	// The session's end is AgentService's: ingest converts it with its table.
	s.cfg.Sessions.Disconnect(a.ID, fmt.Errorf("%w: %s", fleet.ErrAgentRevoked, a.ID))
	info, err := s.agentInfo(ctx, a)
	if err != nil {
		return nil, err
	}
	return info, nil
}

// CreateJoinToken makes a join token and returns it with the CA pin.
func (s *Server) CreateJoinToken(ctx context.Context, req *vantagev1.CreateJoinTokenRequest) (*vantagev1.CreateJoinTokenResponse, error) {
	tok, exp, err := s.cfg.Fleet.CreateJoinToken(ctx, fleet.JoinTokenRequest{TTL: time.Duration(req.GetTtlS()) * time.Second,
		MaxUses: req.GetMaxUses(), Labels: req.GetLabels(), Actor: actor(ctx)})
	if err != nil {
		return nil, err
	}
	return &vantagev1.CreateJoinTokenResponse{Token: tok, ExpiresAt: timestamppb.New(exp), CaHash: s.cfg.Fleet.CA().Hash()}, nil
}

func (s *Server) joinTokenInfo(t store.JoinToken) *vantagev1.JoinTokenInfo {
	now := s.now()
	return &vantagev1.JoinTokenInfo{Id: t.ID(), CreatedAt: ts(t.CreatedAt), CreatedBy: t.CreatedBy, ExpiresAt: ts(t.ExpiresAt),
		MaxUses: t.MaxUses, Uses: t.Uses, Labels: t.Labels,
		Usable: t.ExpiresAt.After(now) && (t.MaxUses == 0 || t.Uses < t.MaxUses)}
}

// ListJoinTokens lists the join tokens, newest first, by id.
func (s *Server) ListJoinTokens(ctx context.Context, _ *vantagev1.ListJoinTokensRequest) (*vantagev1.ListJoinTokensResponse, error) {
	toks, err := s.cfg.Store.ListJoinTokens(ctx)
	if err != nil {
		return nil, err
	}
	resp := &vantagev1.ListJoinTokensResponse{Tokens: make([]*vantagev1.JoinTokenInfo, 0, len(toks))}
	for _, t := range toks {
		resp.Tokens = append(resp.Tokens, s.joinTokenInfo(t))
	}
	return resp, nil
}

// RevokeJoinToken makes one join token expire now.
func (s *Server) RevokeJoinToken(ctx context.Context, req *vantagev1.RevokeJoinTokenRequest) (*vantagev1.JoinTokenInfo, error) {
	id := req.GetId()
	if len(id) != store.JoinTokenIDLen || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%w: id: %q is not a join token id (%d hex characters, as token list shows)", rpcerr.ErrInvalid, id, store.JoinTokenIDLen)
	}
	t, err := s.cfg.Store.ExpireJoinToken(ctx, id, s.now(), s.audit(ctx, "token.join.revoke", id, ""))
	if err != nil {
		return nil, err
	}
	return s.joinTokenInfo(t), nil
}

// CreateOperatorToken mints an operator token; the caller is an admin
// (methodRoles), whom the audit entry names.
func (s *Server) CreateOperatorToken(ctx context.Context, req *vantagev1.CreateOperatorTokenRequest) (*vantagev1.CreateOperatorTokenResponse, error) {
	role, err := store.ParseRole(req.GetRole())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", rpcerr.ErrInvalid, err)
	}
	tok, err := s.cfg.Fleet.CreateOperatorTokenAs(ctx, actor(ctx), req.GetName(), role)
	if err != nil {
		return nil, err
	}
	return &vantagev1.CreateOperatorTokenResponse{Token: tok, Name: req.GetName(), Role: role.String()}, nil
}

// ---- campaigns ----

func (s *Server) campaignProto(ctx context.Context, c store.Campaign) (*vantagev1.Campaign, error) {
	// With its discovered targets once discovery has finished; the listed
	// ones (perhaps none) while it runs.
	spec, err := catalogue.SpecFor(c)
	if err != nil && !errors.Is(err, catalogue.ErrNotDiscovered) {
		return nil, fmt.Errorf("%w: stored campaign %s no longer parses: %w", rpcerr.ErrInternal, c.Name, err)
	}
	p := spec.Proto()
	p.State, p.SpecYaml, p.Version = c.State, c.SpecYAML, c.Version
	if spec.NeedsDiscovery() && c.Discovery != nil && c.Discovery.Version == c.Version {
		p.Discovery = c.Discovery.Status
	}
	p.CreatedAt, p.UpdatedAt = ts(c.CreatedAt), ts(c.UpdatedAt)
	if c.State == vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE {
		p.AgentIds = s.assignedAgents(ctx, spec)
	}
	return p, nil
}

// assignedAgents lists connected agents the campaign selects.
func (s *Server) assignedAgents(ctx context.Context, spec *campaign.Spec) []string {
	as, err := s.cfg.Store.ListAgents(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range as {
		if _, ok := s.cfg.Sessions.Connected(a.ID); ok && a.State == vantagev1.AgentState_AGENT_STATE_ACTIVE && spec.SelectsAgent(a.Labels) {
			out = append(out, a.ID)
		}
	}
	return out
}

// ApplyCampaign validates a campaign file and stores it (unless dry_run).
func (s *Server) ApplyCampaign(ctx context.Context, req *vantagev1.ApplyCampaignRequest) (*vantagev1.Campaign, error) {
	if len(req.GetSpecYaml()) > campaign.MaxFileBytes {
		return nil, fmt.Errorf("%w: spec_yaml: larger than %d bytes", rpcerr.ErrInvalid, campaign.MaxFileBytes)
	}
	spec, err := campaign.Parse([]byte(req.GetSpecYaml()))
	if err != nil {
		return nil, err
	}
	if s.cfg.Limits != nil {
		if err := s.cfg.Limits.CheckContext(ctx, spec); err != nil {
			if ctx.Err() != nil { // the caller gave up during a long check
				return nil, fmt.Errorf("check campaign limits: %w", err)
			}
			s.log.Warn("campaign refused", slog.String("campaign", spec.Name()), slog.String("actor", actor(ctx)), slog.Any("error", err))
			return nil, err
		}
	}
	if spec.NeedsDiscovery() && s.cfg.Discovery == nil {
		return nil, fmt.Errorf("%w: targets: this controller does not run discovery", rpcerr.ErrUnimplemented)
	}
	if !req.GetAllowFewerVantages() {
		if err := s.checkQuorum(ctx, spec); err != nil {
			s.log.Info("campaign refused", slog.String("campaign", spec.Name()), slog.String("actor", actor(ctx)), slog.Any("error", err))
			return nil, err
		}
	}
	if req.GetDryRun() {
		p := spec.Proto()
		p.SpecYaml = req.GetSpecYaml()
		p.State = vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE
		if spec.NeedsDiscovery() {
			p.State = vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING
		}
		return p, nil
	}
	name := spec.Name()
	detail := fmt.Sprintf("targets=%d round=%s", len(spec.Targets()), spec.Round())
	if spec.NeedsDiscovery() {
		detail += " discover=true"
	}
	c, changed, err := s.cfg.Store.PutCampaign(ctx, name, req.GetSpecYaml(), s.now(), s.audit(ctx, "campaign.apply", name, detail))
	if err != nil {
		return nil, err
	}
	switch {
	case spec.NeedsDiscovery():
		// Every apply (re-)runs discovery, changed or not: hosts come and go.
		if c, err = s.cfg.Discovery.Begin(ctx, name, c.Version, store.AuditEntry{}); err != nil {
			return nil, err
		}
		s.log.Info("campaign applied; discovering targets", slog.String("campaign", name), slog.Uint64("version", c.Version),
			slog.String("actor", actor(ctx)))
		s.cfg.Campaigns.Changed(ctx)
	case c.State == vantagev1.CampaignState_CAMPAIGN_STATE_DISCOVERING:
		// Discovery was dropped from the spec: the listed targets run now.
		if c, err = s.cfg.Store.SetCampaignState(ctx, name, vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE, s.now(), store.AuditEntry{}); err != nil {
			return nil, err
		}
		s.cfg.Campaigns.Changed(ctx)
	case changed:
		s.log.Info("campaign applied", slog.String("campaign", name), slog.Uint64("version", c.Version), slog.String("actor", actor(ctx)))
		s.cfg.Campaigns.Changed(ctx)
	}
	p, err := s.campaignProto(ctx, c)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// checkQuorum refuses a campaign whose vantages.quorum exceeds the groups
// of enrolled, active agents it selects (counted as the verdict engine
// counts them): every verdict would be UNKNOWN.
func (s *Server) checkQuorum(ctx context.Context, spec *campaign.Spec) error {
	as, err := s.cfg.Store.ListAgents(ctx)
	if err != nil {
		return fmt.Errorf("%w: list agents: %w", rpcerr.ErrUnavailable, err)
	}
	var labels []map[string]string
	for _, a := range as {
		if a.State == vantagev1.AgentState_AGENT_STATE_ACTIVE {
			labels = append(labels, a.Labels)
		}
	}
	if err := spec.CheckQuorum(labels, s.cfg.Verdicts.QuorumLabel()); err != nil {
		return fmt.Errorf("%w (enrol the agents first, or apply with vantagectl campaign apply --allow-fewer-vantages)", err)
	}
	return nil
}

// ListCampaigns returns every stored campaign.
func (s *Server) ListCampaigns(ctx context.Context, _ *vantagev1.ListCampaignsRequest) (*vantagev1.ListCampaignsResponse, error) {
	cs, err := s.cfg.Store.ListCampaigns(ctx)
	if err != nil {
		return nil, err
	}
	out := &vantagev1.ListCampaignsResponse{}
	for _, c := range cs {
		p, err := s.campaignProto(ctx, c)
		if err != nil {
			return nil, err
		}
		out.Campaigns = append(out.Campaigns, p)
	}
	return out, nil
}

// GetCampaign returns one campaign.
func (s *Server) GetCampaign(ctx context.Context, req *vantagev1.GetCampaignRequest) (*vantagev1.Campaign, error) {
	c, err := s.cfg.Store.GetCampaign(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	p, err := s.campaignProto(ctx, c)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Server) setState(ctx context.Context, method, name string, state vantagev1.CampaignState, action string) (*vantagev1.Campaign, error) {
	c, err := s.cfg.Store.GetCampaign(ctx, name)
	if err != nil {
		return nil, err
	}
	if c.State == state { // a no-op: no audit entry, no reload
		p, err := s.campaignProto(ctx, c)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	c, err = s.cfg.Store.SetCampaignState(ctx, name, state, s.now(), s.audit(ctx, action, name, ""))
	if err != nil {
		return nil, err
	}
	if _, err := catalogue.SpecFor(c); errors.Is(err, catalogue.ErrNotDiscovered) && state == vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE &&
		s.cfg.Discovery != nil {
		// Resumed before its discovery finished: discover again.
		if c, err = s.cfg.Discovery.Begin(ctx, name, c.Version, store.AuditEntry{}); err != nil {
			return nil, err
		}
	}
	s.cfg.Campaigns.Changed(ctx)
	p, err := s.campaignProto(ctx, c)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// PauseCampaign stops scheduling a campaign; its data is kept.
func (s *Server) PauseCampaign(ctx context.Context, req *vantagev1.PauseCampaignRequest) (*vantagev1.Campaign, error) {
	return s.setState(ctx, "PauseCampaign", req.GetName(), vantagev1.CampaignState_CAMPAIGN_STATE_PAUSED, "campaign.pause")
}

// ResumeCampaign schedules a paused campaign again.
func (s *Server) ResumeCampaign(ctx context.Context, req *vantagev1.ResumeCampaignRequest) (*vantagev1.Campaign, error) {
	return s.setState(ctx, "ResumeCampaign", req.GetName(), vantagev1.CampaignState_CAMPAIGN_STATE_ACTIVE, "campaign.resume")
}

// DeleteCampaign removes a campaign; stored results and transitions stay.
func (s *Server) DeleteCampaign(ctx context.Context, req *vantagev1.DeleteCampaignRequest) (*vantagev1.DeleteCampaignResponse, error) {
	if err := s.cfg.Store.DeleteCampaign(ctx, req.GetName(), s.audit(ctx, "campaign.delete", req.GetName(), "")); err != nil {
		return nil, err
	}
	s.cfg.Campaigns.Changed(ctx)
	return &vantagev1.DeleteCampaignResponse{}, nil
}

// ---- results and verdicts ----

func boundedLimit(field string, got uint32, def, most int) (int, error) {
	if got == 0 {
		return def, nil
	}
	if int(got) > most {
		return 0, fmt.Errorf("%w: %s: %d is more than %d", rpcerr.ErrInvalid, field, got, most)
	}
	return int(got), nil
}

func toStored(sr store.StoredResult) *vantagev1.StoredResult {
	return &vantagev1.StoredResult{AgentId: sr.AgentID, Epoch: sr.Epoch, Result: sr.Result, ReceivedAt: ts(sr.ReceivedAt)}
}

// QueryResults streams stored results, oldest first.
func (s *Server) QueryResults(req *vantagev1.QueryResultsRequest, stream vantagev1.OperatorService_QueryResultsServer) error {
	limit, err := boundedLimit("limit", req.GetLimit(), DefaultResultLimit, MaxResultLimit)
	if err != nil {
		return err
	}
	if t := req.GetTarget(); t != "" {
		if _, err := netip.ParseAddr(t); err != nil {
			return fmt.Errorf("%w: target: %q is not an IP address", rpcerr.ErrInvalid, t)
		}
	}
	// An unknown campaign is NotFound, as GetVerdicts and GetTimeline say,
	// not an empty stream.
	if err := s.checkCampaign(stream.Context(), req.GetCampaign()); err != nil {
		return err
	}
	q := store.ResultQuery{Campaign: req.GetCampaign(), AgentID: req.GetAgentId(), Target: req.GetTarget(), Limit: limit}
	if req.GetFrom() != nil {
		q.From = req.GetFrom().AsTime()
	}
	if req.GetTo() != nil {
		q.To = req.GetTo().AsTime()
	}
	err = s.cfg.Store.QueryResults(stream.Context(), q, func(sr store.StoredResult) error {
		return stream.Send(toStored(sr))
	})
	return err
}

// withNames fills evidence agent names from the store.
func (s *Server) withNames(ctx context.Context, vs []*vantagev1.Verdict) {
	as, err := s.cfg.Store.ListAgents(ctx)
	if err != nil {
		return
	}
	names := make(map[string]string, len(as))
	for _, a := range as {
		names[a.ID] = a.Name
	}
	for _, v := range vs {
		for _, ev := range v.GetEvidence() {
			if ev.GetAgentName() == "" {
				ev.AgentName = names[ev.GetAgentId()]
			}
		}
	}
}

func (s *Server) checkCampaign(ctx context.Context, name string) error {
	if name == "" {
		return nil
	}
	_, err := s.cfg.Store.GetCampaign(ctx, name)
	return err
}

// GetVerdicts returns the current verdicts.
func (s *Server) GetVerdicts(ctx context.Context, req *vantagev1.GetVerdictsRequest) (*vantagev1.GetVerdictsResponse, error) {
	if err := s.checkCampaign(ctx, req.GetCampaign()); err != nil {
		return nil, err
	}
	vs := s.cfg.Verdicts.Verdicts(req.GetCampaign(), req.GetLevel())
	s.withNames(ctx, vs)
	return &vantagev1.GetVerdictsResponse{Verdicts: vs}, nil
}

// WatchVerdicts sends the current verdicts, then transitions as they are
// stored. A watcher that falls behind is ended with ResourceExhausted.
func (s *Server) WatchVerdicts(req *vantagev1.WatchVerdictsRequest, stream vantagev1.OperatorService_WatchVerdictsServer) error {
	ctx := stream.Context()
	if err := s.checkCampaign(ctx, req.GetCampaign()); err != nil {
		return err
	}
	w := s.cfg.Verdicts.Watch(req.GetCampaign(), req.GetLevel()) // before the snapshot: nothing missed
	defer w.Close()
	vs := s.cfg.Verdicts.Verdicts(req.GetCampaign(), req.GetLevel())
	s.withNames(ctx, vs)
	for _, v := range vs {
		if err := stream.Send(&vantagev1.VerdictUpdate{Update: &vantagev1.VerdictUpdate_Verdict{Verdict: v}}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-w.C:
			if err := stream.Send(&vantagev1.VerdictUpdate{Update: &vantagev1.VerdictUpdate_Transition{Transition: t}}); err != nil {
				return err
			}
		case <-w.Done():
			// Drain what was buffered before the drop, then tell the client.
			for {
				select {
				case t := <-w.C:
					if err := stream.Send(&vantagev1.VerdictUpdate{Update: &vantagev1.VerdictUpdate_Transition{Transition: t}}); err != nil {
						return err
					}
				default:
					return w.Err()
				}
			}
		}
	}
}

// Explain returns a verdict and the stored results of its subject for the
// last N rounds.
func (s *Server) Explain(ctx context.Context, req *vantagev1.ExplainRequest) (*vantagev1.ExplainResponse, error) {
	rounds, err := boundedLimit("rounds", req.GetRounds(), DefaultExplainRounds, MaxExplainRounds)
	if err != nil {
		return nil, err
	}
	v, ok := s.cfg.Verdicts.Verdict(req.GetVerdictId())
	if !ok {
		return nil, fmt.Errorf("verdict_id %q: %w", req.GetVerdictId(), rpcerr.ErrNotFound)
	}
	spec, ok := s.cfg.Campaigns.Spec(v.GetCampaign())
	if !ok {
		return nil, fmt.Errorf("campaign %q: %w", v.GetCampaign(), rpcerr.ErrNotFound)
	}
	q := store.ResultQuery{Campaign: v.GetCampaign(), Limit: maxExplainResults, HasMinRound: true,
		MinRound: v.GetRound() - int64(rounds) + 1}
	switch v.GetLevel() {
	case vantagev1.Level_LEVEL_TARGET:
		q.Target = v.GetSubject()
	case vantagev1.Level_LEVEL_NETWORK:
		for _, t := range spec.Targets() {
			if t.Network == v.GetSubject() {
				q.Targets = append(q.Targets, t.Addr.String())
			}
		}
		if len(q.Targets) == 0 {
			return &vantagev1.ExplainResponse{Verdict: v}, nil
		}
	}
	if v.GetLevel() != vantagev1.Level_LEVEL_SCOPE {
		// The upstream and border routers decide the location.
		for _, t := range spec.Targets() {
			if t.Role == vantagev1.TargetRole_TARGET_ROLE_UPSTREAM || t.Role == vantagev1.TargetRole_TARGET_ROLE_BORDER {
				q.Targets = append(q.Targets, t.Addr.String())
			}
		}
		if q.Target != "" {
			q.Targets, q.Target = append(q.Targets, q.Target), ""
		}
	}
	out := &vantagev1.ExplainResponse{Verdict: v}
	add := func(sr store.StoredResult) error {
		out.Results = append(out.Results, toStored(sr))
		return nil
	}
	// Traces taken since the round before the state began (those the
	// location uses) even when older than the window.
	if since := v.GetSince(); since != nil && spec.Round() > 0 {
		from := int64(since.AsTime().Sub(spec.Start())/spec.Round()) - 1
		if from < q.MinRound {
			tq := q
			tq.MinRound, tq.To = from, spec.Start().Add(time.Duration(q.MinRound)*spec.Round())
			err = s.cfg.Store.QueryResults(ctx, tq, func(sr store.StoredResult) error {
				if sr.Result.GetKind() == vantagev1.ProbeKind_PROBE_KIND_TRACE {
					return add(sr)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	if err := s.cfg.Store.QueryResults(ctx, q, add); err != nil {
		return nil, err
	}
	s.withNames(ctx, []*vantagev1.Verdict{v})
	return out, nil
}

// ListAudit returns the newest audit entries, newest first.
func (s *Server) ListAudit(ctx context.Context, req *vantagev1.ListAuditRequest) (*vantagev1.ListAuditResponse, error) {
	limit, err := boundedLimit("limit", req.GetLimit(), DefaultAuditLimit, MaxAuditLimit)
	if err != nil {
		return nil, err
	}
	es, err := s.cfg.Store.ListAudit(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := &vantagev1.ListAuditResponse{}
	for _, e := range es {
		out.Entries = append(out.Entries, &vantagev1.AuditEntry{Id: e.ID, At: ts(e.At), Actor: e.Actor, Action: e.Action,
			Subject: e.Subject, Detail: e.Detail})
	}
	return out, nil
}
