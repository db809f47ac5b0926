//go:build linux

package rawsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Conn is a raw IP socket of one family and protocol with batch I/O.
//
// The socket is not registered with Go's network poller: a registered
// socket wakes the runtime's epoll thread for every packet that arrives
// (the poller's epoll set is edge-triggered on every enqueue), which on a
// sweep cost one thread wake-up, and one preemption of the sending
// thread, per reply. Reads and writes here are recvmmsg/sendmmsg on a
// non-blocking descriptor. A blocking ReadBatch waits through a private
// epoll instance that holds the socket with EPOLLONESHOT and is itself in
// Go's poller: armed only while a reader waits, so an idle reader costs a
// parked goroutine (no thread in a blocking system call, which would keep
// the runtime's sysmon thread awake), and packets that arrive while
// nobody waits (a sweep's reader polls on a timer) wake nothing.
// Addresses are decoded into the messages' own *net.IPAddr values, so a
// batch allocates nothing.
type Conn struct {
	v6     bool
	fd     int
	closed atomic.Bool
	// mu is held shared around every system call on fd and exclusively
	// by Close around close(2), so fd is never reused under a caller.
	mu     sync.RWMutex
	rd, wr batch // each owned by one ReadBatch/WriteBatch at a time
	// ep is the private epoll instance (its *os.File is in Go's poller);
	// epMu serialises waiters, who share ev.
	ep   *os.File
	epfd int // ep's descriptor (ep.Fd() would make it blocking)
	epRC syscall.RawConn
	epMu sync.Mutex
	ev   [1]unix.EpollEvent
}

// batch is the scratch space of one direction: the mmsghdr array and what
// it points to.
type batch struct {
	sync.Mutex
	hs  []unix.Mmsghdr
	iov []unix.Iovec
	sa  []unix.RawSockaddrInet6
}

// pollSafety bounds one poll(2) of a writer waiting for buffer space, so
// that a Close is noticed.
const pollSafety = time.Second

// Listen opens a raw socket for proto on the v4 or v6 family, attaches the
// filter and turns on kernel receive timestamps (and, on IPv6, the hop
// limit control message).
func Listen(v6 bool, proto Proto, o Options) (*Conn, error) {
	family, ipproto, network := unix.AF_INET, unix.IPPROTO_ICMP, "ip4:icmp"
	switch {
	case v6 && proto == TCP:
		family, ipproto, network = unix.AF_INET6, unix.IPPROTO_TCP, "ip6:tcp"
	case v6:
		family, ipproto, network = unix.AF_INET6, unix.IPPROTO_ICMPV6, "ip6:ipv6-icmp"
	case proto == TCP:
		ipproto, network = unix.IPPROTO_TCP, "ip4:tcp"
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, ipproto)
	if err != nil {
		return nil, fmt.Errorf("rawsock: listen %s: %w", network, os.NewSyscallError("socket", err))
	}
	c := &Conn{v6: v6, fd: fd}
	if err := c.setup(proto, o); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("rawsock: %s: %w", network, err)
	}
	if err := c.openEpoll(); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("rawsock: %s: %w", network, err)
	}
	return c, nil
}

// openEpoll makes the private epoll instance: the socket in it, disarmed
// (EPOLLONESHOT with no events), and the instance in Go's poller.
func (c *Conn) openEpoll() error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLONESHOT, Fd: int32(c.fd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		_ = unix.Close(ep)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		_ = unix.Close(ep)
		return fmt.Errorf("epoll: %w", err)
	}
	c.epfd = ep
	c.ep = os.NewFile(uintptr(ep), "rawsock-epoll") // non-blocking: in Go's poller
	if c.epRC, err = c.ep.SyscallConn(); err != nil {
		_ = c.ep.Close()
		return fmt.Errorf("epoll: %w", err)
	}
	return nil
}

// ipv6HdrIncl is IPV6_HDRINCL (Linux 4.5+; not in x/sys/unix).
const ipv6HdrIncl = 36

