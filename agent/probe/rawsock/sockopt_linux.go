package rawsock

import (
	"encoding/binary"
	"fmt"
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
// namespace the engine was built in) and getsockname(2). No packet is sent.
type RouteSource struct{ fd int }

// NewRouteSource opens the IPv4 lookup socket.
func NewRouteSource() (*RouteSource, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rawsock: route lookup socket: %w", err)
	}
	return &RouteSource{fd: fd}, nil
}

// Lookup returns the source for dst (IPv4). Not safe for concurrent use.
func (r *RouteSource) Lookup(dst [4]byte) ([4]byte, error) {
	if err := unix.Connect(r.fd, &unix.SockaddrInet4{Port: 9, Addr: dst}); err != nil {
		return [4]byte{}, fmt.Errorf("rawsock: route to %v: %w", dst, err)
	}
	sa, err := unix.Getsockname(r.fd)
	if err != nil {
		return [4]byte{}, fmt.Errorf("rawsock: getsockname: %w", err)
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return [4]byte{}, fmt.Errorf("rawsock: getsockname: %w", ErrUnsupported)
	}
	return in4.Addr, nil
}

// Close closes the lookup socket.
func (r *RouteSource) Close() error { return unix.Close(r.fd) }
