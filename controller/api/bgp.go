package api

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vantage-net/vantage/controller/api/rpcerr"
	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Limits of the BGP methods.
const (
	DefaultBGPUpdateLimit = 1000
	MaxBGPUpdateLimit     = 50000
	// MaxBGPImport is the most updates one ImportBgpUpdates call takes.
	MaxBGPImport = 10000
	// bgpWatchBuffer is how many updates a WatchBgp stream may fall
	// behind before the RIB drops its updates (the store has them).
	bgpWatchBuffer = 1024
	maxBGPSource   = 256
)

// The BGP methods read the routing view (Config.RIB) and the stored
// evidence (Config.BGP). The RIB always exists: a controller without a
// collector has an empty one, so GetBgpStatus answers with no peers and
// the monitored prefixes not visible, and WatchBgp streams what imports
// bring; nothing is refused for want of a collector.

// GetBgpStatus returns the routing view's peers and the state of the
// monitored prefixes (one campaign's, or one prefix) now.
func (s *Server) GetBgpStatus(ctx context.Context, req *vantagev1.GetBgpStatusRequest) (*vantagev1.GetBgpStatusResponse, error) {
	if err := s.checkCampaign(ctx, req.GetCampaign()); err != nil {
		return nil, err
	}
	now := s.now()
	out := &vantagev1.GetBgpStatusResponse{Peers: s.rib.Peers(now)}
	if req.GetPrefix() == "" {
		out.Prefixes = s.rib.AllStates(req.GetCampaign(), now)
		return out, nil
	}
	p, err := parsePrefix("prefix", req.GetPrefix())
	if err != nil {
		return nil, err
	}
	out.Prefixes = []*vantagev1.BgpPrefixState{s.rib.StateAt(p, now)}
	return out, nil
}

func parsePrefix(field, v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: %s: %q is not a prefix (want e.g. 198.51.100.0/24)", rpcerr.ErrInvalid, field, v)
	}
	return p.Masked(), nil
}

// bgpFilter is the prefixes a BGP query or watch selects: one prefix, or a
// campaign's networks (any stored campaign, paused ones too). all: no
// filter.
func (s *Server) bgpFilter(ctx context.Context, campaignName, prefix string) (ps []netip.Prefix, all bool, err error) {
	if prefix != "" {
		p, err := parsePrefix("prefix", prefix)
		if err != nil {
			return nil, false, err
		}
		return []netip.Prefix{p}, false, s.checkCampaign(ctx, campaignName)
	}
	if campaignName == "" {
		return nil, true, nil
	}
	c, err := s.cfg.Store.GetCampaign(ctx, campaignName)
	if err != nil {
		return nil, false, err
	}
	spec, err := campaign.Parse([]byte(c.SpecYAML))
	if err != nil {
		return nil, false, fmt.Errorf("%w: stored campaign %s no longer parses: %w", rpcerr.ErrInternal, c.Name, err)
	}
	for _, nw := range spec.Networks() {
		ps = append(ps, nw.Prefixes...)
	}
	return ps, false, nil
}

// ListBgpUpdates streams the stored updates, oldest first.
func (s *Server) ListBgpUpdates(req *vantagev1.ListBgpUpdatesRequest, stream vantagev1.OperatorService_ListBgpUpdatesServer) error {
	ctx := stream.Context()
	limit, err := boundedLimit("limit", req.GetLimit(), DefaultBGPUpdateLimit, MaxBGPUpdateLimit)
	if err != nil {
		return err
	}
	if s.bgpStore == nil {
		return fmt.Errorf("%w: this controller's store keeps no BGP updates", rpcerr.ErrFailedPrecondition)
	}
	ps, all, err := s.bgpFilter(ctx, req.GetCampaign(), req.GetPrefix())
	if err != nil {
		return err
	}
	if !all && len(ps) == 0 {
		return nil // a campaign without networks
	}
	q := store.BGPQuery{Prefixes: ps, Limit: limit}
	if req.GetFrom() != nil {
		q.From = req.GetFrom().AsTime()
	}
	if req.GetTo() != nil {
		q.To = req.GetTo().AsTime()
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		return fmt.Errorf("%w: to: %s is before from %s", rpcerr.ErrInvalid, q.To.Format(timeFormat), q.From.Format(timeFormat))
	}
	us, err := s.bgpStore.BGPUpdates(ctx, q)
	if err != nil {
		return err
	}
	for _, u := range us {
		if err := stream.Send(u); err != nil {
			return err
		}
	}
	return nil
}

// overlapsAny reports whether p overlaps one of ps.
func overlapsAny(p netip.Prefix, ps []netip.Prefix) bool {
	return slices.ContainsFunc(ps, p.Overlaps)
}

// WatchBgp streams the updates the routing view keeps from now on, of one
// prefix (and those overlapping it) or a campaign's networks. A watcher
// that falls behind loses updates (ListBgpUpdates has them).
func (s *Server) WatchBgp(req *vantagev1.WatchBgpRequest, stream vantagev1.OperatorService_WatchBgpServer) error {
	ctx := stream.Context()
	ps, all, err := s.bgpFilter(ctx, req.GetCampaign(), req.GetPrefix())
	if err != nil {
		return err
	}
	ch, cancel := s.rib.Subscribe(bgpWatchBuffer)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-ch:
			if !ok {
				return nil
			}
			p, err := netip.ParsePrefix(u.GetPrefix())
			if err != nil || (!all && !overlapsAny(p, ps)) {
				continue
			}
			if err := stream.Send(u); err != nil {
				return err
			}
		}
	}
}

// ImportBgpUpdates validates every update (one invalid update refuses the
// call, naming its index and field), stores those of a monitored prefix
// with the audit entry in one transaction, then applies them to the
// routing view. The store is written before the RIB: what the response
// counts as imported is on disk.
func (s *Server) ImportBgpUpdates(ctx context.Context, req *vantagev1.ImportBgpUpdatesRequest) (*vantagev1.ImportBgpUpdatesResponse, error) {
	if n := len(req.GetUpdates()); n > MaxBGPImport {
		return nil, fmt.Errorf("%w: updates: %d, more than %d per call", rpcerr.ErrInvalid, n, MaxBGPImport)
	}
	if len(req.GetSource()) > maxBGPSource {
		return nil, fmt.Errorf("%w: source: longer than %d", rpcerr.ErrInvalid, maxBGPSource)
	}
	if s.bgpStore == nil {
		return nil, fmt.Errorf("%w: this controller's store keeps no BGP updates", rpcerr.ErrFailedPrecondition)
	}
	var kept []bgp.Update
	for i, p := range req.GetUpdates() {
		u, err := bgp.FromProto(p)
		if err != nil {
			return nil, fmt.Errorf("%w: updates[%d]: %w", rpcerr.ErrInvalid, i, err)
		}
		if req.GetSource() != "" {
			u.Source = req.GetSource()
		}
		if s.rib.Relevant(u.Prefix) {
			kept = append(kept, u)
		}
	}
	out := &vantagev1.ImportBgpUpdatesResponse{Imported: uint32(len(kept)), Skipped: uint32(len(req.GetUpdates()) - len(kept))}
	rows := make([]*vantagev1.BgpUpdate, len(kept))
	for i, u := range kept {
		rows[i] = u.Proto()
	}
	audit := s.audit(ctx, "bgp.import", req.GetSource(), fmt.Sprintf("imported=%d skipped=%d", out.Imported, out.Skipped))
	if err := s.bgpStore.AddBGP(ctx, rows, nil, audit); err != nil {
		return nil, err
	}
	for _, u := range kept {
		s.rib.Apply(u)
	}
	return out, nil
}
