package discovery_test

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// fakeSessions stands for ingest.Server, the agents' sessions: which agents
// are connected (id -> labels), the triggers the runner sent them, and how
// many steps the runner took (each step reads ConnectedAgents once, so two
// more reads mean at least one whole step ran in between).
type fakeSessions struct {
	mu     sync.Mutex
	agents map[string]map[string]string
	// full makes SendTrigger to that agent fail, as a full send queue does.
	full  map[string]bool
	sent  []sent
	steps int
	// gate, when set, holds every step inside ConnectedAgents until it
	// is closed; blocked reports that a step is held there.
	gate    chan struct{}
	blocked bool
	// sendGate, when set, holds SendTrigger (called while the runner
	// decides a step) until it is closed; sendBlocked reports it.
	sendGate    chan struct{}
	sendBlocked bool
}

// sent is one trigger as the runner sent it.
type sent struct {
	agent string
	tr    *vantagev1.Trigger
}

// kind is the probe kind of the trigger's tasks (they are all alike).
func (s sent) kind() vantagev1.ProbeKind {
	if len(s.tr.GetTasks()) == 0 {
		return vantagev1.ProbeKind_PROBE_KIND_UNSPECIFIED
	}
	return s.tr.GetTasks()[0].GetKind()
}

func newFakeSessions() *fakeSessions {
	return &fakeSessions{agents: map[string]map[string]string{}, full: map[string]bool{}}
}

func (f *fakeSessions) ConnectedAgents() map[string]map[string]string {
	f.mu.Lock()
	if gate := f.gate; gate != nil {
		f.blocked = true
		f.mu.Unlock()
		<-gate
		f.mu.Lock()
		f.blocked = false
	}
	defer f.mu.Unlock()
	f.steps++
	out := make(map[string]map[string]string, len(f.agents))
	for id, l := range f.agents {
		out[id] = maps.Clone(l)
	}
	return out
}

func (f *fakeSessions) SendTrigger(agentID string, tr *vantagev1.Trigger) bool {
	f.mu.Lock()
	if gate := f.sendGate; gate != nil {
		f.sendBlocked = true
		f.mu.Unlock()
		<-gate
		f.mu.Lock()
		f.sendBlocked, f.sendGate = false, nil
	}
	defer f.mu.Unlock()
	if _, ok := f.agents[agentID]; !ok || f.full[agentID] {
		return false
	}
	f.sent = append(f.sent, sent{agent: agentID, tr: tr})
	return true
}

func (f *fakeSessions) connect(id string, labels map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.agents[id] = labels
}

// triggers lists the triggers sent with tasks of kind, oldest first.
func (f *fakeSessions) triggers(kind vantagev1.ProbeKind) []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(f.sent), func(s sent) bool { return s.kind() != kind })
}

func (f *fakeSessions) hold() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gate = make(chan struct{})
	return f.gate
}

func (f *fakeSessions) holdSend() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sendGate = make(chan struct{})
	return f.sendGate
}

func (f *fakeSessions) isSendBlocked() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sendBlocked
}

func (f *fakeSessions) isBlocked() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked
}

func (f *fakeSessions) stepCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.steps
}

// logRecorder keeps the messages logged, so a test can see that a path
// was taken (the messages are constant).
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if m == msg {
			n++
		}
	}
	return n
}