func (c *Conn) setup(proto Proto, o Options) error {
	if !c.v6 {
		// No SO_BROADCAST (Go's own raw IPv4 sockets set it). The kernel
		// needs it only to send to a broadcast route: the limited broadcast
		// and the broadcast addresses of the agent's own subnets, which
		// the guard cannot see and nothing should probe. A remote network's
		// .255 is a unicast route and goes out without it. Without it such
		// a send fails with EACCES and the probe ends in ERROR.
		if o.DontFragment {
			if err := unix.SetsockoptInt(c.fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE); err != nil {
				return fmt.Errorf("IP_MTU_DISCOVER: %w", err)
			}
		}
	}
	if err := c.setHeaderIncluded(o.HeaderIncluded); err != nil {
		return err
	}
	if o.SendOnly {
		// Drop everything before it is queued. For ICMP the kernel's type
		// filter runs before the packet is even cloned for the socket.
		o.AcceptICMP = []uint8{}
		o.Filter = []bpf.Instruction{bpf.RetConstant{Val: 0}}
	}
	if proto == ICMP && o.AcceptICMP != nil {
		if err := c.setICMPFilter(o.AcceptICMP); err != nil {
			return err
		}
	}
	if err := c.attachFilter(o.Filter); err != nil {
		return err
	}
	if c.v6 {
		if err := unix.SetsockoptInt(c.fd, unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1); err != nil {
			return fmt.Errorf("IPV6_RECVHOPLIMIT: %w", err)
		}
		if o.KernelChecksumOffset > 0 {
			if err := unix.SetsockoptInt(c.fd, unix.IPPROTO_IPV6, unix.IPV6_CHECKSUM, o.KernelChecksumOffset); err != nil {
				return fmt.Errorf("IPV6_CHECKSUM: %w", err)
			}
		}
	}
	return sockopts(c.fd, o.RecvBuf)
}

func (c *Conn) setHeaderIncluded(on bool) error {
	switch {
	case !on:
		return nil
	case c.v6:
		if err := unix.SetsockoptInt(c.fd, unix.IPPROTO_IPV6, ipv6HdrIncl, 1); err != nil {
			return fmt.Errorf("IPV6_HDRINCL: %w", err)
		}
	default:
		if err := unix.SetsockoptInt(c.fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1); err != nil {
			return fmt.Errorf("IP_HDRINCL: %w", err)
		}
	}
	return nil
}

// setICMPFilter lets only the ICMP types in accept reach the socket.
func (c *Conn) setICMPFilter(accept []uint8) error {
	if c.v6 {
		f := unix.ICMPv6Filter{} // a set bit blocks its type
		for i := range f.Data {
			f.Data[i] = ^uint32(0)
		}
		for _, t := range accept {
			f.Data[t>>5] &^= 1 << (t & 31)
		}
		if err := unix.SetsockoptICMPv6Filter(c.fd, unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &f); err != nil {
			return fmt.Errorf("ICMP6_FILTER: %w", err)
		}
		return nil
	}
	mask := ^uint32(0) // a set bit blocks its type; types >= 32 always pass
	for _, t := range accept {
		if t < 32 {
			mask &^= 1 << t
		}
	}
	if err := unix.SetsockoptInt(c.fd, unix.SOL_RAW, unix.ICMP_FILTER, int(int32(mask))); err != nil {
		return fmt.Errorf("ICMP_FILTER: %w", err)
	}
	return nil
}

// attachFilter attaches a classic BPF program (none when empty).
func (c *Conn) attachFilter(filter []bpf.Instruction) error {
	if len(filter) == 0 {
		return nil
	}
	prog, err := bpf.Assemble(filter)
	if err != nil {
		return fmt.Errorf("assemble filter: %w", err)
	}
	f := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	if err := unix.SetsockoptSockFprog(c.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}); err != nil {
		return fmt.Errorf("attach filter: %w", err)
	}
	return nil
}

// V6 reports the family.
func (c *Conn) V6() bool { return c.v6 }

// ReadBatch reads up to len(ms) datagrams, blocking until at least one
// arrives. Each message needs Buffers[0] and OOB (OOBSize bytes) set. A
// message's Addr is overwritten in place when it already holds a
// *net.IPAddr, so it must not be kept across calls.
func (c *Conn) ReadBatch(ms []Message) (int, error) { return c.read(ms, true) }

