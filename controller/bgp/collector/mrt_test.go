package collector

import (
	"bytes"
	"compress/gzip"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bgppkt "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/packet/mrt"

	"github.com/vantage-net/vantage/controller/bgp"
)

// feed is a small capture: IPv4 and IPv6 announcements and withdrawals,
// from an IPv4 and an IPv6 peer, with sub-second times.
func feed() []bgp.Update {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
	p4, p6 := netip.MustParseAddr("198.51.100.33"), netip.MustParseAddr("2001:db8::33")
	path := []uint32{64511, 64510, 64501, 64500}
	return []bgp.Update{
		{At: t0, Peer: p4, PeerAS: 64511, Prefix: netip.MustParsePrefix("198.18.0.0/24"), ASPath: path, NextHop: p4},
		{At: t0.Add(time.Microsecond), Peer: p4, PeerAS: 64511, Prefix: netip.MustParsePrefix("2001:db8:18::/64"), ASPath: path, NextHop: netip.MustParseAddr("2001:db8::1")},
		{At: t0.Add(time.Second), Peer: p6, PeerAS: 4200000001, Prefix: netip.MustParsePrefix("2001:db8:18::/64"), ASPath: []uint32{4200000001, 64500}, NextHop: p6},
		{At: t0.Add(2 * time.Second), Peer: p6, PeerAS: 4200000001, Prefix: netip.MustParsePrefix("10.0.0.0/8"), ASPath: []uint32{4200000001, 64500}},
		{At: t0.Add(3 * time.Second), Peer: p4, PeerAS: 64511, Prefix: netip.MustParsePrefix("198.18.0.0/24"), Withdraw: true},
		{At: t0.Add(4 * time.Second), Peer: p6, PeerAS: 4200000001, Prefix: netip.MustParsePrefix("2001:db8:18::/64"), Withdraw: true},
	}
}

func readAll(t *testing.T, data []byte) ([]bgp.Update, Stats, error) {
	t.Helper()
	var got []bgp.Update
	st, err := ReadMRT(bytes.NewReader(data), "mrt:test", func(u bgp.Update) error {
		got = append(got, u)
		return nil
	})
	return got, st, err
}

func sameUpdates(t *testing.T, got, want []bgp.Update) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d updates, want %d:\n%v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.At.Equal(w.At) || g.Peer != w.Peer || g.PeerAS != w.PeerAS || g.Prefix != w.Prefix ||
			g.Withdraw != w.Withdraw || !slices.Equal(g.ASPath, w.ASPath) || g.NextHop != w.NextHop {
			t.Errorf("update %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func TestMRTRoundTrip(t *testing.T) {
	want := feed()
	var buf bytes.Buffer
	if err := WriteMRT(&buf, want); err != nil {
		t.Fatal(err)
	}
	got, st, err := readAll(t, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i].Source = "mrt:test"
	}
	sameUpdates(t, got, want)
	if st.Records != len(want) || st.Updates != len(want) || st.Skipped != 0 || st.Invalid != 0 {
		t.Errorf("stats %+v", st)
	}
	for _, u := range got {
		if u.Source != "mrt:test" {
			t.Errorf("source %q", u.Source)
		}
	}
}

