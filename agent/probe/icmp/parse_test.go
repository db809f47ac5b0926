package icmp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vantage-net/vantage/agent/probe/internal/bulk"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var testIDs = idRange{base: 0x1000, n: 2}

const testCookie = 0x0102030405060708

// ip4 prepends an IPv4 header (proto ICMP, TTL 57) from src to dst.
func ip4(src, dst string, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0], h[8], h[9] = 0x45, 57, protoICMP
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return append(h, payload...)
}

func echo(v6 bool, typ byte, id, seq uint16, cookie uint64) []byte {
	b := make([]byte, 24)
	encodeEcho(b, v6, id, seq, cookie, 16)
	b[0] = typ
	return b
}

// ip6 builds an IPv6 header quoting an ICMPv6 payload to dst.
func ip6(dst string, payload []byte) []byte {
	h := make([]byte, 40, 40+len(payload))
	h[0], h[6], h[7] = 0x60, protoICMPv6, 64
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	d := netip.MustParseAddr(dst).As16()
	copy(h[24:], d[:])
	return append(h, payload...)
}

func icmpErr(typ, code byte, quoted []byte) []byte {
	return append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, quoted...)
}

// seeds4 and seeds6 are also the fuzz seed corpus (testdata/fuzz holds
// the same packets as files).
func seeds4() map[string][]byte {
	req := ip4("10.201.0.1", "198.18.0.1", echo(false, v4EchoRequest, 0x1001, 7, testCookie))
	return map[string][]byte{
		"reply":          ip4("198.18.0.1", "10.201.0.1", echo(false, v4EchoReply, 0x1001, 7, testCookie)),
		"unreachable":    ip4("10.201.0.2", "10.201.0.1", icmpErr(v4Unreachable, 1, req)),
		"time exceeded":  ip4("10.201.0.2", "10.201.0.1", icmpErr(v4TimeExceeded, 0, req)),
		"rfc792 quote":   ip4("10.201.0.2", "10.201.0.1", icmpErr(v4Unreachable, 13, req[:28])),
		"foreign id":     ip4("198.18.0.1", "10.201.0.1", echo(false, v4EchoReply, 0x2001, 7, testCookie)),
		"echo request":   req,
		"short cookie":   ip4("198.18.0.1", "10.201.0.1", echo(false, v4EchoReply, 0x1000, 7, testCookie)[:12]),
		"truncated ip":   req[:19],
		"bad ihl":        append([]byte{0x4f}, req[1:]...),
		"quote too long": ip4("10.201.0.2", "10.201.0.1", icmpErr(v4Unreachable, 1, append([]byte{0x4f}, req[1:30]...))),
		"empty":          {},
	}
}

func seeds6() map[string][]byte {
	req := echo(true, v6EchoRequest, 0x1000, 9, testCookie)
	return map[string][]byte{
		"reply":         echo(true, v6EchoReply, 0x1000, 9, testCookie),
		"unreachable":   icmpErr(v6Unreachable, 4, ip6("2001:db8::9", req)),
		"time exceeded": icmpErr(v6TimeExceeded, 0, ip6("2001:db8::9", req)),
		"short quote":   icmpErr(v6Unreachable, 4, ip6("2001:db8::9", req)[:48]),
		"foreign":       echo(true, v6EchoReply, 0x0fff, 9, testCookie),
		"request":       req,
		"truncated":     req[:7],
		"empty":         {},
	}
}

