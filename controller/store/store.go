// Package store defines what the controller keeps durably: agents, join and
// operator tokens, campaigns, probe results, verdict transitions, BGP
// evidence and the audit log. It exists so that the rest of the controller depends on these
// types rather than on SQL; store/sqlite is the embedded implementation (a
// PostgreSQL one can sit beside it).
//
// Store is the union an implementation provides, and no consumer takes it:
// each consumer declares the few methods it uses next to the code that uses
// them (api.Records, ingest.SessionStore, fleet.Registry,
// catalogue.CampaignSource, discovery.Recorder, live.VerdictStore,
// retention.ResultPruner, metrics.ResultPruner, api.BGPRecords,
// record.Store, retention.BGPPruner), so that a consumer's
// dependence on the store reads in one place and a test fake implements only
// that. vantage-controller, which opens the store, holds the *sqlite.DB.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Sentinel errors. Callers test them with errors.Is; the api package maps
// them to gRPC codes in one table.
var (
	// ErrNotFound: no such agent, campaign or token.
	ErrNotFound = errors.New("not found")
	// ErrExists: a row with that key already exists.
	ErrExists = errors.New("already exists")
	// ErrTokenInvalid: the join token is unknown, expired or used up.
	ErrTokenInvalid = errors.New("join token unknown, expired or used up")
	// ErrConflict: the row changed meanwhile (e.g. a campaign re-applied
	// while its discovery ran).
	ErrConflict = errors.New("changed meanwhile")
	// ErrRevoked: the operator token was revoked; its secret is never
	// accepted again.
	ErrRevoked = errors.New("revoked")
)

// Role is an operator token's privilege: viewer < operator < admin.
type Role int

// Roles, ordered so that a higher role includes the lower ones.
const (
	RoleNone Role = iota
	RoleViewer
	RoleOperator
	RoleAdmin
)

// String returns the role's name as used in flags and audit entries.
func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleOperator:
		return "operator"
	case RoleAdmin:
		return "admin"
	default:
		return "none"
	}
}

// ParseRole is the inverse of Role.String.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, errors.New("role: want viewer, operator or admin, got " + s)
}

// Agent is one enrolled vantage as stored.
type Agent struct {
	ID           string
	Name         string
	Labels       map[string]string
	State        vantagev1.AgentState
	EnrolledAt   time.Time
	CertSerial   string
	StateReason  string
	LastSeen     time.Time
	RemoteAddr   string
	AgentVersion string
	Capabilities *vantagev1.Capabilities
	Spool        *vantagev1.SpoolState
	Epoch        uint64
	// Counters maintained by CommitBatch.
	ResultsStored     uint64
	DuplicatesDropped uint64
	Gaps              uint64
}

// AgentHello is what a Hello (or a reconnect) updates.
type AgentHello struct {
	At           time.Time
	RemoteAddr   string
	AgentVersion string
	Capabilities *vantagev1.Capabilities
	Labels       map[string]string
	Spool        *vantagev1.SpoolState
	Epoch        uint64
}

// TaskStatus is an agent's last word about one task (refused or fallback).
type TaskStatus struct {
	AgentID string
	TaskID  string
	Refused bool
	Reason  string
	Engine  string
	At      time.Time
}

// JoinToken is a stored join token. Only the SHA-256 of the secret is kept.
type JoinToken struct {
	Hash      string
	ExpiresAt time.Time
	// MaxUses 0 means unlimited until expiry.
	MaxUses   uint32
	Uses      uint32
	Labels    map[string]string
	CreatedBy string
	CreatedAt time.Time
}

// ID names a join token without its secret: the first JoinTokenIDLen hex
// characters of its hash, as its audit entries do.
func (t JoinToken) ID() string { return t.Hash[:min(len(t.Hash), JoinTokenIDLen)] }

// JoinTokenIDLen is the length of a join token's ID.
const JoinTokenIDLen = 12

