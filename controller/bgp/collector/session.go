package collector

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/vantage-net/vantage/controller/bgp"
)

// Prefix limits per peer and family: a full table is about 1M IPv4 and
// 250k IPv6 routes in 2026; past these GoBGP resets the session rather
// than let one peer grow the collector's memory without bound.
const (
	maxPrefixesV4 = 2_000_000
	maxPrefixesV6 = 1_000_000
)

// speaker is the collector's GoBGP server and the loop reading its
// events.
//
// GoBGP's Serve loop has no way to stop (v3.37.0: it selects forever).
// Run stops BGP (StopBgp: every session closed, the listener closed) and
// the event watch, so what is left after Run is one goroutine parked on
// channels nobody sends to, per Collector. A Collector runs once per
// process, so this is bounded.
type speaker struct {
	c      *Collector
	s      *server.BgpServer
	events chan *api.WatchEventResponse
	// up: the peers the sink was told are up (owned by run)
	up map[netip.Addr]bgp.PeerEvent
}

// startBGP starts GoBGP, listening on BGPListen (a free port for port 0),
// with import and export policies that reject everything (the collector
// keeps no Loc-RIB and announces nothing), a watch on the peers' states
// and their Adj-RIB-In before policy, and then the peers.
func (c *Collector) startBGP(ctx context.Context) (*speaker, error) {
	s := server.NewBgpServer(server.LoggerOption(gobgpLogger{c.log.With("component", "gobgp")}))
	go s.Serve()
	sp := &speaker{c: c, s: s, events: make(chan *api.WatchEventResponse), up: map[netip.Addr]bgp.PeerEvent{}}
	fail := func(err error) (*speaker, error) {
		s.Stop()
		return nil, err
	}
	if err := sp.listen(ctx); err != nil {
		return fail(err)
	}
	for _, dir := range []api.PolicyDirection{api.PolicyDirection_IMPORT, api.PolicyDirection_EXPORT} {
		err := s.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: dir, DefaultAction: api.RouteAction_REJECT}})
		if err != nil {
			return fail(fmt.Errorf("collector: gobgp: rejecting all routes (%s): %w", dir, err))
		}
	}
	req := &api.WatchEventRequest{
		Peer:  &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_ADJIN}}},
	}
	if err := s.WatchEvent(ctx, req, sp.onEvent(ctx)); err != nil {
		return fail(fmt.Errorf("collector: gobgp: watching events: %w", err))
	}
	for i, p := range c.cfg.Peers {
		if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: gobgpPeer(p)}); err != nil {
			return fail(fmt.Errorf("collector: gobgp: adding peers[%d] %s: %w", i, p.Addr, err))
		}
	}
	return sp, nil
}

// listen starts BGP on BGPListen. For port 0 it asks the kernel for a
// free port, then has GoBGP bind it (GoBGP does not say which port it
// bound); another process may take it in between, so it tries again.
func (sp *speaker) listen(ctx context.Context) error {
	c := sp.c
	g := &api.Global{Asn: c.cfg.LocalAS, RouterId: c.cfg.RouterID.String(), ListenPort: -1}
	if c.cfg.BGPListen == "" {
		return sp.startBgp(ctx, g)
	}
	ap, err := parseListen(c.cfg.BGPListen)
	if err != nil {
		return fmt.Errorf("collector: bgp_listen: %w", err)
	}
	g.ListenAddresses = []string{ap.Addr().String()}
	for try := 0; ; try++ {
		port := ap.Port()
		if port == 0 {
			if port, err = freePort(ap.Addr()); err != nil {
				return fmt.Errorf("collector: bgp_listen %s: %w", c.cfg.BGPListen, err)
			}
		}
		g.ListenPort = int32(port)
		err = sp.startBgp(ctx, g)
		if err == nil {
			c.bgpAddr = netip.AddrPortFrom(ap.Addr(), port)
			return nil
		}
		if ap.Port() != 0 || try == 4 {
			return fmt.Errorf("collector: bgp_listen %s: %w", c.cfg.BGPListen, err)
		}
	}
}

func (sp *speaker) startBgp(ctx context.Context, g *api.Global) error {
	if err := sp.s.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		return fmt.Errorf("gobgp: starting BGP: %w", err)
	}
	return nil
}

func freePort(a netip.Addr) (uint16, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	return port, nil
}

func gobgpPeer(p PeerConfig) *api.Peer {
	family := func(afi api.Family_Afi, max uint32) *api.AfiSafi {
		f := &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}
		return &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true},
			PrefixLimits: &api.PrefixLimit{Family: f, MaxPrefixes: max}}
	}
	peer := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: p.Addr.String(), PeerAsn: p.AS, Description: p.Description},
		Transport: &api.Transport{PassiveMode: !p.Active},
		AfiSafis:  []*api.AfiSafi{family(api.Family_AFI_IP, maxPrefixesV4), family(api.Family_AFI_IP6, maxPrefixesV6)},
	}
	if p.Multihop {
		peer.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	return peer
}

