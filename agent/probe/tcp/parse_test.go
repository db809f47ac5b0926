package tcp

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vantage-net/vantage/agent/probe/internal/bulk"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

var testPorts = portRange{base: synPortBase, n: synPortCount}

const testISN = 0x0a0b0c0d

// Which decoder a fuzz input goes to (its first argument).
const (
	viaTCP4 uint8 = iota
	viaTCP6
	viaICMP4
	viaICMP6
	nDecoders
)

func segment(sport, dport uint16, seq, ack uint32, flags byte) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12], b[13] = 5<<4, flags
	return b
}

func ipv4(proto byte, src, dst string, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	h[0], h[8], h[9] = 0x45, 61, proto
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return append(h, payload...)
}

func ipv6(dst string, payload []byte) []byte {
	h := make([]byte, 40, 40+len(payload))
	h[0], h[6], h[7] = 0x60, protoTCP, 64
	d := netip.MustParseAddr(dst).As16()
	copy(h[24:], d[:])
	return append(h, payload...)
}

func syn(dst string) []byte {
	b := make([]byte, 64)
	n := encodeSYN(b, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr(dst), synPortBase+5, 443, testISN)
	return b[:n]
}

type seed struct {
	via uint8
	pkt []byte
}

// seeds is also the fuzz seed corpus (testdata/fuzz holds the same inputs).
func seeds() map[string]seed {
	ours := uint16(synPortBase + 5)
	return map[string]seed{
		"synack4":       {viaTCP4, ipv4(protoTCP, "198.18.0.1", "10.0.0.1", segment(443, ours, 99, testISN+1, flagSYN|flagACK))},
		"rst4":          {viaTCP4, ipv4(protoTCP, "198.18.0.1", "10.0.0.1", segment(443, ours, 0, testISN+1, flagRST|flagACK))},
		"bare rst4":     {viaTCP4, ipv4(protoTCP, "198.18.0.1", "10.0.0.1", segment(443, ours, 0, 0, flagRST))},
		"other port4":   {viaTCP4, ipv4(protoTCP, "198.18.0.1", "10.0.0.1", segment(443, 80, 99, testISN+1, flagSYN|flagACK))},
		"own syn4":      {viaTCP4, ipv4(protoTCP, "10.0.0.1", "198.18.0.1", syn("198.18.0.1"))},
		"fragment4":     {viaTCP4, append(ipv4(protoTCP, "198.18.0.1", "10.0.0.1", nil)[:6], 0x00, 0x10, 61, protoTCP)},
		"bad offset4":   {viaTCP4, ipv4(protoTCP, "198.18.0.1", "10.0.0.1", append(segment(443, ours, 0, testISN+1, flagRST|flagACK)[:12], 0xf0, flagRST|flagACK, 0, 0, 0, 0, 0, 0))},
		"synack6":       {viaTCP6, segment(443, ours, 99, testISN+1, flagSYN|flagACK)},
		"truncated6":    {viaTCP6, segment(443, ours, 99, testISN+1, flagSYN|flagACK)[:19]},
		"unreach4":      {viaICMP4, ipv4(1, "10.9.9.9", "10.0.0.1", append([]byte{3, 13, 0, 0, 0, 0, 0, 0}, ipv4(protoTCP, "10.0.0.1", "198.18.0.1", syn("198.18.0.1"))[:28]...))},
		"unreach4 udp":  {viaICMP4, ipv4(1, "10.9.9.9", "10.0.0.1", append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, ipv4(17, "10.0.0.1", "198.18.0.1", make([]byte, 8))...))},
		"short quote4":  {viaICMP4, ipv4(1, "10.9.9.9", "10.0.0.1", append([]byte{3, 13, 0, 0, 0, 0, 0, 0}, ipv4(protoTCP, "10.0.0.1", "198.18.0.1", syn("198.18.0.1"))[:24]...))},
		"unreach6":      {viaICMP6, append([]byte{1, 1, 0, 0, 0, 0, 0, 0}, ipv6("2001:db8::7", syn("2001:db8::7"))...)},
		"echo6":         {viaICMP6, []byte{129, 0, 0, 0, 0, 1, 0, 1}},
		"empty":         {viaTCP4, nil},
		"empty icmp6":   {viaICMP6, nil},
		"garbage icmp4": {viaICMP4, []byte{0x45, 0, 0, 0}},
	}
}

