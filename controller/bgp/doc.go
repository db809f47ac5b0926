// Package bgp keeps the routing view vantage joins to its verdicts: for
// every prefix a campaign monitors (and the prefixes covering it or more
// specific than it), each peer's current route, every announcement and
// withdrawal with its time, the visibility (IODA's rule: over 50% of the
// full-feed peers with a session up have a route) and the update rate
// against the prefix's own baseline (Dyn's "routing instability").
//
// Active probes say that a country is dark and where its paths die; BGP
// says who withdrew what, and when. The view is pure bookkeeping over
// Updates and PeerEvents, whatever their source (the collector's passive
// eBGP sessions and BMP station, MRT imports, the store on replay), so the
// same updates give the same evidence live and in a replay: StateAt(t)
// reads only what happened at or before t.
package bgp
