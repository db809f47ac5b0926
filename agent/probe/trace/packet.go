package trace

import (
	"encoding/binary"
	"net/netip"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
)

// How a probe carries its identity, so that any answer can be matched with
// no per-probe state (stateless matching): every answer quotes or echoes at
// least 8 bytes of our transport header, and those bytes name the trace
// slot, its generation and the TTL.
//
//	ICMP  id = slot (constant: Paris)          seq = gen<<8 | ttl
//	      payload: 2 bytes that keep the checksum constant, then the cookie
//	UDP   sport = portBase+slot, dport = port  checksum = gen<<8 | ttl
//	      (constant 5-tuple; the payload's first 2 bytes make the checksum)
//	TCP   sport = portBase+slot, dport = port  seq = cookie16<<16 | gen<<8 | ttl
//
// The cookie is a keyed hash of (slot, gen, destination, protocol) with a
// per-tracer secret, so a stale or spoofed answer is rejected and counted.
const (
	portBase   = 40000
	payloadLen = 12 // ICMP and UDP payload: 2 compensation bytes, cookie, marker
	tcpHdrLen  = 24 // 20 + MSS option
	hdr4       = 20
	hdr6       = 40
	// DefaultUDPPort and DefaultTCPPort are used when TraceSpec.port is 0.
	DefaultUDPPort = 33435
	DefaultTCPPort = 80
)

// marker identifies vantage probes in packet captures.
var marker = [6]byte{'v', 'n', 't', 'g', 't', 'r'}

// probeID is everything a probe encodes.
type probeID struct {
	proto  uint8 // protoICMP (ICMPv6 for v6 destinations), protoUDP, protoTCP
	slot   uint16
	gen    uint8
	ttl    uint8
	src    netip.Addr
	dst    netip.Addr
	port   uint16 // destination port (UDP, TCP)
	cookie uint32
	paris  bool
}

func (p *probeID) tag() uint16 { return uint16(p.gen)<<8 | uint16(p.ttl) }

// buildProbe writes the whole IP packet for p into b (at least 80 bytes)
// and returns its length.
func buildProbe(b []byte, p *probeID) int {
	v6 := p.dst.Is6()
	h := hdr4
	if v6 {
		h = hdr6
	}
	l4 := b[h:]
	var n int
	var proto uint8
	switch p.proto {
	case protoUDP:
		proto = protoUDP
		n = buildUDP(l4, p)
	case protoTCP:
		proto = protoTCP
		n = buildTCP(l4, p)
	default:
		proto = protoICMP
		if v6 {
			proto = protoICMPv6
		}
		n = buildEcho(l4, p)
	}
	if v6 {
		b[0], b[1], b[2], b[3] = 0x60, 0, 0, 0 // flow label 0: constant for Paris
		binary.BigEndian.PutUint16(b[4:6], uint16(n))
		b[6], b[7] = proto, p.ttl
		s, d := p.src.As16(), p.dst.As16()
		copy(b[8:24], s[:])
		copy(b[24:40], d[:])
	} else {
		b[0], b[1] = 0x45, 0
		binary.BigEndian.PutUint16(b[2:4], uint16(hdr4+n))
		b[4], b[5], b[6], b[7] = 0, 0, 0, 0 // id 0: the kernel picks one
		b[8], b[9] = p.ttl, proto
		b[10], b[11] = 0, 0 // the kernel computes the header checksum
		s, d := p.src.As4(), p.dst.As4()
		copy(b[12:16], s[:])
		copy(b[16:20], d[:])
	}
	// Transport checksums (the ICMPv4 one is done in buildEcho).
	switch {
	case proto == protoUDP:
		sum := rawsock.PseudoSum(p.src, p.dst, proto, n)
		// Choose the 2 compensation bytes so the checksum equals the tag
		// (Paris UDP: the checksum, not the ports, tells probes apart).
		want := p.tag()
		binary.BigEndian.PutUint16(l4[6:8], 0)
		binary.BigEndian.PutUint16(l4[8:10], 0)
		cur := rawsock.Fold(rawsock.Sum(sum, l4[:n])) // one's-complement sum without comp
		if p.paris {
			// Want ^fold(cur + comp) == want, i.e. cur + comp == ^want.
			binary.BigEndian.PutUint16(l4[8:10], onesSub(^want, cur))
			binary.BigEndian.PutUint16(l4[6:8], want)
		} else {
			c := rawsock.Checksum(sum, l4[:n])
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(l4[6:8], c)
		}
	case proto == protoTCP:
		binary.BigEndian.PutUint16(l4[16:18], rawsock.Checksum(rawsock.PseudoSum(p.src, p.dst, proto, n), l4[:n]))
	case proto == protoICMPv6:
		binary.BigEndian.PutUint16(l4[2:4], rawsock.Checksum(rawsock.PseudoSum(p.src, p.dst, proto, n), l4[:n]))
	}
	return h + n
}

