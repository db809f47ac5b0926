// Package spool holds results between the moment a probe finishes and the
// moment the controller acknowledges that it stored them. The uplink re-sends
// everything still in the spool after a reconnect, so no result is lost to a
// broken session, and the controller's (agent, epoch, seq) key makes the
// re-sends harmless.
//
// Memory is the in-memory implementation: bounded, and when full it drops
// the oldest results and records the dropped range as a Gap, so the
// controller learns what it will never receive. A disk-backed store that
// survives restarts can implement the same Spool interface later.
package spool

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Spool is a store-and-forward buffer of numbered results for one epoch.
// Implementations are safe for concurrent use.
type Spool interface {
	// Append stores r, which must carry the next sequence number (one more
	// than the previous Append's).
	Append(r *vantagev1.ProbeResult) error
	// Read returns up to max stored results with seq > after, in order, and
	// the gaps recorded so far that are not yet acknowledged.
	Read(after uint64, max int) ([]*vantagev1.ProbeResult, []*vantagev1.Gap)
	// Ack drops results and gaps with seq <= upTo.
	Ack(upTo uint64)
	// State describes the backlog for Hello and Heartbeat.
	State() *vantagev1.SpoolState
}

// Memory is a bounded in-memory Spool.
type Memory struct {
	epoch    uint64
	capacity int

	mu      sync.Mutex
	buf     []*vantagev1.ProbeResult // ring in seq order
	head    int                      // index of the oldest
	n       int
	lastSeq uint64
	bytes   uint64
	gaps    []*vantagev1.Gap
	dropped uint64
	nGaps   uint64
}

// NewMemory returns a spool holding at most capacity results of epoch.
func NewMemory(epoch uint64, capacity int) *Memory {
	capacity = max(capacity, 1)
	return &Memory{epoch: epoch, capacity: capacity, buf: make([]*vantagev1.ProbeResult, capacity)}
}

// Append implements Spool.
func (m *Memory) Append(r *vantagev1.ProbeResult) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.GetSeq() != m.lastSeq+1 {
		return fmt.Errorf("spool: result seq %d: want %d", r.GetSeq(), m.lastSeq+1)
	}
	if m.n == m.capacity {
		old := m.buf[m.head]
		m.buf[m.head] = nil
		m.head = (m.head + 1) % m.capacity
		m.n--
		m.bytes -= uint64(proto.Size(old))
		m.dropped++
		m.addGap(old.GetSeq())
	}
	m.buf[(m.head+m.n)%m.capacity] = r
	m.n++
	m.lastSeq = r.GetSeq()
	m.bytes += uint64(proto.Size(r))
	return nil
}

// addGap records seq as dropped, extending the last gap when contiguous.
func (m *Memory) addGap(seq uint64) {
	if k := len(m.gaps); k > 0 && m.gaps[k-1].GetLastSeq()+1 == seq {
		m.gaps[k-1].LastSeq = seq
		return
	}
	m.nGaps++
	m.gaps = append(m.gaps, &vantagev1.Gap{Epoch: m.epoch, FirstSeq: seq, LastSeq: seq, Reason: "agent spool full: oldest unacknowledged results dropped"})
}

// Read implements Spool.
func (m *Memory) Read(after uint64, max int) ([]*vantagev1.ProbeResult, []*vantagev1.Gap) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var gaps []*vantagev1.Gap
	for _, g := range m.gaps {
		gaps = append(gaps, proto.Clone(g).(*vantagev1.Gap))
	}
	if m.n == 0 {
		return nil, gaps
	}
	first := m.buf[m.head].GetSeq()
	skip := 0
	if after >= first {
		skip = int(after - first + 1)
	}
	var out []*vantagev1.ProbeResult
	for i := skip; i < m.n && len(out) < max; i++ {
		out = append(out, m.buf[(m.head+i)%m.capacity])
	}
	return out, gaps
}

// Ack implements Spool.
func (m *Memory) Ack(upTo uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.n > 0 && m.buf[m.head].GetSeq() <= upTo {
		m.bytes -= uint64(proto.Size(m.buf[m.head]))
		m.buf[m.head] = nil
		m.head = (m.head + 1) % m.capacity
		m.n--
	}
	kept := m.gaps[:0]
	for _, g := range m.gaps {
		if g.GetLastSeq() > upTo {
			kept = append(kept, g)
		}
	}
	m.gaps = kept
}

// State implements Spool.
func (m *Memory) State() *vantagev1.SpoolState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &vantagev1.SpoolState{PendingResults: uint64(m.n), PendingBytes: m.bytes, DroppedResults: m.dropped, Gaps: m.nGaps}
}