// ReadBatchNow is ReadBatch without waiting: it returns 0 and no error
// when nothing is queued.
func (c *Conn) ReadBatchNow(ms []Message) (int, error) { return c.read(ms, false) }

func (c *Conn) read(ms []Message, wait bool) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	for {
		n, again, err := c.tryRead(ms)
		if !again || !wait {
			return n, err
		}
		// Wait without holding the scratch space, so that a ReadBatchNow
		// from another goroutine is not held up by a blocked reader.
		if err := c.waitReadable(); err != nil {
			return 0, err
		}
	}
}

// tryRead is one recvmmsg; again reports that nothing was queued.
func (c *Conn) tryRead(ms []Message) (n int, again bool, err error) {
	b := &c.rd
	b.Lock()
	defer b.Unlock()
	c.mu.RLock()
	defer c.mu.RUnlock()
	b.pack(ms, true)
	for {
		if c.closed.Load() {
			return 0, false, fmt.Errorf("rawsock: read: %w", net.ErrClosed)
		}
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&b.hs[0])),
			uintptr(len(ms)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			b.unpack(ms[:r])
			return int(r), false, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, true, nil
		default:
			return 0, false, os.NewSyscallError("recvmmsg", errno)
		}
	}
}

// WriteBatch sends the datagrams; it returns how many left. Each message
// needs Buffers and Addr (a *net.IPAddr).
func (c *Conn) WriteBatch(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	b := &c.wr
	b.Lock()
	defer b.Unlock()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return 0, fmt.Errorf("rawsock: write: %w", net.ErrClosed)
	}
	if err := b.pack(ms, false); err != nil {
		return 0, err
	}
	for {
		if c.closed.Load() {
			return 0, fmt.Errorf("rawsock: write: %w", net.ErrClosed)
		}
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&b.hs[0])),
			uintptr(len(ms)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			for i := range int(n) {
				ms[i].N = int(b.hs[i].Len)
			}
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.ENOBUFS:
			// The send buffer is full: wait until the kernel drains it.
			if err := c.pollLocked(unix.POLLOUT, false); err != nil {
				return 0, err
			}
		default:
			return 0, os.NewSyscallError("sendmmsg", errno)
		}
	}
}

// waitReadable arms the socket in the private epoll instance and parks
// until it is readable, the read deadline passes or the Conn is closed.
// Arming checks the socket's state, so a packet that came after the last
// read is not missed.
func (c *Conn) waitReadable() error {
	c.epMu.Lock()
	defer c.epMu.Unlock()
	c.mu.RLock()
	if c.closed.Load() {
		c.mu.RUnlock()
		return fmt.Errorf("rawsock: read: %w", net.ErrClosed)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(c.fd)}
	err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
	c.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("rawsock: epoll_ctl: %w", err)
	}
	var werr error
	err = c.epRC.Read(func(ep uintptr) bool {
		n, err := unix.EpollWait(int(ep), c.ev[:], 0)
		if err != nil && err != unix.EINTR {
			werr = os.NewSyscallError("epoll_wait", err)
			return true
		}
		return n > 0 // the one-shot event is taken, and the socket disarmed
	})
	switch {
	case c.closed.Load():
		return fmt.Errorf("rawsock: read: %w", net.ErrClosed)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("rawsock: read: %w", os.ErrDeadlineExceeded)
	case err != nil:
		return fmt.Errorf("rawsock: read: %w", err)
	}
	return werr
}

// pollLocked waits until fd is writable (for a writer whose send buffer
// is full: rare) or pollSafety passes; c.mu is held shared.
func (c *Conn) pollLocked(events int16, _ bool) error {
	pfd := []unix.PollFd{{Fd: int32(c.fd), Events: events}}
	_, err := unix.Poll(pfd, int(pollSafety/time.Millisecond))
	if err != nil && !errors.Is(err, unix.EINTR) {
		return os.NewSyscallError("poll", err)
	}
	return nil
}

// SetReadDeadline bounds the next ReadBatch; the zero time removes it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.ep.SetReadDeadline(t) }