// onesSub returns x - y in one's-complement arithmetic.
func onesSub(x, y uint16) uint16 {
	return rawsock.Fold(uint32(x) + uint32(^y))
}

// buildEcho writes an echo request. With Paris the first two payload bytes
// compensate seq, so the checksum is the same for every TTL: per-flow load
// balancers hash on the first bytes of the ICMP header (type, code,
// checksum), so the whole trace follows one path.
func buildEcho(b []byte, p *probeID) int {
	n := 8 + payloadLen
	b[0] = v4EchoRequest
	if p.dst.Is6() {
		b[0] = v6EchoRequest
	}
	b[1], b[2], b[3] = 0, 0, 0
	binary.BigEndian.PutUint16(b[4:6], p.slot)
	seq := p.tag()
	binary.BigEndian.PutUint16(b[6:8], seq)
	comp := uint16(0)
	if p.paris {
		comp = ^seq // seq + ^seq = 0xffff whatever seq
	}
	binary.BigEndian.PutUint16(b[8:10], comp)
	binary.BigEndian.PutUint32(b[10:14], p.cookie)
	copy(b[14:20], marker[:])
	if !p.dst.Is6() {
		binary.BigEndian.PutUint16(b[2:4], rawsock.Checksum(0, b[:n]))
	}
	return n
}

// buildUDP writes the UDP header and payload; buildProbe sets the checksum.
func buildUDP(b []byte, p *probeID) int {
	n := 8 + payloadLen
	binary.BigEndian.PutUint16(b[0:2], portBase+p.slot)
	port := p.port
	if !p.paris {
		port += uint16(p.ttl) // classic traceroute: one port per TTL
	}
	binary.BigEndian.PutUint16(b[2:4], port)
	binary.BigEndian.PutUint16(b[4:6], uint16(n))
	binary.BigEndian.PutUint16(b[8:10], 0)
	binary.BigEndian.PutUint32(b[10:14], p.cookie)
	copy(b[14:20], marker[:])
	return n
}

// buildTCP writes a SYN with an MSS option; the checksum is set by
// buildProbe. Ports stay constant across TTLs; the sequence number names the
// probe.
func buildTCP(b []byte, p *probeID) int {
	binary.BigEndian.PutUint16(b[0:2], portBase+p.slot)
	binary.BigEndian.PutUint16(b[2:4], p.port)
	binary.BigEndian.PutUint32(b[4:8], uint32(uint16(p.cookie))<<16|uint32(p.tag()))
	binary.BigEndian.PutUint32(b[8:12], 0)
	b[12] = (tcpHdrLen / 4) << 4
	b[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(b[14:16], 65535)
	b[16], b[17], b[18], b[19] = 0, 0, 0, 0
	b[20], b[21] = 2, 4 // MSS
	binary.BigEndian.PutUint16(b[22:24], 1460)
	return tcpHdrLen
}
