package rawsock

import (
	"errors"
	"net/netip"
	"testing"
)

func TestIPv4Header(t *testing.T) {
	hdr := func(vihl byte, n int) []byte {
		b := make([]byte, n)
		b[0] = vihl
		return b
	}
	tests := []struct {
		name    string
		b       []byte
		wantLen int
		wantErr error
	}{
		{"plain 20 bytes", hdr(0x45, 20), 20, nil},
		{"with options, datagram cut", hdr(0x46, 26), 24, nil},
		{"short", hdr(0x45, 19), 0, ErrTruncated},
		{"options missing", hdr(0x4f, 40), 0, ErrTruncated},
		{"IPv6", hdr(0x60, 40), 0, ErrMalformed},
		{"header length below 20", hdr(0x44, 20), 0, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := IPv4Header(tc.b)
			if n != tc.wantLen || !errors.Is(err, tc.wantErr) {
				t.Fatalf("IPv4Header = %d, %v; want %d, %v", n, err, tc.wantLen, tc.wantErr)
			}
		})
	}
}

// TestPseudoSum checks a UDP datagram whose checksum was computed by hand
// (RFC 768) verifies to 0 with the pseudo-header sum.
func TestPseudoSum(t *testing.T) {
	src, dst := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2")
	udp := []byte{0x30, 0x39, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00, 'h', 'i'}
	sum := PseudoSum(src, dst, 17, len(udp))
	c := Checksum(sum, udp)
	udp[6], udp[7] = byte(c>>8), byte(c)
	if got := Checksum(sum, udp); got != 0 {
		t.Fatalf("checksum over a datagram with its checksum = %#x, want 0", got)
	}
	// The same by hand: the pseudo-header's words, then the datagram's.
	var hand uint32
	for _, w := range []uint32{0xc000, 0x0201, 0xc633, 0x6402, 17, 10, 0x3039, 0x0035, 0x000a, 0x6869} {
		hand += w
	}
	if want := ^Fold(hand); c != want {
		t.Fatalf("checksum %#x, want %#x", c, want)
	}
	if s6 := PseudoSum(netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 58, 8); s6 != 0x2001+0x0db8+1+0x2001+0x0db8+2+58+8 {
		t.Fatalf("IPv6 pseudo-header sum %#x", s6)
	}
}

// TestQuoted reads the IP header of a quoted datagram of each family.
func TestQuoted(t *testing.T) {
	q4 := make([]byte, 28)
	q4[0], q4[8], q4[9] = 0x45, 1, 17
	copy(q4[16:20], []byte{198, 18, 0, 1})
	q6 := make([]byte, 48)
	q6[0], q6[6], q6[7] = 0x60, 58, 2
	copy(q6[24:40], netip.MustParseAddr("2001:db8::1").AsSlice())
	tests := []struct {
		name    string
		parse   func([]byte) (Quoted, error)
		q       []byte
		want    Quoted
		wantErr error
	}{
		{"IPv4", QuotedIPv4, q4, Quoted{Dst: netip.MustParseAddr("198.18.0.1"), TTL: 1, Proto: 17}, nil},
		{"IPv4 short", QuotedIPv4, q4[:19], Quoted{}, ErrTruncated},
		{"IPv6", QuotedIPv6, q6, Quoted{Dst: netip.MustParseAddr("2001:db8::1"), TTL: 2, Proto: 58}, nil},
		{"IPv6 short", QuotedIPv6, q6[:39], Quoted{}, ErrTruncated},
		{"IPv4 as IPv6", QuotedIPv6, append(q4, make([]byte, 20)...), Quoted{}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.parse(tc.q)
			if got.Dst != tc.want.Dst || got.TTL != tc.want.TTL || got.Proto != tc.want.Proto || !errors.Is(err, tc.wantErr) {
				t.Fatalf("= %+v, %v; want %+v, %v", got, err, tc.want, tc.wantErr)
			}
			if err == nil && len(got.L4) != 8 {
				t.Fatalf("L4 is %d bytes, want 8", len(got.L4))
			}
		})
	}
}
