// Package retention deletes raw probe results, and the gap records of lost
// results, once they are older than the retention period. Raw results are
// nearly all of the controller's database (every probe of every round from
// every vantage) and matter for a while: explain, replay and debugging.
// Gap rows are small, but an agent can make many of them, so they age out
// with the results they stand for (the agents' gap counters stay). Verdict
// transitions and the audit log are what is read months later, and they are
// kept. BGP evidence (the updates of the monitored prefixes and the peers'
// session events) has its own retention, usually the results' own: it is
// joined to the results over the same windows. Without pruning the SQLite
// file grows without bound.
//
// The policy (how old, how often, how much per transaction) lives here, in
// one loop with one owner, apart from the store: the store only knows how to
// delete a bounded number of chunks older than a cutoff, and this package
// calls it in small steps so that one call never holds SQLite's single
// writer long enough to stall ingest.
package retention

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vantage-net/vantage/controller/store"
)

// Defaults for the zero values of Config.Every and Config.BatchChunks.
const (
	DefaultEvery = 10 * time.Minute
	// DefaultBatchChunks chunks (one agent batch and campaign each,
	// usually a few hundred results) are deleted per store call.
	DefaultBatchChunks = 256
	// GapRowsPerCall gap rows are deleted per store call.
	GapRowsPerCall = 1024
	// BGPRowsPerCall BGP updates (and as many peer events) are deleted
	// per store call.
	BGPRowsPerCall = 1024
)

// BGPPruner deletes old BGP updates and peer events; see
// store.BGPStore's PruneBGP.
type BGPPruner interface {
	PruneBGP(ctx context.Context, before time.Time, maxRows int) (int64, error)
}

// ResultPruner deletes old raw results; see store.Store's PruneResults.
type ResultPruner interface {
	PruneResults(ctx context.Context, sentBefore time.Time, maxChunks int) (chunks, results int64, err error)
}

// Config configures a Pruner. Store and Keep are required, unless BGP
// and BGPKeep are set (then Store may be nil: results are kept).
type Config struct {
	Store ResultPruner
	// Keep is the retention period: results sent more than Keep before
	// Now are deleted. It must be positive.
	Keep time.Duration
	// BGP deletes BGP updates and peer events older than BGPKeep before
	// Now; nil: they are kept.
	BGP     BGPPruner
	BGPKeep time.Duration
	// Every is the time between passes (0: DefaultEvery).
	Every time.Duration
	// BatchChunks bounds each store call (0: DefaultBatchChunks).
	BatchChunks int
	// Gaps deletes gap rows received more than Keep before Now; nil: the
	// Store when it implements store.GapPruner, else gaps are kept.
	Gaps   store.GapPruner
	Logger *slog.Logger
	// Now is the clock (nil: time.Now); tests inject one.
	Now func() time.Time
}

// validate checks the fields that have no default.
func (c Config) validate() error {
	var errs []error
	switch {
	case c.Store == nil && c.BGP == nil:
		errs = append(errs, errors.New("retention: Store: must be set"))
	case c.Store != nil && c.Keep <= 0:
		errs = append(errs, fmt.Errorf("retention: Keep: must be positive, got %v", c.Keep))
	}
	if c.BGP != nil && c.BGPKeep <= 0 {
		errs = append(errs, fmt.Errorf("retention: BGPKeep: must be positive, got %v", c.BGPKeep))
	}
	if c.Every < 0 {
		errs = append(errs, fmt.Errorf("retention: Every: must not be negative, got %v", c.Every))
	}
	if c.BatchChunks < 0 {
		errs = append(errs, fmt.Errorf("retention: BatchChunks: must not be negative, got %d", c.BatchChunks))
	}
	return errors.Join(errs...)
}

// Pruner deletes old raw results, in passes.
type Pruner struct {
	cfg Config
	err error // from validate: Run and PruneOnce return it
}