func decode(via uint8, pkt []byte, m *bulk.Match) bulk.Verdict {
	from := netip.MustParseAddr("2001:db8::7")
	switch via % nDecoders {
	case viaTCP4:
		return decodeTCP4(testPorts, pkt, m)
	case viaTCP6:
		return decodeTCP6(testPorts, pkt, from, 60, m)
	case viaICMP4:
		return decodeICMP4(testPorts, pkt, m)
	default:
		return decodeICMP6(testPorts, pkt, from, 60, m)
	}
}

func TestDecode(t *testing.T) {
	type exp struct {
		v       bulk.Verdict
		outcome vantagev1.Outcome
		code    uint32
		dst     string
	}
	cases := map[string]exp{
		"synack4":       {bulk.Ours, vantagev1.Outcome_OUTCOME_TCP_SYNACK, 0, "198.18.0.1"},
		"rst4":          {bulk.Ours, vantagev1.Outcome_OUTCOME_TCP_RST, 0, "198.18.0.1"},
		"bare rst4":     {v: bulk.Foreign},
		"other port4":   {v: bulk.Foreign},
		"own syn4":      {v: bulk.Foreign},
		"fragment4":     {v: bulk.Malformed},
		"bad offset4":   {v: bulk.Malformed},
		"synack6":       {bulk.Ours, vantagev1.Outcome_OUTCOME_TCP_SYNACK, 0, "2001:db8::7"},
		"truncated6":    {v: bulk.Malformed},
		"unreach4":      {bulk.Ours, vantagev1.Outcome_OUTCOME_UNREACHABLE, 13, "198.18.0.1"},
		"unreach4 udp":  {v: bulk.Foreign},
		"short quote4":  {v: bulk.Malformed},
		"unreach6":      {bulk.Ours, vantagev1.Outcome_OUTCOME_UNREACHABLE, 1, "2001:db8::7"},
		"echo6":         {v: bulk.Foreign},
		"empty":         {v: bulk.Malformed},
		"empty icmp6":   {v: bulk.Malformed},
		"garbage icmp4": {v: bulk.Malformed},
	}
	for name, s := range seeds() {
		t.Run(name, func(t *testing.T) {
			var m bulk.Match
			v := decode(s.via, s.pkt, &m)
			e := cases[name]
			if v != e.v {
				t.Fatalf("verdict %d, want %d", v, e.v)
			}
			if v != bulk.Ours {
				return
			}
			if m.Outcome != e.outcome || m.Code != e.code || m.Dst.String() != e.dst || m.Slot != 5 || m.Port != 443 ||
				uint32(m.Cookie) != testISN || m.CookieMask != 0xffffffff {
				t.Fatalf("match %+v, want %v code %d dst %s slot 5 port 443 cookie %#x", m, e.outcome, e.code, e.dst, testISN)
			}
		})
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	var m bulk.Match
	for name, s := range seeds() {
		if n := testing.AllocsPerRun(100, func() { decode(s.via, s.pkt, &m) }); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}

func TestEncodeSYNChecksum(t *testing.T) {
	b := syn("198.18.0.1")
	// Pseudo-header + segment must sum to 0xffff.
	sum := uint32(0x0a00+0x0001+0xc612+0x0001) + protoTCP + uint32(len(b))
	for i := 0; i < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff || b[13] != flagSYN || binary.BigEndian.Uint32(b[4:]) != testISN {
		t.Fatalf("syn %x: checksum sum %#x, flags %#x", b, sum, b[13])
	}
}

func FuzzDecodeTCP(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s.via, s.pkt)
	}
	f.Fuzz(func(t *testing.T, via uint8, pkt []byte) {
		var m bulk.Match
		if decode(via, pkt, &m) == bulk.Ours && (m.Slot >= uint32(testPorts.n) || !m.Dst.IsValid() || m.CookieMask == 0) {
			t.Fatalf("ours but match %+v is out of range", m)
		}
	})
}