// OperatorToken is a stored operator bearer token (hashed).
type OperatorToken struct {
	Name      string
	Hash      string
	Role      Role
	CreatedAt time.Time
	// CreatedBy is the audit actor of its creation (not stored):
	// "operator:<admin>" over the API, "controller" when empty (made on
	// the controller's host).
	CreatedBy string
}

// Campaign is a stored campaign: the YAML as applied plus bookkeeping. The
// expansion (targets, tasks) is recomputed from the YAML by the campaign
// package, so it can never disagree with it.
type Campaign struct {
	Name      string
	SpecYAML  string
	State     vantagev1.CampaignState
	Version   uint64
	CreatedAt time.Time
	UpdatedAt time.Time
	// Discovery is the stored discovery (targets.hosts.discover,
	// upstreams: auto), nil when none was ever run.
	Discovery *Discovery
}

// Discovery is what the controller's discovery of one campaign version
// reported and found.
type Discovery struct {
	// Version is the campaign version discovery ran for; a discovery of
	// an older version is stale.
	Version uint64
	Status  *vantagev1.DiscoveryStatus
	// Targets are the discovered hosts and routers (not the listed ones).
	Targets []*vantagev1.CampaignTarget
}

// Done reports whether the discovery of version finished with targets.
func (d *Discovery) Done(version uint64) bool {
	return d != nil && d.Version == version && d.Status.GetFinishedAt() != nil
}

// StoredResult is one result with its delivery metadata.
type StoredResult struct {
	AgentID    string
	Epoch      uint64
	Result     *vantagev1.ProbeResult
	ReceivedAt time.Time
}

// ResultQuery selects results; zero fields do not filter. Results come
// oldest first (by sent_at, then agent, epoch, seq).
type ResultQuery struct {
	Campaign string
	AgentID  string
	// Target filters on one address; Targets on any of several.
	Target  string
	Targets []string
	From    time.Time
	To      time.Time
	// MinRound filters on round >= MinRound when HasMinRound is set.
	MinRound    int64
	HasMinRound bool
	Limit       int
	// After, when set, keeps only the results after it in this order:
	// a stream resumed from the key of the last result it delivered.
	After *ResultKey
}

// ResultKey is a result's place in the order of results: (sent_at, agent,
// epoch, seq), unique per stored result.
type ResultKey struct {
	SentAt  time.Time
	AgentID string
	Epoch   uint64
	Seq     uint64
}

// KeyOf is a stored result's ResultKey.
func KeyOf(sr StoredResult) ResultKey {
	return ResultKey{SentAt: sr.Result.GetSentAt().AsTime(), AgentID: sr.AgentID, Epoch: sr.Epoch, Seq: sr.Result.GetSeq()}
}

// TimelineQuery selects stored transitions, oldest first. Transitions
// folded into a later transition into UNSTABLE (folded_into set) are left
// out unless IncludeFolded: the folded view is the one a reader quotes.
type TimelineQuery struct {
	Campaign string
	Level    vantagev1.Level
	// Subjects, when set, keeps only the transitions of these subjects of
	// Level (networks' names, targets' addresses): their verdict ids, so
	// Campaign and Level are required with it.
	Subjects      []string
	From          time.Time
	To            time.Time
	Limit         int
	IncludeFolded bool
}

// VerdictPageQuery selects one page of a campaign's unfolded transitions
// in verdict order: by verdict id, then detection time, then id, so that
// each verdict's transitions come together, oldest first (an export cuts
// them into episodes holding one verdict's state at a time). From and To
// bound detected_at ([From, To)); Level zero: every level. After resumes
// after the transition at that place (AfterVerdictID "": from the start).
type VerdictPageQuery struct {
	Campaign        string
	Level           vantagev1.Level
	From, To        time.Time
	AfterVerdictID  string
	AfterDetectedAt time.Time
	AfterID         int64
	Limit           int
}

// SeriesQuery selects stored quality points (vantagev1.QualityPoint),
// oldest round first. Empty fields match everything; From and To bound
// the round start ([From, To)). With Limit > 0 the newest Limit points are
// kept.
type SeriesQuery struct {
	Campaign string
	Network  string
	AgentID  string
	From     time.Time
	To       time.Time
	Limit    int
}

