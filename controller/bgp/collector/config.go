package collector

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Default ports. 1179 rather than 179: the collector listens and peers
// connect to it, so it needs no privilege; routers can dial any port.
// 11019 is the port BMP clients (GoBGP's among them) default to.
const (
	DefaultBGPPort = 1179
	DefaultBMPPort = 11019
	// DefaultBMPMaxConns is how many routers may stream BMP at once.
	DefaultBMPMaxConns = 16
)

// asTrans (RFC 6793) stands in for a 4-byte AS on 2-byte sessions; no
// peer has it as its own AS.
const asTrans = 23456

// ErrConfig wraps every Config and PeerConfig validation error.
var ErrConfig = errors.New("invalid collector config")

// Config is the collector's schema. Validate names the field at fault the
// way a YAML file would spell it.
type Config struct {
	// LocalAS and RouterID are the collector's in its BGP sessions
	// (RouterID is an IPv4 address: the BGP identifier is 32 bits).
	LocalAS  uint32     `yaml:"local_as"`
	RouterID netip.Addr `yaml:"router_id"`
	// BGPListen is "host:port" (an IP literal) for the eBGP listener, ""
	// for none. Port 0 picks a free port (see Collector.BGPAddr).
	BGPListen string       `yaml:"bgp_listen"`
	Peers     []PeerConfig `yaml:"peers"`
	// BMPListen is "host:port" for the BMP station, "" for none.
	BMPListen string `yaml:"bmp_listen"`
	// BMPMaxConns caps concurrent BMP connections; 0 is
	// DefaultBMPMaxConns. Connections beyond it are closed at once.
	BMPMaxConns int `yaml:"bmp_max_conns"`
}

// PeerConfig is one eBGP neighbor. Only configured neighbors can open a
// session; any other connection is refused by GoBGP.
type PeerConfig struct {
	Addr netip.Addr `yaml:"addr"`
	AS   uint32     `yaml:"as"`
	// Multihop: the peer is more than one hop away (eBGP multihop, TTL
	// 255). Without it the session is single-hop (TTL 1).
	Multihop bool `yaml:"multihop"`
	// Active lets the collector connect out to the peer (port 179). The
	// zero value is passive, which is what production wants: the collector
	// only accepts connections. It is Active rather than a Passive that
	// defaults to true because a forgotten bool must not make the
	// collector dial out.
	Active bool `yaml:"active"`
	// FullFeed: the peer sends a full table, so it counts in visibility
	// (bgp.PeerEvent.FullFeed). ParsePeer defaults it to true.
	FullFeed    bool   `yaml:"full_feed"`
	Description string `yaml:"description"`
}

func configErr(field, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, a...))
}

// Validate checks c, naming the first field at fault.
func (c Config) Validate() error {
	if c.BGPListen == "" && c.BMPListen == "" && len(c.Peers) == 0 {
		return configErr("bgp_listen", "empty, and so are bmp_listen and peers: nothing to collect")
	}
	if err := checkListen("bmp_listen", c.BMPListen); err != nil {
		return err
	}
	if c.BMPMaxConns < 0 {
		return configErr("bmp_max_conns", "%d is negative", c.BMPMaxConns)
	}
	if c.BGPListen == "" && len(c.Peers) == 0 {
		return nil // BMP only: the BGP fields are unused
	}
	if err := checkListen("bgp_listen", c.BGPListen); err != nil {
		return err
	}
	if err := checkAS("local_as", c.LocalAS); err != nil {
		return err
	}
	if !c.RouterID.IsValid() {
		return configErr("router_id", "missing")
	}
	if !c.RouterID.Is4() {
		return configErr("router_id", "%s is not an IPv4 address (the BGP identifier is 32 bits)", c.RouterID)
	}
	seen := make(map[netip.Addr]int, len(c.Peers))
	for i, p := range c.Peers {
		field := fmt.Sprintf("peers[%d]", i)
		if err := p.validate(field + "."); err != nil {
			return err
		}
		if j, dup := seen[p.Addr]; dup {
			return configErr(field+".addr", "%s is also peers[%d]", p.Addr, j)
		}
		seen[p.Addr] = i
		if !p.Active && c.BGPListen == "" {
			return configErr(field+".active", "false, and bgp_listen is empty: the peer could never connect")
		}
	}
	return nil
}