func TestDecode(t *testing.T) {
	want := func(v bulk.Verdict, out vantagev1.Outcome, code uint32, dst string, cookie bool) bulk.Match {
		m := bulk.Match{Outcome: out, Code: code}
		if dst != "" {
			m.Dst = netip.MustParseAddr(dst)
		}
		if cookie {
			m.Cookie, m.CookieMask = testCookie, ^uint64(0)
		}
		return m
	}
	type exp struct {
		v bulk.Verdict
		m bulk.Match
	}
	cases4 := map[string]exp{
		"reply":          {bulk.Ours, want(0, vantagev1.Outcome_OUTCOME_REPLY, 0, "198.18.0.1", true)},
		"unreachable":    {bulk.Ours, want(0, vantagev1.Outcome_OUTCOME_UNREACHABLE, 1, "198.18.0.1", true)},
		"time exceeded":  {bulk.Ours, want(0, vantagev1.Outcome_OUTCOME_UNREACHABLE, 0, "198.18.0.1", true)},
		"rfc792 quote":   {bulk.Ours, want(0, vantagev1.Outcome_OUTCOME_UNREACHABLE, 13, "198.18.0.1", false)},
		"foreign id":     {bulk.Foreign, bulk.Match{}},
		"echo request":   {bulk.Foreign, bulk.Match{}},
		"short cookie":   {bulk.Malformed, bulk.Match{}},
		"truncated ip":   {bulk.Malformed, bulk.Match{}},
		"bad ihl":        {bulk.Malformed, bulk.Match{}},
		"quote too long": {bulk.Malformed, bulk.Match{}},
		"empty":          {bulk.Malformed, bulk.Match{}},
	}
	for name, pkt := range seeds4() {
		t.Run("v4 "+name, func(t *testing.T) {
			var m bulk.Match
			v := decode4(testIDs, pkt, &m)
			e := cases4[name]
			if v != e.v {
				t.Fatalf("verdict %d, want %d", v, e.v)
			}
			if v != bulk.Ours {
				return
			}
			if m.Outcome != e.m.Outcome || m.Code != e.m.Code || m.Dst != e.m.Dst || m.Cookie != e.m.Cookie || m.CookieMask != e.m.CookieMask || m.Slot != 1<<16|7 {
				t.Fatalf("match %+v, want %+v slot %d", m, e.m, 1<<16|7)
			}
		})
	}
	cases6 := map[string]exp{
		"reply":         {bulk.Ours, want(0, vantagev1.Outcome_OUTCOME_REPLY, 0, "2001:db8::9", true)},
		"unreachable":   {bulk.Ours, want(0, vantagev1.Outcome_OUTCOME_UNREACHABLE, 4, "2001:db8::9", true)},
		"time exceeded": {bulk.Ours, want(0, vantagev1.Outcome_OUTCOME_UNREACHABLE, 0, "2001:db8::9", true)},
		"short quote":   {bulk.Ours, want(0, vantagev1.Outcome_OUTCOME_UNREACHABLE, 4, "2001:db8::9", false)},
		"foreign":       {bulk.Foreign, bulk.Match{}},
		"request":       {bulk.Foreign, bulk.Match{}},
		"truncated":     {bulk.Malformed, bulk.Match{}},
		"empty":         {bulk.Malformed, bulk.Match{}},
	}
	for name, pkt := range seeds6() {
		t.Run("v6 "+name, func(t *testing.T) {
			var m bulk.Match
			v := decode6(testIDs, pkt, netip.MustParseAddr("2001:db8::9"), 60, &m)
			e := cases6[name]
			if v != e.v {
				t.Fatalf("verdict %d, want %d", v, e.v)
			}
			if v != bulk.Ours {
				return
			}
			if m.Outcome != e.m.Outcome || m.Code != e.m.Code || m.Dst != e.m.Dst || m.Cookie != e.m.Cookie || m.CookieMask != e.m.CookieMask || m.Slot != 9 || m.TTL != 60 {
				t.Fatalf("match %+v, want %+v slot 9", m, e.m)
			}
		})
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	var m bulk.Match
	for name, pkt := range seeds4() {
		if n := testing.AllocsPerRun(100, func() { decode4(testIDs, pkt, &m) }); n != 0 {
			t.Errorf("decode4 %s: %v allocations", name, n)
		}
	}
	from := netip.MustParseAddr("2001:db8::9")
	for name, pkt := range seeds6() {
		if n := testing.AllocsPerRun(100, func() { decode6(testIDs, pkt, from, 64, &m) }); n != 0 {
			t.Errorf("decode6 %s: %v allocations", name, n)
		}
	}
}

func TestEncodeEchoChecksum(t *testing.T) {
	b := make([]byte, 64)
	n := encodeEcho(b, false, 0x1234, 0x5678, testCookie, 16)
	if n != 24 {
		t.Fatalf("length %d, want 24", n)
	}
	var sum uint32
	for i := 0; i < n; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Fatalf("checksum does not verify: %#x", sum)
	}
}

// checkMatch holds for every packet decode calls ours.
func checkMatch(t *testing.T, v bulk.Verdict, m *bulk.Match) {
	if v == bulk.Ours && (m.Slot >= uint32(testIDs.n)<<16 || !m.Dst.IsValid() || !m.From.IsValid()) {
		t.Fatalf("ours but match %+v is out of range", m)
	}
}

func FuzzDecode4(f *testing.F) {
	for _, p := range seeds4() {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var m bulk.Match
		checkMatch(t, decode4(testIDs, pkt, &m), &m)
	})
}

func FuzzDecode6(f *testing.F) {
	for _, p := range seeds6() {
		f.Add(p)
	}
	from := netip.MustParseAddr("2001:db8::9")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var m bulk.Match
		checkMatch(t, decode6(testIDs, pkt, from, 64, &m), &m)
	})
}
