package trace

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Reasons a received packet is ignored. All of them are counted.
var (
	errTruncated = errors.New("truncated")
	errGarbage   = errors.New("malformed")
	errNotOurs   = errors.New("not a reply to an echo request")
)

type replyKind uint8

const (
	kindEchoReply replyKind = iota + 1
	kindTimeExceeded
	kindUnreachable
)

// ICMP types the tracer understands.
const (
	v4EchoReply    = 0
	v4Unreachable  = 3
	v4EchoRequest  = 8
	v4TimeExceeded = 11

	v6Unreachable  = 1
	v6TimeExceeded = 3
	v6EchoRequest  = 128
	v6EchoReply    = 129

	protoICMP   = 1
	protoICMPv6 = 58
)

// reply is what the parser extracts from one ICMP message. For errors (time
// exceeded, unreachable) id and seq come from the quoted echo request.
type reply struct {
	kind      replyKind
	icmpType  uint8
	icmpCode  uint8
	id, seq   uint16
	quotedTTL uint8      // 0 when not quoted
	quotedDst netip.Addr // destination of the quoted probe (errors only)
}

// parseReply parses an ICMP (v6 false) or ICMPv6 message without its IP
// header. It never panics; anything it cannot use is an error.
func parseReply(v6 bool, msg []byte) (reply, error) {
	if len(msg) < 8 {
		return reply{}, errTruncated
	}
	r := reply{icmpType: msg[0], icmpCode: msg[1]}
	if !v6 && checksum(msg) != 0 {
		// The kernel does not verify ICMPv4 checksums on raw sockets;
		// ICMPv6 ones it does.
		return reply{}, errGarbage
	}
	echoReply, timeExceeded, unreachable := uint8(v4EchoReply), uint8(v4TimeExceeded), uint8(v4Unreachable)
	if v6 {
		echoReply, timeExceeded, unreachable = v6EchoReply, v6TimeExceeded, v6Unreachable
	}
	switch r.icmpType {
	case echoReply:
		if r.icmpCode != 0 {
			return reply{}, errGarbage
		}
		r.kind = kindEchoReply
		r.id = binary.BigEndian.Uint16(msg[4:6])
		r.seq = binary.BigEndian.Uint16(msg[6:8])
		return r, nil
	case timeExceeded:
		r.kind = kindTimeExceeded
	case unreachable:
		r.kind = kindUnreachable
	default:
		return reply{}, errNotOurs
	}
	var err error
	if v6 {
		err = parseQuoted6(&r, msg[8:])
	} else {
		err = parseQuoted4(&r, msg[8:])
	}
	if err != nil {
		return reply{}, err
	}
	return r, nil
}

// parseQuoted4 reads the IPv4 header and first 8 bytes of ICMP quoted in an
// error message (RFC 792; RFC 4884 extensions follow and are skipped).
func parseQuoted4(r *reply, q []byte) error {
	if len(q) < 20 {
		return errTruncated
	}
	if q[0]>>4 != 4 {
		return errGarbage
	}
	ihl := int(q[0]&0x0f) * 4
	if ihl < 20 {
		return errGarbage
	}
	if q[9] != protoICMP {
		return errNotOurs
	}
	if len(q) < ihl+8 {
		return errTruncated
	}
	icmp := q[ihl:]
	if icmp[0] != v4EchoRequest {
		return errNotOurs
	}
	r.quotedTTL = q[8]
	r.quotedDst = netip.AddrFrom4([4]byte(q[16:20]))
	r.id = binary.BigEndian.Uint16(icmp[4:6])
	r.seq = binary.BigEndian.Uint16(icmp[6:8])
	return nil
}

// parseQuoted6 reads the IPv6 header and first 8 bytes of ICMPv6 quoted in
// an error message. Probes never carry extension headers, so a quoted
// packet with one is not ours.
func parseQuoted6(r *reply, q []byte) error {
	if len(q) < 40 {
		return errTruncated
	}
	if q[0]>>4 != 6 {
		return errGarbage
	}
	if q[6] != protoICMPv6 {
		return errNotOurs
	}
	if len(q) < 48 {
		return errTruncated
	}
	icmp := q[40:]
	if icmp[0] != v6EchoRequest {
		return errNotOurs
	}
	r.quotedTTL = q[7]
	r.quotedDst = netip.AddrFrom16([16]byte(q[24:40]))
	r.id = binary.BigEndian.Uint16(icmp[4:6])
	r.seq = binary.BigEndian.Uint16(icmp[6:8])
	return nil
}

// checksum is the Internet checksum (RFC 1071) of b; 0 for a valid message
// that includes its checksum field.
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// payloadBytes is the echo payload size of trace probes.
const payloadBytes = 16

// marker identifies vantage trace probes in packet captures.
var marker = [6]byte{'v', 'a', 'n', 't', 'g', 't'}

// buildEcho makes an echo request. With paris set, the first two payload
// bytes compensate seq so that the ICMP checksum is the same for every seq:
// per-flow load balancers hash on the first bytes of the ICMP header (type,
// code, checksum), so the whole trace follows one path. For ICMPv6 the
// kernel fills the checksum, but the pseudo-header is constant within a
// trace, so the same compensation keeps it constant.
func buildEcho(v6, paris bool, id, seq uint16) []byte {
	msg := make([]byte, 8+payloadBytes)
	msg[0] = v4EchoRequest
	if v6 {
		msg[0] = v6EchoRequest
	}
	binary.BigEndian.PutUint16(msg[4:6], id)
	binary.BigEndian.PutUint16(msg[6:8], seq)
	if paris {
		// seq + ^seq = 0xffff in one's-complement arithmetic, whatever seq.
		binary.BigEndian.PutUint16(msg[8:10], ^seq)
	}
	copy(msg[10:], marker[:])
	if !v6 {
		binary.BigEndian.PutUint16(msg[2:4], checksum(msg))
	}
	return msg
}
