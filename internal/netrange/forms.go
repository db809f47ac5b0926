package netrange

import (
	"encoding/binary"
	"net/netip"
)

// Form is an IPv6 address format that carries an IPv4 address inside it.
type Form struct {
	Prefix netip.Prefix
	Name   string
	// Checked: a packet to an address of the form reaches the embedded
	// IPv4 host, so the embedded address is looked up in the IPv4 table
	// (and in the controller's blocklists). Otherwise the whole form is
	// in the table and refused.
	Checked bool
	// shift is where the embedded IPv4 address starts, in bits from the
	// left; xor obfuscates it (Teredo).
	shift int
	xor   uint32
}

// forms, each decided on its own:
//
//   - IPv4-mapped ::ffff:0:0/96 (RFC 4291): checked. The agent sends such a
//     target to the IPv4 address itself, so it is that host.
//   - NAT64 well-known prefix 64:ff9b::/96 (RFC 6052): checked. An agent on
//     an IPv6-only network reaches public IPv4 hosts through its NAT64, and
//     the NAT64 sends to the embedded address (the last 32 bits), so that
//     address decides, as if the target were written in IPv4: 64:ff9b::a00:1
//     is 10.0.0.1 and 64:ff9b::a9fe:a9fe is 169.254.169.254, a cloud's
//     metadata service. RFC 6052 forbids the well-known prefix for non-global
//     IPv4 anyway. The local-use 64:ff9b:1::/48 (RFC 8215) is refused whole:
//     where its IPv4 address sits depends on a local prefix length nobody
//     outside that network knows.
//   - IPv4-compatible ::a.b.c.d, ::/96 (RFC 4291, deprecated): refused
//     whole. Nothing is addressed this way any more; some stacks still
//     tunnel it to the IPv4 address.
//   - IPv4-translated ::ffff:0:a.b.c.d, ::ffff:0:0:0/96 (RFC 2765, dropped
//     by RFC 6145): refused whole; it only ever meant something inside a
//     translator.
//   - 6to4 2002:AABB:CCDD::/48 (RFC 3056), IPv4 in bits 16..48: refused
//     whole. The packet goes through whatever 6to4 relay is nearest
//     (anycast relays are deprecated, RFC 7526) to the IPv4 host, so the
//     path measured is not the target network's; and the agent always
//     refused it.
//   - Teredo 2001:0::/32 (RFC 4380), client IPv4 XOR 0xffffffff in the last
//     32 bits (the server's IPv4 in bits 32..64): refused whole, for the
//     same reason (a Teredo relay and the client's NAT are on the path),
//     and it is in 2001::/23 anyway.
var forms = []Form{
	{Prefix: pfx("::ffff:0:0/96"), Name: "IPv4-mapped (RFC 4291)", Checked: true, shift: 96},
	{Prefix: pfx("64:ff9b::/96"), Name: "NAT64 well-known prefix (RFC 6052)", Checked: true, shift: 96},
	{Prefix: pfx("::/96"), Name: "IPv4-compatible (RFC 4291)", shift: 96},
	{Prefix: pfx("::ffff:0:0:0/96"), Name: "IPv4-translated (RFC 2765)", shift: 96},
	{Prefix: pfx("2002::/16"), Name: "6to4 (RFC 3056)", shift: 16},
	{Prefix: pfx("2001::/32"), Name: "Teredo (RFC 4380)", shift: 96, xor: 0xffffffff},
}

// Forms returns the IPv4-embedding forms.
func Forms() []Form { return append([]Form(nil), forms...) }

// formOf returns the form p lies in, if any.
func formOf(p netip.Prefix) (Form, bool) {
	for _, f := range forms {
		if p.Bits() >= f.Prefix.Bits() && f.Prefix.Contains(p.Addr()) {
			return f, true
		}
	}
	return Form{}, false
}

// EmbeddedIPv4 returns, for a prefix in or over a checked form, the IPv4
// prefix its packets reach: 64:ff9b::a00:0/120 gives 10.0.0.0/24, and a
// prefix holding all of 64:ff9b::/96 gives 0.0.0.0/0. The controller checks
// it against its blocklists as well as p itself.
func EmbeddedIPv4(p netip.Prefix) (netip.Prefix, Form, bool) {
	p = p.Masked()
	for _, f := range forms {
		if !f.Checked {
			continue
		}
		if v4, ok := f.embeddedPrefix(p); ok {
			return v4, f, true
		}
	}
	return netip.Prefix{}, Form{}, false
}

// embeddedPrefix is the IPv4 prefix of the addresses of f that p holds;
// false when p and f are disjoint.
func (f Form) embeddedPrefix(p netip.Prefix) (netip.Prefix, bool) {
	switch {
	case !p.Addr().Is6() || !p.Overlaps(f.Prefix):
		return netip.Prefix{}, false
	case p.Bits() <= f.Prefix.Bits():
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), true // p holds the whole form
	}
	bits := min(p.Bits()-f.shift, 32)
	if bits < 0 {
		bits = 0
	}
	return netip.PrefixFrom(f.v4(p.Addr()), bits).Masked(), true
}

// embeddedHost is the IPv4 address a host of f embeds (for messages);
// invalid for a prefix wider than the embedded address.
func (f Form) embeddedHost(p netip.Prefix) netip.Prefix {
	if p.Bits() < f.shift+32 {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(f.v4(p.Addr()), 32)
}

// v4 reads the 32 bits at f.shift of a (an IPv6 address).
func (f Form) v4(a netip.Addr) netip.Addr {
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var v uint32
	switch {
	case f.shift+32 <= 64:
		v = uint32(hi >> (64 - f.shift - 32))
	case f.shift >= 64:
		v = uint32(lo >> (128 - f.shift - 32))
	default: // straddles the halves
		v = uint32(hi<<(f.shift-32)) | uint32(lo>>(128-f.shift-32))
	}
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v^f.xor)
	return netip.AddrFrom4(out)
}
