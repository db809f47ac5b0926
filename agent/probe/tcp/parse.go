package tcp

import (
	"encoding/binary"
	"net/netip"

	"github.com/vantage-net/vantage/agent/probe/internal/bulk"
	"github.com/vantage-net/vantage/agent/probe/rawsock"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// portRange is the block of source ports the SYN engine owns; a probe's
// slot is its source port minus base. It lies above Linux's default
// ephemeral range (32768-60999) so the kernel's own connections do not
// use it.
type portRange struct{ base, n uint16 }

func (r portRange) slot(port uint16) (uint32, bool) {
	if port < r.base || port-r.base >= r.n {
		return 0, false
	}
	return uint32(port - r.base), true
}

const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10

	protoTCP    = 6
	protoICMPv6 = 58
	synHdrLen   = 24 // 20 bytes + the MSS option
)

// decodeSegment parses a TCP segment that answers a SYN of ours: a SYN-ACK
// or an RST whose acknowledgment number is our cookie + 1. seg starts at
// the TCP header; src is the segment's source.
func decodeSegment(ports portRange, seg []byte, src netip.Addr, ttl int, m *bulk.Match) bulk.Verdict {
	if len(seg) < 20 {
		return bulk.Malformed
	}
	if off := int(seg[12]>>4) * 4; off < 20 || off > len(seg) {
		return bulk.Malformed
	}
	slot, ok := ports.slot(binary.BigEndian.Uint16(seg[2:4]))
	if !ok {
		return bulk.Foreign
	}
	flags := seg[13]
	switch {
	case flags&(flagSYN|flagACK|flagRST) == flagSYN|flagACK:
		m.Outcome = vantagev1.Outcome_OUTCOME_TCP_SYNACK
	case flags&(flagRST|flagACK) == flagRST|flagACK:
		m.Outcome = vantagev1.Outcome_OUTCOME_TCP_RST
	default:
		return bulk.Foreign // e.g. our own SYN seen on loopback, or a bare RST
	}
	m.Slot, m.Dst, m.From, m.TTL = slot, src, src, ttl
	m.Port = binary.BigEndian.Uint16(seg[0:2])
	m.Cookie = uint64(binary.BigEndian.Uint32(seg[8:12]) - 1)
	m.CookieMask = 0xffffffff
	return bulk.Ours
}

// decodeTCP4 parses a packet from the raw IPv4 TCP socket (IP header first).
func decodeTCP4(ports portRange, pkt []byte, m *bulk.Match) bulk.Verdict {
	ihl, err := rawsock.IPv4Header(pkt)
	if err != nil || pkt[9] != protoTCP {
		return bulk.Malformed
	}
	if pkt[6]&0x1f != 0 || pkt[7] != 0 {
		return bulk.Foreign // a later fragment: no TCP header here
	}
	return decodeSegment(ports, pkt[ihl:], netip.AddrFrom4([4]byte(pkt[12:16])), int(pkt[8]), m)
}

// decodeTCP6 parses a packet from the raw IPv6 TCP socket (TCP header
// first; source and hop limit from the socket).
func decodeTCP6(ports portRange, pkt []byte, from netip.Addr, hop int, m *bulk.Match) bulk.Verdict {
	return decodeSegment(ports, pkt, from, hop, m)
}

// decodeQuoted fills m from an ICMP unreachable (msg: its ICMP header)
// that quotes a SYN of ours: q's TCP header starts with the ports and the
// sequence number (8 bytes, all an ICMP error must quote).
func decodeQuoted(ports portRange, msg []byte, q rawsock.Quoted, m *bulk.Match) bulk.Verdict {
	if q.Proto != protoTCP {
		return bulk.Foreign
	}
	l4 := q.L4
	if len(l4) < 8 {
		return bulk.Malformed
	}
	slot, ok := ports.slot(binary.BigEndian.Uint16(l4[0:2]))
	if !ok {
		return bulk.Foreign
	}
	m.Slot, m.Dst = slot, q.Dst
	m.Port = binary.BigEndian.Uint16(l4[2:4])
	m.Cookie, m.CookieMask = uint64(binary.BigEndian.Uint32(l4[4:8])), 0xffffffff
	m.Outcome, m.Code = vantagev1.Outcome_OUTCOME_UNREACHABLE, uint32(msg[1])
	return bulk.Ours
}

// decodeICMP4 parses an ICMPv4 destination unreachable (IP header first)
// that quotes one of our SYNs.
func decodeICMP4(ports portRange, pkt []byte, m *bulk.Match) bulk.Verdict {
	ihl, err := rawsock.IPv4Header(pkt)
	if err != nil || pkt[9] != 1 {
		return bulk.Malformed
	}
	m.From, m.TTL = netip.AddrFrom4([4]byte(pkt[12:16])), int(pkt[8])
	b := pkt[ihl:]
	if len(b) < 8 {
		return bulk.Malformed
	}
	if b[0] != 3 {
		return bulk.Foreign
	}
	q, err := rawsock.QuotedIPv4(b[8:])
	if err != nil {
		return bulk.Malformed
	}
	return decodeQuoted(ports, b, q, m)
}

// decodeICMP6 parses an ICMPv6 destination unreachable quoting our SYN.
func decodeICMP6(ports portRange, pkt []byte, from netip.Addr, hop int, m *bulk.Match) bulk.Verdict {
	if len(pkt) < 8 {
		return bulk.Malformed
	}
	m.From, m.TTL = from, hop
	if pkt[0] != 1 {
		return bulk.Foreign
	}
	q, err := rawsock.QuotedIPv6(pkt[8:])
	if err != nil {
		return bulk.Malformed
	}
	return decodeQuoted(ports, pkt, q, m)
}

// encodeSYN writes a SYN with an MSS option whose sequence number is the
// cookie. For IPv4 the checksum covers the pseudo-header (src is needed);
// for IPv6 the kernel fills it (IPV6_CHECKSUM).
func encodeSYN(b []byte, src, dst netip.Addr, sport, dport uint16, cookie uint32) int {
	b = b[:synHdrLen]
	clear(b)
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint32(b[4:8], cookie)
	b[12] = synHdrLen / 4 << 4
	b[13] = flagSYN
	binary.BigEndian.PutUint16(b[14:16], 64240)
	b[20], b[21] = 2, 4 // MSS
	binary.BigEndian.PutUint16(b[22:24], 1460)
	if dst.Is4() {
		binary.BigEndian.PutUint16(b[16:18], rawsock.Checksum(rawsock.PseudoSum(src, dst, protoTCP, synHdrLen), b))
	}
	return synHdrLen
}
