//go:build linux

package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

const (
	ipv6HdrIncl = 36 // IPV6_HDRINCL (Linux 4.5+)
	icmpFilter  = 1  // ICMP_FILTER at SOL_RAW
	solRaw      = 255
	rcvBufBytes = 4 << 20
)

// openRaw opens the raw sockets of one family (root or CAP_NET_RAW).
func openRaw(v6 bool, maxTraces int) (*family, error) {
	af, proto := syscall.AF_INET, syscall.IPPROTO_ICMP
	if v6 {
		af, proto = syscall.AF_INET6, syscall.IPPROTO_ICMPV6
	}
	icmpConn, err := openSocket(af, proto, v6, true)
	if err != nil {
		return nil, fmt.Errorf("raw icmp socket: %w", err)
	}
	// Receive-only: SYN-ACKs and RSTs for TCP traces. Without it TCP
	// traces still find the routers but not the destination's answer.
	tcpConn, err := openSocket(af, syscall.IPPROTO_TCP, v6, false)
	if err == nil {
		if err := tcpConn.setFilter(v6, maxTraces); err != nil {
			_ = tcpConn.Close()
			tcpConn = nil
		}
	} else {
		tcpConn = nil
	}
	rl, err := newRouteLookup(af)
	if err != nil {
		_ = icmpConn.Close()
		if tcpConn != nil {
			_ = tcpConn.Close()
		}
		return nil, err
	}
	f := &family{icmp: icmpConn, srcFor: rl.srcFor, close: rl.close}
	if tcpConn != nil {
		f.tcp = tcpConn
	}
	return f, nil
}

// openSocket makes a raw socket with kernel receive timestamps. send sets
// header inclusion, so one socket sends ICMP, UDP and TCP probes with the
// TTL in the header we write (no per-packet setsockopt).
func openSocket(af, proto int, v6, send bool) (*sockConn, error) {
	fd, err := syscall.Socket(af, syscall.SOCK_RAW|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	fail := func(what string, err error) (*sockConn, error) {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		return fail("SO_TIMESTAMPNS", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, rcvBufBytes); err != nil {
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBufBytes)
	}
	if v6 {
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_RECVHOPLIMIT, 1); err != nil {
			return fail("IPV6_RECVHOPLIMIT", err)
		}
	}
	if send {
		if v6 {
			if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, ipv6HdrIncl, 1); err != nil {
				return fail("IPV6_HDRINCL", err)
			}
		} else if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_HDRINCL, 1); err != nil {
			return fail("IP_HDRINCL", err)
		}
	}
	if proto == syscall.IPPROTO_ICMP {
		// Let only echo replies, unreachables and time exceeded through.
		mask := ^uint32(1<<v4EchoReply | 1<<v4Unreachable | 1<<v4TimeExceeded)
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], mask)
		if err := syscall.SetsockoptString(fd, solRaw, icmpFilter, string(b[:])); err != nil {
			return fail("ICMP_FILTER", err)
		}
	}
	file := os.NewFile(uintptr(fd), "trace-raw")
	pc, err := net.FilePacketConn(file)
	_ = file.Close() // FilePacketConn dup'ed it
	if err != nil {
		return nil, fmt.Errorf("file packet conn: %w", err)
	}
	c := &sockConn{pc: pc, v6: v6}
	if v6 {
		c.p6 = ipv6.NewPacketConn(pc)
		if proto == syscall.IPPROTO_ICMPV6 {
			var f ipv6.ICMPFilter
			f.SetAll(true)
			f.Accept(ipv6.ICMPTypeEchoReply)
			f.Accept(ipv6.ICMPTypeTimeExceeded)
			f.Accept(ipv6.ICMPTypeDestinationUnreachable)
			if err := c.p6.SetICMPFilter(&f); err != nil {
				_ = pc.Close()
				return nil, fmt.Errorf("ICMP6_FILTER: %w", err)
			}
		}
	} else {
		c.p4 = ipv4.NewPacketConn(pc)
	}
	return c, nil
}

// sockConn is a raw socket read and written in batches (recvmmsg and
// sendmmsg through x/net).
type sockConn struct {
	pc net.PacketConn
	p4 *ipv4.PacketConn
	p6 *ipv6.PacketConn
	v6 bool

	rmu  sync.Mutex // one reader at a time owns rmsg
	rmsg []ipv4.Message
	wmu  sync.Mutex
	wmsg []ipv4.Message
	addr []net.IPAddr
}

func (c *sockConn) ReadBatch(in []inPacket) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.rmsg) < len(in) {
		c.rmsg = make([]ipv4.Message, len(in))
		for i := range c.rmsg {
			c.rmsg[i].Buffers = make([][]byte, 1)
			c.rmsg[i].OOB = make([]byte, 128)
		}
	}
	ms := c.rmsg[:len(in)]
	for i := range ms {
		ms[i].Buffers[0] = in[i].buf
	}
	var n int
	var err error
	if c.v6 {
		n, err = c.p6.ReadBatch(ms, 0)
	} else {
		n, err = c.p4.ReadBatch(ms, 0)
	}
	if err != nil {
		return 0, err
	}
	now := time.Now()
	for i := range n {
		m := &ms[i]
		p := &in[i]
		p.n = m.N
		p.src = netip.Addr{}
		if a, ok := m.Addr.(*net.IPAddr); ok {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				p.src = ip.Unmap()
			}
		}
		p.at, p.hopLimit = parseOOB(m.OOB[:m.NN], now)
	}
	return n, nil
}