// SeriesStore is implemented by stores that keep the verdict engine's
// quality series: per campaign, network, vantage and round, one point.
type SeriesStore interface {
	// AddQualityPoints stores points, replacing any stored point of the
	// same campaign, network, vantage and round (a re-evaluated round
	// after a restart writes the same key again).
	AddQualityPoints(ctx context.Context, ps []*vantagev1.QualityPoint) error
	// Series returns the stored points q selects.
	Series(ctx context.Context, q SeriesQuery) ([]*vantagev1.QualityPoint, error)
}

// BGPPeerEvent is a routing view's session coming up or going down, as
// stored (bgp.PeerEvent without the package: the store does not depend on
// the BGP view).
type BGPPeerEvent struct {
	At       time.Time
	Peer     string
	PeerAS   uint32
	Source   string
	Up       bool
	FullFeed bool
}

// BGPQuery selects stored BGP updates, in time order (then by id). Zero
// fields do not filter. From and To bound the update's time, both
// included.
type BGPQuery struct {
	// Prefixes: updates of a prefix overlapping any of these (the prefix
	// itself, those covering it, those more specific than it).
	Prefixes []netip.Prefix
	From, To time.Time
	// AfterAt and AfterID resume after the update (AfterAt, AfterID) of an
	// earlier page; AfterID 0: from the start.
	AfterAt time.Time
	AfterID int64
	Limit   int
}

// BGPStore is implemented by stores that keep BGP evidence: the updates
// the controller's routing view kept and the peers' session events
// (controller/bgp/record writes them, the API reads them).
type BGPStore interface {
	// AddBGP stores updates (assigning each its id) and peer events in one
	// transaction, with audit when its Action is set. An invalid update
	// (no time, peer or prefix) fails the call and stores nothing.
	AddBGP(ctx context.Context, us []*vantagev1.BgpUpdate, es []BGPPeerEvent, audit AuditEntry) error
	// BGPUpdates returns the stored updates q selects.
	BGPUpdates(ctx context.Context, q BGPQuery) ([]*vantagev1.BgpUpdate, error)
	// BGPPeerEvents returns the stored peer events in [from, to] (zero:
	// unbounded), in time order, at most limit (0: all).
	BGPPeerEvents(ctx context.Context, from, to time.Time, limit int) ([]BGPPeerEvent, error)
	// BGPLatestBefore returns, of everything stored before t, the latest
	// update per source, peer and prefix and the latest peer event per
	// source and peer: the routing state at t, to start a replay from.
	BGPLatestBefore(ctx context.Context, t time.Time) ([]*vantagev1.BgpUpdate, []BGPPeerEvent, error)
	// PruneBGP deletes up to maxRows updates and up to maxRows peer events
	// older than before, oldest first, in one transaction, and returns how
	// many rows went; the caller loops until fewer than maxRows went.
	PruneBGP(ctx context.Context, before time.Time, maxRows int) (int64, error)
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID      int64
	At      time.Time
	Actor   string
	Action  string
	Subject string
	Detail  string
}

// Batch is one agent's ResultBatch as GroupCommitter stores it.
type Batch struct {
	AgentID string
	Epoch   uint64
	Results []*vantagev1.ProbeResult
	// Bodies are the results' protobuf encodings, made by the caller (in
	// parallel, outside the writer); nil makes the store encode them.
	Bodies [][]byte
	Gaps   []*vantagev1.Gap
	// MaxGapRows caps the agent's stored gap rows (0: no cap). Once the
	// agent has that many, a gap next to or over seqs already accounted
	// for is still claimed (so a re-sent gap is not counted twice) and
	// counted in Agent.Gaps, but no row is written, and an isolated gap
	// is dropped: a liar cannot grow the gaps table, nor the seq ranges
	// through gaps, without bound. Retention (GapPruner) frees rows again.
	MaxGapRows int
}

