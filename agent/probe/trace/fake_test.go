package trace

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
)

// A fake network for the engine: WriteBatch hands each probe to respond,
// whose answers are queued on the ICMP or TCP receive conn as the kernel
// would deliver them (whole IPv4 packets; IPv6 payloads with the source and
// hop limit beside them).

var (
	src4 = netip.MustParseAddr("192.0.2.100")
	dst4 = netip.MustParseAddr("198.51.100.7")
	src6 = netip.MustParseAddr("2001:db8::100")
	dst6 = netip.MustParseAddr("2001:db8:1::7")
)

type fakePkt struct {
	tcp bool
	b   []byte
	src netip.Addr
	hl  int
}

type fakeConn struct {
	q      chan fakePkt
	closed chan struct{}
	once   sync.Once
	send   func(out []outPacket) // nil on receive-only conns
}

func newFakeConn() *fakeConn {
	return &fakeConn{q: make(chan fakePkt, 1<<16), closed: make(chan struct{})}
}

func (c *fakeConn) ReadBatch(in []inPacket) (int, error) {
	fill := func(i int, p fakePkt) {
		in[i].n = copy(in[i].buf, p.b)
		in[i].src, in[i].hopLimit, in[i].at = p.src, p.hl, time.Now()
	}
	select {
	case p := <-c.q:
		fill(0, p)
	case <-c.closed:
		return 0, net.ErrClosed
	}
	n := 1
	for n < len(in) {
		select {
		case p := <-c.q:
			fill(n, p)
			n++
		default:
			return n, nil
		}
	}
	return n, nil
}

func (c *fakeConn) WriteBatch(out []outPacket) (int, error) {
	c.send(out)
	return len(out), nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// fakeFamily wires a responder to fresh conns. sent records every probe.
type fakeFamily struct {
	mu   sync.Mutex
	sent [][]byte
	fam  *family
}

func newFakeFamily(v6 bool, respond func(probe []byte) []fakePkt) *fakeFamily {
	ff := &fakeFamily{}
	icmpC, tcpC := newFakeConn(), newFakeConn()
	icmpC.send = func(out []outPacket) {
		for _, o := range out {
			ff.mu.Lock()
			ff.sent = append(ff.sent, append([]byte(nil), o.b...))
			ff.mu.Unlock()
			for _, a := range respond(o.b) {
				if a.tcp {
					tcpC.q <- a
				} else {
					icmpC.q <- a
				}
			}
		}
	}
	src := src4
	if v6 {
		src = src6
	}
	ff.fam = &family{icmp: icmpC, tcp: tcpC,
		srcFor: func(netip.Addr) (netip.Addr, error) { return src, nil },
		close:  func() error { return nil }}
	return ff
}

// fakeOpen returns an open function serving v4 and v6 from ff4 and ff6.
func fakeOpen(ff4, ff6 *fakeFamily) openFunc {
	return func(v6 bool, _ int) (*family, error) {
		if v6 {
			return ff6.fam, nil
		}
		return ff4.fam, nil
	}
}

// probeInfo is what a responder needs from a probe.
type probeInfo struct {
	v6    bool
	ttl   int
	proto uint8
	src   netip.Addr
	dst   netip.Addr
	l4    []byte
}

func inspect(b []byte) probeInfo {
	if b[0]>>4 == 6 {
		return probeInfo{v6: true, ttl: int(b[7]), proto: b[6], src: netip.AddrFrom16([16]byte(b[8:24])),
			dst: netip.AddrFrom16([16]byte(b[24:40])), l4: b[40:]}
	}
	return probeInfo{ttl: int(b[8]), proto: b[9], src: netip.AddrFrom4([4]byte(b[12:16])),
		dst: netip.AddrFrom4([4]byte(b[16:20])), l4: b[20:]}
}

// ip4 wraps an IPv4 payload in a header from src to dst.
func ip4(proto uint8, ttl uint8, src, dst netip.Addr, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:4], uint16(20+len(payload)))
	h[8], h[9] = ttl, proto
	copy(h[12:16], src.AsSlice())
	copy(h[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(h[10:12], rawsock.Checksum(0, h))
	return append(h, payload...)
}

// quoted is the probe as a router quotes it: its IP header with the TTL it
// arrived with (1), then its transport header and payload.
func quoted(probe []byte) []byte {
	q := append([]byte(nil), probe...)
	if q[0]>>4 == 6 {
		q[7] = 1
	} else {
		q[8] = 1
	}
	return q
}

// icmpErr builds an ICMP error (type, code) from router quoting probe, as
// delivered to the engine.
func icmpErr(typ, code uint8, router netip.Addr, probe []byte, hl int) fakePkt {
	pi := inspect(probe)
	m := append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, quoted(probe)...)
	if pi.v6 {
		return fakePkt{b: m, src: router, hl: hl}
	}
	binary.BigEndian.PutUint16(m[2:4], rawsock.Checksum(0, m))
	return fakePkt{b: ip4(protoICMP, uint8(hl), router, pi.src, m), src: router, hl: -1}
}

// destAnswer is the destination's own answer to a probe that reached it.
func destAnswer(probe []byte, hl int) fakePkt {
	pi := inspect(probe)
	switch pi.proto {
	case protoUDP:
		if pi.v6 {
			return icmpErr(v6Unreachable, v6PortUnreach, pi.dst, probe, hl)
		}
		return icmpErr(v4Unreachable, v4PortUnreach, pi.dst, probe, hl)
	case protoTCP:
		seg := make([]byte, 20)
		copy(seg[0:2], pi.l4[2:4])
		copy(seg[2:4], pi.l4[0:2])
		binary.BigEndian.PutUint32(seg[4:8], 0x1234)
		binary.BigEndian.PutUint32(seg[8:12], binary.BigEndian.Uint32(pi.l4[4:8])+1)
		seg[12], seg[13] = 5<<4, 0x12
		if pi.v6 {
			return fakePkt{tcp: true, b: seg, src: pi.dst, hl: hl}
		}
		return fakePkt{tcp: true, b: ip4(protoTCP, uint8(hl), pi.dst, pi.src, seg), src: pi.dst, hl: -1}
	}
	m := append([]byte(nil), pi.l4...)
	m[2], m[3] = 0, 0
	if pi.v6 {
		m[0] = v6EchoReply
		return fakePkt{b: m, src: pi.dst, hl: hl}
	}
	m[0] = v4EchoReply
	binary.BigEndian.PutUint16(m[2:4], rawsock.Checksum(0, m))
	return fakePkt{b: ip4(protoICMP, uint8(hl), pi.dst, pi.src, m), src: pi.dst, hl: -1}
}

func routerAddr(v6 bool, ttl int) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 15: byte(ttl)})
	}
	return netip.AddrFrom4([4]byte{10, 0, 0, byte(ttl)})
}

// path simulates routers at TTL 1..hops-1 and the destination at hops.
func path(hops int) func([]byte) []fakePkt {
	return func(probe []byte) []fakePkt {
		pi := inspect(probe)
		if pi.ttl >= hops {
			return []fakePkt{destAnswer(probe, 64-hops+1)}
		}
		te := uint8(v4TimeExceeded)
		if pi.v6 {
			te = v6TimeExceeded
		}
		return []fakePkt{icmpErr(te, 0, routerAddr(pi.v6, pi.ttl), probe, 255-pi.ttl+1)}
	}
}
