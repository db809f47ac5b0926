//go:build linux

package rawsock

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	binary.NativeEndian.PutUint64(b[0:8], uint64(unix.CmsgLen(len(data))))
	binary.NativeEndian.PutUint32(b[8:12], uint32(level))
	binary.NativeEndian.PutUint32(b[12:16], uint32(typ))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func TestParseOOB(t *testing.T) {
	if unix.SizeofCmsghdr != 16 {
		t.Skip("64-bit Linux layout only")
	}
	ts := make([]byte, 16)
	binary.NativeEndian.PutUint64(ts[0:], 1700000000)
	binary.NativeEndian.PutUint64(ts[8:], 123456789)
	hop := make([]byte, 4)
	binary.NativeEndian.PutUint32(hop, 57)
	both := append(cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts), cmsg(unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, hop)...)
	tests := []struct {
		name    string
		oob     []byte
		wantTS  time.Time
		wantHop int
	}{
		{"timestamp and hop limit", both, time.Unix(1700000000, 123456789), 57},
		{"hop limit only", cmsg(unix.IPPROTO_IPV6, unix.IPV6_HOPLIMIT, hop), time.Time{}, 57},
		{"truncated", both[:20], time.Time{}, 0},
		{"length past the end", append([]byte{0xff, 0xff}, both[2:]...), time.Time{}, 0},
		{"empty", nil, time.Time{}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, hop := ParseOOB(tc.oob)
			if !ts.Equal(tc.wantTS) || hop != tc.wantHop {
				t.Fatalf("ParseOOB = %v, %d; want %v, %d", ts, hop, tc.wantTS, tc.wantHop)
			}
		})
	}
}

func TestCookie(t *testing.T) {
	k1, k2 := NewCookieKey(), NewCookieKey()
	a := netip.MustParseAddr("198.18.0.1")
	c := k1.Cookie(a, 0, 7, 1)
	if c != k1.Cookie(a, 0, 7, 1) {
		t.Fatal("cookie is not deterministic")
	}
	for name, other := range map[string]uint64{
		"other key":     k2.Cookie(a, 0, 7, 1),
		"other addr":    k1.Cookie(netip.MustParseAddr("198.18.0.2"), 0, 7, 1),
		"other port":    k1.Cookie(a, 80, 7, 1),
		"other slot":    k1.Cookie(a, 0, 8, 1),
		"other counter": k1.Cookie(a, 0, 7, 2),
	} {
		if other == c {
			t.Errorf("%s: same cookie", name)
		}
	}
}

func TestChecksum(t *testing.T) {
	// RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2, checksum 220d.
	if got := Checksum(0, []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0x220d {
		t.Fatalf("Checksum = %#x, want 0x220d", got)
	}
}

func listenOrSkip(t *testing.T, v6 bool) *Conn {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw sockets")
	}
	c, err := Listen(v6, ICMP, Options{RecvBuf: 1 << 20})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRealBatchLoopback sends echo requests to loopback with WriteBatch
// and reads them back (a raw ICMP socket sees requests and replies) with
// ReadBatchNow and ReadBatch: addresses, lengths, kernel timestamps, and
// no allocation once the messages hold their addresses.
func TestRealBatchLoopback(t *testing.T) {
	c := listenOrSkip(t, false)
	const n = 4
	out := make([]Message, n)
	for i := range out {
		req := []byte{8, 0, 0, 0, 0x12, 0x34, 0, byte(i), 'v', 'a', 'n', 't'}
		binary.BigEndian.PutUint16(req[2:], Checksum(0, req))
		out[i] = Message{Buffers: [][]byte{req}, Addr: &net.IPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}}
	}
	if sent, err := c.WriteBatch(out); err != nil || sent != n {
		t.Fatalf("WriteBatch = %d, %v; want %d", sent, err, n)
	}
	in := make([]Message, 2*n)
	for i := range in {
		in[i] = Message{Buffers: [][]byte{make([]byte, 1500)}, OOB: make([]byte, OOBSize)}
	}
	seen := map[netip.Addr]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		got, err := c.ReadBatch(in)
		if err != nil {
			t.Fatalf("ReadBatch: %v", err)
		}
		for _, m := range in[:got] {
			ts, _ := ParseOOB(m.OOB[:m.NN])
			if m.N < 20+12 || ts.IsZero() {
				t.Fatalf("message of %d bytes, timestamp %v", m.N, ts)
			}
			seen[AddrOf(m.Addr)] = true
		}
	}
	for i := range n {
		if a := netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)}); !seen[a] {
			t.Errorf("nothing read from %s (saw %v)", a, seen)
		}
	}
	for {
		got, err := c.ReadBatchNow(in)
		if err != nil {
			t.Fatalf("ReadBatchNow: %v", err)
		}
		if got == 0 {
			break
		}
	}
	if a := testing.AllocsPerRun(20, func() { _, _ = c.ReadBatchNow(in) }); a != 0 {
		t.Errorf("ReadBatchNow: %v allocations, want 0", a)
	}
}