// GapPruner is implemented by stores that can delete old gap records
// (retention). PruneGaps deletes up to maxRows gap rows received before
// receivedBefore, oldest first, in one transaction, and returns how many
// it deleted; the caller loops until fewer than maxRows went. The seqs
// stay accounted for (a gap re-sent after pruning is not stored again),
// and the agents' gap counters are kept.
type GapPruner interface {
	PruneGaps(ctx context.Context, receivedBefore time.Time, maxRows int) (int64, error)
}

// GroupCommitter is implemented by stores that can commit many agents'
// batches in one transaction (group commit). Ingest uses it when present:
// one fsync-bound commit then acknowledges every batch in the group.
type GroupCommitter interface {
	// CommitBatches stores every batch in one transaction, with
	// CommitBatchFresh's semantics per batch: fresh[i][j] reports whether
	// batches[i].Results[j] was newly stored.
	CommitBatches(ctx context.Context, batches []Batch) (fresh [][]bool, err error)
}

// VerdictState is where one verdict stood in the stored timeline: its
// newest transition, and the newest one that changed its state (From !=
// To). They are the same transition unless the newest is a location
// refinement (From == To), which keeps the state and its onset.
type VerdictState struct {
	Latest, Changed *vantagev1.Transition
}

// VerdictRestorer is implemented by stores that can tell a restarted
// verdict engine where its campaign stood, so it carries on instead of
// starting over (controller/verdict/live).
type VerdictRestorer interface {
	// LatestVerdicts returns the VerdictState of every verdict id of
	// campaign that has a stored transition, whatever the timeline's
	// length.
	LatestVerdicts(ctx context.Context, campaign string) (map[string]VerdictState, error)
	// LastResultSentAt is the latest sent_at among campaign's stored
	// results (the zero time when it has none).
	LastResultSentAt(ctx context.Context, campaign string) (time.Time, error)
}

