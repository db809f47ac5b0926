package trace

import (
	"net/netip"
	"time"
)

// The socket seam. The tracer talks only to these types, so matching,
// pacing and stop logic are unit-tested with fakes and need no root; on
// Linux they are rawsock's sockets (conn_linux.go).

// inPacket is one received packet.
type inPacket struct {
	buf      []byte     // owned by the reader; filled by ReadBatch
	n        int        // bytes in buf
	src      netip.Addr // sender (from the socket address)
	hopLimit int        // IPv6 hop limit from a control message; 0 if unknown
	at       time.Time  // kernel receive time (SO_TIMESTAMPNS), or the read time
}

// outPacket is one probe to send: a whole IP packet, header included.
type outPacket struct {
	b   []byte
	dst netip.Addr
}

// rawConn is one raw socket.
type rawConn interface {
	// ReadBatch fills in[i].n, src, hopLimit and at for up to len(in)
	// packets and returns how many; it blocks until at least one arrives
	// and returns net.ErrClosed once Close has been called.
	ReadBatch(in []inPacket) (int, error)
	// WriteBatch sends the packets (each a complete IP packet) in order
	// and returns how many were sent; on an error, out[n] is the one that
	// failed.
	WriteBatch(out []outPacket) (int, error)
	Close() error
}

// rxKind says what a receive socket delivers.
type rxKind uint8

const (
	rxICMP4 rxKind = iota + 1 // whole IPv4 packets carrying ICMP
	rxICMP6                   // ICMPv6 messages, no IPv6 header
	rxTCP4                    // whole IPv4 packets carrying TCP
	rxTCP6                    // TCP segments, no IPv6 header
)

// family is the sockets of one address family: one raw socket that sends
// every probe (ICMP, UDP and TCP, header included) and receives ICMP, plus a
// receive-only raw TCP socket for the destination's SYN-ACK or RST.
type family struct {
	icmp rawConn
	tcp  rawConn // nil when raw TCP receive is unavailable
	// srcFor returns the source address the kernel would use towards dst
	// (needed for transport checksums and the IPv6 header).
	srcFor func(dst netip.Addr) (netip.Addr, error)
	close  func() error // releases what srcFor uses
}

// openFunc opens the sockets of one family.
type openFunc func(v6 bool, maxTraces int) (*family, error)