// Close closes the socket; a blocked ReadBatch returns.
func (c *Conn) Close() error {
	if c.closed.Swap(true) {
		return fmt.Errorf("rawsock: close: %w", net.ErrClosed)
	}
	// shutdown(2) wakes a writer in poll(2) (raw sockets are
	// "unconnected", so it also answers ENOTCONN, which is expected);
	// closing the epoll instance's file wakes a parked reader.
	_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ep.Close()
	if err := unix.Close(c.fd); err != nil {
		return fmt.Errorf("rawsock: close: %w", err)
	}
	return nil
}

// pack points b's mmsghdrs at ms: buffers, control space and, for reads,
// room for the source address; for writes, the destination address.
func (b *batch) pack(ms []Message, read bool) error {
	if cap(b.hs) < len(ms) {
		b.hs = make([]unix.Mmsghdr, len(ms))
		b.sa = make([]unix.RawSockaddrInet6, len(ms))
	}
	nb := 0
	for i := range ms {
		nb += len(ms[i].Buffers)
	}
	if cap(b.iov) < nb {
		b.iov = make([]unix.Iovec, nb)
	}
	iov := b.iov[:nb]
	for i := range ms {
		m, h := &ms[i], &b.hs[i]
		*h = unix.Mmsghdr{}
		if len(m.Buffers) > 0 {
			v := iov[:len(m.Buffers)]
			iov = iov[len(m.Buffers):]
			for k, buf := range m.Buffers {
				v[k] = unix.Iovec{}
				if len(buf) > 0 {
					v[k].Base = &buf[0]
					v[k].SetLen(len(buf))
				}
			}
			h.Hdr.Iov = &v[0]
			h.Hdr.SetIovlen(len(v))
		}
		if len(m.OOB) > 0 {
			h.Hdr.Control = &m.OOB[0]
			h.Hdr.SetControllen(len(m.OOB))
		}
		sa := &b.sa[i]
		h.Hdr.Name = (*byte)(unsafe.Pointer(sa))
		if read {
			h.Hdr.Namelen = unix.SizeofSockaddrInet6
			continue
		}
		n, err := putSockaddr(sa, m.Addr)
		if err != nil {
			return err
		}
		h.Hdr.Namelen = n
	}
	return nil
}

// unpack copies lengths, flags and source addresses back into ms.
func (b *batch) unpack(ms []Message) {
	for i := range ms {
		m, h := &ms[i], &b.hs[i]
		m.N = int(h.Len)
		m.NN = int(h.Hdr.Controllen)
		m.Flags = int(h.Hdr.Flags)
		ia, ok := m.Addr.(*net.IPAddr)
		if !ok || ia == nil {
			ia = &net.IPAddr{}
			m.Addr = ia
		}
		sa := &b.sa[i]
		ia.Zone = ""
		switch sa.Family {
		case unix.AF_INET:
			s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
			ia.IP = append(ia.IP[:0], s4.Addr[:]...)
		case unix.AF_INET6:
			ia.IP = append(ia.IP[:0], sa.Addr[:]...)
			if sa.Scope_id != 0 {
				ia.Zone = zoneName(sa.Scope_id)
			}
		default:
			ia.IP = ia.IP[:0]
		}
	}
}

// putSockaddr writes a's address (a *net.IPAddr) into sa and returns its
// length.
func putSockaddr(sa *unix.RawSockaddrInet6, a net.Addr) (uint32, error) {
	ia, ok := a.(*net.IPAddr)
	if !ok || ia == nil {
		return 0, fmt.Errorf("rawsock: destination %v: not an IP address", a)
	}
	if ip4 := ia.IP.To4(); ip4 != nil {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET}
		copy(s4.Addr[:], ip4)
		return unix.SizeofSockaddrInet4, nil
	}
	if len(ia.IP) != net.IPv6len {
		return 0, fmt.Errorf("rawsock: destination %v: not an IP address", a)
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6}
	copy(sa.Addr[:], ia.IP)
	if ia.Zone != "" {
		ifi, err := net.InterfaceByName(ia.Zone)
		if err != nil {
			return 0, fmt.Errorf("rawsock: destination %v: zone: %w", a, err)
		}
		sa.Scope_id = uint32(ifi.Index)
	}
	return unix.SizeofSockaddrInet6, nil
}

func zoneName(index uint32) string {
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		return ifi.Name
	}
	return fmt.Sprint(index)
}
