package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	"github.com/vantage-net/vantage/controller/export"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ExportPrefix is the prefix of every ExportService full method name; its
// methods are in the same role table (methodRoles) as OperatorService's.
const ExportPrefix = "/vantage.v1.ExportService/"

// Export pages: how many transitions and BGP updates one store read takes.
// Results are read in the store's own pages (64 chunks or 4 MiB).
const (
	exportTransitionPage = 1000
	exportBGPPage        = 1000
)

// EpisodeRecords is the store's verdict-ordered transitions, which
// ExportEpisodes cuts into episodes.
type EpisodeRecords interface {
	TransitionsByVerdict(ctx context.Context, q store.VerdictPageQuery) ([]*vantagev1.Transition, error)
}

// Exporter implements vantagev1.ExportServiceServer for a Server: register
// it next to the Server's OperatorService, under the same interceptors.
//
// Each method reads the store in bounded pages and sends as it reads, so a
// stream holds one page (and, for results, the store's merge of chunks
// overlapping in time) whatever the window; gRPC's flow control stops the
// reads while the client is slow. Export streams have no overall deadline
// (StreamLimits.QueryMaxAge does not apply) but the send idle limit does,
// and each counts against the token's queries.
type Exporter struct {
	vantagev1.UnimplementedExportServiceServer
	s *Server
}

// Exporter returns the Server's ExportService.
func (s *Server) Exporter() *Exporter { return &Exporter{s: s} }

// window checks an export request's campaign and window.
func (x *Exporter) window(ctx context.Context, req *vantagev1.ExportRequest) (from, to time.Time, err error) {
	if req.GetCampaign() == "" {
		return from, to, fmt.Errorf("%w: campaign: required", rpcerr.ErrInvalid)
	}
	if req.GetFrom() == nil || req.GetTo() == nil {
		return from, to, fmt.Errorf("%w: from and to: both required (the window [from, to))", rpcerr.ErrInvalid)
	}
	from, to = req.GetFrom().AsTime(), req.GetTo().AsTime()
	if !from.Before(to) {
		return from, to, fmt.Errorf("%w: to: %s is not after from %s", rpcerr.ErrInvalid, to.Format(timeFormat), from.Format(timeFormat))
	}
	if _, err := x.s.cfg.Store.GetCampaign(ctx, req.GetCampaign()); err != nil {
		return from, to, err // it names the campaign
	}
	return from, to, nil
}

func badCursor(err error) error {
	if errors.Is(err, export.ErrCursor) {
		return fmt.Errorf("%w: after: %w", rpcerr.ErrInvalid, err)
	}
	return err
}

// ExportResults streams the campaign's results sent in [from, to).
func (x *Exporter) ExportResults(req *vantagev1.ExportRequest, stream vantagev1.ExportService_ExportResultsServer) error {
	ctx := stream.Context()
	from, to, err := x.window(ctx, req)
	if err != nil {
		return err
	}
	q := store.ResultQuery{Campaign: req.GetCampaign(), From: from, To: to}
	if req.GetAfter() != "" {
		k, err := export.ParseResultCursor(req.GetAfter())
		if err != nil {
			return badCursor(err)
		}
		q.After = &k
	}
	// The fleet's names, once: one map of the enrolled agents.
	as, err := x.s.cfg.Store.ListAgents(ctx)
	if err != nil {
		return err
	}
	names := make(map[string]string, len(as))
	for _, a := range as {
		names[a.ID] = a.Name
	}
	return x.s.cfg.Store.QueryResults(ctx, q, func(sr store.StoredResult) error {
		return stream.Send(&vantagev1.ExportedResult{Cursor: export.ResultCursor(store.KeyOf(sr)), Result: toStored(sr), AgentName: names[sr.AgentID]})
	})
}

// ExportEpisodes streams the campaign's episodes cut from the transitions
// detected in [from, to), by verdict id, then start.
func (x *Exporter) ExportEpisodes(req *vantagev1.ExportRequest, stream vantagev1.ExportService_ExportEpisodesServer) error {
	ctx := stream.Context()
	from, to, err := x.window(ctx, req)
	if err != nil {
		return err
	}
	er, ok := x.s.cfg.Store.(EpisodeRecords)
	if !ok {
		return fmt.Errorf("%w: this controller's store cannot read transitions by verdict", rpcerr.ErrFailedPrecondition)
	}
	switch req.GetLevel() {
	case vantagev1.Level_LEVEL_UNSPECIFIED, vantagev1.Level_LEVEL_SCOPE, vantagev1.Level_LEVEL_NETWORK, vantagev1.Level_LEVEL_TARGET:
	default:
		return fmt.Errorf("%w: level: %d is not a level", rpcerr.ErrInvalid, req.GetLevel())
	}
	q := store.VerdictPageQuery{Campaign: req.GetCampaign(), Level: req.GetLevel(), From: from, To: to, Limit: exportTransitionPage}
	if req.GetAfter() != "" {
		p, err := export.ParseEpisodeCursor(req.GetAfter())
		if err != nil {
			return badCursor(err)
		}
		q.AfterVerdictID, q.AfterDetectedAt, q.AfterID = p.VerdictID, p.DetectedAt, p.ID
	}
	send := func(cuts []export.Cut) error {
		for _, c := range cuts {
			if err := stream.Send(&vantagev1.ExportedEpisode{Cursor: export.EpisodeCursor(c.Last), Episode: c.Episode}); err != nil {
				return err
			}
		}
		return nil
	}
	var cut export.Cutter
	for {
		page, err := er.TransitionsByVerdict(ctx, q)
		if err != nil {
			return err
		}
		for _, tr := range page {
			if err := send(cut.Add(tr)); err != nil {
				return err
			}
		}
		if len(page) < q.Limit {
			return send(cut.Flush())
		}
		last := page[len(page)-1]
		q.AfterVerdictID, q.AfterDetectedAt, q.AfterID = last.GetVerdictId(), last.GetDetectedAt().AsTime(), last.GetId()
	}
}

// ExportBgp streams the stored updates of the campaign's networks in
// [from, to), oldest first.
func (x *Exporter) ExportBgp(req *vantagev1.ExportRequest, stream vantagev1.ExportService_ExportBgpServer) error {
	ctx := stream.Context()
	from, to, err := x.window(ctx, req)
	if err != nil {
		return err
	}
	if x.s.bgpStore == nil {
		return fmt.Errorf("%w: this controller's store keeps no BGP updates", rpcerr.ErrFailedPrecondition)
	}
	ps, _, err := x.s.bgpFilter(ctx, req.GetCampaign(), "")
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return nil // a campaign without networks
	}
	q := store.BGPQuery{Prefixes: ps, From: from, To: to, Limit: exportBGPPage}
	if req.GetAfter() != "" {
		if q.AfterAt, q.AfterID, err = export.ParseBGPCursor(req.GetAfter()); err != nil {
			return badCursor(err)
		}
	}
	for {
		us, err := x.s.bgpStore.BGPUpdates(ctx, q)
		if err != nil {
			return err
		}
		for _, u := range us {
			at := u.GetAt().AsTime()
			if !at.Before(to) { // the store's To is inclusive; the window is not
				return nil
			}
			if err := stream.Send(&vantagev1.ExportedBgpUpdate{Cursor: export.BGPCursor(at, u.GetId()), Update: u}); err != nil {
				return err
			}
		}
		if len(us) < q.Limit {
			return nil
		}
		last := us[len(us)-1]
		q.AfterAt, q.AfterID = last.GetAt().AsTime(), last.GetId()
	}
}