// parseOOB reads the kernel receive timestamp and the IPv6 hop limit from
// control messages, without allocating.
func parseOOB(oob []byte, now time.Time) (time.Time, int) {
	at, hl := now, -1
	const align = 8 // Linux cmsg alignment on 64-bit (sizeof(long))
	hdr := syscall.SizeofCmsghdr
	for len(oob) >= hdr {
		var l int
		if hdr == 16 {
			l = int(binary.NativeEndian.Uint64(oob[0:8]))
		} else {
			l = int(binary.NativeEndian.Uint32(oob[0:4]))
		}
		level := int32(binary.NativeEndian.Uint32(oob[hdr-8 : hdr-4]))
		typ := int32(binary.NativeEndian.Uint32(oob[hdr-4 : hdr]))
		if l < hdr || l > len(oob) {
			break
		}
		data := oob[hdr:l]
		switch {
		case level == syscall.SOL_SOCKET && typ == syscall.SCM_TIMESTAMPNS && len(data) >= 16:
			sec := int64(binary.NativeEndian.Uint64(data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(data[8:16]))
			at = time.Unix(sec, nsec)
		case level == syscall.IPPROTO_IPV6 && typ == syscall.IPV6_HOPLIMIT && len(data) >= 4:
			hl = int(int32(binary.NativeEndian.Uint32(data[0:4])))
		}
		next := (l + align - 1) &^ (align - 1)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return at, hl
}

func (c *sockConn) WriteBatch(out []outPacket) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.wmsg) < len(out) {
		c.wmsg = make([]ipv4.Message, len(out))
		c.addr = make([]net.IPAddr, len(out))
		for i := range c.wmsg {
			c.wmsg[i].Buffers = make([][]byte, 1)
		}
	}
	ms := c.wmsg[:len(out)]
	for i, p := range out {
		c.addr[i].IP = p.dst.AsSlice()
		ms[i].Buffers[0] = p.b
		ms[i].Addr = &c.addr[i]
	}
	sent := 0
	for sent < len(ms) {
		var n int
		var err error
		if c.v6 {
			n, err = c.p6.WriteBatch(ms[sent:], 0)
		} else {
			n, err = c.p4.WriteBatch(ms[sent:], 0)
		}
		sent += max(n, 0)
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

func (c *sockConn) Close() error { return c.pc.Close() }

// routeLookup finds the kernel's source address towards a destination by
// connecting a UDP socket (a route lookup; nothing is sent). The socket is
// opened with the raw ones, so it lives in the same network namespace.
type routeLookup struct {
	mu sync.Mutex
	fd int
	v6 bool
}

func newRouteLookup(af int) (*routeLookup, error) {
	fd, err := syscall.Socket(af, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("route lookup socket: %w", err)
	}
	return &routeLookup{fd: fd, v6: af == syscall.AF_INET6}, nil
}

func (r *routeLookup) srcFor(dst netip.Addr) (netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sa syscall.Sockaddr
	if r.v6 {
		sa = &syscall.SockaddrInet6{Port: DefaultUDPPort, Addr: dst.As16()}
	} else {
		sa = &syscall.SockaddrInet4{Port: DefaultUDPPort, Addr: dst.As4()}
	}
	if err := syscall.Connect(r.fd, sa); err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %s: %w", dst, err)
	}
	got, err := syscall.Getsockname(r.fd)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("getsockname: %w", err)
	}
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrFrom4(a.Addr), nil
	case *syscall.SockaddrInet6:
		return netip.AddrFrom16(a.Addr), nil
	}
	return netip.Addr{}, errors.New("getsockname: unexpected address family")
}

func (r *routeLookup) close() error { return syscall.Close(r.fd) }

// tcpFilter keeps only TCP segments addressed to our probe source ports, so
// the raw TCP socket does not copy the host's other TCP traffic to us. IPv4
// raw sockets filter from the IP header, IPv6 ones from the TCP header.
func tcpFilter(v6 bool, maxTraces int) ([]bpf.RawInstruction, error) {
	var prog []bpf.Instruction
	if v6 {
		prog = append(prog, bpf.LoadAbsolute{Off: 2, Size: 2})
	} else {
		prog = append(prog, bpf.LoadMemShift{Off: 0}, bpf.LoadIndirect{Off: 2, Size: 2})
	}
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: portBase, SkipFalse: 2},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(portBase + maxTraces), SkipTrue: 1},
		bpf.RetConstant{Val: 1 << 16},
		bpf.RetConstant{Val: 0},
	)
	return bpf.Assemble(prog)
}

func (c *sockConn) setFilter(v6 bool, maxTraces int) error {
	prog, err := tcpFilter(v6, maxTraces)
	if err != nil {
		return fmt.Errorf("assemble tcp filter: %w", err)
	}
	if v6 {
		return c.p6.SetBPF(prog)
	}
	return c.p4.SetBPF(prog)
}
