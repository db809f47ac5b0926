package rawsock

// What every raw-socket prober needs of IP packets: the Internet checksum,
// the IPv4 header's length, and the IP header of the datagram an ICMP
// error quotes. The probe kinds keep their own formats.

import (
	"errors"
	"net/netip"
)

// Why a received packet does not parse.
var (
	ErrTruncated = errors.New("truncated")
	ErrMalformed = errors.New("malformed")
)

// IPv4Header validates the IPv4 header b starts with (version 4, a header
// length of at least 20 bytes, all of it present) and returns its length:
// ErrTruncated when b is shorter than the header, ErrMalformed when it is
// not one. The datagram after it may be truncated (an ICMP error quotes
// only its start).
func IPv4Header(b []byte) (int, error) {
	if len(b) < 20 {
		return 0, ErrTruncated
	}
	if b[0]>>4 != 4 {
		return 0, ErrMalformed
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 {
		return 0, ErrMalformed
	}
	if len(b) < ihl {
		return 0, ErrTruncated
	}
	return ihl, nil
}

// Quoted is the start of the datagram an ICMP error quotes, as its IP
// header gives it: the destination, the TTL (hop limit) left when it
// expired, the protocol (next header), and what follows the header.
type Quoted struct {
	Dst   netip.Addr
	TTL   uint8
	Proto uint8
	L4    []byte
}

// QuotedIPv4 reads a quoted IPv4 datagram q (IPv4Header's errors).
func QuotedIPv4(q []byte) (Quoted, error) {
	ihl, err := IPv4Header(q)
	if err != nil {
		return Quoted{}, err
	}
	return Quoted{Dst: netip.AddrFrom4([4]byte(q[16:20])), TTL: q[8], Proto: q[9], L4: q[ihl:]}, nil
}

// QuotedIPv6 reads a quoted IPv6 datagram q: ErrTruncated when the fixed
// header is not all there, ErrMalformed when it is not version 6.
// Extension headers are not walked (Proto is the first next header): no
// probe sends one.
func QuotedIPv6(q []byte) (Quoted, error) {
	if len(q) < 40 {
		return Quoted{}, ErrTruncated
	}
	if q[0]>>4 != 6 {
		return Quoted{}, ErrMalformed
	}
	return Quoted{Dst: netip.AddrFrom16([16]byte(q[24:40])), TTL: q[7], Proto: q[6], L4: q[40:]}, nil
}

// Sum adds b to a running one's-complement sum (unfolded), 16 bits at a
// time, big-endian; an odd last byte is padded with zero.
func Sum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// Fold folds a running sum into 16 bits (not complemented).
func Fold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// Checksum is the Internet checksum (RFC 1071) of b, folded, seeded with
// sum (a pseudo-header sum, or 0). Over a message that includes its own
// valid checksum it is 0.
func Checksum(sum uint32, b []byte) uint16 { return ^Fold(Sum(sum, b)) }

// PseudoSum is the unfolded sum of the pseudo-header of a TCP, UDP or
// ICMPv6 segment of n bytes from src to dst (RFC 793, RFC 8200 §8.1).
func PseudoSum(src, dst netip.Addr, proto uint8, n int) uint32 {
	var s uint32
	if src.Is4() {
		a, b := src.As4(), dst.As4()
		s = Sum(Sum(s, a[:]), b[:])
	} else {
		a, b := src.As16(), dst.As16()
		s = Sum(Sum(s, a[:]), b[:])
	}
	return s + uint32(proto) + uint32(n)
}
