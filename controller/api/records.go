package api

import (
	"context"
	"time"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Records is what OperatorService reads and changes in the store; the
// server takes no more of the store than this.
type Records interface {
	AgentRecords
	CampaignRecords
	History
	TokenRecords
}

// TokenRecords are the stored join tokens (created through Fleet).
type TokenRecords interface {
	ListJoinTokens(ctx context.Context) ([]store.JoinToken, error)
	ExpireJoinToken(ctx context.Context, id string, now time.Time, audit store.AuditEntry) (store.JoinToken, error)
}

// AgentRecords are the enrolled agents and their task statuses.
type AgentRecords interface {
	GetAgent(ctx context.Context, id string) (store.Agent, error)
	ListAgents(ctx context.Context) ([]store.Agent, error)
	ListAgentsPage(ctx context.Context, afterName, afterID string, limit int) ([]store.Agent, error)
	SetAgentState(ctx context.Context, id string, state vantagev1.AgentState, reason string, audit store.AuditEntry) (store.Agent, error)
	TaskStatuses(ctx context.Context, agentID string) ([]store.TaskStatus, error)
}

// CampaignRecords are the stored campaigns.
type CampaignRecords interface {
	PutCampaign(ctx context.Context, name, specYAML string, now time.Time, audit store.AuditEntry) (c store.Campaign, changed bool, err error)
	SetCampaignState(ctx context.Context, name string, state vantagev1.CampaignState, now time.Time, audit store.AuditEntry) (store.Campaign, error)
	DeleteCampaign(ctx context.Context, name string, audit store.AuditEntry) error
	GetCampaign(ctx context.Context, name string) (store.Campaign, error)
	ListCampaigns(ctx context.Context) ([]store.Campaign, error)
}

// History is what was recorded: results, the verdict timeline, its
// quality series and the audit log.
type History interface {
	QueryResults(ctx context.Context, q store.ResultQuery, fn func(store.StoredResult) error) error
	Timeline(ctx context.Context, q store.TimelineQuery) ([]*vantagev1.Transition, error)
	Series(ctx context.Context, q store.SeriesQuery) ([]*vantagev1.QualityPoint, error)
	ListAudit(ctx context.Context, limit int) ([]store.AuditEntry, error)
}

// BGPRecords is the stored BGP evidence: the updates ListBgpUpdates reads
// and ImportBgpUpdates writes.
type BGPRecords interface {
	AddBGP(ctx context.Context, us []*vantagev1.BgpUpdate, es []store.BGPPeerEvent, audit store.AuditEntry) error
	BGPUpdates(ctx context.Context, q store.BGPQuery) ([]*vantagev1.BgpUpdate, error)
}
