package rawsock

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func sockopts(fd, rcvbuf int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	if rcvbuf > 0 {
		// FORCE passes the rmem_max cap with CAP_NET_ADMIN; otherwise the
		// plain option gives what the cap allows.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
				return fmt.Errorf("SO_RCVBUF: %w", err)
			}
		}
	}
	return nil
}

// ParseOOB reads the kernel receive timestamp (SCM_TIMESTAMPNS) and the
// IPv6 hop limit (IPV6_HOPLIMIT) from a control-message buffer without
// allocating. Missing values are zero; a malformed buffer yields zeros.
func ParseOOB(oob []byte) (ts time.Time, hopLimit int) {
	const hdr = unix.SizeofCmsghdr
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
			return ts, hopLimit
		}
		data := oob[hdr:l]
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && len(data) >= 16 && hdr == 16:
			sec := int64(binary.NativeEndian.Uint64(data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(data[8:16]))
			ts = time.Unix(sec, nsec)
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_HOPLIMIT && len(data) >= 4:
			hopLimit = int(int32(binary.NativeEndian.Uint32(data[0:4])))
		}
		next := (l + hdr/2 - 1) &^ (hdr/2 - 1) // CMSG_ALIGN to the word size
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return ts, hopLimit
}

// RouteSource finds the source address the kernel would use towards a
// destination: connect(2) on a UDP socket opened once (so in the network
// namespace the prober was built in) and getsockname(2). No packet is
// sent. It is safe for concurrent use.
type RouteSource struct {
	mu sync.Mutex
	fd int
	v6 bool
}

// NewRouteSource opens the lookup socket of one family.
func NewRouteSource(v6 bool) (*RouteSource, error) {
	af := unix.AF_INET
	if v6 {
		af = unix.AF_INET6
	}
	fd, err := unix.Socket(af, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("rawsock: route lookup socket: %w", err)
	}
	return &RouteSource{fd: fd, v6: v6}, nil
}

// routePort is the destination port of the lookups (nothing is sent).
const routePort = 9

// Lookup returns the source for dst, of the RouteSource's family.
func (r *RouteSource) Lookup(dst netip.Addr) (netip.Addr, error) {
	var sa unix.Sockaddr
	switch {
	case r.v6:
		sa = &unix.SockaddrInet6{Port: routePort, Addr: dst.As16()}
	case dst.Is4():
		sa = &unix.SockaddrInet4{Port: routePort, Addr: dst.As4()}
	default:
		return netip.Addr{}, fmt.Errorf("no route to %s: not an IPv4 address", dst)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := unix.Connect(r.fd, sa); err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %s: %w", dst, err)
	}
	got, err := unix.Getsockname(r.fd)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("rawsock: getsockname: %w", err)
	}
	switch a := got.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(a.Addr), nil
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(a.Addr), nil
	}
	return netip.Addr{}, fmt.Errorf("rawsock: getsockname: %w", ErrUnsupported)
}

// Close closes the lookup socket.
func (r *RouteSource) Close() error { return unix.Close(r.fd) }
