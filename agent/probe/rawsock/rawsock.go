// Package rawsock is the raw-socket layer of every prober that needs one
// (the bulk ICMP echo and TCP SYN probers, and the traceroute): one raw
// socket per address family and protocol, a
// classic BPF filter attached in the kernel so that only packets that can
// be ours are copied to user space, batched reads and writes
// (recvmmsg/sendmmsg into x/net's Message, without Go's network poller:
// see Conn) and kernel receive timestamps (SO_TIMESTAMPNS).
//
// It also holds what they all need of packets: the Internet checksum, the
// IPv4 header check (packet.go), keyed probe cookies (cookie.go), the
// control messages (ParseOOB) and the kernel's source address towards a
// destination (RouteSource). It exists so that the probers share one
// tested implementation of the Linux-specific parts and keep only their
// packet formats to themselves.
package rawsock

import (
	"errors"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
)

// Message is one datagram of a batch (recvmmsg/sendmmsg).
type Message = ipv4.Message

// ErrUnsupported is returned where raw sockets or an option are not
// available (another OS, or no CAP_NET_RAW).
var ErrUnsupported = errors.New("raw sockets unsupported")

// Proto is the IP protocol a raw socket carries.
type Proto int

// Protocols the engines use.
const (
	ICMP Proto = iota // ICMP for IPv4, ICMPv6 for IPv6
	TCP
)

// Options configure a raw socket.
type Options struct {
	// Filter is attached with SO_ATTACH_FILTER. On IPv4 the program sees
	// the IP header first; on IPv6 it sees the transport header first.
	Filter []bpf.Instruction
	// RecvBuf is SO_RCVBUF(FORCE) in bytes; 0 keeps the default.
	RecvBuf int
	// KernelChecksumOffset asks the IPv6 kernel to fill a checksum at this
	// offset (IPV6_CHECKSUM); 0 leaves it alone. ICMPv6 always has it.
	KernelChecksumOffset int
	// DontFragment sets DF on IPv4 packets (IP_PMTUDISC_PROBE: DF, and
	// the path MTU is not consulted). The kernel then skips choosing an IP
	// id per packet (a hash and a random draw; a few percent of a sweep's
	// CPU). Only for small probes: a router on a path with a smaller MTU
	// answers "fragmentation needed" instead of fragmenting.
	DontFragment bool
	// SendOnly makes a socket that only sends: every packet is dropped
	// before it reaches the socket (Filter is ignored). A raw socket
	// otherwise gets a copy of every packet of its protocol.
	SendOnly bool
	// AcceptICMP, on an ICMP socket, is the kernel's type filter
	// (ICMP_FILTER, ICMP6_FILTER): only messages of these types reach
	// the socket. Empty lets every type through.
	AcceptICMP []uint8
	// HeaderIncluded makes the caller write the whole IP packet
	// (IP_HDRINCL, IPV6_HDRINCL): one socket then sends any transport
	// protocol, with the TTL or hop limit written in the header.
	HeaderIncluded bool
}

// OOBSize is enough control-message space for a timestamp and a hop limit.
const OOBSize = 128

// AddrOf returns the IP address of a batch message's peer.
func AddrOf(a net.Addr) netip.Addr {
	if ia, ok := a.(*net.IPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ia.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// IsClosed reports whether err says the socket was closed.
func IsClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.EBADF)
}
