package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// The flood (LossStep.Flood): UDP load sent from inside the lab, to the
// lab's own hosts only, that fills a capacity as an attack or a flash crowd
// does. Its packets go from the router past the edge (transit in the
// default lab) through the upstreams and the border to every host of every
// network.

// floodPacket is the IP size of a flood datagram in bytes, headers
// included; the rate counts these bytes.
const floodPacket = 1000

// floodPort is where the datagrams go: discard. Nothing listens there, so
// each host that gets one answers ICMP port unreachable, on the return
// path, which no capacity caps.
const floodPort = 9

// FloodStats describes the running flood.
type FloodStats struct {
	// Kbit is its mean rate in kbit/s (IP bytes).
	Kbit int
	// Source is the node it is sent from; Hosts how many hosts (IPv4 and
	// IPv6) it is spread over, each datagram to one drawn at random.
	Source string
	Hosts  int
	// Sent counts the datagrams sent; Errors the sends that failed (an
	// unreachable network during a blackout, say), which are not fatal.
	Sent, Errors uint64
}

// flood is the lab's flood: one goroutine (run) sending from one socket,
// owned by the Lab (Lab.fl, under Lab.mu), stopped by stopFloodLocked.
type flood struct {
	source  string
	targets []netip.AddrPort
	conn    *net.UDPConn
	kbit    atomic.Int64
	sent    atomic.Uint64
	errs    atomic.Uint64
	cancel  context.CancelFunc
	done    chan struct{}
}

// FloodStats returns the flood's figures, and false if none is running.
func (l *Lab) FloodStats() (FloodStats, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fl
	if f == nil {
		return FloodStats{}, false
	}
	return FloodStats{Kbit: int(f.kbit.Load()), Source: f.source, Hosts: len(f.targets), Sent: f.sent.Load(), Errors: f.errs.Load()}, true
}

// setFlood starts the flood at kbit/s, changes its rate in place, or, at
// 0, stops it.
func (l *Lab) setFlood(kbit int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case kbit == 0:
		l.stopFloodLocked()
		return nil
	case l.down:
		return fmt.Errorf("flood: %w: lab %s is down", ErrNotUp, l.prefix)
	case l.fl != nil:
		l.fl.setRate(kbit)
		l.log.Debug("flood rate", slog.Int("kbit", kbit))
		return nil
	}
	f, err := l.newFloodLocked(kbit)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go f.run(ctx)
	l.fl = f
	l.log.Info("flood started", slog.String("source", f.source), slog.Int("hosts", len(f.targets)), slog.Int("kbit", kbit))
	return nil
}

// newFloodLocked opens the flood's socket in its source's namespace.
func (l *Lab) newFloodLocked(kbit int) (*flood, error) {
	f := &flood{source: l.floodSource(), targets: l.floodTargets(), done: make(chan struct{})}
	if len(f.targets) == 0 {
		return nil, errors.New("flood: the topology has no network hosts")
	}
	err := onThreadIn(l.ns[f.source], func() error {
		var err error
		// Unbound and dual-stack: it sends to IPv4 hosts as well.
		f.conn, err = net.ListenUDP("udp", nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("flood: socket in %s: %w", l.Namespace(f.source), err)
	}
	f.setRate(kbit)
	return f, nil
}

// stopFloodLocked stops the flood, if one runs, and waits for it.
func (l *Lab) stopFloodLocked() {
	if l.fl == nil {
		return
	}
	f := l.fl
	l.fl = nil
	f.cancel()
	<-f.done
	_ = f.conn.Close()
	l.log.Info("flood stopped", slog.Uint64("sent", f.sent.Load()), slog.Uint64("errors", f.errs.Load()))
}

func (f *flood) setRate(kbit int) { f.kbit.Store(int64(kbit)) }

// gap is the mean time between two datagrams at the current rate.
func (f *flood) gap() time.Duration {
	return time.Duration(float64(floodPacket*8) / float64(f.kbit.Load()*1000) * float64(time.Second))
}

// run sends datagrams as a Poisson process at the current rate (gaps drawn
// from an exponential distribution), each to a host drawn at random, so
// each network's link gets a Poisson share, until ctx is done. Random, not
// paced: aggregate load (many sources, an attack, a flash crowd) is random,
// and a queue fed at random grows gradually with the load (RTT rises from
// well below the capacity, and the loss with it); a paced flood leaves the
// queue empty below the capacity and full above it, nothing in between.
func (f *flood) run(ctx context.Context) {
	defer close(f.done)
	payload4 := make([]byte, floodPacket-20-8) // IPv4 and UDP headers
	payload6 := make([]byte, floodPacket-40-8)
	t := time.NewTimer(0)
	defer t.Stop()
	next := time.Now()
	for {
		next = next.Add(time.Duration(rand.ExpFloat64() * float64(f.gap())))
		if d := time.Until(next); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		if d := time.Since(next); d > time.Second {
			next = time.Now() // far behind (a stalled host): do not catch up in one burst
		}
		to := f.targets[rand.IntN(len(f.targets))]
		p := payload6
		if to.Addr().Is4() {
			p = payload4
		}
		if _, err := f.conn.WriteToUDPAddrPort(p, to); err != nil {
			f.errs.Add(1)
			continue
		}
		f.sent.Add(1)
	}
}

// floodSource is the node the flood is sent from: the edge's next hop
// toward the first network (transit in the default lab), so the flood
// takes the probes' path past the edge without loading the vantages'
// links; the edge itself if it has no such route.
func (l *Lab) floodSource() string {
	edge := l.topo.byName[l.topo.Faults.Edge]
	nets := l.Networks()
	if len(nets) == 0 {
		return edge.name
	}
	prefixes := l.topo.networkPrefixes(nets[0])
	for _, r := range edge.routes {
		if !r.src.IsValid() && slices.Contains(prefixes, r.dst) {
			if n := l.topo.nodeWithAddr(r.via); n != "" {
				return n
			}
		}
	}
	return edge.name
}

// floodTargets lists every host of every network, IPv4 and IPv6.
func (l *Lab) floodTargets() []netip.AddrPort {
	var out []netip.AddrPort
	for _, n := range l.Networks() {
		for _, h := range append(l.Hosts(n), l.Hosts6(n)...) {
			out = append(out, netip.AddrPortFrom(h, floodPort))
		}
	}
	return out
}
