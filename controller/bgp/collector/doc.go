// Package collector feeds the routing view (package bgp) from the network
// and from files: passive eBGP sessions, a BMP station and MRT dumps, each
// turned into bgp.Updates and bgp.PeerEvents for a bgp.Sink.
//
// Why it exists: active probes say a network went dark; BGP says whether
// its prefixes were withdrawn, by whom and when. Operators give vantage
// that view in one of three ways, and this package speaks all three:
//
//   - eBGP: routers (or a route server) peer with the collector, which
//     listens only (it never connects out, announces nothing and never
//     touches the kernel's routing table). The sessions are GoBGP's
//     (github.com/osrg/gobgp/v3 as a library), not a home-made BGP; the
//     collector reads each peer's Adj-RIB-In before any policy.
//   - BMP (RFC 7854): routers stream their peers' Adj-RIB-In to the
//     collector's station, which parses it with GoBGP's packet/bmp.
//   - MRT (RFC 6396): RIS and RouteViews dumps (update files and
//     TABLE_DUMP_V2 RIB snapshots) are read with ReadMRT; WriteMRT records
//     a feed in the same format, so a live capture can be replayed.
//
// Everything that arrives from the network or a file is untrusted: message
// sizes are capped, reads have deadlines, parse failures (GoBGP's parsers
// included) become errors, never panics, and every Update is checked with
// bgp.Update.Validate before it reaches the sink.
package collector
