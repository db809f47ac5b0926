package collector

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bmp"

	"github.com/vantage-net/vantage/controller/bgp"
)

const (
	// MaxBMPMessage caps one BMP message: a Route Monitoring message is a
	// BGP message (at most 64 KiB) and a 48-byte header; a Peer Up holds
	// two OPENs. A longer length field closes the connection.
	MaxBMPMessage = 256 << 10
	// bmpMessageTimeout: once a message's first byte arrives, the rest must
	// within this. BMP has no keepalives, and a quiet router may send
	// nothing for hours, so between messages there is no deadline; TCP
	// keepalives (bmpKeepAlive) find a router that is gone.
	bmpMessageTimeout = 30 * time.Second
	bmpKeepAlive      = 30 * time.Second
)

// serveBMP accepts BMP connections until ctx ends, at most BMPMaxConns at
// a time (one more is closed at once), and waits for their handlers.
func (c *Collector) serveBMP(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := make(chan struct{}, c.cfg.BMPMaxConns)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("collector: bmp accept: %w", err)
		}
		select {
		case slots <- struct{}{}:
		default:
			c.log.Warn("bmp connection refused", "remote", conn.RemoteAddr().String(), "cause", "at the connection cap", "cap", cap(slots))
			conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			c.bmpConn(ctx, conn)
		}()
	}
}

// bmpRouter is one BMP connection's state: the router's monitored peers
// that are up.
type bmpRouter struct {
	c      *Collector
	source string
	up     map[netip.Addr]bgp.PeerEvent
}

// bmpConn reads one router's messages until it closes, sends garbage
// framing, or ctx ends. Then all its monitored peers are down.
func (c *Collector) bmpConn(ctx context.Context, conn net.Conn) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: bmpKeepAlive, Interval: bmpKeepAlive, Count: 3})
	}
	remote := addrOf(conn.RemoteAddr())
	r := &bmpRouter{c: c, source: "bmp:" + remote.String(), up: map[netip.Addr]bgp.PeerEvent{}}
	log := c.log.With("router", remote.String())
	log.Info("bmp router connected")
	defer r.allDown()
	br := bufio.NewReaderSize(conn, 64<<10)
	for {
		msg, err := readBMP(conn, br)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				log.Info("bmp router disconnected", "cause", err)
			} else {
				log.Warn("bmp router dropped", "err", err)
			}
			return
		}
		if done := r.handle(msg, log); done {
			return
		}
	}
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// readBMP reads one message: it waits for a first byte as long as it
// takes, then gives the rest bmpMessageTimeout, checks the version and
// the length cap, and returns the message's bytes. A clean close between
// messages is io.EOF.
func readBMP(conn net.Conn, br *bufio.Reader) ([]byte, error) {
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("bmp: clearing the read deadline: %w", err)
	}
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	if err := conn.SetReadDeadline(time.Now().Add(bmpMessageTimeout)); err != nil {
		return nil, fmt.Errorf("bmp: setting the read deadline: %w", err)
	}
	var hdr [bmp.BMP_HEADER_SIZE]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("bmp: header: %w", truncated(err))
	}
	if hdr[0] != bmp.BMP_VERSION {
		return nil, fmt.Errorf("bmp: version %d, want %d", hdr[0], bmp.BMP_VERSION)
	}
	n := binary.BigEndian.Uint32(hdr[1:5])
	if n < bmp.BMP_HEADER_SIZE || n > MaxBMPMessage {
		return nil, fmt.Errorf("bmp: message length %d outside [%d, %d]", n, bmp.BMP_HEADER_SIZE, MaxBMPMessage)
	}
	buf := make([]byte, n)
	copy(buf, hdr[:])
	if _, err := io.ReadFull(br, buf[bmp.BMP_HEADER_SIZE:]); err != nil {
		return nil, fmt.Errorf("bmp: message of %d bytes: %w", n, truncated(err))
	}
	return buf, nil
}

