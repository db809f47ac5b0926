package trace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
)

// Fuzz targets for every reply parser. Each also runs the packet through
// the engine's matcher against a live trace, and checks that every packet
// is either matched or counted. Seeds are in testdata/fuzz/<target>;
// VTR_WRITE_CORPUS=1 go test -run TestWriteCorpus regenerates them.

// seedProbes returns one probe of each protocol towards dst.
func seedProbes(dst netip.Addr) [][]byte {
	src := src4
	if dst.Is6() {
		src = src6
	}
	var out [][]byte
	for _, proto := range []uint8{protoICMP, protoUDP, protoTCP} {
		id := probeID{proto: proto, slot: 3, gen: 1, ttl: 2, src: src, dst: dst, port: 33435, cookie: 0xdeadbeef, paris: true}
		if proto == protoICMP && dst.Is6() {
			id.proto = protoICMPv6
		}
		b := make([]byte, 128)
		out = append(out, b[:buildProbe(b, &id)])
	}
	return out
}

func icmp4Seeds() [][]byte {
	var s [][]byte
	for _, p := range seedProbes(dst4) {
		s = append(s, icmpErr(v4TimeExceeded, 0, routerAddr(false, 2), p, 254).b,
			icmpErr(v4Unreachable, 3, dst4, p, 60).b,
			mplsErr(p, routerAddr(false, 2), false).b,
			mplsErr(p, routerAddr(false, 2), true).b,
			destAnswer(p, 60).b)
	}
	return append(s, []byte{}, []byte{0x45}, make([]byte, 48))
}

func icmp6Seeds() [][]byte {
	var s [][]byte
	for _, p := range seedProbes(dst6) {
		s = append(s, icmpErr(v6TimeExceeded, 0, routerAddr(true, 2), p, 254).b,
			icmpErr(v6Unreachable, 4, dst6, p, 60).b,
			mplsErr(p, routerAddr(true, 2), false).b)
		if a := destAnswer(p, 60); !a.tcp {
			s = append(s, a.b)
		}
	}
	return append(s, []byte{}, []byte{3, 0, 0, 0, 0, 0, 0, 0})
}

func tcpSeeds() ([][]byte, [][]byte) {
	return [][]byte{destAnswer(seedProbes(dst4)[2], 60).b, make([]byte, 40)},
		[][]byte{destAnswer(seedProbes(dst6)[2], 60).b, make([]byte, 20)}
}

func extSeeds() [][]byte {
	p := seedProbes(dst4)[0]
	m := mplsErr(p, routerAddr(false, 2), false).b
	return [][]byte{m[28:], make([]byte, 140)}
}

// fuzzTracer is an engine with one live trace to dst4 and one to dst6
// (slot 3, gen 1, the seeds' identity) on a silent fake network.
func fuzzTracer(f *testing.F) *Tracer {
	quiet := func([]byte) []fakePkt { return nil }
	ff4, ff6 := newFakeFamily(false, quiet), newFakeFamily(true, quiet)
	e, err := NewTracer(Config{open: fakeOpen(ff4, ff6), MaxTraces: 8})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })
	for i, dst := range []netip.Addr{dst4, dst6} {
		tr := &traceState{maxTTL: 30, gapLimit: 5, timeout: time.Second, kick: make(chan struct{}, 1), done: make(chan struct{})}
		tr.id = probeID{proto: protoICMP, dst: dst, port: 33435, paris: true, cookie: 0xdeadbeef, slot: uint16(3 + i), gen: 1}
		tr.horizon = 30
		for ttl := range tr.sent {
			tr.sent[ttl] = time.Now()
		}
		e.slots[3+i] = slot{gen: 1, tr: tr, lastDst: dst}
	}
	return e
}

// checkCounted runs one packet through handle and checks it was counted
// exactly once (matched, late, duplicate or ignored), then forgets answers
// so later inputs can match again.
func checkCounted(t *testing.T, e *Tracer, kind rxKind, b []byte, src netip.Addr) {
	before := e.matched.Load() + e.late.Load() + e.dups.Load() + e.ignored.Load()
	buf := append([]byte(nil), b...)
	e.handle(kind, &inPacket{buf: buf, n: len(buf), src: src, hopLimit: 64, at: time.Now()})
	if after := e.matched.Load() + e.late.Load() + e.dups.Load() + e.ignored.Load(); after != before+1 {
		t.Fatalf("packet counted %d times, want once", after-before)
	}
	e.mu.Lock()
	for _, s := range e.slots {
		if s.tr != nil {
			s.tr.ans = [maxTTLCap + 1]answer{}
			s.tr.doneSet = true // done is never closed twice
		}
	}
	e.mu.Unlock()
}

