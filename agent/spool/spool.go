// Package spool is the agent's outbox: it holds results between the moment
// a probe finishes and the moment the controller acknowledges that it
// stored them. The Outbox (outbox.go) is the one ledger: it numbers every
// result, knows which batches are in flight on the uplink's stream and
// matches the controller's acks against them. The uplink re-sends
// everything still unacknowledged after a reconnect, so no result is lost
// to a broken session, and the controller's (agent, epoch, seq) key makes
// the re-sends harmless.
//
// The results wait in a Store. Disk (disk.go) is what the daemon uses:
// append-only segment files with a CRC32C per record that survive agent
// restarts, so results of an earlier epoch are replayed with their
// original (epoch, seq). Memory is the in-memory implementation for tests
// and throw-away agents. Both are bounded and, when full, drop the OLDEST
// results and record the dropped range as a Gap, so the controller learns
// what it will never receive.
package spool

import (
	"cmp"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Sentinel errors.
var (
	// ErrSeq: Append got a result whose seq does not follow the previous one.
	ErrSeq = errors.New("sequence number out of order")
	// ErrTooLarge: a single result does not fit the spool's limits.
	ErrTooLarge = errors.New("result too large for the spool")
	// ErrClosed: the spool was closed.
	ErrClosed = errors.New("spool closed")
)

// GapReasonFull is the reason of gaps made by dropping the oldest results.
const GapReasonFull = "spool full: oldest unacknowledged results dropped"

// GapReasonCorrupt is the reason of gaps made by corrupt records skipped at
// open (a crash in the middle of a write, or a damaged disk).
const GapReasonCorrupt = "spool corrupt: damaged records skipped at agent start"

// Key orders results across epochs: (epoch, seq).
type Key struct {
	Epoch, Seq uint64
}

// Compare orders keys by epoch, then seq.
func (k Key) Compare(o Key) int {
	if c := cmp.Compare(k.Epoch, o.Epoch); c != 0 {
		return c
	}
	return cmp.Compare(k.Seq, o.Seq)
}

// Batch is what Read returns: results of ONE epoch with contiguous sequence
// numbers, plus the gaps not yet acknowledged.
type Batch struct {
	Epoch   uint64
	Results []*vantagev1.ProbeResult
	Gaps    []*vantagev1.Gap
}

// End is the key of the batch's last result (zero when it has none).
func (b Batch) End() Key {
	if len(b.Results) == 0 {
		return Key{}
	}
	return Key{b.Epoch, b.Results[len(b.Results)-1].GetSeq()}
}

// Store is where numbered results wait until they are acknowledged.
// Implementations are safe for concurrent use.
type Store interface {
	// Append stores r in the current epoch; r must carry the next sequence
	// number (one more than the previous Append's, 1 for the first).
	Append(r *vantagev1.ProbeResult) error
	// Last is the key of the current epoch's last appended result (seq 0
	// before the first): the seq Append wants next is one more.
	Last() Key
	// Read returns up to max stored results after key `after` (the zero Key
	// means from the oldest unacknowledged one), all of one epoch and
	// contiguous, and every unacknowledged gap.
	Read(after Key, max int) (Batch, error)
	// Ack forgets every result up to and including upTo, and the given gaps
	// (identified by epoch and first_seq).
	Ack(upTo Key, gaps []*vantagev1.Gap) error
	// State describes the backlog for Hello and Heartbeat.
	State() *vantagev1.SpoolState
	// Close releases the spool; stored results stay for the next Open.
	Close() error
}

// Memory is a bounded in-memory Store of one epoch. It does not survive a
// restart.
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

var _ Store = (*Memory)(nil)

// NewMemory returns a spool holding at most capacity results of epoch.
func NewMemory(epoch uint64, capacity int) *Memory {
	capacity = max(capacity, 1)
	return &Memory{epoch: epoch, capacity: capacity, buf: make([]*vantagev1.ProbeResult, capacity)}
}

// Append implements Store.
func (m *Memory) Append(r *vantagev1.ProbeResult) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.GetSeq() != m.lastSeq+1 {
		return fmt.Errorf("spool: result seq %d: want %d: %w", r.GetSeq(), m.lastSeq+1, ErrSeq)
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
// (Memory gaps may grow after being sent; the controller keys gaps on
// first_seq, so Disk, which the daemon uses, never grows a gap.)
func (m *Memory) addGap(seq uint64) {
	if k := len(m.gaps); k > 0 && m.gaps[k-1].GetLastSeq()+1 == seq {
		m.gaps[k-1].LastSeq = seq
		return
	}
	m.nGaps++
	m.gaps = append(m.gaps, &vantagev1.Gap{Epoch: m.epoch, FirstSeq: seq, LastSeq: seq, Reason: GapReasonFull})
}

// Last implements Store.
func (m *Memory) Last() Key {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Key{m.epoch, m.lastSeq}
}

// Read implements Store.
func (m *Memory) Read(after Key, max int) (Batch, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := Batch{Epoch: m.epoch}
	for _, g := range m.gaps {
		b.Gaps = append(b.Gaps, proto.CloneOf(g))
	}
	if m.n == 0 || after.Epoch > m.epoch {
		return b, nil
	}
	first := m.buf[m.head].GetSeq()
	skip := 0
	if after.Epoch == m.epoch && after.Seq >= first {
		skip = int(after.Seq - first + 1)
	}
	for i := skip; i < m.n && len(b.Results) < max; i++ {
		b.Results = append(b.Results, m.buf[(m.head+i)%m.capacity])
	}
	return b, nil
}

// Ack implements Store.
func (m *Memory) Ack(upTo Key, gaps []*vantagev1.Gap) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.n > 0 && (Key{m.epoch, m.buf[m.head].GetSeq()}).Compare(upTo) <= 0 {
		m.bytes -= uint64(proto.Size(m.buf[m.head]))
		m.buf[m.head] = nil
		m.head = (m.head + 1) % m.capacity
		m.n--
	}
	kept := m.gaps[:0]
	for _, g := range m.gaps {
		acked := false
		for _, a := range gaps {
			if a.GetEpoch() == g.GetEpoch() && a.GetFirstSeq() == g.GetFirstSeq() && a.GetLastSeq() == g.GetLastSeq() {
				acked = true
			}
		}
		if !acked {
			kept = append(kept, g)
		}
	}
	m.gaps = kept
	return nil
}

// State implements Store.
func (m *Memory) State() *vantagev1.SpoolState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return &vantagev1.SpoolState{PendingResults: uint64(m.n), PendingBytes: m.bytes, DroppedResults: m.dropped, Gaps: m.nGaps}
}

// Close implements Store.
func (m *Memory) Close() error { return nil }
