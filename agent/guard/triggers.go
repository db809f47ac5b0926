package guard

import (
	"container/heap"
	"fmt"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	// maxTriggerMemory bounds the trigger ids remembered for replay
	// refusal.
	maxTriggerMemory = 4096
	// MaxTriggerLifetime is the furthest ahead a trigger may expire, and
	// how long a trigger without an expiry is remembered. The controller
	// gives its triggers 2 minutes (ingest.TriggerLifetime).
	MaxTriggerLifetime = time.Hour
	// maxTriggerIDBytes bounds one remembered id (the controller's are
	// 20 bytes).
	maxTriggerIDBytes = 128
)

// triggerMemory remembers trigger ids until they expire, in a map for
// lookups and a min-heap on expiry for pruning and eviction. When it is
// full the id expiring soonest is forgotten: it has the least time left in
// which it could be replayed, and no set of ids can shut later triggers out
// (4,096 ids expiring in the far future used to block every trigger after
// them; such expiries are now refused too). An evicted id could run once
// more if replayed before it expires; the per-target rate still holds.
type triggerMemory struct {
	ids  map[string]time.Time
	heap expiryHeap
}

type expiring struct {
	id  string
	exp time.Time
}

type expiryHeap []expiring

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiring)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// seen reports whether id is remembered and not expired at now.
func (m *triggerMemory) seen(id string, now time.Time) bool {
	exp, ok := m.ids[id]
	return ok && now.Before(exp)
}

// add remembers id until exp, first forgetting the ids expired at now and,
// when full, the one expiring soonest.
func (m *triggerMemory) add(id string, exp, now time.Time) {
	for len(m.heap) > 0 && !now.Before(m.heap[0].exp) {
		delete(m.ids, heap.Pop(&m.heap).(expiring).id)
	}
	for len(m.heap) >= maxTriggerMemory {
		delete(m.ids, heap.Pop(&m.heap).(expiring).id)
	}
	m.ids[id] = exp
	heap.Push(&m.heap, expiring{id, exp})
}

// TriggersRemembered is the number of trigger ids held for replay refusal.
func (g *Guard) TriggersRemembered() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.triggers.ids)
}

// CheckTrigger refuses expired triggers, triggers expiring more than
// MaxTriggerLifetime ahead, and trigger ids seen before; it remembers tr's
// id until it expires.
func (g *Guard) CheckTrigger(tr *vantagev1.Trigger) error {
	if tr == nil {
		return fmt.Errorf("trigger: missing: %w", ErrInvalid)
	}
	if tr.GetId() == "" {
		return fmt.Errorf("trigger.id: empty: %w", ErrInvalid)
	}
	if len(tr.GetId()) > maxTriggerIDBytes {
		return fmt.Errorf("trigger.id: longer than %d bytes: %w", maxTriggerIDBytes, ErrInvalid)
	}
	now := g.cfg.Now()
	exp := now.Add(MaxTriggerLifetime)
	if tr.GetExpiresAt() != nil {
		exp = tr.GetExpiresAt().AsTime()
		if !now.Before(exp) {
			return fmt.Errorf("trigger.expires_at %s (id %s): %w", exp.Format(time.RFC3339), tr.GetId(), ErrExpired)
		}
		if exp.Sub(now) > MaxTriggerLifetime {
			return fmt.Errorf("trigger.expires_at %s (id %s): more than %s ahead: %w", exp.Format(time.RFC3339), tr.GetId(), MaxTriggerLifetime, ErrLimit)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.triggers.seen(tr.GetId(), now) {
		return fmt.Errorf("trigger.id %s: %w", tr.GetId(), ErrStale)
	}
	g.triggers.add(tr.GetId(), exp, now)
	return nil
}
