//go:build linux

package rawsock

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

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
	k1, k2 := NewKey(), NewKey()
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