func TestRealCloseWakesReader(t *testing.T) {
	c := listenOrSkip(t, false)
	in := []Message{{Buffers: [][]byte{make([]byte, 1500)}, OOB: make([]byte, OOBSize)}}
	done := make(chan error, 1)
	go func() {
		_, err := c.ReadBatch(in)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; !IsClosed(err) {
		t.Fatalf("ReadBatch after Close: %v, want a closed error", err)
	}
	if d := time.Since(start); d >= pollSafety {
		t.Errorf("the reader returned after %v: Close did not wake it", d)
	}
	if _, err := c.WriteBatch(in); !IsClosed(err) {
		t.Fatalf("WriteBatch after Close: %v, want a closed error", err)
	}
}

func TestRealReadDeadline(t *testing.T) {
	c := listenOrSkip(t, true)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	in := []Message{{Buffers: [][]byte{make([]byte, 1500)}, OOB: make([]byte, OOBSize)}}
	// ICMPv6 traffic on loopback is possible in a busy test run: read
	// until the deadline error.
	for range 100 {
		if _, err := c.ReadBatch(in); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("ReadBatch: %v, want a deadline error", err)
			}
			return
		}
	}
	t.Fatal("no deadline error")
}

// TestRealSendOnly: a send-only socket's packets go out (the other socket
// sees the request and the reply) and it receives nothing itself.
func TestRealSendOnly(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(t *testing.T) {
			c := listenOrSkip(t, v6)
			s, err := Listen(v6, ICMP, Options{SendOnly: true})
			if err != nil {
				t.Fatalf("Listen send-only: %v", err)
			}
			defer s.Close()
			req := []byte{8, 0, 0, 0, 0x43, 0x21, 0, 1, 's', 'e', 'n', 'd'}
			dst := net.IPv4(127, 0, 0, 9)
			if v6 {
				req[0] = 128 // the kernel fills the ICMPv6 checksum
				dst = net.IPv6loopback
			} else {
				binary.BigEndian.PutUint16(req[2:], Checksum(0, req))
			}
			if n, err := s.WriteBatch([]Message{{Buffers: [][]byte{req}, Addr: &net.IPAddr{IP: dst}}}); err != nil || n != 1 {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			in := make([]Message, 8)
			for i := range in {
				in[i] = Message{Buffers: [][]byte{make([]byte, 1500)}, OOB: make([]byte, OOBSize)}
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := false
			for !got {
				n, err := c.ReadBatch(in)
				if err != nil {
					t.Fatalf("ReadBatch: %v", err)
				}
				for _, m := range in[:n] {
					b := m.Buffers[0][:m.N]
					if !v6 && len(b) > 20 {
						b = b[20:]
					}
					got = got || len(b) >= 8 && b[4] == 0x43 && b[5] == 0x21
				}
			}
			if n, err := s.ReadBatchNow(in); n != 0 || err != nil {
				t.Fatalf("send-only socket read %d packets (%v), want none", n, err)
			}
		})
	}
}

// TestRealDontFragment: requests from a DontFragment socket carry DF and
// IP id 0 (the kernel chose no id).
func TestRealDontFragment(t *testing.T) {
	c := listenOrSkip(t, false)
	s, err := Listen(false, ICMP, Options{SendOnly: true, DontFragment: true})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer s.Close()
	req := []byte{8, 0, 0, 0, 0x44, 0x46, 0, 1, 'd', 'f', '!', '!'}
	binary.BigEndian.PutUint16(req[2:], Checksum(0, req))
	if n, err := s.WriteBatch([]Message{{Buffers: [][]byte{req}, Addr: &net.IPAddr{IP: net.IPv4(127, 0, 0, 7)}}}); err != nil || n != 1 {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	in := make([]Message, 8)
	for i := range in {
		in[i] = Message{Buffers: [][]byte{make([]byte, 1500)}, OOB: make([]byte, OOBSize)}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := c.ReadBatch(in)
		if err != nil {
			t.Fatalf("ReadBatch: %v", err)
		}
		for _, m := range in[:n] {
			b := m.Buffers[0][:m.N]
			if len(b) < 28 || b[20] != 8 || b[24] != 0x44 || b[25] != 0x46 {
				continue // not our request
			}
			if b[6]&0x40 == 0 || b[4] != 0 || b[5] != 0 {
				t.Fatalf("request flags/offset %#x%02x, id %#x%02x: want DF and id 0", b[6], b[7], b[4], b[5])
			}
			return
		}
	}
}

// loopbackBroadcast is a broadcast route's address on loopback from the
// local routing table (127.255.255.255 for 127.0.0.0/8): a subnet
// broadcast of this host that only reaches loopback.
func loopbackBroadcast(t *testing.T) net.IP {
	t.Helper()
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_BROADCAST}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
	if err != nil {
		t.Fatalf("list local routes: %v", err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP.IsLoopback() {
			return r.Dst.IP
		}
	}
	t.Skip("no broadcast route on loopback in the local routing table")
	return nil
}

// TestRealNoLocalBroadcast: the raw IPv4 socket does not have SO_BROADCAST,
// so a packet to a broadcast address of the host's own subnets (which the
// guard cannot know) is refused by the kernel with EACCES, not sent.
func TestRealNoLocalBroadcast(t *testing.T) {
	c := listenOrSkip(t, false)
	bcast := loopbackBroadcast(t)
	req := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'v', 'a', 'n', 't'}
	binary.BigEndian.PutUint16(req[2:], Checksum(0, req))
	sent, err := c.WriteBatch([]Message{{Buffers: [][]byte{req}, Addr: &net.IPAddr{IP: bcast}}})
	if !errors.Is(err, unix.EACCES) {
		t.Fatalf("WriteBatch to %s = %d, %v; want EACCES (no SO_BROADCAST)", bcast, sent, err)
	}
	t.Logf("send to %s: %v", bcast, err)
}
