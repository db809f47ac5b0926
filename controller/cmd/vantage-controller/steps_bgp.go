package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/vantage-net/vantage/controller/bgp"
	"github.com/vantage-net/vantage/controller/bgp/collector"
	"github.com/vantage-net/vantage/controller/bgp/record"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/controller/verdict"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// collectorConfig is the collector the flags ask for (no listener when
// they ask for none). Every mistake names its flag.
func (cfg Config) collectorConfig() (collector.Config, error) {
	cc := collector.Config{LocalAS: cfg.BGPAS, BGPListen: cfg.BGPListen, BMPListen: cfg.BMPListen}
	if cfg.BGPListen == "" && cfg.BMPListen == "" {
		if len(cfg.BGPPeers) > 0 {
			return cc, errors.New("--bgp-peer: needs --bgp-listen (the collector only accepts sessions)")
		}
		return cc, nil
	}
	if cfg.BGPRouterID == "" {
		return cc, errors.New("--bgp-router-id: required with --bgp-listen or --bmp-listen")
	}
	id, err := netip.ParseAddr(cfg.BGPRouterID)
	if err != nil {
		return cc, fmt.Errorf("--bgp-router-id: %w", err)
	}
	cc.RouterID = id
	for i, s := range cfg.BGPPeers {
		p, err := collector.ParsePeer(s)
		if err != nil {
			return cc, fmt.Errorf("--bgp-peer %d (%q): %w", i+1, s, err)
		}
		cc.Peers = append(cc.Peers, p)
	}
	if cfg.BGPListen != "" && cfg.BGPAS == 0 {
		return cc, errors.New("--bgp-as: required with --bgp-listen")
	}
	if cfg.BGPListen == "" {
		cc.LocalAS = 64512 // a BMP station speaks no BGP; GoBGP still wants an AS (private use, RFC 6996)
	}
	if err := cc.Validate(); err != nil {
		return cc, fmt.Errorf("--bgp-* flags: %w", err)
	}
	return cc, nil
}

// startBGPSources starts the collector the flags ask for, feeding sink; it
// stops (registered after the recorder's writer, so before it) with the
// controller.
func (c *controller) startBGPSources(ctx context.Context, sink bgp.Sink) error {
	cc, err := c.cfg.collectorConfig()
	if err != nil || (cc.BGPListen == "" && cc.BMPListen == "") {
		return err
	}
	col, err := collector.New(cc, sink, c.log.With(slog.String("component", "bgp")))
	if err != nil {
		return fmt.Errorf("bgp collector: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- col.Run(runCtx) }()
	select {
	case <-col.Ready():
	case err := <-done:
		stop()
		return fmt.Errorf("bgp collector: %w", err)
	}
	c.onStop(func() {
		stop()
		if err := <-done; err != nil {
			c.log.Warn("bgp collector stopped with an error", slog.Any("error", err))
		}
	})
	c.log.Info("BGP collector listening", slog.String("bgp", addrOrOff(col.BGPAddr())), slog.String("bmp", addrOrOff(col.BMPAddr())),
		slog.Int("peers", len(cc.Peers)))
	return nil
}

func addrOrOff(a netip.AddrPort) string {
	if !a.IsValid() {
		return "off"
	}
	return a.String()
}

// replayBaseline is how long before a replay's window its BGP view is
// rebuilt from: the update rate's baseline (bgp.Options.BaselineWindow).
const replayBaseline = time.Hour

// replayRouting rebuilds, for a replay of spec over [from, to], the BGP
// view of its networks from the stored updates (MRT imports included).
func (c *controller) replayRouting(ctx context.Context, spec *campaign.Spec, from, to time.Time) (verdict.Routing, error) {
	rib := bgp.NewRIB(bgp.Options{Retain: to.Sub(from) + 2*replayBaseline})
	m := map[netip.Prefix]bgp.Monitor{}
	addMonitors(m, spec.Name(), spec)
	rib.SetMonitored(m)
	if err := record.Load(ctx, c.store, rib, from.Add(-replayBaseline), to); err != nil {
		return nil, err
	}
	return seenRouting{rib}, nil
}

// seenRouting is a RIB that says nothing (no prefix states, so no BGP
// evidence) until it has had a peer: a controller without a collector or
// imports would otherwise put "no BGP data" in every cause, while with
// one, sessions all down is evidence worth saying.
type seenRouting struct{ rib *bgp.RIB }

func (r seenRouting) States(prefixes []netip.Prefix, t time.Time) []*vantagev1.BgpPrefixState {
	if len(r.rib.Peers(t)) == 0 {
		return nil
	}
	return r.rib.States(prefixes, t)
}

// addMonitors adds spec's networks' prefixes to m as campaign name's,
// keeping a prefix already there (two campaigns sharing one: the first's).
func addMonitors(m map[netip.Prefix]bgp.Monitor, name string, spec *campaign.Spec) {
	for _, nw := range spec.Networks() {
		for _, p := range nw.Prefixes {
			if _, ok := m[p.Masked()]; !ok {
				m[p.Masked()] = bgp.Monitor{Campaign: name, Network: nw.Name}
			}
		}
	}
}
