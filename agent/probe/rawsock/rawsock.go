// Package rawsock is the socket plumbing shared by the bulk probe engines
// (icmp and tcp): one raw socket per address family and protocol, a
// classic BPF filter attached in the kernel so that only packets that can
// be ours are copied to user space, batched reads and writes
// (recvmmsg/sendmmsg through x/net/ipv4 and ipv6) and kernel receive
// timestamps (SO_TIMESTAMPNS).
//
// It exists so that the engines share one tested implementation of the
// Linux-specific parts and keep only their packet formats to themselves.
package rawsock

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
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
}

// Conn is a raw IP socket of one family and protocol with batch I/O.
type Conn struct {
	v6 bool
	ip *net.IPConn
	p4 *ipv4.PacketConn
	p6 *ipv6.PacketConn
}

// Listen opens a raw socket for proto on the v4 or v6 family, attaches the
// filter and turns on kernel receive timestamps (and, on IPv6, the hop
// limit control message).
func Listen(v6 bool, proto Proto, o Options) (*Conn, error) {
	network := map[[2]bool]string{
		{false, false}: "ip4:icmp", {true, false}: "ip6:ipv6-icmp",
		{false, true}: "ip4:tcp", {true, true}: "ip6:tcp",
	}[[2]bool{v6, proto == TCP}]
	laddr := "0.0.0.0"
	if v6 {
		laddr = "::"
	}
	pc, err := net.ListenPacket(network, laddr)
	if err != nil {
		return nil, fmt.Errorf("rawsock: listen %s: %w", network, err)
	}
	ipc, ok := pc.(*net.IPConn)
	if !ok {
		_ = pc.Close()
		return nil, fmt.Errorf("rawsock: listen %s: %w", network, ErrUnsupported)
	}
	c := &Conn{v6: v6, ip: ipc}
	if v6 {
		c.p6 = ipv6.NewPacketConn(ipc)
	} else {
		c.p4 = ipv4.NewPacketConn(ipc)
	}
	if err := c.setup(o); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("rawsock: %s: %w", network, err)
	}
	return c, nil
}

func (c *Conn) setup(o Options) error {
	if len(o.Filter) > 0 {
		prog, err := bpf.Assemble(o.Filter)
		if err != nil {
			return fmt.Errorf("assemble filter: %w", err)
		}
		if c.v6 {
			err = c.p6.SetBPF(prog)
		} else {
			err = c.p4.SetBPF(prog)
		}
		if err != nil {
			return fmt.Errorf("attach filter: %w", err)
		}
	}
	if c.v6 {
		if err := c.p6.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
			return fmt.Errorf("IPV6_RECVHOPLIMIT: %w", err)
		}
		if o.KernelChecksumOffset > 0 {
			if err := c.p6.SetChecksum(true, o.KernelChecksumOffset); err != nil {
				return fmt.Errorf("IPV6_CHECKSUM: %w", err)
			}
		}
	}
	rc, err := c.ip.SyscallConn()
	if err != nil {
		return fmt.Errorf("syscall conn: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = sockopts(int(fd), o.RecvBuf) }); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	return serr
}

// V6 reports the family.
func (c *Conn) V6() bool { return c.v6 }

// ReadBatch reads up to len(ms) datagrams, blocking until at least one
// arrives. Each message needs Buffers[0] and OOB (OOBSize bytes) set.
func (c *Conn) ReadBatch(ms []Message) (int, error) {
	if c.v6 {
		return c.p6.ReadBatch(ms, 0)
	}
	return c.p4.ReadBatch(ms, 0)
}

// WriteBatch sends the datagrams; it returns how many left.
func (c *Conn) WriteBatch(ms []Message) (int, error) {
	if c.v6 {
		return c.p6.WriteBatch(ms, 0)
	}
	return c.p4.WriteBatch(ms, 0)
}

// SetReadDeadline bounds the next ReadBatch.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.ip.SetReadDeadline(t) }

// Close closes the socket; a blocked ReadBatch returns.
func (c *Conn) Close() error { return c.ip.Close() }

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