func FuzzParseICMP4(f *testing.F) {
	for _, s := range icmp4Seeds() {
		f.Add(s)
	}
	e := fuzzTracer(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseICMP4(b)
		checkCounted(t, e, rxICMP4, b, netip.Addr{})
		// Again with the ICMP checksum made valid, so the fuzzer reaches
		// the quoted headers and the extensions behind the checksum test.
		if len(b) == 0 {
			return
		}
		if ihl := int(b[0]&0x0f) * 4; len(b) >= ihl+8 && ihl >= 20 {
			fixed := append([]byte(nil), b...)
			end := len(fixed)
			if l := int(binary.BigEndian.Uint16(fixed[2:4])); l >= ihl && l < end {
				end = l
			}
			fixed[ihl+2], fixed[ihl+3] = 0, 0
			binary.BigEndian.PutUint16(fixed[ihl+2:ihl+4], rawsock.Checksum(0, fixed[ihl:end]))
			checkCounted(t, e, rxICMP4, fixed, netip.Addr{})
		}
	})
}

func FuzzParseICMP6(f *testing.F) {
	for _, s := range icmp6Seeds() {
		f.Add(s, dst6.AsSlice())
	}
	e := fuzzTracer(f)
	f.Fuzz(func(t *testing.T, b, src []byte) {
		a, _ := netip.AddrFromSlice(src)
		_, _ = parseICMP6(b, a)
		checkCounted(t, e, rxICMP6, b, a)
	})
}

func FuzzParseTCP(f *testing.F) {
	s4, s6 := tcpSeeds()
	for _, s := range s4 {
		f.Add(s, false)
	}
	for _, s := range s6 {
		f.Add(s, true)
	}
	e := fuzzTracer(f)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		if v6 {
			_, _ = parseTCP6(b, dst6)
			checkCounted(t, e, rxTCP6, b, dst6)
			return
		}
		_, _ = parseTCP4(b)
		checkCounted(t, e, rxTCP4, b, netip.Addr{})
	})
}

func FuzzParseExtensions(f *testing.F) {
	for _, s := range extSeeds() {
		f.Add(s, 128)
		f.Add(s, 0)
	}
	f.Fuzz(func(t *testing.T, body []byte, origLen int) {
		var r reply
		parseExtensions(&r, body, origLen%1024)
		if r.nLabels > maxLabels {
			t.Fatalf("%d labels kept, cap %d", r.nLabels, maxLabels)
		}
	})
}

// TestParsersDoNotAllocate: parsing garbage or real answers costs no
// allocation, so a flood of packets cannot grow memory.
func TestParsersDoNotAllocate(t *testing.T) {
	m := icmp4Seeds()[2]
	m6 := icmp6Seeds()[2]
	s4, _ := tcpSeeds()
	tests := []struct {
		name string
		fn   func()
	}{
		{"icmp4 mpls", func() { _, _ = parseICMP4(m) }},
		{"icmp6 mpls", func() { _, _ = parseICMP6(m6, dst6) }},
		{"tcp4", func() { _, _ = parseTCP4(s4[0]) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.fn); n != 0 {
				t.Fatalf("%v allocations per parse, want 0", n)
			}
		})
	}
}

// TestWriteCorpus writes the seed corpora (go test fuzz v1 format).
func TestWriteCorpus(t *testing.T) {
	if os.Getenv("VTR_WRITE_CORPUS") == "" {
		t.Skip("set VTR_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	write := func(target string, i int, vals ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n"
		for _, v := range vals {
			body += v + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	q := func(b []byte) string { return fmt.Sprintf("[]byte(%q)", b) }
	for i, s := range icmp4Seeds() {
		write("FuzzParseICMP4", i, q(s))
	}
	for i, s := range icmp6Seeds() {
		write("FuzzParseICMP6", i, q(s), q(dst6.AsSlice()))
	}
	s4, s6 := tcpSeeds()
	for i, s := range s4 {
		write("FuzzParseTCP", i, q(s), "bool(false)")
	}
	for i, s := range s6 {
		write("FuzzParseTCP", 10+i, q(s), "bool(true)")
	}
	for i, s := range extSeeds() {
		write("FuzzParseExtensions", i, q(s), "int(128)")
	}
	_ = binary.BigEndian
}
