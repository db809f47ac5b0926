package trace

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
)

// Reasons a received packet is dropped. All of them are counted.
var (
	errTruncated = rawsock.ErrTruncated
	errGarbage   = rawsock.ErrMalformed
	errNotOurs   = errors.New("not an answer to a trace probe")
)

// ICMP types and protocol numbers the tracer understands.
const (
	v4EchoReply    = 0
	v4Unreachable  = 3
	v4EchoRequest  = 8
	v4TimeExceeded = 11
	v4PortUnreach  = 3

	v6Unreachable  = 1
	v6TimeExceeded = 3
	v6EchoRequest  = 128
	v6EchoReply    = 129
	v6PortUnreach  = 4

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

type replyKind uint8

const (
	kindEchoReply    replyKind = iota + 1 // the destination answered an echo
	kindTimeExceeded                      // a router on the way
	kindUnreachable                       // destination unreachable (any code)
	kindTCP                               // SYN-ACK or RST from the destination
)

// maxLabels bounds the MPLS label stack kept per hop (RFC 4950 allows any
// number; real stacks are a few labels deep).
const maxLabels = 8

type mplsEntry struct {
	label uint32
	exp   uint8
	s     bool
	ttl   uint8
}

// reply is what the parsers extract from one received packet. It holds no
// slices into the packet and fixed-size arrays only, so parsing allocates
// nothing and a reply can be copied freely.
type reply struct {
	kind     replyKind
	icmpType uint8
	icmpCode uint8
	src      netip.Addr // sender of the reply (v4: from the IP header)
	replyTTL uint8      // v4 only; v6 hop limit comes from a control message

	// The quoted probe (time exceeded, unreachable) or, for echo replies and
	// TCP answers, the fields of our probe they echo.
	proto     uint8
	quotedTTL uint8
	quotedDst netip.Addr
	sport     uint16 // UDP/TCP source port; ICMP echo id
	dport     uint16 // UDP/TCP destination port
	tag       uint16 // ICMP echo seq; UDP checksum; low 16 bits of TCP seq
	hiSeq     uint16 // high 16 bits of TCP seq (the cookie)
	tcpFlags  uint8
	payload   [8]byte // first bytes after the quoted (or echoed) 8-byte header, when present
	payloadN  uint8

	nLabels uint8
	labels  [maxLabels]mplsEntry
}

// parseICMP4 parses a whole IPv4 packet carrying ICMP, as a raw IPv4 socket
// delivers it. It never panics and never allocates.
func parseICMP4(pkt []byte) (reply, error) {
	var r reply
	ihl, err := rawsock.IPv4Header(pkt)
	if err != nil {
		return r, err
	}
	if pkt[9] != protoICMP {
		return r, errNotOurs
	}
	r.src = netip.AddrFrom4([4]byte(pkt[12:16]))
	r.replyTTL = pkt[8]
	end := min(len(pkt), int(binary.BigEndian.Uint16(pkt[2:4])))
	if end < ihl {
		end = len(pkt) // some stacks report the length in host order; trust the read
	}
	msg := pkt[ihl:end]
	if len(msg) < 8 {
		return r, errTruncated
	}
	// The kernel does not verify ICMPv4 checksums for raw sockets.
	if rawsock.Checksum(0, msg) != 0 {
		return r, errGarbage
	}
	done, err := readICMP(&r, msg, icmp4)
	if done || err != nil {
		return r, err
	}
	body := msg[8:]
	q, err := rawsock.QuotedIPv4(body)
	if err != nil {
		return r, err
	}
	if err := readQuote(&r, q, icmp4); err != nil {
		return r, err
	}
	// RFC 4884: byte 5 is the length of the original datagram in 32-bit
	// words; extensions follow it.
	parseExtensions(&r, body, int(msg[5])*4)
	return r, nil
}

// icmpTypes is one family's numbering of the ICMP messages a trace reads.
type icmpTypes struct{ proto, echoReply, echoRequest, timeExceeded, unreachable uint8 }

var (
	icmp4 = icmpTypes{proto: protoICMP, echoReply: v4EchoReply, echoRequest: v4EchoRequest, timeExceeded: v4TimeExceeded, unreachable: v4Unreachable}
	icmp6 = icmpTypes{proto: protoICMPv6, echoReply: v6EchoReply, echoRequest: v6EchoRequest, timeExceeded: v6TimeExceeded, unreachable: v6Unreachable}
)

// readICMP reads the ICMP header msg starts with (at least 8 bytes): an
// echo reply is read whole (done); for an error the kind is set and the
// quote is left to readQuote. Any other type is not ours.
func readICMP(r *reply, msg []byte, t icmpTypes) (done bool, err error) {
	r.icmpType, r.icmpCode = msg[0], msg[1]
	switch r.icmpType {
	case t.echoReply:
		r.kind = kindEchoReply
		r.proto = t.proto
		r.sport = binary.BigEndian.Uint16(msg[4:6])
		r.tag = binary.BigEndian.Uint16(msg[6:8])
		r.payloadN = uint8(copy(r.payload[:], msg[8:]))
		return true, nil
	case t.timeExceeded:
		r.kind = kindTimeExceeded
	case t.unreachable:
		r.kind = kindUnreachable
	default:
		return false, errNotOurs
	}
	return false, nil
}

// readQuote reads our probe as an ICMP error quotes it: the IP header
// (RFC 792 guarantees it) and the first 8 bytes of the transport header.
func readQuote(r *reply, q rawsock.Quoted, t icmpTypes) error {
	r.quotedTTL, r.quotedDst = q.TTL, q.Dst
	return parseQuotedL4(r, q.Proto, q.L4, t.echoRequest)
}

// parseQuotedL4 reads the first 8 bytes of the quoted transport header.
func parseQuotedL4(r *reply, proto uint8, l4 []byte, echoRequest uint8) error {
	if len(l4) < 8 {
		return errTruncated
	}
	r.proto = proto
	switch proto {
	case protoICMP, protoICMPv6:
		if l4[0] != echoRequest || l4[1] != 0 {
			return errNotOurs
		}
		r.sport = binary.BigEndian.Uint16(l4[4:6])
		r.tag = binary.BigEndian.Uint16(l4[6:8])
	case protoUDP:
		r.sport = binary.BigEndian.Uint16(l4[0:2])
		r.dport = binary.BigEndian.Uint16(l4[2:4])
		r.tag = binary.BigEndian.Uint16(l4[6:8])
	case protoTCP:
		r.sport = binary.BigEndian.Uint16(l4[0:2])
		r.dport = binary.BigEndian.Uint16(l4[2:4])
		r.hiSeq = binary.BigEndian.Uint16(l4[4:6])
		r.tag = binary.BigEndian.Uint16(l4[6:8])
		return nil // the TCP header is 20 bytes: no payload follows in 8
	default:
		return errNotOurs
	}
	r.payloadN = uint8(copy(r.payload[:], l4[8:]))
	return nil
}

// parseICMP6 parses an ICMPv6 message as a raw ICMPv6 socket delivers it
// (no IPv6 header; the kernel has verified the checksum). src is the
// sender, from the socket address.
func parseICMP6(msg []byte, src netip.Addr) (reply, error) {
	var r reply
	r.src = src
	if len(msg) < 8 {
		return r, errTruncated
	}
	done, err := readICMP(&r, msg, icmp6)
	if done || err != nil {
		return r, err
	}
	body := msg[8:]
	q, err := rawsock.QuotedIPv6(body)
	if err != nil {
		return r, err
	}
	// Probes never carry extension headers: a quote with one is not ours.
	if err := readQuote(&r, q, icmp6); err != nil {
		return r, err
	}
	// RFC 4884 for ICMPv6: byte 4 is the length in 64-bit words.
	parseExtensions(&r, body, int(msg[4])*8)
	return r, nil
}

// parseTCP4 parses a whole IPv4 packet carrying TCP (raw TCP socket).
func parseTCP4(pkt []byte) (reply, error) {
	var r reply
	ihl, err := rawsock.IPv4Header(pkt)
	if err != nil {
		return r, err
	}
	if pkt[9] != protoTCP {
		return r, errNotOurs
	}
	r.src = netip.AddrFrom4([4]byte(pkt[12:16]))
	r.replyTTL = pkt[8]
	return r, parseTCPSeg(&r, pkt[ihl:])
}

// parseTCP6 parses a TCP segment from a raw IPv6 TCP socket (no header).
func parseTCP6(seg []byte, src netip.Addr) (reply, error) {
	r := reply{src: src}
	return r, parseTCPSeg(&r, seg)
}

// parseTCPSeg keeps SYN-ACKs and RSTs that answer a SYN: their ports are
// ours swapped and their ack is our seq + 1.
func parseTCPSeg(r *reply, seg []byte) error {
	if len(seg) < 20 {
		return errTruncated
	}
	const (
		finSyn = 0x03
		syn    = 0x02
		rst    = 0x04
		ack    = 0x10
	)
	flags := seg[13]
	isSynAck := flags&(syn|ack|rst) == syn|ack
	isRst := flags&(rst|ack) == rst|ack && flags&finSyn == 0
	if !isSynAck && !isRst {
		return errNotOurs
	}
	r.kind = kindTCP
	r.proto = protoTCP
	r.tcpFlags = flags
	// Swap back to our probe's point of view.
	r.sport = binary.BigEndian.Uint16(seg[2:4])
	r.dport = binary.BigEndian.Uint16(seg[0:2])
	seq := binary.BigEndian.Uint32(seg[8:12]) - 1
	r.hiSeq, r.tag = uint16(seq>>16), uint16(seq)
	r.quotedDst = r.src
	return nil
}

// parseExtensions reads RFC 4884 extensions after an ICMP error's original
// datagram (body starts after the 8-byte ICMP header) and keeps an RFC 4950
// MPLS label stack. origLen is the RFC 4884 length field in bytes; 0 means a
// pre-RFC 4884 sender, which puts extensions at offset 128 (RFC 4884 §5).
// Malformed extensions are ignored: the hop itself is still good.
func parseExtensions(r *reply, body []byte, origLen int) {
	off := origLen
	if off == 0 {
		off = 128
	} else if off < 128 {
		return // RFC 4884: the original datagram is padded to at least 128 bytes
	}
	if off+4 > len(body) {
		return
	}
	ext := body[off:]
	if ext[0]>>4 != 2 {
		return
	}
	if binary.BigEndian.Uint16(ext[2:4]) != 0 && rawsock.Checksum(0, ext) != 0 {
		return
	}
	objs := ext[4:]
	for len(objs) >= 4 {
		n := int(binary.BigEndian.Uint16(objs[0:2]))
		if n < 4 || n > len(objs) {
			return
		}
		class, ctype := objs[2], objs[3]
		if class == 1 && ctype == 1 { // MPLS label stack (RFC 4950)
			for e := objs[4:n]; len(e) >= 4 && int(r.nLabels) < maxLabels; e = e[4:] {
				v := binary.BigEndian.Uint32(e)
				r.labels[r.nLabels] = mplsEntry{label: v >> 12, exp: uint8(v>>9) & 7, s: v&0x100 != 0, ttl: uint8(v)}
				r.nLabels++
			}
		}
		objs = objs[n:]
	}
}