// Store is the controller's durable state, as an implementation provides
// it (store/sqlite asserts it does); consumers take their own narrower
// interface. Every method is safe for concurrent use. Methods that change state and take an AuditEntry write it
// in the same transaction.
type Store interface {
	// Agents.
	EnrollAgent(ctx context.Context, joinTokenHash string, now time.Time, a Agent) (Agent, error)
	GetAgent(ctx context.Context, id string) (Agent, error)
	ListAgents(ctx context.Context) ([]Agent, error)
	// ListAgentsPage returns at most limit agents ordered by (name, id)
	// after the agent named afterName with id afterID ("" and "": from the
	// first).
	ListAgentsPage(ctx context.Context, afterName, afterID string, limit int) ([]Agent, error)
	SetAgentState(ctx context.Context, id string, state vantagev1.AgentState, reason string, audit AuditEntry) (Agent, error)
	UpdateAgentHello(ctx context.Context, id string, h AgentHello) error
	UpdateAgentSeen(ctx context.Context, id string, at time.Time, spool *vantagev1.SpoolState) error
	SetTaskStatus(ctx context.Context, st TaskStatus) error
	TaskStatuses(ctx context.Context, agentID string) ([]TaskStatus, error)

	// Agent certificates (renewal). An agent holds one current certificate
	// serial (Agent.CertSerial) and, after a renewal, the previous one,
	// still accepted until the agent has used the new one.
	// AgentCertSerials returns both ("" when there is no previous one).
	AgentCertSerials(ctx context.Context, id string) (current, previous string, err error)
	// RenewAgentCert makes newSerial the agent's current serial and
	// presented (the serial the agent authenticated with) the previous
	// one, with the audit entry, only while the agent is ACTIVE and
	// presented is its current or previous serial: otherwise ErrConflict
	// (ErrNotFound for an unknown agent).
	RenewAgentCert(ctx context.Context, id, presented, newSerial string, audit AuditEntry) error
	// ConfirmAgentCert forgets the previous serial once the agent has used
	// serial, its current one; it reports whether there was one to forget.
	ConfirmAgentCert(ctx context.Context, id, serial string) (bool, error)

	// Tokens.
	CreateJoinToken(ctx context.Context, t JoinToken, audit AuditEntry) error
	PutOperatorToken(ctx context.Context, t OperatorToken) error
	OperatorTokenByHash(ctx context.Context, hash string) (OperatorToken, error)
	// DeleteOperatorToken revokes an operator token by name (ErrNotFound
	// when none) and remembers its hash, so that PutOperatorToken refuses
	// it ever after with ErrRevoked; ExpireJoinTokens makes every
	// unexpired join token expire now and returns how many. Both write
	// their audit entry (ExpireJoinTokens only when one expired).
	DeleteOperatorToken(ctx context.Context, name string, audit AuditEntry) error
	ExpireJoinTokens(ctx context.Context, now time.Time, audit AuditEntry) (int, error)
	// ListJoinTokens returns every stored join token, newest first.
	// ExpireJoinToken makes the unexpired join token whose ID is id expire
	// at now, with its audit entry: ErrNotFound when no unexpired one has
	// it.
	ListJoinTokens(ctx context.Context) ([]JoinToken, error)
	ExpireJoinToken(ctx context.Context, id string, now time.Time, audit AuditEntry) (JoinToken, error)

	// Campaigns. PutCampaign inserts or replaces the spec; the version
	// increases only when the YAML changed. changed reports that.
	PutCampaign(ctx context.Context, name, specYAML string, now time.Time, audit AuditEntry) (c Campaign, changed bool, err error)
	SetCampaignState(ctx context.Context, name string, state vantagev1.CampaignState, now time.Time, audit AuditEntry) (Campaign, error)
	DeleteCampaign(ctx context.Context, name string, audit AuditEntry) error
	GetCampaign(ctx context.Context, name string) (Campaign, error)
	ListCampaigns(ctx context.Context) ([]Campaign, error)
	// PutDiscovery stores a campaign's discovery (replacing any earlier
	// one) and sets the campaign's state, in one transaction, only if the
	// campaign's version is still d.Version: otherwise ErrConflict (it was
	// re-applied meanwhile). audit is written when its Action is set.
	PutDiscovery(ctx context.Context, name string, d Discovery, state vantagev1.CampaignState, now time.Time, audit AuditEntry) (Campaign, error)

	// Results. CommitBatch stores results and gaps in one transaction,
	// ignoring results already stored under (agent, epoch, seq).
	CommitBatch(ctx context.Context, agentID string, epoch uint64, results []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) (stored, duplicates int, err error)
	// CommitBatchFresh is CommitBatch reporting, per result, whether it was
	// newly stored (false: a duplicate).
	CommitBatchFresh(ctx context.Context, agentID string, epoch uint64, results []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) (fresh []bool, err error)
	QueryResults(ctx context.Context, q ResultQuery, fn func(StoredResult) error) error
	// PruneResults deletes stored results sent before sentBefore (raw
	// results have a retention period), oldest first, at most maxChunks
	// storage units (chunks of one batch and campaign, deleted whole, only
	// when every result in one is older) per call so that one call holds
	// the writer briefly; the caller loops until fewer than maxChunks went.
	// It returns how many chunks and results it deleted. What was stored
	// stays recorded for deduplication, so a pruned result sent again is a
	// duplicate, not stored again. Gaps, transitions and audit are kept; a
	// SeriesStore prunes its quality series with the results.
	PruneResults(ctx context.Context, sentBefore time.Time, maxChunks int) (chunks, results int64, err error)

	// Transitions. AddTransitions assigns each transition its id and, for
	// a transition with folds_since_round set, marks the transitions it
	// folds (folded_into), in the same transaction.
	AddTransitions(ctx context.Context, ts []*vantagev1.Transition) error
	Timeline(ctx context.Context, q TimelineQuery) ([]*vantagev1.Transition, error)

	// Audit.
	AddAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns the newest limit entries, newest first.
	ListAudit(ctx context.Context, limit int) ([]AuditEntry, error)

	Close() error
}
