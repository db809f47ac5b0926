package trace

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// conn is the socket seam: the tracer's matching logic talks only to this,
// so it is unit-tested with a fake and needs no root.
type conn interface {
	// WriteTo sends one ICMP message with the given TTL (hop limit).
	WriteTo(msg []byte, ttl int, dst netip.Addr) error
	// ReadFrom reads one ICMP message, IP header removed, into b and returns
	// its length, the TTL it arrived with and its source.
	ReadFrom(b []byte) (n, ttl int, src netip.Addr, err error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// listenFunc opens a conn for one family.
type listenFunc func(v6 bool) (conn, error)

// listenRaw opens a raw ICMP socket (root or CAP_NET_RAW).
func listenRaw(v6 bool) (conn, error) {
	if v6 {
		pc, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return nil, fmt.Errorf("trace: raw icmpv6 socket: %w", err)
		}
		p6 := pc.IPv6PacketConn()
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		f.Accept(ipv6.ICMPTypeTimeExceeded)
		f.Accept(ipv6.ICMPTypeDestinationUnreachable)
		_ = p6.SetICMPFilter(&f) // best effort: unmatched packets are ignored anyway
		if err := p6.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
			_ = pc.Close()
			return nil, fmt.Errorf("trace: hop limit control message: %w", err)
		}
		return &raw6{pc: pc, p6: p6}, nil
	}
	pc, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("trace: raw icmp socket: %w", err)
	}
	p4 := pc.IPv4PacketConn()
	var f ipv4.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv4.ICMPTypeEchoReply)
	f.Accept(ipv4.ICMPTypeTimeExceeded)
	f.Accept(ipv4.ICMPTypeDestinationUnreachable)
	_ = p4.SetICMPFilter(&f)
	if err := p4.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("trace: ttl control message: %w", err)
	}
	return &raw4{pc: pc, p4: p4}, nil
}

type raw4 struct {
	pc  *icmp.PacketConn
	p4  *ipv4.PacketConn
	wmu sync.Mutex // TTL is a socket option: set and write together
}

func (c *raw4) WriteTo(msg []byte, ttl int, dst netip.Addr) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.p4.SetTTL(ttl); err != nil {
		return fmt.Errorf("set ttl %d: %w", ttl, err)
	}
	_, err := c.pc.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

func (c *raw4) ReadFrom(b []byte) (int, int, netip.Addr, error) {
	// Go's IPConn strips the IPv4 header; the TTL comes as a control message.
	n, cm, peer, err := c.p4.ReadFrom(b)
	if err != nil {
		return 0, 0, netip.Addr{}, err
	}
	ttl := 0
	if cm != nil {
		ttl = cm.TTL
	}
	return n, ttl, addrOf(peer), nil
}

func (c *raw4) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }
func (c *raw4) Close() error                      { return c.pc.Close() }

type raw6 struct {
	pc *icmp.PacketConn
	p6 *ipv6.PacketConn
}

func (c *raw6) WriteTo(msg []byte, ttl int, dst netip.Addr) error {
	_, err := c.p6.WriteTo(msg, &ipv6.ControlMessage{HopLimit: ttl}, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

func (c *raw6) ReadFrom(b []byte) (int, int, netip.Addr, error) {
	n, cm, peer, err := c.p6.ReadFrom(b)
	if err != nil {
		return 0, 0, netip.Addr{}, err
	}
	ttl := 0
	if cm != nil {
		ttl = cm.HopLimit
	}
	return n, ttl, addrOf(peer), nil
}

func (c *raw6) SetReadDeadline(t time.Time) error { return c.pc.SetReadDeadline(t) }
func (c *raw6) Close() error                      { return c.pc.Close() }

func addrOf(a net.Addr) netip.Addr {
	if ia, ok := a.(*net.IPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ia.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// RawAvailable reports whether raw ICMP sockets can be opened for the family.
func RawAvailable(v6 bool) bool {
	c, err := listenRaw(v6)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
