//go:build linux

package trace

import (
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/net/bpf"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
)

const rcvBufBytes = 4 << 20

// openRaw opens the raw sockets of one family (root or CAP_NET_RAW), all
// through rawsock.
func openRaw(v6 bool, maxTraces int) (*family, error) {
	accept := []uint8{v4EchoReply, v4Unreachable, v4TimeExceeded}
	if v6 {
		accept = []uint8{v6EchoReply, v6Unreachable, v6TimeExceeded}
	}
	// Header inclusion: one socket sends ICMP, UDP and TCP probes with the
	// TTL in the header we write (no per-packet setsockopt), and receives
	// echo replies, unreachables and time exceeded.
	icmpConn, err := rawsock.Listen(v6, rawsock.ICMP, rawsock.Options{HeaderIncluded: true, AcceptICMP: accept, RecvBuf: rcvBufBytes})
	if err != nil {
		return nil, fmt.Errorf("raw icmp socket: %w", err)
	}
	f := &family{icmp: &sockConn{c: icmpConn}}
	// Receive-only: SYN-ACKs and RSTs for TCP traces. Without it TCP
	// traces still find the routers but not the destination's answer.
	if tcpConn, err := rawsock.Listen(v6, rawsock.TCP, rawsock.Options{Filter: tcpFilter(v6, maxTraces), RecvBuf: rcvBufBytes}); err == nil {
		f.tcp = &sockConn{c: tcpConn}
	}
	route, err := rawsock.NewRouteSource(v6)
	if err != nil {
		_ = f.icmp.Close()
		if f.tcp != nil {
			_ = f.tcp.Close()
		}
		return nil, err
	}
	f.srcFor, f.close = route.Lookup, route.Close
	return f, nil
}

// sockConn is the rawConn of a rawsock.Conn: the tracer's packets as
// batch messages.
type sockConn struct {
	c *rawsock.Conn

	rmu  sync.Mutex // one reader at a time owns rmsg
	rmsg []rawsock.Message
	wmu  sync.Mutex
	wmsg []rawsock.Message
	addr []net.IPAddr
}

func (c *sockConn) ReadBatch(in []inPacket) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if len(c.rmsg) < len(in) {
		c.rmsg = make([]rawsock.Message, len(in))
		for i := range c.rmsg {
			c.rmsg[i].Buffers = make([][]byte, 1)
			c.rmsg[i].OOB = make([]byte, rawsock.OOBSize)
			c.rmsg[i].Addr = &net.IPAddr{IP: make(net.IP, 0, net.IPv6len)}
		}
	}
	ms := c.rmsg[:len(in)]
	for i := range ms {
		ms[i].Buffers[0] = in[i].buf
	}
	n, err := c.c.ReadBatch(ms)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	for i := range n {
		m, p := &ms[i], &in[i]
		p.n = m.N
		p.src = rawsock.AddrOf(m.Addr)
		p.at, p.hopLimit = rawsock.ParseOOB(m.OOB[:m.NN])
		if p.at.IsZero() {
			p.at = now
		}
	}
	return n, nil
}

func (c *sockConn) WriteBatch(out []outPacket) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.wmsg) < len(out) {
		c.wmsg = make([]rawsock.Message, len(out))
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
		n, err := c.c.WriteBatch(ms[sent:])
		sent += max(n, 0)
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

func (c *sockConn) Close() error { return c.c.Close() }

// tcpFilter keeps only TCP segments addressed to our probe source ports, so
// the raw TCP socket does not copy the host's other TCP traffic to us. IPv4
// raw sockets filter from the IP header, IPv6 ones from the TCP header.
func tcpFilter(v6 bool, maxTraces int) []bpf.Instruction {
	var prog []bpf.Instruction
	if v6 {
		prog = append(prog, bpf.LoadAbsolute{Off: 2, Size: 2})
	} else {
		prog = append(prog, bpf.LoadMemShift{Off: 0}, bpf.LoadIndirect{Off: 2, Size: 2})
	}
	return append(prog,
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: portBase, SkipFalse: 2},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(portBase + maxTraces), SkipTrue: 1},
		bpf.RetConstant{Val: 1 << 16},
		bpf.RetConstant{Val: 0},
	)
}
