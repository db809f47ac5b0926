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