// New returns a Pruner with cfg's zero values defaulted. An invalid cfg is
// reported by Run and PruneOnce.
func New(cfg Config) *Pruner {
	if cfg.Every == 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.BatchChunks == 0 {
		cfg.BatchChunks = DefaultBatchChunks
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if gp, ok := cfg.Store.(store.GapPruner); ok && cfg.Gaps == nil {
		cfg.Gaps = gp
	}
	return &Pruner{cfg: cfg, err: cfg.validate()}
}

// Run makes a pass at once and then every Every until ctx ends, when it
// returns nil. A failed pass is logged and the next one tried; only an
// invalid Config is returned.
func (p *Pruner) Run(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	t := time.NewTicker(p.cfg.Every)
	defer t.Stop()
	for {
		if _, _, err := p.PruneOnce(ctx); err != nil {
			if ctx.Err() != nil {
				p.cfg.Logger.Debug("results pruning stopped", slog.Any("error", err))
				return nil
			}
			p.cfg.Logger.Warn("results pruning failed", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PruneOnce makes one pass: it deletes every result sent before Now - Keep,
// BatchChunks chunks per store call, until a call deletes fewer, then every
// gap row received before the same cutoff, and logs one line with the
// totals. On error it returns what it deleted so far.
func (p *Pruner) PruneOnce(ctx context.Context) (chunks, results int64, err error) {
	if p.err != nil {
		return 0, 0, p.err
	}
	start := time.Now()
	now := p.cfg.Now()
	cutoff := now.Add(-p.cfg.Keep)
	var gaps int64
	attrs := []any{}
	if p.cfg.Store != nil {
		if chunks, results, err = p.pruneResults(ctx, cutoff); err != nil {
			return chunks, results, err
		}
		if gaps, err = p.pruneGaps(ctx, cutoff); err != nil {
			return chunks, results, err
		}
		attrs = append(attrs, slog.Int64("chunks", chunks), slog.Int64("results", results), slog.Int64("gaps", gaps),
			slog.String("cutoff", cutoff.UTC().Format(time.RFC3339)), slog.Duration("keep", p.cfg.Keep))
	}
	if p.cfg.BGP != nil {
		bgpCutoff := now.Add(-p.cfg.BGPKeep)
		rows, err := p.pruneBGP(ctx, bgpCutoff)
		if err != nil {
			return chunks, results, err
		}
		attrs = append(attrs, slog.Int64("bgp_rows", rows), slog.String("bgp_cutoff", bgpCutoff.UTC().Format(time.RFC3339)))
	}
	attrs = append(attrs, slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	p.cfg.Logger.Info("results pruned", attrs...)
	return chunks, results, nil
}

// pruneBGP deletes the BGP rows older than cutoff, BGPRowsPerCall per
// table and store call, and returns how many went.
func (p *Pruner) pruneBGP(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune bgp: %w", err)
		}
		n, err := p.cfg.BGP.PruneBGP(ctx, cutoff, BGPRowsPerCall)
		total += n
		if err != nil {
			return total, err
		}
		if n < BGPRowsPerCall {
			return total, nil
		}
	}
}

func (p *Pruner) pruneResults(ctx context.Context, cutoff time.Time) (chunks, results int64, err error) {
	for {
		if err := ctx.Err(); err != nil {
			return chunks, results, fmt.Errorf("prune results: %w", err)
		}
		c, n, err := p.cfg.Store.PruneResults(ctx, cutoff, p.cfg.BatchChunks)
		chunks += c
		results += n
		if err != nil {
			return chunks, results, err
		}
		if c < int64(p.cfg.BatchChunks) {
			return chunks, results, nil
		}
	}
}

// pruneGaps deletes the gap rows received before cutoff, GapRowsPerCall
// per store call, and returns how many went.
func (p *Pruner) pruneGaps(ctx context.Context, cutoff time.Time) (int64, error) {
	if p.cfg.Gaps == nil {
		return 0, nil
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune gaps: %w", err)
		}
		n, err := p.cfg.Gaps.PruneGaps(ctx, cutoff, GapRowsPerCall)
		total += n
		if err != nil {
			return total, err
		}
		if n < GapRowsPerCall {
			return total, nil
		}
	}
}
