package ingest

import (
	"context"
	"time"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// SessionStore is what sessions write to the store: the agent row at Hello
// and heartbeat, task statuses, and the results of a batch. A store that is
// also a store.GroupCommitter commits many batches in one transaction.
type SessionStore interface {
	GetAgent(ctx context.Context, id string) (store.Agent, error)
	UpdateAgentHello(ctx context.Context, id string, h store.AgentHello) error
	UpdateAgentSeen(ctx context.Context, id string, at time.Time, spool *vantagev1.SpoolState) error
	SetTaskStatus(ctx context.Context, st store.TaskStatus) error
	CommitBatchFresh(ctx context.Context, agentID string, epoch uint64, results []*vantagev1.ProbeResult, gaps []*vantagev1.Gap) (fresh []bool, err error)
}
