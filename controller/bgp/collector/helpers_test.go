package collector

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	bgppkt "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/vantage-net/vantage/controller/bgp"
)

// waitLimit bounds every wait on the network: generous, so a slow CI
// machine does not fail; the tests log what they measured.
const waitLimit = 30 * time.Second

// recorder is a bgp.Sink that keeps what it got, with the time it got it.
type recorder struct {
	mu      sync.Mutex
	updates []bgp.Update
	events  []bgp.PeerEvent
	gotAt   []time.Time // per update
	eventAt []time.Time
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) Update(u bgp.Update) {
	r.mu.Lock()
	r.updates, r.gotAt = append(r.updates, u), append(r.gotAt, time.Now())
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) PeerState(e bgp.PeerEvent) {
	r.mu.Lock()
	r.events, r.eventAt = append(r.events, e), append(r.eventAt, time.Now())
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitUpdate waits for an update matching ok and returns it and when the
// sink got it.
func (r *recorder) waitUpdate(t *testing.T, what string, ok func(bgp.Update) bool) (bgp.Update, time.Time) {
	t.Helper()
	var u bgp.Update
	var at time.Time
	r.wait(t, what, func() bool {
		for i, x := range r.updates {
			if ok(x) {
				u, at = x, r.gotAt[i]
				return true
			}
		}
		return false
	})
	return u, at
}

func (r *recorder) waitEvent(t *testing.T, what string, ok func(bgp.PeerEvent) bool) (bgp.PeerEvent, time.Time) {
	t.Helper()
	var e bgp.PeerEvent
	var at time.Time
	r.wait(t, what, func() bool {
		for i, x := range r.events {
			if ok(x) {
				e, at = x, r.eventAt[i]
				return true
			}
		}
		return false
	})
	return e, at
}

func (r *recorder) wait(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		r.mu.Lock()
		ok := done()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("no %s within %s; updates %v, events %v", what, waitLimit, r.updates, r.events)
		}
	}
}

func testLog(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() && os.Getenv("COLLECTOR_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("test", t.Name())
}

// runCollector starts a collector and stops it when the test ends.
func runCollector(t *testing.T, cfg Config, sink bgp.Sink) *Collector {
	t.Helper()
	c, err := New(cfg, sink, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("collector not ready")
	}
	return c
}

// gobgpSpeaker is a GoBGP server in the test: the far end of a session.
type gobgpSpeaker struct {
	*server.BgpServer
	stopped bool
}

// newSpeaker starts a GoBGP server with AS as and router-id id, listening
// on listen (nil: not listening).
func newSpeaker(t *testing.T, as uint32, id string, listen *netip.AddrPort) *gobgpSpeaker {
	t.Helper()
	s := server.NewBgpServer(server.LoggerOption(gobgpLogger{testLog(t).With("speaker", id)}))
	go s.Serve()
	g := &api.Global{Asn: as, RouterId: id, ListenPort: -1}
	if listen != nil {
		port, err := freePort(listen.Addr())
		if err != nil {
			t.Fatal(err)
		}
		*listen = netip.AddrPortFrom(listen.Addr(), port)
		g.ListenPort, g.ListenAddresses = int32(port), []string{listen.Addr().String()}
	}
	if err := s.StartBgp(context.Background(), &api.StartBgpRequest{Global: g}); err != nil {
		t.Fatal(err)
	}
	sp := &gobgpSpeaker{BgpServer: s}
	t.Cleanup(sp.stop)
	return sp
}

func (s *gobgpSpeaker) stop() {
	if !s.stopped {
		s.stopped = true
		s.Stop()
	}
}

// peer adds a neighbor: active toward remote (from local), or passive.
func (s *gobgpSpeaker) peer(t *testing.T, addr netip.Addr, as uint32, remote netip.AddrPort, local netip.Addr) {
	t.Helper()
	p := gobgpPeer(PeerConfig{Addr: addr, AS: as, Active: remote.IsValid()})
	if remote.IsValid() {
		p.Transport.RemotePort = uint32(remote.Port())
		p.Transport.LocalAddress = local.String()
		p.Timers = &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1}}
	}
	if err := s.AddPeer(context.Background(), &api.AddPeerRequest{Peer: p}); err != nil {
		t.Fatal(err)
	}
}

// path is an API path for prefix with AS path asPath (the speaker
// prepends its own AS toward eBGP peers) and next hop nh.
func path(t *testing.T, prefix netip.Prefix, asPath []uint32, nh netip.Addr) *api.Path {
	t.Helper()
	var nlri bgppkt.AddrPrefixInterface
	pas := []bgppkt.PathAttributeInterface{
		bgppkt.NewPathAttributeOrigin(bgppkt.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, asPath)}),
	}
	if prefix.Addr().Is4() {
		nlri = bgppkt.NewIPAddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		pas = append(pas, bgppkt.NewPathAttributeNextHop(nh.String()))
	} else {
		nlri = bgppkt.NewIPv6AddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		pas = append(pas, bgppkt.NewPathAttributeMpReachNLRI(nh.String(), []bgppkt.AddrPrefixInterface{nlri}))
	}
	p, err := apiutil.NewPath(nlri, false, pas, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *gobgpSpeaker) add(t *testing.T, p *api.Path) {
	t.Helper()
	if _, err := s.AddPath(context.Background(), &api.AddPathRequest{Path: p}); err != nil {
		t.Fatal(err)
	}
}

func (s *gobgpSpeaker) del(t *testing.T, p *api.Path) {
	t.Helper()
	if err := s.DeletePath(context.Background(), &api.DeletePathRequest{Path: p}); err != nil {
		t.Fatal(err)
	}
}

// the scenario both session tests share
var (
	speakerAS   = uint32(64511)
	speakerID   = "127.0.0.2"
	speakerAddr = netip.MustParseAddr("127.0.0.2")
	pfx4        = netip.MustParsePrefix("198.18.0.0/24")
	pfx6        = netip.MustParsePrefix("2001:db8:18::/64")
	nh6         = netip.MustParseAddr("2001:db8:18::2")
	// given to AddPath; the speaker prepends 64511 on the wire
	addedPath = []uint32{64510, 64501, 64500}
	wirePath  = []uint32{64511, 64510, 64501, 64500}
)

func announced(source string, p netip.Prefix) func(bgp.Update) bool {
	return func(u bgp.Update) bool { return u.Source == source && u.Prefix == p && !u.Withdraw }
}

func withdrawn(source string, p netip.Prefix) func(bgp.Update) bool {
	return func(u bgp.Update) bool { return u.Source == source && u.Prefix == p && u.Withdraw }
}

func checkRoute(t *testing.T, u bgp.Update, nh netip.Addr) {
	t.Helper()
	if !slices.Equal(u.ASPath, wirePath) || u.Origin() != 64500 || u.NextHop != nh || u.Peer != speakerAddr || u.PeerAS != speakerAS {
		t.Errorf("route %+v: want path %v (origin 64500), next hop %s, peer %s AS %d", u, wirePath, nh, speakerAddr, speakerAS)
	}
	if err := u.Validate(); err != nil {
		t.Error(err)
	}
}
