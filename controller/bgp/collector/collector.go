package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vantage-net/vantage/controller/bgp"
)

// ErrRunTwice is Run's error on a Collector that already ran.
var ErrRunTwice = errors.New("collector: Run called more than once")

// Collector runs the eBGP listener and the BMP station and feeds a Sink.
type Collector struct {
	cfg   Config
	sink  bgp.Sink
	log   *slog.Logger
	now   func() time.Time
	peers map[netip.Addr]PeerConfig

	started atomic.Bool
	ready   chan struct{}
	// set before ready is closed, read-only after
	bgpAddr, bmpAddr netip.AddrPort
}

// New validates cfg and returns a Collector that sends everything it sees
// to sink. Nothing listens until Run. A nil log discards.
func New(cfg Config, sink bgp.Sink, log *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, errors.New("collector: nil sink")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.BMPMaxConns == 0 {
		cfg.BMPMaxConns = DefaultBMPMaxConns
	}
	peers := make(map[netip.Addr]PeerConfig, len(cfg.Peers))
	for _, p := range cfg.Peers {
		peers[p.Addr] = p
	}
	return &Collector{cfg: cfg, sink: sink, log: log, now: time.Now, peers: peers, ready: make(chan struct{})}, nil
}

// Ready is closed once Run listens on everything it was configured for;
// BGPAddr and BMPAddr are valid then.
func (c *Collector) Ready() <-chan struct{} { return c.ready }

// BGPAddr is the eBGP listener's address (the port picked, for port 0),
// valid once Ready is closed; zero when there is no listener.
func (c *Collector) BGPAddr() netip.AddrPort { return c.bgpAddr }

// BMPAddr is the BMP station's address, valid once Ready is closed; zero
// when there is none.
func (c *Collector) BMPAddr() netip.AddrPort { return c.bmpAddr }

// Run listens, feeds the sink and blocks until ctx ends, then stops
// everything it started (the sessions go down, each peer seen up gets a
// PeerEvent down) and returns nil. It returns an error if a listener
// cannot be set up or fails. Run may be called once.
func (c *Collector) Run(ctx context.Context) error {
	if c.started.Swap(true) {
		return ErrRunTwice
	}
	g, gctx := errgroup.WithContext(ctx)
	err := c.start(gctx, g)
	if err == nil {
		close(c.ready)
		c.log.Info("collector listening", "bgp", c.bgpAddr.String(), "bmp", c.bmpAddr.String(), "peers", len(c.cfg.Peers))
	}
	if werr := g.Wait(); err == nil && ctx.Err() == nil {
		err = werr
	}
	return err
}

// start sets up the listeners, each loop owned by g.
func (c *Collector) start(ctx context.Context, g *errgroup.Group) error {
	ctx, cancel := context.WithCancel(ctx)
	if c.cfg.BMPListen != "" {
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", c.cfg.BMPListen)
		if err != nil {
			cancel()
			return fmt.Errorf("collector: bmp_listen %s: %w", c.cfg.BMPListen, err)
		}
		c.bmpAddr = ln.Addr().(*net.TCPAddr).AddrPort()
		c.bmpAddr = netip.AddrPortFrom(c.bmpAddr.Addr().Unmap(), c.bmpAddr.Port())
		g.Go(func() error { return c.serveBMP(ctx, ln) })
	}
	if c.cfg.BGPListen != "" || len(c.cfg.Peers) > 0 {
		sp, err := c.startBGP(ctx)
		if err != nil {
			cancel()
			return err
		}
		g.Go(func() error { return sp.run(ctx) })
	}
	g.Go(func() error {
		<-ctx.Done()
		cancel()
		return nil
	})
	return nil
}

// deliver validates u and hands it to the sink, reporting whether it was
// valid. Invalid updates are logged at Debug: a peer that sends them
// would flood the log otherwise.
func (c *Collector) deliver(u bgp.Update) bool {
	if err := u.Validate(); err != nil {
		c.log.Debug("update dropped", "source", u.Source, "prefix", u.Prefix.String(), "err", err)
		return false
	}
	c.sink.Update(u)
	return true
}
