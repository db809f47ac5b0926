package api

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The timeline a reader quotes is the folded one: a flapping episode's
// first transitions, published at once (the first flap may be a blackout),
// are folded into its transition into UNSTABLE (verdict.Fold). Both
// GetTimeline and Replay return that view unless include_folded asks for
// the folded transitions too; nothing is deleted.

// GetTimeline returns stored transitions, oldest first: the folded view,
// or with include_folded every one (folded_into set on the folded).
func (s *Server) GetTimeline(ctx context.Context, req *vantagev1.GetTimelineRequest) (*vantagev1.GetTimelineResponse, error) {
	limit, err := boundedLimit("limit", req.GetLimit(), DefaultTimelineLimit, MaxTimelineLimit)
	if err != nil {
		return nil, err
	}
	if err := checkSubjects(req); err != nil {
		return nil, err
	}
	q := store.TimelineQuery{Campaign: req.GetCampaign(), Level: req.GetLevel(), Subjects: req.GetSubjects(), Limit: limit,
		IncludeFolded: req.GetIncludeFolded()}
	if req.GetFrom() != nil {
		q.From = req.GetFrom().AsTime()
	}
	if req.GetTo() != nil {
		q.To = req.GetTo().AsTime()
	}
	out, err := s.cfg.Store.Timeline(ctx, q)
	if err != nil {
		return nil, err
	}
	resp := &vantagev1.GetTimelineResponse{Transitions: out}
	if req.GetIncludeSeries() {
		if resp.Series, err = s.timelineSeries(ctx, q); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// MaxTimelineSubjects is the most subjects one GetTimeline may name.
const MaxTimelineSubjects = 1000

// checkSubjects checks GetTimeline's subjects: at most
// MaxTimelineSubjects, none empty, and a campaign and a level to make
// them verdict ids.
func checkSubjects(req *vantagev1.GetTimelineRequest) error {
	ss := req.GetSubjects()
	if len(ss) == 0 {
		return nil
	}
	if len(ss) > MaxTimelineSubjects {
		return fmt.Errorf("%w: subjects: %d is more than %d", rpcerr.ErrInvalid, len(ss), MaxTimelineSubjects)
	}
	for i, subject := range ss {
		if subject == "" {
			return fmt.Errorf("%w: subjects[%d]: empty", rpcerr.ErrInvalid, i)
		}
	}
	if req.GetCampaign() == "" {
		return fmt.Errorf("%w: campaign: required with subjects", rpcerr.ErrInvalid)
	}
	if _, ok := verdict.ID(req.GetCampaign(), req.GetLevel(), ss[0]); !ok {
		return fmt.Errorf("%w: level: required with subjects (LEVEL_SCOPE, LEVEL_NETWORK or LEVEL_TARGET), got %s", rpcerr.ErrInvalid, req.GetLevel())
	}
	return nil
}

// Replay recomputes a campaign's timeline from stored results with other
// verdict parameters; the live timeline is not touched. It returns the
// folded view unless include_folded (replayView).
func (s *Server) Replay(ctx context.Context, req *vantagev1.ReplayRequest) (*vantagev1.ReplayResponse, error) {
	if req.GetCampaign() == "" {
		return nil, fmt.Errorf("%w: campaign: required", rpcerr.ErrInvalid)
	}
	if err := s.checkCampaign(ctx, req.GetCampaign()); err != nil {
		return nil, err
	}
	var from, to time.Time
	for _, f := range []struct {
		name string
		ts   *timestamppb.Timestamp
		dst  *time.Time
	}{{"from", req.GetFrom(), &from}, {"to", req.GetTo(), &to}} {
		if f.ts == nil {
			return nil, fmt.Errorf("%w: %s: required", rpcerr.ErrInvalid, f.name)
		}
		if err := f.ts.CheckValid(); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", rpcerr.ErrInvalid, f.name, err)
		}
		*f.dst = f.ts.AsTime()
	}
	ts, err := s.cfg.Verdicts.Replay(ctx, req.GetCampaign(), from, to, req.GetParams())
	if err != nil {
		return nil, err
	}
	return &vantagev1.ReplayResponse{Transitions: replayView(ts, req.GetIncludeFolded())}, nil
}

// replayView numbers a replay's transitions from 1 (they are not stored,
// and folded_into needs an id to name) and returns the folded view, or,
// with includeFolded, all of them with folded_into set on the folded.
func replayView(ts []*vantagev1.Transition, includeFolded bool) []*vantagev1.Transition {
	for i, t := range ts {
		t.Id = int64(i + 1)
	}
	if includeFolded {
		verdict.MarkFolded(ts)
		return ts
	}
	return verdict.Fold(ts)
}
