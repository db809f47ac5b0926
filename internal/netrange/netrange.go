// Package netrange is the one table of special-purpose address ranges that
// vantage refuses to probe, and the rules for IPv6 forms that carry an IPv4
// address inside them.
//
// It exists because two independent guards enforce that policy: the
// controller refuses campaigns aimed at these ranges (controller/campaign),
// and every agent refuses tasks aimed at them whatever the controller says
// (agent/guard). The two sides kept their own tables and drifted apart (each
// lacked ranges the other refused), so a campaign could be accepted that
// every agent then refused, or the controller could be the only line for a
// range. Both sides now use this table, and a test checks that whatever one
// side refuses, the other refuses too.
//
// The table is the IANA special-purpose registries (RFC 6890 and later
// additions) plus multicast and reserved space: nothing an outage monitor
// has a reason to probe on the public internet. Some of those blocks are
// marked globally reachable by IANA (AS112, AMT, parts of 2001::/23); they
// are refused all the same, because they are anycast service addresses, not
// a country's hosts.
//
// IPv6 forms that embed an IPv4 address are decided per form (forms.go):
// where a packet to the IPv6 address reaches the embedded IPv4 host (NAT64's
// well-known prefix, IPv4-mapped), the embedded address is checked against
// the IPv4 table; the other forms are refused whole.
package netrange

import "net/netip"

// Range is one refused block and what it is, with its RFC.
type Range struct {
	Prefix netip.Prefix
	// Name says what the block is, with its RFC, e.g. "private use (RFC 1918)".
	Name string
}

// table is the special-purpose table, IPv4 then IPv6. Blocks nested in
// another keep their own entry when their name says more (Lookup names the
// most specific one).
var table = []Range{
	{pfx("0.0.0.0/8"), "this network (RFC 791)"},
	{pfx("10.0.0.0/8"), "private use (RFC 1918)"},
	{pfx("100.64.0.0/10"), "shared address space (RFC 6598)"},
	{pfx("127.0.0.0/8"), "loopback (RFC 1122)"},
	{pfx("169.254.0.0/16"), "link local (RFC 3927)"},
	{pfx("172.16.0.0/12"), "private use (RFC 1918)"},
	{pfx("192.0.0.0/24"), "IETF protocol assignments (RFC 6890)"},
	{pfx("192.0.2.0/24"), "documentation TEST-NET-1 (RFC 5737)"},
	{pfx("192.31.196.0/24"), "AS112-v4 (RFC 7535)"},
	{pfx("192.52.193.0/24"), "AMT (RFC 7450)"},
	{pfx("192.88.99.0/24"), "6to4 relay anycast (RFC 7526)"},
	{pfx("192.168.0.0/16"), "private use (RFC 1918)"},
	{pfx("192.175.48.0/24"), "direct delegation AS112 service (RFC 7534)"},
	{pfx("198.18.0.0/15"), "benchmarking (RFC 2544)"},
	{pfx("198.51.100.0/24"), "documentation TEST-NET-2 (RFC 5737)"},
	{pfx("203.0.113.0/24"), "documentation TEST-NET-3 (RFC 5737)"},
	{pfx("224.0.0.0/4"), "multicast (RFC 5771)"},
	{pfx("240.0.0.0/4"), "reserved (RFC 1112)"},
	{pfx("255.255.255.255/32"), "limited broadcast (RFC 919)"},

	{pfx("::/96"), "IPv4-compatible, deprecated (RFC 4291)"},
	{pfx("::/128"), "unspecified (RFC 4291)"},
	{pfx("::1/128"), "loopback (RFC 4291)"},
	{pfx("::ffff:0:0:0/96"), "IPv4-translated (RFC 2765)"},
	{pfx("64:ff9b:1::/48"), "local-use IPv4/IPv6 translation (RFC 8215)"},
	{pfx("100::/64"), "discard-only (RFC 6666)"},
	{pfx("2001::/23"), "IETF protocol assignments (RFC 2928)"},
	{pfx("2001::/32"), "Teredo (RFC 4380)"},
	{pfx("2001:2::/48"), "benchmarking (RFC 5180)"},
	{pfx("2001:10::/28"), "ORCHID (RFC 4843)"},
	{pfx("2001:20::/28"), "ORCHIDv2 (RFC 7343)"},
	{pfx("2001:db8::/32"), "documentation (RFC 3849)"},
	{pfx("2002::/16"), "6to4 (RFC 3056)"},
	{pfx("2620:4f:8000::/48"), "direct delegation AS112 service (RFC 7534)"},
	{pfx("3fff::/20"), "documentation (RFC 9637)"},
	{pfx("5f00::/16"), "segment routing SIDs (RFC 9602)"},
	{pfx("fc00::/7"), "unique local (RFC 4193)"},
	{pfx("fe80::/10"), "link local (RFC 4291)"},
	{pfx("fec0::/10"), "site local, deprecated (RFC 3879)"},
	{pfx("ff00::/8"), "multicast (RFC 4291)"},
}

