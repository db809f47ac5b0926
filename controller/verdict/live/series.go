package live

import (
	"context"
	"fmt"

	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// qualityFor is the campaign's verdict.quality section as the engine's
// QualityConfig.
func qualityFor(spec *campaign.Spec) verdict.QualityConfig {
	q := spec.Quality()
	return verdict.QualityConfig{
		Off: q.Off, Loss: q.Loss, LossClear: q.LossClear,
		LatencyFactor: q.LatencyFactor, LatencyClearFactor: q.LatencyClearFactor, LatencyMin: q.LatencyMin,
		Rounds: q.Rounds, ClearRounds: q.ClearRounds,
	}
}

// storeSeries writes the quality points of the rounds the engines closed
// when the store keeps series (store.SeriesStore); otherwise they are
// dropped.
func (w *Worker) storeSeries(ctx context.Context, ps []*vantagev1.QualityPoint) error {
	ss, ok := w.opts.Store.(store.SeriesStore)
	if !ok || len(ps) == 0 {
		return nil
	}
	if err := ss.AddQualityPoints(ctx, ps); err != nil {
		return fmt.Errorf("store quality series: %w", err)
	}
	return nil
}
