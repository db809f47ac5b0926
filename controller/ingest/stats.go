package ingest

import (
	"slices"
	"sync/atomic"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// CommitBuckets are the upper bounds, in seconds, of the commit-duration
// histogram in Stats: 1 ms to 10 s, around DefaultMaxCommitLatency (5 s),
// past which commits count as overload.
var CommitBuckets = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// ThrottleKind says why a Throttle was sent to an agent.
type ThrottleKind int

// Throttle kinds, as counted in Stats.Throttles.
const (
	// ThrottleSoft: the ingest queue is long; the batch was taken and the
	// agent asked to pause.
	ThrottleSoft ThrottleKind = iota
	// ThrottleHard: the queue is full or commits are slow; the batch was
	// refused and the session ended with RESOURCE_EXHAUSTED.
	ThrottleHard
	// ThrottleRate: the agent is over its --ingest-rate; likewise refused.
	ThrottleRate
	// ThrottleStore: the batch's commit failed (a full disk, an I/O
	// error); not acked, the session ended with RESOURCE_EXHAUSTED and
	// DefaultStoreRetryAfter.
	ThrottleStore
	numThrottleKinds
)

func (k ThrottleKind) String() string {
	switch k {
	case ThrottleSoft:
		return "soft"
	case ThrottleHard:
		return "hard"
	case ThrottleRate:
		return "rate"
	case ThrottleStore:
		return "store"
	}
	return "unknown"
}

// Histogram is a snapshot of a histogram with fixed bucket bounds.
type Histogram struct {
	// Bounds are the buckets' upper bounds (inclusive), ascending;
	// Cumulative[i] counts the observations <= Bounds[i].
	Bounds     []float64
	Cumulative []uint64
	// Count is every observation (including those above the last bound),
	// Sum their total.
	Count uint64
	Sum   float64
}

// Stats is a snapshot of ingest's counters since the Server started. A
// batch re-sent after a lost ack counts again (its results as duplicates).
type Stats struct {
	// Results of committed batches, by what became of them: stored for
	// the first time, already stored (a re-sent batch), or refused (task
	// not given to the agent; acked and recorded as a gap).
	ResultsStored    uint64
	ResultsDuplicate uint64
	ResultsRefused   uint64
	// Batches is the number of result batches committed and acked.
	Batches uint64
	// GapResults is the number of results agents reported lost in the gap
	// records of committed batches (e.g. a full spool), refused ones not
	// included, as far as each agent's gap budget let them claim.
	GapResults uint64
	// GapResultsCut is the number of seqs gap records claimed beyond their
	// agent's gap budget (Config.GapSeqRate, GapSeqBurst): not recorded.
	GapResultsCut uint64
	// QueuedResults is the work queued for, or being committed to, the
	// store right now: results, and GapWork per gap record.
	QueuedResults int64
	// Sessions is the number of live agent sessions.
	Sessions int
	// Throttles counts the Throttle messages sent, by ThrottleKind.
	Throttles [numThrottleKinds]uint64
	// CommitSeconds is the duration of each store commit (one group of
	// batches, one transaction), in seconds.
	CommitSeconds Histogram
	// CommitRunning is how long the commit in progress has been running
	// (0: none). A stalled disk shows here while it lasts; past
	// MaxCommitLatency new batches are refused.
	CommitRunning time.Duration
	// StoreFailures counts the store writes ingest made that failed, by
	// StoreErrorClass: group commits (their batches were not acked) and
	// the agent rows updated at Hello and heartbeat, task statuses.
	StoreFailures [numStoreErrorClasses]uint64
	// StoreFailing is true while the store's writes fail, since
	// StoreFailingSince, with StoreError (the last one); the next commit
	// that succeeds clears it (or another write, if no commit failed).
	StoreFailing      bool
	StoreFailingSince time.Time
	StoreError        string
	// AgentsSpoolFailing is the number of live sessions whose agent's
	// last heartbeat says its spool's disk refuses writes.
	AgentsSpoolFailing int
	// Admission is what session admission (admission.go) has admitted and
	// refused, and holds now.
	Admission AdmissionStats
}

// stats are the Server's event counters that no other state keeps.
type stats struct {
	stored, duplicate, batches, gapResults atomic.Uint64
	gapCut                                 atomic.Uint64
	throttles                              [numThrottleKinds]atomic.Uint64
	commitBuckets                          [len(CommitBuckets) + 1]atomic.Uint64 // last: above every bound
	commitNanos                            atomic.Uint64
}

// committedBatch counts a batch whose commit returned: fresh is indexed
// like its accepted results, gaps are the agent's own gap records.
func (st *stats) committedBatch(fresh []bool, gaps []*vantagev1.Gap) {
	var n, dup uint64
	for _, f := range fresh {
		if f {
			n++
		} else {
			dup++
		}
	}
	var lost uint64
	for _, g := range gaps { // validated: 1 <= first <= last < 2^63
		lost += g.GetLastSeq() - g.GetFirstSeq() + 1
	}
	st.stored.Add(n)
	st.duplicate.Add(dup)
	st.gapResults.Add(lost)
	st.batches.Add(1)
}

func (st *stats) throttled(k ThrottleKind) { st.throttles[k].Add(1) }

func (st *stats) commitTook(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(CommitBuckets) && s > CommitBuckets[i] {
		i++
	}
	st.commitBuckets[i].Add(1)
	st.commitNanos.Add(uint64(max(d, 0)))
}

// Stats returns a snapshot of ingest's counters and current state (see
// Stats). Counters are read one by one, not under one lock, so a snapshot
// taken during a commit may be off by that commit.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	sessions := len(s.sessions)
	spoolFailing := 0
	for _, ss := range s.sessions {
		if ss.spool.Load().GetWriteError() != "" {
			spoolFailing++
		}
	}
	s.mu.Unlock()
	out := Stats{
		ResultsStored:      s.stats.stored.Load(),
		ResultsDuplicate:   s.stats.duplicate.Load(),
		ResultsRefused:     s.refused.Load(),
		Batches:            s.stats.batches.Load(),
		GapResults:         s.stats.gapResults.Load(),
		GapResultsCut:      s.stats.gapCut.Load(),
		QueuedResults:      max(s.queued.Load(), 0),
		Sessions:           sessions,
		AgentsSpoolFailing: spoolFailing,
		CommitSeconds: Histogram{Bounds: slices.Clone(CommitBuckets[:]), Cumulative: make([]uint64, len(CommitBuckets)),
			Sum: time.Duration(s.stats.commitNanos.Load()).Seconds()},
	}
	for k := range out.Throttles {
		out.Throttles[k] = s.stats.throttles[k].Load()
	}
	s.health.snapshot(&out)
	if s.adm != nil {
		out.Admission = s.adm.stats()
	}
	if st := s.commitStart.Load(); st != 0 {
		out.CommitRunning = max(time.Since(s.clock)-time.Duration(st-1), 0)
	}
	for i := range s.stats.commitBuckets {
		out.CommitSeconds.Count += s.stats.commitBuckets[i].Load()
		if i < len(CommitBuckets) {
			out.CommitSeconds.Cumulative[i] = out.CommitSeconds.Count
		}
	}
	return out
}