// handle acts on one message; done is true after a Termination. A message
// that does not parse is skipped (its length framed it, so the next one
// can be read).
func (r *bmpRouter) handle(buf []byte, log *slog.Logger) (done bool) {
	var msg *bmp.BMPMessage
	err := safely("bmp message", func() error {
		var err error
		msg, err = bmp.ParseBMPMessage(buf)
		return err
	})
	if err != nil {
		log.Debug("bmp message skipped", "type", buf[5], "err", err)
		return false
	}
	ph := msg.PeerHeader
	switch body := msg.Body.(type) {
	case *bmp.BMPInitiation:
		log.Info("bmp initiation", "info", initInfo(body))
	case *bmp.BMPTermination:
		log.Info("bmp termination")
		return true
	case *bmp.BMPPeerUpNotification:
		r.peerUp(ph)
	case *bmp.BMPPeerDownNotification:
		r.peerDown(ph, body.Reason)
	case *bmp.BMPRouteMonitoring:
		r.routes(ph, body, log)
	}
	return false
}

// initInfo is an Initiation's string TLVs (sysName, sysDescr), each cut
// to 200 bytes for the log.
func initInfo(b *bmp.BMPInitiation) []string {
	var out []string
	for _, tlv := range b.Info {
		if s, ok := tlv.(*bmp.BMPInfoTLVString); ok && len(out) < 8 {
			v := s.Value
			if len(v) > 200 {
				v = v[:200]
			}
			out = append(out, v)
		}
	}
	return out
}

// peerTime is a per-peer header's timestamp, or now when it is zero.
func (r *bmpRouter) peerTime(ph bmp.BMPPeerHeader) time.Time {
	if ph.Timestamp <= 0 || ph.Timestamp > math.MaxUint32 {
		return r.c.now()
	}
	sec, frac := math.Modf(ph.Timestamp)
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1000).UTC()
}

func (r *bmpRouter) peerUp(ph bmp.BMPPeerHeader) {
	peer := ipAddr(ph.PeerAddress)
	if !peer.IsValid() {
		return
	}
	// BMP does not say which peers carry a full table; like MRT peers they
	// count in visibility.
	e := bgp.PeerEvent{At: r.peerTime(ph), Peer: peer, PeerAS: ph.PeerAS, Source: r.source, Up: true, FullFeed: true}
	r.up[peer] = e
	r.c.log.Info("bmp peer up", "router", r.source, "peer", peer.String(), "as", ph.PeerAS)
	r.c.sink.PeerState(e)
}

func (r *bmpRouter) peerDown(ph bmp.BMPPeerHeader, reason uint8) {
	peer := ipAddr(ph.PeerAddress)
	if !peer.IsValid() {
		return
	}
	e, ok := r.up[peer]
	if !ok {
		e = bgp.PeerEvent{Peer: peer, PeerAS: ph.PeerAS, Source: r.source, FullFeed: true}
	}
	delete(r.up, peer)
	e.At, e.Up = r.peerTime(ph), false
	r.c.log.Info("bmp peer down", "router", r.source, "peer", peer.String(), "reason", reason)
	r.c.sink.PeerState(e)
}

// routes is a Route Monitoring message. Only the pre-policy Adj-RIB-In of
// global and RD peers is read: post-policy and Adj-RIB-Out copies (RFC
// 8671) and Loc-RIB (RFC 9069) would count the same routes twice under
// the same peer. Peers are told apart by address only, not by their
// route distinguisher.
func (r *bmpRouter) routes(ph bmp.BMPPeerHeader, body *bmp.BMPRouteMonitoring, log *slog.Logger) {
	if ph.IsPostPolicy() || ph.IsAdjRIBOut() || ph.PeerType == bmp.BMP_PEER_TYPE_LOCAL_RIB {
		log.Debug("bmp route monitoring skipped", "peer_type", ph.PeerType, "flags", ph.Flags)
		return
	}
	peer := ipAddr(ph.PeerAddress)
	if !peer.IsValid() {
		return
	}
	f := from{at: r.peerTime(ph), peer: peer, peerAS: ph.PeerAS, source: r.source}
	for _, u := range fromUpdate(body.BGPUpdate, f) {
		r.c.deliver(u)
	}
}

// allDown: the router's connection is gone, and with it the view of its
// peers.
func (r *bmpRouter) allDown() {
	for peer, e := range r.up {
		e.At, e.Up = r.c.now(), false
		r.c.sink.PeerState(e)
		delete(r.up, peer)
	}
}
