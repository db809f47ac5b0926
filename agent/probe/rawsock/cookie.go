package rawsock

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// CookieKey is a per-process secret for probe cookies.
type CookieKey struct{ k0, k1 uint64 }

// NewCookieKey draws a random key.
func NewCookieKey() CookieKey {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return CookieKey{binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])}
}

// Cookie is SipHash-2-4 keyed by k over (dst, port, slot, counter): a probe's
// unforgeable identity. A reply that does not carry it was spoofed or is
// stale (its slot was reused).
func (k CookieKey) Cookie(dst netip.Addr, port uint16, slot uint32, ctr uint64) uint64 {
	a := dst.As16()
	m0 := binary.LittleEndian.Uint64(a[:8])
	m1 := binary.LittleEndian.Uint64(a[8:])
	m2 := uint64(port)<<32 | uint64(slot)
	return siphash24(k.k0, k.k1, m0, m1, m2, ctr)
}

// siphash24 hashes exactly four 64-bit words (32 bytes).
func siphash24(k0, k1 uint64, m ...uint64) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	for _, w := range m {
		v3 ^= w
		round()
		round()
		v0 ^= w
	}
	b := uint64(len(m)*8) << 56
	v3 ^= b
	round()
	round()
	v0 ^= b
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
