package collector

import (
	"errors"
	"net/netip"
	"testing"
)

func validConfig() Config {
	return Config{
		LocalAS:   64496,
		RouterID:  netip.MustParseAddr("192.0.2.1"),
		BGPListen: "127.0.0.1:0",
		BMPListen: "[::1]:11019",
		Peers: []PeerConfig{
			{Addr: netip.MustParseAddr("198.51.100.33"), AS: 64511, FullFeed: true},
			{Addr: netip.MustParseAddr("2001:db8::33"), AS: 4200000001, Multihop: true},
		},
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"bmp only", func(c *Config) { *c = Config{BMPListen: "127.0.0.1:0"} }, ""},
		{"nothing", func(c *Config) { *c = Config{} },
			"invalid collector config: bgp_listen: empty, and so are bmp_listen and peers: nothing to collect"},
		{"bmp listen not host:port", func(c *Config) { c.BMPListen = "localhost" },
			`invalid collector config: bmp_listen: "localhost" is not host:port: address localhost: missing port in address`},
		{"bgp listen host name", func(c *Config) { c.BGPListen = "localhost:1179" },
			`invalid collector config: bgp_listen: "localhost:1179": the host must be an IP address: ParseAddr("localhost"): unable to parse IP`},
		{"bgp listen bad port", func(c *Config) { c.BGPListen = "127.0.0.1:70000" },
			`invalid collector config: bgp_listen: "127.0.0.1:70000": bad port: strconv.ParseUint: parsing "70000": value out of range`},
		{"negative bmp conns", func(c *Config) { c.BMPMaxConns = -1 }, "invalid collector config: bmp_max_conns: -1 is negative"},
		{"local as 0", func(c *Config) { c.LocalAS = 0 }, "invalid collector config: local_as: 0 is not an AS number"},
		{"local as trans", func(c *Config) { c.LocalAS = 23456 }, "invalid collector config: local_as: 23456 is AS_TRANS, not an AS number"},
		{"router id missing", func(c *Config) { c.RouterID = netip.Addr{} }, "invalid collector config: router_id: missing"},
		{"router id v6", func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") },
			"invalid collector config: router_id: 2001:db8::1 is not an IPv4 address (the BGP identifier is 32 bits)"},
		{"peer as 0", func(c *Config) { c.Peers[1].AS = 0 }, "invalid collector config: peers[1].as: 0 is not an AS number"},
		{"peer addr missing", func(c *Config) { c.Peers[0].Addr = netip.Addr{} }, "invalid collector config: peers[0].addr: missing"},
		{"peer addr mapped", func(c *Config) { c.Peers[0].Addr = netip.MustParseAddr("::ffff:198.51.100.33") },
			"invalid collector config: peers[0].addr: ::ffff:198.51.100.33 is IPv4-mapped; write 198.51.100.33"},
		{"peer addr zone", func(c *Config) { c.Peers[1].Addr = netip.MustParseAddr("fe80::1%eth0") },
			"invalid collector config: peers[1].addr: fe80::1%eth0 has a zone"},
		{"peer addr multicast", func(c *Config) { c.Peers[0].Addr = netip.MustParseAddr("224.0.0.5") },
			"invalid collector config: peers[0].addr: 224.0.0.5 is not a unicast address"},
		{"peer duplicate", func(c *Config) { c.Peers[1].Addr = c.Peers[0].Addr },
			"invalid collector config: peers[1].addr: 198.51.100.33 is also peers[0]"},
		{"passive peer, no listener", func(c *Config) { c.BGPListen = "" },
			"invalid collector config: peers[0].active: false, and bgp_listen is empty: the peer could never connect"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want || !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate:\n got %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestParsePeer(t *testing.T) {
	tests := []struct {
		in   string
		want PeerConfig
		err  string
	}{
		{in: "198.51.100.33,as=64511,multihop,partial",
			want: PeerConfig{Addr: netip.MustParseAddr("198.51.100.33"), AS: 64511, Multihop: true}},
		{in: "2001:db8::33,as=4200000001",
			want: PeerConfig{Addr: netip.MustParseAddr("2001:db8::33"), AS: 4200000001, FullFeed: true}},
		{in: "192.0.2.7, as=64500, active, full, desc=lab router",
			want: PeerConfig{Addr: netip.MustParseAddr("192.0.2.7"), AS: 64500, Active: true, FullFeed: true, Description: "lab router"}},
		{in: "192.0.2.7,as=64500,active,passive",
			want: PeerConfig{Addr: netip.MustParseAddr("192.0.2.7"), AS: 64500, FullFeed: true}},
		{in: "router1,as=64500", err: `invalid collector config: peer "router1,as=64500": address: ParseAddr("router1"): unable to parse IP`},
		{in: "192.0.2.7", err: `invalid collector config: peer "192.0.2.7": as=: missing`},
		{in: "192.0.2.7,as=x", err: `invalid collector config: peer "192.0.2.7,as=x": as: "x" is not an AS number`},
		{in: "192.0.2.7,as=0", err: `invalid collector config: peer "192.0.2.7,as=0": as: 0 is not an AS number`},
		{in: "192.0.2.7,as=1,ttl=3", err: `invalid collector config: peer "192.0.2.7,as=1,ttl=3": ttl: takes no value, or needs one (as=N, desc=TEXT)`},
		{in: "192.0.2.7,as=1,fast", err: `invalid collector config: peer "192.0.2.7,as=1,fast": fast: unknown option (as=, multihop, active, passive, full, partial, desc=)`},
		{in: "192.0.2.7,as", err: `invalid collector config: peer "192.0.2.7,as": as: takes no value, or needs one (as=N, desc=TEXT)`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePeer(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err || !errors.Is(err, ErrConfig) {
					t.Fatalf("ParsePeer:\n got %v\nwant %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePeer: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
