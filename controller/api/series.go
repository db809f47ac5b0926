package api

import (
	"context"
	"fmt"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Limits of GetSeries (and of GetTimeline's include_series).
const (
	DefaultSeriesLimit = 5000
	MaxSeriesLimit     = 50000
)

// GetSeries returns a campaign's stored quality series (one point per
// network, vantage and round), oldest round first; with more than limit
// points the newest are kept.
func (s *Server) GetSeries(ctx context.Context, req *vantagev1.GetSeriesRequest) (*vantagev1.GetSeriesResponse, error) {
	if req.GetCampaign() == "" {
		return nil, fmt.Errorf("%w: campaign: required", rpcerr.ErrInvalid)
	}
	limit, err := boundedLimit("limit", req.GetLimit(), DefaultSeriesLimit, MaxSeriesLimit)
	if err != nil {
		return nil, err
	}
	if err := s.checkCampaign(ctx, req.GetCampaign()); err != nil {
		return nil, err
	}
	q := store.SeriesQuery{Campaign: req.GetCampaign(), Network: req.GetNetwork(), AgentID: req.GetAgentId(), Limit: limit}
	if req.GetFrom() != nil {
		q.From = req.GetFrom().AsTime()
	}
	if req.GetTo() != nil {
		q.To = req.GetTo().AsTime()
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return nil, fmt.Errorf("%w: to: %s must be after from %s", rpcerr.ErrInvalid, q.To.Format(timeFormat), q.From.Format(timeFormat))
	}
	ps, err := s.cfg.Store.Series(ctx, q)
	if err != nil {
		return nil, err
	}
	return &vantagev1.GetSeriesResponse{Points: ps}, nil
}

const timeFormat = "2006-01-02T15:04:05.999999999Z07:00"

// timelineSeries is the quality series over a timeline query's campaign
// and interval (GetTimeline with include_series), the newest
// DefaultSeriesLimit points.
func (s *Server) timelineSeries(ctx context.Context, q store.TimelineQuery) ([]*vantagev1.QualityPoint, error) {
	return s.cfg.Store.Series(ctx, store.SeriesQuery{Campaign: q.Campaign, From: q.From, To: q.To, Limit: DefaultSeriesLimit})
}