var special = NewSet(table)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// Special returns a copy of the special-purpose table, IPv4 first.
func Special() []Range { return append([]Range(nil), table...) }

// Match says why an address or prefix is special.
type Match struct {
	// Range is the special-purpose block hit: for an address, the most
	// specific block holding it; for a prefix, the most specific block
	// holding all of it, else one inside it. Through a checked form it is
	// an IPv4 block.
	Range Range
	// Form is set (Form.Prefix valid) when the query is in an IPv6 form
	// that embeds IPv4: a checked form whose embedded address hit Range,
	// or a refused form that is Range itself.
	Form Form
	// Embedded is the IPv4 address or prefix the query embeds, when Form
	// is set and it can be decoded (0.0.0.0/0 when the query holds the
	// whole of a checked form).
	Embedded netip.Prefix
}

// String describes the match after the subject, e.g. "is in 10.0.0.0/8
// (private use (RFC 1918))", or "embeds 10.0.0.1/32 (NAT64 well-known
// prefix 64:ff9b::/96 (RFC 6052)), which is in 10.0.0.0/8 (...)".
func (m Match) String() string {
	in := "is in " + m.Range.Prefix.String() + " (" + m.Range.Name + ")"
	switch {
	case !m.Form.Prefix.IsValid():
		return in
	case m.Form.Checked:
		return "embeds " + m.Embedded.String() + " (" + m.Form.Name + " " + m.Form.Prefix.String() + "), which " + in
	case m.Embedded.IsValid():
		return in + ", a form refused whole; it embeds " + m.Embedded.String()
	default:
		return in + ", a form refused whole"
	}
}

// Lookup reports whether addr is special: in the table, or an IPv6 form
// whose embedded IPv4 address is. IPv4-mapped addresses are looked up as
// the IPv4 address they map.
func Lookup(addr netip.Addr) (Match, bool) {
	if !addr.IsValid() {
		return Match{}, false
	}
	addr = addr.WithZone("").Unmap()
	return LookupPrefix(netip.PrefixFrom(addr, addr.BitLen()))
}

// LookupPrefix reports whether any address of p is special (see Lookup).
func LookupPrefix(p netip.Prefix) (Match, bool) {
	if !p.IsValid() {
		return Match{}, false
	}
	p = p.Masked()
	if r, ok := special.Overlap(p); ok {
		m := Match{Range: r}
		if f, ok := formOf(p); ok && !f.Checked && f.Prefix == r.Prefix {
			m.Form, m.Embedded = f, f.embeddedHost(p)
		}
		return m, true
	}
	for _, f := range forms {
		if !f.Checked {
			continue
		}
		v4, ok := f.embeddedPrefix(p)
		if !ok {
			continue
		}
		if r, ok := special.Overlap(v4); ok {
			return Match{Range: r, Form: f, Embedded: v4}, true
		}
	}
	return Match{}, false
}
