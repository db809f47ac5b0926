package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"golang.org/x/time/rate"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Gap limits (docs/OPERATIONS.md, "Ingest limits and overload").
const (
	// GapWork is what one gap record counts for, in results, toward the
	// agent's rate, the ingest queue and a commit group: the store looks
	// up and merges its seq range and writes a row, 12 to 13 times the
	// commit time of one result in a chunk (17-23 us against 1.2-1.9 us
	// on the 2-core test machine), rounded up.
	GapWork = 16
	// DefaultMaxGapRows caps the gap rows stored per agent.
	DefaultMaxGapRows = 4096
	// DefaultGapSeqRate and DefaultGapSeqBurst are each agent's budget of
	// seqs its gap records may claim: per second, and at once. Gaps are
	// results the agent produced and lost; it produces at most its
	// --max-pps (default 500), and an offline agent stops once its
	// assignment expires (10 minutes). 10 million at once is an agent at
	// 500 results/s losing 5.5 hours; a liar can claim at most that plus
	// 10,000 a second (0.9e9 a day), not 2^63 in one message.
	DefaultGapSeqRate  = 10_000
	DefaultGapSeqBurst = 10_000_000
)

// defaults fills the zero values of c's limits.
func (c *Config) defaults() {
	setDefault(&c.MaxQueuedResults, DefaultMaxQueuedResults)
	setDefault(&c.MaxCommitLatency, DefaultMaxCommitLatency)
	setDefault(&c.GroupResults, DefaultGroupResults)
	setDefault(&c.GapSeqRate, DefaultGapSeqRate)
	setDefault(&c.GapSeqBurst, DefaultGapSeqBurst)
	setDefault(&c.MaxResultAge, DefaultMaxResultAge)
	setDefault(&c.MaxClockSkew, DefaultMaxClockSkew)
	setDefault(&c.TriggerGrace, DefaultTriggerGrace)
	if c.MaxGapRows == 0 {
		c.MaxGapRows = DefaultMaxGapRows
	} else if c.MaxGapRows < 0 {
		c.MaxGapRows = 0 // the store's "no cap"
	}
}

func setDefault[T int | float64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// batchWork is what a batch of results and gap records costs, in results.
func batchWork(results, gaps int) int {
	return max(results+GapWork*gaps, 1)
}

// limiter returns the agent's upload rate limiter, nil when unlimited.
func (s *Server) limiter(agentID string) *rate.Limiter {
	if s.cfg.RatePerAgent <= 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.limiters[agentID]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(s.cfg.RatePerAgent), max(int(s.cfg.RatePerAgent), MaxBatchResults))
		s.limiters[agentID] = l
	}
	return l
}

// admit takes work from the agent's rate and checks overload; a refused
// batch ends the session with RESOURCE_EXHAUSTED (after a Throttle). A
// batch costing more than the bucket holds costs the whole bucket, so that
// every valid batch passes once the bucket is full.
func (ss *session) admit(ctx context.Context, work int) error {
	if l := ss.s.limiter(ss.agent.ID); l != nil {
		r := l.ReserveN(ss.s.now(), min(work, l.Burst()))
		if !r.OK() || r.Delay() > 0 {
			retry := DefaultRetryAfter
			if r.OK() {
				retry = max(r.Delay(), 100*time.Millisecond)
				r.Cancel()
			}
			ss.s.stats.throttled(ThrottleRate)
			return ss.throttle(ctx, &throttled{retry: retry,
				reason: fmt.Sprintf("agent over its ingest rate of %g results/s", ss.s.cfg.RatePerAgent)})
		}
	}
	if why, hard := ss.s.overloaded(work); hard {
		ss.s.stats.throttled(ThrottleHard)
		return ss.throttle(ctx, &throttled{retry: DefaultRetryAfter, reason: why})
	} else if why != "" && ss.throttleHint() {
		// Soft: take the batch, ask the agent to pause (at most one
		// hint per session per retry-after).
		th := &throttled{retry: DefaultRetryAfter, reason: why}
		ss.s.stats.throttled(ThrottleSoft)
		ss.enqueue(ctx, th.message())
	}
	return nil
}

// charge takes work the batch turned out to cost after admission (the gap
// records of its refused results) from the agent's rate, without waiting:
// the agent's next batch waits for it.
func (ss *session) charge(work int) {
	if l := ss.s.limiter(ss.agent.ID); l != nil && work > 0 {
		l.ReserveN(ss.s.now(), min(work, l.Burst()))
	}
}

// gapSeqLimiter returns the agent's budget of seqs gaps may claim.
func (s *Server) gapSeqLimiter(agentID string) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.gapSeqs[agentID]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(s.cfg.GapSeqRate), s.cfg.GapSeqBurst)
		s.gapSeqs[agentID] = l
	}
	return l
}

// clipGaps returns the agent's gap records cut to its gap seq budget: each
// gap claims what is left of the budget, the rest of it is dropped (not
// recorded, not counted) and logged. A gap sent again pays again, though
// the store counts it once. gaps is not modified.
func (ss *session) clipGaps(epoch uint64, gaps []*vantagev1.Gap) []*vantagev1.Gap {
	if len(gaps) == 0 {
		return gaps
	}
	l := ss.s.gapSeqLimiter(ss.agent.ID)
	now := ss.s.now()
	var out []*vantagev1.Gap
	var claimed, cut uint64
	for _, g := range gaps {
		span := g.GetLastSeq() - g.GetFirstSeq() + 1 // validated: >= 1, < 2^63
		avail := uint64(max(math.Floor(l.TokensAt(now)), 0))
		take := min(span, avail)
		if take == 0 || !l.AllowN(now, int(take)) {
			cut += span
			continue
		}
		claimed += take
		if take < span {
			cut += span - take
			g = &vantagev1.Gap{Epoch: g.GetEpoch(), FirstSeq: g.GetFirstSeq(), LastSeq: g.GetFirstSeq() + take - 1, Reason: g.GetReason()}
		}
		out = append(out, g)
	}
	if cut > 0 {
		ss.s.stats.gapCut.Add(cut)
		ss.s.log.Warn("gap claims cut", slog.String("agent", ss.agent.ID), slog.Uint64("epoch", epoch),
			slog.Uint64("claimed", claimed), slog.Uint64("cut", cut), slog.Float64("budget_per_s", ss.s.cfg.GapSeqRate),
			slog.Int("budget_burst", ss.s.cfg.GapSeqBurst))
	}
	return out
}
