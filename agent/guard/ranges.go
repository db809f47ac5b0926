package guard

import "net/netip"

// specialRanges are the IANA special-purpose registries (RFC 6890 and later
// additions) plus multicast and reserved space: nothing an outage monitor
// has a reason to probe on the public internet.
var specialRanges = mustPrefixes(
	// IPv4
	"0.0.0.0/8",          // "this network"
	"10.0.0.0/8",         // RFC 1918
	"100.64.0.0/10",      // CGNAT, RFC 6598
	"127.0.0.0/8",        // loopback
	"169.254.0.0/16",     // link-local
	"172.16.0.0/12",      // RFC 1918
	"192.0.0.0/24",       // IETF protocol assignments
	"192.0.2.0/24",       // TEST-NET-1
	"192.31.196.0/24",    // AS112-v4
	"192.52.193.0/24",    // AMT
	"192.88.99.0/24",     // deprecated 6to4 relay anycast
	"192.168.0.0/16",     // RFC 1918
	"192.175.48.0/24",    // direct delegation AS112
	"198.18.0.0/15",      // benchmarking
	"198.51.100.0/24",    // TEST-NET-2
	"203.0.113.0/24",     // TEST-NET-3
	"224.0.0.0/4",        // multicast
	"240.0.0.0/4",        // reserved
	"255.255.255.255/32", // limited broadcast
	// IPv6
	"::/128",        // unspecified
	"::1/128",       // loopback
	"::ffff:0:0/96", // IPv4-mapped (checked after Unmap; kept for safety)
	"64:ff9b:1::/48",
	"100::/64",      // discard-only
	"2001::/23",     // IETF protocol assignments (Teredo, ORCHID, ...)
	"2001:db8::/32", // documentation
	"2002::/16",     // 6to4
	"3fff::/20",     // documentation (RFC 9637)
	"5f00::/16",     // SRv6 SIDs
	"fc00::/7",      // unique local
	"fe80::/10",     // link-local
	"fec0::/10",     // deprecated site-local
	"ff00::/8",      // multicast
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// SpecialRange reports the special-purpose prefix containing addr, if any.
func SpecialRange(addr netip.Addr) (netip.Prefix, bool) {
	addr = addr.Unmap()
	for _, p := range specialRanges {
		if p.Contains(addr) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
