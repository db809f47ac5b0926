package icmp

import (
	"encoding/binary"
	"net/netip"

	"github.com/vantage-net/vantage/agent/probe/internal/bulk"
	"github.com/vantage-net/vantage/agent/probe/rawsock"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// idRange is the block of echo ids one engine owns: ids [base, base+n).
// A probe's slot is (id-base)<<16 | seq, so in-flight probes never share
// an (id, seq) pair.
type idRange struct{ base, n uint16 }

func (r idRange) slot(id, seq uint16) (uint32, bool) {
	if id < r.base || id-r.base >= r.n {
		return 0, false
	}
	return uint32(id-r.base)<<16 | uint32(seq), true
}

func (r idRange) idSeq(slot uint32) (uint16, uint16) {
	return r.base + uint16(slot>>16), uint16(slot)
}

// ICMP types used here.
const (
	v4EchoReply    = 0
	v4Unreachable  = 3
	v4EchoRequest  = 8
	v4TimeExceeded = 11
	v6Unreachable  = 1
	v6TimeExceeded = 3
	v6EchoRequest  = 128
	v6EchoReply    = 129
	protoICMP      = 1
	protoICMPv6    = 58
	cookieBytes    = 8
)

const noteTimeExceeded = "icmp time exceeded in transit (the echo request's TTL ran out before the target)"

// decode4 parses a packet from the raw ICMPv4 socket (IP header first):
// an echo reply carrying one of our ids, or an ICMP error quoting one of
// our echo requests. It never panics and never allocates.
func decode4(ids idRange, pkt []byte, m *bulk.Match) bulk.Verdict {
	ihl, err := rawsock.IPv4Header(pkt)
	if err != nil || pkt[9] != protoICMP {
		return bulk.Malformed
	}
	m.From = netip.AddrFrom4([4]byte(pkt[12:16]))
	m.TTL = int(pkt[8])
	b := pkt[ihl:]
	if len(b) < 8 {
		return bulk.Malformed
	}
	switch b[0] {
	case v4EchoReply:
		return echoReply(ids, b, m)
	case v4Unreachable, v4TimeExceeded:
		q, err := rawsock.QuotedIPv4(b[8:])
		if err != nil {
			return bulk.Malformed
		}
		return quotedEcho(ids, b, q, echo4, m)
	default:
		return bulk.Foreign
	}
}

// decode6 parses a packet from the raw ICMPv6 socket (ICMPv6 header first;
// the source and hop limit come from the socket).
func decode6(ids idRange, pkt []byte, from netip.Addr, hop int, m *bulk.Match) bulk.Verdict {
	if len(pkt) < 8 {
		return bulk.Malformed
	}
	m.From, m.TTL = from, hop
	switch pkt[0] {
	case v6EchoReply:
		return echoReply(ids, pkt, m)
	case v6Unreachable, v6TimeExceeded:
		q, err := rawsock.QuotedIPv6(pkt[8:])
		if err != nil {
			return bulk.Malformed
		}
		return quotedEcho(ids, pkt, q, echo6, m) // extension headers are not walked: not ours
	default:
		return bulk.Foreign
	}
}

// family is what an address family's ICMP calls the messages decode reads.
type family struct{ proto, echoRequest, timeExceeded uint8 }

var (
	echo4 = family{proto: protoICMP, echoRequest: v4EchoRequest, timeExceeded: v4TimeExceeded}
	echo6 = family{proto: protoICMPv6, echoRequest: v6EchoRequest, timeExceeded: v6TimeExceeded}
)

// echoReply matches an echo reply (msg: its ICMP header and payload) from
// m.From by its id, sequence number and cookie.
func echoReply(ids idRange, msg []byte, m *bulk.Match) bulk.Verdict {
	slot, ok := ids.slot(binary.BigEndian.Uint16(msg[4:6]), binary.BigEndian.Uint16(msg[6:8]))
	if !ok {
		return bulk.Foreign
	}
	if len(msg) < 8+cookieBytes {
		return bulk.Malformed
	}
	m.Slot, m.Dst = slot, m.From
	m.Cookie, m.CookieMask = binary.BigEndian.Uint64(msg[8:16]), ^uint64(0)
	m.Outcome = vantagev1.Outcome_OUTCOME_REPLY
	return bulk.Ours
}

// quotedEcho matches an ICMP error (msg: its ICMP header) by the echo
// request of ours it quotes (q); the cookie counts only when quoted.
func quotedEcho(ids idRange, msg []byte, q rawsock.Quoted, f family, m *bulk.Match) bulk.Verdict {
	if q.Proto != f.proto {
		return bulk.Foreign
	}
	qi := q.L4
	if len(qi) < 8 {
		return bulk.Malformed
	}
	if qi[0] != f.echoRequest {
		return bulk.Foreign
	}
	slot, ok := ids.slot(binary.BigEndian.Uint16(qi[4:6]), binary.BigEndian.Uint16(qi[6:8]))
	if !ok {
		return bulk.Foreign
	}
	m.Slot, m.Dst = slot, q.Dst
	if len(qi) >= 8+cookieBytes {
		m.Cookie, m.CookieMask = binary.BigEndian.Uint64(qi[8:16]), ^uint64(0)
	}
	m.Outcome, m.Code = vantagev1.Outcome_OUTCOME_UNREACHABLE, uint32(msg[1])
	if msg[0] == f.timeExceeded {
		m.Note = noteTimeExceeded
	}
	return bulk.Ours
}

// encodeEcho writes an echo request: the cookie in the first payload
// bytes, then zeros up to size payload bytes. The ICMPv6 checksum is left
// to the kernel; the ICMPv4 one is computed here.
func encodeEcho(b []byte, v6 bool, id, seq uint16, cookie uint64, size int) int {
	n := 8 + size
	if n > len(b) {
		n = len(b)
	}
	clear(b[:n])
	if v6 {
		b[0] = v6EchoRequest
	} else {
		b[0] = v4EchoRequest
	}
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], seq)
	binary.BigEndian.PutUint64(b[8:16], cookie)
	if !v6 {
		binary.BigEndian.PutUint16(b[2:4], rawsock.Checksum(0, b[:n]))
	}
	return n
}