func TestMRTGzip(t *testing.T) {
	var plain, zipped bytes.Buffer
	if err := WriteMRT(&plain, feed()); err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(&zipped)
	if _, err := zw.Write(plain.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	got, _, err := readAll(t, zipped.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := readAll(t, plain.Bytes())
	sameUpdates(t, got, want)
}

func TestMRTBad(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMRT(&buf, feed()); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	first := 12 + int(uint32(full[8])<<24|uint32(full[9])<<16|uint32(full[10])<<8|uint32(full[11]))
	huge := slices.Clone(full[:12])
	huge[8] = 0xff
	tests := []struct {
		name string
		data []byte
		want string // in the error
		n    int    // updates read before it
	}{
		{"truncated body", full[:len(full)-3], "record 6 at offset", 5},
		{"truncated header", full[:first+5], "record 2 at offset " + strconv.Itoa(first) + ": header: truncated", 1},
		{"length over the cap", huge, "over the", 0},
		{"garbage body", append(slices.Clone(full[:12]), bytes.Repeat([]byte{0xff}, int(full[11]))...), "record 1 at offset 0", 0},
		{"rib before peer index", ribRecord(t), "before any PEER_INDEX_TABLE", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := readAll(t, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrMRT) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			if len(got) != tc.n {
				t.Errorf("%d updates before the error, want %d", len(got), tc.n)
			}
		})
	}
}

// ribRecord is a TABLE_DUMP_V2 RIB_IPV4_UNICAST record, built with
// GoBGP's serializer (a different code path from the reader's).
func ribRecord(t testing.TB) []byte {
	t.Helper()
	pas := []bgppkt.PathAttributeInterface{
		bgppkt.NewPathAttributeOrigin(0),
		bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{64511, 64500})}),
		bgppkt.NewPathAttributeNextHop("198.51.100.33"),
	}
	rib := mrt.NewRib(1, bgppkt.NewIPAddrPrefix(24, "198.18.0.0"), []*mrt.RibEntry{mrt.NewRibEntry(0, 1700000000, 0, pas, false)})
	return mrtBytes(t, 1700000100, mrt.TABLE_DUMPv2, mrt.RIB_IPV4_UNICAST, rib)
}

func mrtBytes(t testing.TB, ts uint32, typ mrt.MRTType, sub mrt.MRTSubTyper, body mrt.Body) []byte {
	t.Helper()
	m, err := mrt.NewMRTMessage(ts, typ, sub, body)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMRTTableDump reads a TABLE_DUMP_V2 snapshot (peer index, an IPv4
// and an IPv6 RIB record) and a 2-byte BGP4MP MESSAGE with AS4_PATH.
func TestMRTTableDump(t *testing.T) {
	peers := []*mrt.Peer{
		mrt.NewPeer("192.0.2.1", "198.51.100.33", 64511, true),
		mrt.NewPeer("192.0.2.2", "2001:db8::33", 4200000001, true),
	}
	v6attrs := []bgppkt.PathAttributeInterface{
		bgppkt.NewPathAttributeOrigin(0),
		bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{4200000001, 64500}),
			bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SET, []uint32{64498, 64499})}),
		bgppkt.NewPathAttributeMpReachNLRI("2001:db8::33", []bgppkt.AddrPrefixInterface{bgppkt.NewIPv6AddrPrefix(64, "2001:db8:18::")}),
	}
	v6 := mrt.NewRib(2, bgppkt.NewIPv6AddrPrefix(64, "2001:db8:18::"), []*mrt.RibEntry{mrt.NewRibEntry(1, 0, 0, v6attrs, false)})
	two := bgppkt.NewBGPUpdateMessage(nil, []bgppkt.PathAttributeInterface{
		bgppkt.NewPathAttributeOrigin(0),
		bgppkt.NewPathAttributeAsPath([]bgppkt.AsPathParamInterface{bgppkt.NewAsPathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint16{64511, asTrans, 64500})}),
		bgppkt.NewPathAttributeNextHop("198.51.100.33"),
		bgppkt.NewPathAttributeAs4Path([]*bgppkt.As4PathParam{bgppkt.NewAs4PathParam(bgppkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{4200000009, 64500})}),
	}, []*bgppkt.IPAddrPrefix{bgppkt.NewIPAddrPrefix(16, "192.168.0.0")})
	msg := mrt.NewBGP4MPMessage(64511, 64496, 0, "198.51.100.33", "198.51.100.1", false, two)
	state := mrt.NewBGP4MPStateChange(64511, 64496, 0, "198.51.100.33", "198.51.100.1", true, mrt.IDLE, mrt.ESTABLISHED)
	var file []byte
	file = append(file, mrtBytes(t, 1700000100, mrt.TABLE_DUMPv2, mrt.PEER_INDEX_TABLE, mrt.NewPeerIndexTable("192.0.2.254", "", peers))...)
	file = append(file, ribRecord(t)...)
	file = append(file, mrtBytes(t, 1700000100, mrt.TABLE_DUMPv2, mrt.RIB_IPV6_UNICAST, v6)...)
	file = append(file, mrtBytes(t, 1700000200, mrt.BGP4MP, mrt.MESSAGE, msg)...)
	file = append(file, mrtBytes(t, 1700000300, mrt.BGP4MP, mrt.STATE_CHANGE_AS4, state)...)
	got, st, err := readAll(t, file)
	if err != nil {
		t.Fatal(err)
	}
	want := []bgp.Update{
		{At: time.Unix(1700000000, 0), Peer: netip.MustParseAddr("198.51.100.33"), PeerAS: 64511, Prefix: netip.MustParsePrefix("198.18.0.0/24"),
			ASPath: []uint32{64511, 64500}, NextHop: netip.MustParseAddr("198.51.100.33")},
		// originated time 0: the record's time; the AS_SET is dropped
		{At: time.Unix(1700000100, 0), Peer: netip.MustParseAddr("2001:db8::33"), PeerAS: 4200000001, Prefix: netip.MustParsePrefix("2001:db8:18::/64"),
			ASPath: []uint32{4200000001, 64500}, NextHop: netip.MustParseAddr("2001:db8::33")},
		{At: time.Unix(1700000200, 0), Peer: netip.MustParseAddr("198.51.100.33"), PeerAS: 64511, Prefix: netip.MustParsePrefix("192.168.0.0/16"),
			ASPath: []uint32{64511, 4200000009, 64500}, NextHop: netip.MustParseAddr("198.51.100.33")},
	}
	sameUpdates(t, got, want)
	if st.Records != 5 || st.Skipped != 1 || st.Updates != 3 {
		t.Errorf("stats %+v", st)
	}
}