// validate names the fields prefix+"addr" and prefix+"as".
func (p PeerConfig) validate(prefix string) error {
	switch {
	case !p.Addr.IsValid():
		return configErr(prefix+"addr", "missing")
	case p.Addr.Zone() != "":
		return configErr(prefix+"addr", "%s has a zone", p.Addr)
	case p.Addr.Is4In6():
		return configErr(prefix+"addr", "%s is IPv4-mapped; write %s", p.Addr, p.Addr.Unmap())
	case p.Addr.IsUnspecified() || p.Addr.IsMulticast():
		return configErr(prefix+"addr", "%s is not a unicast address", p.Addr)
	}
	return checkAS(prefix+"as", p.AS)
}

func checkAS(field string, as uint32) error {
	switch as {
	case 0:
		return configErr(field, "0 is not an AS number")
	case asTrans:
		return configErr(field, "%d is AS_TRANS, not an AS number", as)
	}
	return nil
}

// checkListen accepts "" or "IP:port".
func checkListen(field, hostport string) error {
	if hostport == "" {
		return nil
	}
	_, err := parseListen(hostport)
	if err != nil {
		return configErr(field, "%v", err)
	}
	return nil
}

func parseListen(hostport string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not host:port: %w", hostport, err)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: the host must be an IP address: %w", hostport, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: bad port: %w", hostport, err)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(n)), nil
}

// ParsePeer parses a peer flag value:
//
//	ADDR,as=N[,multihop][,active|passive][,full|partial][,desc=TEXT]
//
// for example "198.51.100.33,as=64511,multihop,partial". ADDR is an IPv4
// or IPv6 address and as= is required. The defaults are single-hop,
// passive (the collector only listens) and full feed (counted in
// visibility); "partial" is a peer that sends only some routes. desc= is
// free text without commas. Options may come in any order; unknown
// options are errors.
func ParsePeer(s string) (PeerConfig, error) {
	fields := strings.Split(s, ",")
	addr, err := netip.ParseAddr(strings.TrimSpace(fields[0]))
	if err != nil {
		return PeerConfig{}, fmt.Errorf("%w: peer %q: address: %w", ErrConfig, s, err)
	}
	p := PeerConfig{Addr: addr, FullFeed: true}
	hasAS := false
	for _, f := range fields[1:] {
		key, val, hasVal := strings.Cut(strings.TrimSpace(f), "=")
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: peer %q: %s: %s", ErrConfig, s, key, fmt.Sprintf(format, a...))
		}
		if hasVal != (key == "as" || key == "desc") {
			return PeerConfig{}, bad("takes no value, or needs one (as=N, desc=TEXT)")
		}
		switch key {
		case "as":
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil {
				return PeerConfig{}, bad("%q is not an AS number", val)
			}
			p.AS, hasAS = uint32(n), true
		case "desc":
			p.Description = val
		case "multihop":
			p.Multihop = true
		case "active":
			p.Active = true
		case "passive":
			p.Active = false
		case "full":
			p.FullFeed = true
		case "partial":
			p.FullFeed = false
		default:
			return PeerConfig{}, bad("unknown option (as=, multihop, active, passive, full, partial, desc=)")
		}
	}
	if !hasAS {
		return PeerConfig{}, fmt.Errorf("%w: peer %q: as=: missing", ErrConfig, s)
	}
	if err := p.validate(fmt.Sprintf("peer %q: ", s)); err != nil {
		return PeerConfig{}, err
	}
	return p, nil
}