// onEvent is GoBGP's callback (on its watch goroutine): it hands the
// event to run, or drops it once the collector is stopping.
func (sp *speaker) onEvent(ctx context.Context) func(*api.WatchEventResponse) {
	return func(r *api.WatchEventResponse) {
		select {
		case sp.events <- r:
		case <-ctx.Done():
		}
	}
}

// run turns GoBGP's events into the sink's until ctx ends, then stops
// GoBGP and reports every peer still up as down.
func (sp *speaker) run(ctx context.Context) error {
	for {
		select {
		case r := <-sp.events:
			switch ev := r.GetEvent().(type) {
			case *api.WatchEventResponse_Peer:
				sp.peerEvent(ev.Peer)
			case *api.WatchEventResponse_Table:
				for _, p := range ev.Table.GetPaths() {
					sp.path(p)
				}
			}
		case <-ctx.Done():
			sp.c.log.Debug("bgp stopping", "cause", context.Cause(ctx))
			if err := sp.s.StopBgp(context.Background(), &api.StopBgpRequest{}); err != nil {
				sp.c.log.Warn("gobgp stop failed", "err", err)
			}
			for addr, e := range sp.up {
				e.At, e.Up = sp.c.now(), false
				sp.c.sink.PeerState(e)
				delete(sp.up, addr)
			}
			return nil
		}
	}
}

func (sp *speaker) peerEvent(ev *api.WatchEventResponse_PeerEvent) {
	if ev.GetType() == api.WatchEventResponse_PeerEvent_END_OF_INIT {
		return
	}
	st := ev.GetPeer().GetState()
	addr, err := netip.ParseAddr(st.GetNeighborAddress())
	if err != nil {
		return
	}
	addr = addr.Unmap()
	established := st.GetSessionState() == api.PeerState_ESTABLISHED
	e, wasUp := sp.up[addr]
	switch {
	case established && !wasUp:
		cfg := sp.c.peers[addr]
		e = bgp.PeerEvent{At: sp.c.now(), Peer: addr, PeerAS: st.GetPeerAsn(), Source: "bgp:" + addr.String(), Up: true, FullFeed: cfg.FullFeed}
		if e.PeerAS == 0 {
			e.PeerAS = cfg.AS
		}
		sp.up[addr] = e
		sp.c.log.Info("bgp peer up", "peer", addr.String(), "as", e.PeerAS)
	case !established && wasUp:
		delete(sp.up, addr)
		e.At, e.Up = sp.c.now(), false
		sp.c.log.Info("bgp peer down", "peer", addr.String(), "as", e.PeerAS, "state", st.GetSessionState().String())
	default:
		return
	}
	sp.c.sink.PeerState(e)
}

// path is one Adj-RIB-In change: an announcement or a withdrawal.
func (sp *speaker) path(p *api.Path) {
	if p.GetNlri() == nil && len(p.GetNlriBinary()) == 0 {
		return // End-of-RIB marker
	}
	peer, err := netip.ParseAddr(p.GetNeighborIp())
	if err != nil {
		sp.c.log.Debug("path dropped", "err", fmt.Errorf("neighbor ip %q: %w", p.GetNeighborIp(), err))
		return
	}
	u, err := sp.update(p, peer.Unmap())
	if err != nil {
		sp.c.log.Debug("path dropped", "peer", peer.String(), "err", err)
		return
	}
	sp.c.deliver(u)
}

func (sp *speaker) update(p *api.Path, peer netip.Addr) (bgp.Update, error) {
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return bgp.Update{}, fmt.Errorf("nlri: %w", err)
	}
	pas, err := apiutil.GetNativePathAttributes(p)
	if err != nil && !p.GetIsWithdraw() {
		return bgp.Update{}, fmt.Errorf("path attributes: %w", err)
	}
	// The time is the watch event's receipt, not the path's age: GoBGP's
	// age has whole seconds, and a path re-advertised unchanged keeps its
	// first age, so updates would arrive stamped out of order (seen in
	// the lab: an upstream's re-advertisement after a withdrawal carried
	// the time of the announcement before it).
	f := from{at: sp.c.now(), peer: peer, peerAS: p.GetSourceAsn(), source: "bgp:" + peer.String()}
	if f.peerAS == 0 {
		f.peerAS = sp.c.peers[peer].AS
	}
	return fromPath(nlri, pas, p.GetIsWithdraw(), f)
}