func FuzzReadMRT(f *testing.F) {
	var buf bytes.Buffer
	if err := WriteMRT(&buf, feed()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(ribRecord(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ReadMRT(bytes.NewReader(data), "mrt:fuzz", func(u bgp.Update) error {
			if err := u.Validate(); err != nil {
				t.Fatalf("ReadMRT passed an invalid update: %v", err)
			}
			return nil
		})
	})
}

// TestReadBIRDDump reads a RIB dump the lab's own BIRD 2.0.12 wrote
// (`birdc mrt dump table "master4"`, then master6, of the IX): its
// NEXT_HOP and LOCAL_PREF attributes carry no flags, which ReadMRT sets
// right before parsing.
func TestReadBIRDDump(t *testing.T) {
	f, err := os.Open("testdata/bird-2.0.12-ix.mrt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []bgp.Update
	st, err := ReadMRT(f, "mrt:ix", func(u bgp.Update) error { got = append(got, u); return nil })
	if err != nil {
		t.Fatalf("ReadMRT: %v (stats %+v)", err, st)
	}
	if st.Records != 10 || st.Updates != 8 || st.FlagsFixed == 0 || len(got) != 8 {
		t.Fatalf("stats %+v, %d updates; want 10 records, 8 updates (4 IPv4, 4 IPv6), flags fixed", st, len(got))
	}
	u := got[0]
	if u.Prefix.String() != "198.18.0.0/24" || u.Peer.String() != "198.51.100.26" || u.PeerAS != 64510 ||
		!slices.Equal(u.ASPath, []uint32{64510, 64501, 64500}) || u.NextHop.String() != "198.51.100.26" {
		t.Errorf("first entry %+v: want 198.18.0.0/24 from transit 198.51.100.26 AS64510, path 64510 64501 64500", u)
	}
}
