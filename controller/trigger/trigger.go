// Package trigger is what the controller's senders of one-off probes share:
// a Trigger (localisation's traces on a state change, discovery's sweeps and
// traces) is made here, with the one id generator and the one lifetime, and
// sent through the one Sender, which ingest implements. Ingest remembers
// each trigger it sends, with its tasks, until its expiry plus a grace, so
// the results coming back (perhaps after a reconnect, from the agent's
// spool) are accepted for those tasks only. Sender and maker live apart from
// ingest so that localisation (controller/verdict/live) and discovery
// (controller/discovery) need nothing else of it.
package trigger

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	// Lifetime is how long an agent may start a triggered probe: a trigger
	// (and each task it carries) expires this long after it was issued.
	// The agent's guard refuses a trigger expiring more than an hour ahead.
	Lifetime = 2 * time.Minute
	// TraceTimeout is the wait per TTL of the traces the controller
	// triggers without a campaign trace probe to copy (localisation) or
	// always (discovery): short, because the answers are awaited by a
	// verdict in progress or by discovery's next step.
	TraceTimeout = time.Second
)

// Sender reaches the agents' live sessions (ingest.Server implements it).
type Sender interface {
	// ConnectedAgents returns the labels of every agent with a live
	// session, by agent id.
	ConnectedAgents() map[string]map[string]string
	// SendTrigger queues tr on agentID's live session without blocking,
	// and remembers it and its tasks for the agent (see the package
	// comment). It returns false when the agent has no session or its
	// send queue is full: the caller decides whether to try again.
	SendTrigger(agentID string, tr *vantagev1.Trigger) bool
}

// Expiry is when a trigger issued at now expires, and the tasks it carries
// with it.
func Expiry(now time.Time) time.Time { return now.Add(Lifetime) }

// New returns a trigger of tasks, issued at now with a fresh id and
// expiring at Expiry(now). Tasks are shared, not copied: one list sent to
// many agents is indexed once by ingest.
func New(now time.Time, tasks []*vantagev1.Task, reason string) *vantagev1.Trigger {
	return &vantagev1.Trigger{Id: newID(), IssuedAt: timestamppb.New(now), ExpiresAt: timestamppb.New(Expiry(now)),
		Tasks: tasks, Reason: reason}
}

// newID is a random id ("trg-" and 16 hex digits): unique without
// coordination, so triggers of a restarted controller never repeat one the
// agent's guard remembers.
func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "trg-" + hex.EncodeToString(b)
}
