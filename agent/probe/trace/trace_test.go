package trace

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// fakePkt is one ICMP message as the conn would deliver it.
type fakePkt struct {
	msg []byte
	ttl int
	src netip.Addr
}

// fakeConn simulates a network: respond maps each sent probe to the packets
// that come back.
type fakeConn struct {
	respond func(msg []byte, ttl int) []fakePkt

	mu       sync.Mutex
	sent     [][]byte
	queue    chan fakePkt
	deadline time.Time
	closed   chan struct{}
	once     sync.Once
}

func newFakeConn(respond func(msg []byte, ttl int) []fakePkt) *fakeConn {
	return &fakeConn{respond: respond, queue: make(chan fakePkt, 4096), closed: make(chan struct{})}
}

func (c *fakeConn) WriteTo(msg []byte, ttl int, _ netip.Addr) error {
	c.mu.Lock()
	c.sent = append(c.sent, append([]byte(nil), msg...))
	c.mu.Unlock()
	for _, p := range c.respond(msg, ttl) {
		c.queue <- p
	}
	return nil
}

func (c *fakeConn) ReadFrom(b []byte) (int, int, netip.Addr, error) {
	c.mu.Lock()
	d := time.Until(c.deadline)
	c.mu.Unlock()
	timer := time.NewTimer(max(d, 0))
	defer timer.Stop()
	select {
	case p := <-c.queue:
		return copy(b, p.msg), p.ttl, p.src, nil
	case <-timer.C:
		return 0, 0, netip.Addr{}, os.ErrDeadlineExceeded
	case <-c.closed:
		return 0, 0, netip.Addr{}, net.ErrClosed
	}
}

func (c *fakeConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

var (
	src4 = netip.MustParseAddr("192.0.2.100")
	dst4 = netip.MustParseAddr("198.51.100.7")
	src6 = netip.MustParseAddr("2001:db8::100")
	dst6 = netip.MustParseAddr("2001:db8:1::7")
)

// quote4 builds the IPv4 header of a probe as a router quotes it.
func quote4(probe []byte, ttl uint8, dst netip.Addr) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:4], uint16(20+len(probe)))
	h[8] = ttl
	h[9] = protoICMP
	copy(h[12:16], src4.AsSlice())
	copy(h[16:20], dst.AsSlice())
	return append(h, probe[:8]...)
}

func quote6(probe []byte, hl uint8, dst netip.Addr) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], uint16(len(probe)))
	h[6] = protoICMPv6
	h[7] = hl
	copy(h[8:24], src6.AsSlice())
	copy(h[24:40], dst.AsSlice())
	return append(h, probe[:8]...)
}

// icmpErr builds an ICMP error message (type, code) quoting q.
func icmpErr(v6 bool, typ, code uint8, q []byte) []byte {
	m := append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, q...)
	if !v6 {
		binary.BigEndian.PutUint16(m[2:4], checksum(m))
	}
	return m
}

// echoReply turns an echo request into its reply.
func echoReply(v6 bool, probe []byte) []byte {
	m := append([]byte(nil), probe...)
	m[0] = v4EchoReply
	if v6 {
		m[0] = v6EchoReply
	}
	m[2], m[3] = 0, 0
	if !v6 {
		binary.BigEndian.PutUint16(m[2:4], checksum(m))
	}
	return m
}

func routerAddr(v6 bool, ttl int) netip.Addr {
	if v6 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 15: byte(ttl)})
	}
	return netip.AddrFrom4([4]byte{10, 0, 0, byte(ttl)})
}

// path simulates routers at TTL 1..hops-1 and the destination at hops.
func path(v6 bool, dst netip.Addr, hops int) func([]byte, int) []fakePkt {
	te := uint8(v4TimeExceeded)
	if v6 {
		te = v6TimeExceeded
	}
	return func(probe []byte, ttl int) []fakePkt {
		if ttl >= hops {
			return []fakePkt{{msg: echoReply(v6, probe), ttl: 64 - hops + 1, src: dst}}
		}
		q := quote4(probe, 1, dst)
		if v6 {
			q = quote6(probe, 1, dst)
		}
		return []fakePkt{{msg: icmpErr(v6, te, 0, q), ttl: 255 - ttl + 1, src: routerAddr(v6, ttl)}}
	}
}

func traceTask(dst netip.Addr, spec *vantagev1.TraceSpec) *vantagev1.Task {
	return &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: dst.String(),
		Spec: &vantagev1.Task_Trace{Trace: spec}}
}

func TestTraceMatching(t *testing.T) {
	silentAfter := func(v6 bool, dst netip.Addr, n int) func([]byte, int) []fakePkt {
		inner := path(v6, dst, 99)
		return func(p []byte, ttl int) []fakePkt {
			if ttl > n {
				return nil
			}
			return inner(p, ttl)
		}
	}
	unreachAt := func(at int) func([]byte, int) []fakePkt {
		inner := path(false, dst4, 99)
		return func(p []byte, ttl int) []fakePkt {
			if ttl == at {
				return []fakePkt{{msg: icmpErr(false, v4Unreachable, 1, quote4(p, 1, dst4)), ttl: 250, src: routerAddr(false, ttl)}}
			}
			if ttl > at {
				return nil
			}
			return inner(p, ttl)
		}
	}
	tests := []struct {
		name      string
		dst       netip.Addr
		spec      *vantagev1.TraceSpec
		net       func([]byte, int) []fakePkt
		outcome   vantagev1.Outcome
		stop      vantagev1.TraceStopReason
		hops      int
		lastAddr  string
		unreachCd uint32
	}{
		{"three hops v4", dst4, &vantagev1.TraceSpec{Paris: true, TimeoutMs: 200}, path(false, dst4, 3),
			vantagev1.Outcome_OUTCOME_REPLY, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, 3, dst4.String(), 0},
		{"eleven hops v4 across windows", dst4, &vantagev1.TraceSpec{TimeoutMs: 200}, path(false, dst4, 11),
			vantagev1.Outcome_OUTCOME_REPLY, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, 11, dst4.String(), 0},
		{"three hops v6", dst6, &vantagev1.TraceSpec{Paris: true, TimeoutMs: 200}, path(true, dst6, 3),
			vantagev1.Outcome_OUTCOME_REPLY, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, 3, dst6.String(), 0},
		{"unreachable at 2", dst4, &vantagev1.TraceSpec{TimeoutMs: 200}, unreachAt(2),
			vantagev1.Outcome_OUTCOME_UNREACHABLE, vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE, 2, "10.0.0.2", 1},
		{"gap limit", dst4, &vantagev1.TraceSpec{GapLimit: 3, TimeoutMs: 50}, silentAfter(false, dst4, 1),
			vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT, 4, "", 0},
		{"max ttl", dst4, &vantagev1.TraceSpec{MaxTtl: 4, GapLimit: 10, TimeoutMs: 50}, silentAfter(false, dst4, 2),
			vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.TraceStopReason_TRACE_STOP_REASON_MAX_TTL, 4, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fc := newFakeConn(tc.net)
			p := &Prober{listen: func(bool) (conn, error) { return fc, nil }}
			res := p.Probe(context.Background(), traceTask(tc.dst, tc.spec))
			if res.GetOutcome() != tc.outcome || res.GetStopReason() != tc.stop {
				t.Fatalf("outcome/stop = %v/%v (error %q), want %v/%v", res.GetOutcome(), res.GetStopReason(), res.GetError(), tc.outcome, tc.stop)
			}
			if len(res.GetHops()) != tc.hops {
				t.Fatalf("hops = %d, want %d: %v", len(res.GetHops()), tc.hops, res.GetHops())
			}
			for i, h := range res.GetHops() {
				if h.GetTtl() != uint32(i+1) {
					t.Errorf("hop %d ttl = %d", i, h.GetTtl())
				}
			}
			last := res.GetHops()[tc.hops-1]
			if last.GetAddr() != tc.lastAddr {
				t.Errorf("last hop addr = %q, want %q", last.GetAddr(), tc.lastAddr)
			}
			if res.GetUnreachableCode() != tc.unreachCd {
				t.Errorf("unreachable_code = %d, want %d", res.GetUnreachableCode(), tc.unreachCd)
			}
			if tc.outcome == vantagev1.Outcome_OUTCOME_REPLY {
				first := res.GetHops()[0]
				if first.GetAddr() != routerAddr(tc.dst.Is6(), 1).String() || first.GetQuotedTtl() != 1 || first.GetReplyTtl() == 0 {
					t.Errorf("hop 1 = %v, want router 1 with quoted_ttl 1 and a reply ttl", first)
				}
				if res.GetReplyFrom() != tc.dst.String() || res.GetSentAt() == nil {
					t.Errorf("reply_from %q sent_at %v", res.GetReplyFrom(), res.GetSentAt())
				}
			}
			if p.PacketsIgnored() != 0 {
				t.Errorf("PacketsIgnored = %d, want 0 on a clean path", p.PacketsIgnored())
			}
		})
	}
}

// TestIgnoredPackets injects garbage and foreign packets before every real
// answer: each is ignored and counted, and the trace still completes.
func TestIgnoredPackets(t *testing.T) {
	other := netip.MustParseAddr("198.51.100.99")
	junk := func(probe []byte) []fakePkt {
		foreignID := append([]byte(nil), probe...)
		foreignID[4] ^= 0xff
		badSum := icmpErr(false, v4TimeExceeded, 0, quote4(probe, 1, dst4))
		badSum[2] ^= 0x01
		notEcho := append([]byte(nil), probe...)
		notEcho[0] = 13 // timestamp request quoted
		return []fakePkt{
			{msg: []byte{0xde, 0xad}, src: other},                                                       // truncated
			{msg: []byte{}, src: other},                                                                 // empty
			{msg: icmpErr(false, v4TimeExceeded, 0, []byte{0x45, 0, 0}), src: other},                    // truncated quote
			{msg: icmpErr(false, v4TimeExceeded, 0, quote4(probe, 1, dst4)[:24]), src: other},           // quote cut in the ICMP header
			{msg: icmpErr(false, v4TimeExceeded, 0, quote4(foreignID, 1, dst4)), src: other},            // another trace's id
			{msg: icmpErr(false, v4TimeExceeded, 0, quote4(probe, 1, other)), src: other},               // quoted dst not ours
			{msg: icmpErr(false, v4TimeExceeded, 0, quote4(notEcho, 1, dst4)), src: other},              // quoted packet not an echo
			{msg: badSum, src: other},                                                                   // bad checksum
			{msg: echoReply(false, foreignID), src: dst4},                                               // echo reply, other id
			{msg: echoReply(false, probe), src: other},                                                  // our echo reply from the wrong host
			{msg: icmpErr(false, 5, 0, quote4(probe, 1, dst4)), src: other},                             // redirect
			{msg: append([]byte{v4TimeExceeded, 0, 0, 0, 0, 0, 0, 0}, make([]byte, 28)...), src: other}, // zero quote
		}
	}
	const perProbe = 12
	inner := path(false, dst4, 2)
	fc := newFakeConn(func(probe []byte, ttl int) []fakePkt {
		return append(junk(probe), inner(probe, ttl)...)
	})
	p := &Prober{listen: func(bool) (conn, error) { return fc, nil }}
	res := p.Probe(context.Background(), traceTask(dst4, &vantagev1.TraceSpec{Paris: true, TimeoutMs: 200}))
	if res.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED || len(res.GetHops()) != 2 {
		t.Fatalf("stop = %v hops = %d (error %q), want COMPLETED with 2 hops", res.GetStopReason(), len(res.GetHops()), res.GetError())
	}
	// The window sent 8 probes; the trace reads until TTL 1 and 2 are
	// answered, so at least the junk of those two probes was read.
	if got := p.PacketsIgnored(); got < 2*perProbe {
		t.Fatalf("PacketsIgnored = %d, want at least %d", got, 2*perProbe)
	}
}

func TestParisKeepsChecksum(t *testing.T) {
	tests := []struct {
		name      string
		paris     bool
		wantConst bool
	}{
		{"paris", true, true},
		{"classic", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fc := newFakeConn(path(false, dst4, 6))
			p := &Prober{listen: func(bool) (conn, error) { return fc, nil }}
			p.Probe(context.Background(), traceTask(dst4, &vantagev1.TraceSpec{Paris: tc.paris, TimeoutMs: 200}))
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if len(fc.sent) < 6 {
				t.Fatalf("sent %d probes, want at least 6", len(fc.sent))
			}
			sameSum, sameID := true, true
			for _, m := range fc.sent[1:] {
				if checksum(m) != 0 {
					t.Fatalf("probe has a bad checksum")
				}
				sameSum = sameSum && string(m[2:4]) == string(fc.sent[0][2:4])
				sameID = sameID && string(m[4:6]) == string(fc.sent[0][4:6])
			}
			if sameSum != tc.wantConst || sameID != tc.wantConst {
				t.Fatalf("constant checksum=%v id=%v, want %v", sameSum, sameID, tc.wantConst)
			}
		})
	}
}

func TestParseReply(t *testing.T) {
	probe := buildEcho(false, true, 0x1234, 0x0042)
	probe6 := buildEcho(true, true, 0x1234, 0x0042)
	tests := []struct {
		name    string
		v6      bool
		msg     []byte
		wantErr error
		want    reply
	}{
		{"time exceeded v4", false, icmpErr(false, 11, 0, quote4(probe, 1, dst4)), nil,
			reply{kind: kindTimeExceeded, icmpType: 11, id: 0x1234, seq: 0x42, quotedTTL: 1, quotedDst: dst4}},
		{"unreachable v4 port", false, icmpErr(false, 3, 13, quote4(probe, 3, dst4)), nil,
			reply{kind: kindUnreachable, icmpType: 3, icmpCode: 13, id: 0x1234, seq: 0x42, quotedTTL: 3, quotedDst: dst4}},
		{"echo reply v4", false, echoReply(false, probe), nil,
			reply{kind: kindEchoReply, id: 0x1234, seq: 0x42}},
		{"time exceeded v6", true, icmpErr(true, 3, 0, quote6(probe6, 1, dst6)), nil,
			reply{kind: kindTimeExceeded, icmpType: 3, id: 0x1234, seq: 0x42, quotedTTL: 1, quotedDst: dst6}},
		{"echo reply v6", true, echoReply(true, probe6), nil,
			reply{kind: kindEchoReply, icmpType: 129, id: 0x1234, seq: 0x42}},
		{"truncated", false, []byte{11, 0, 0}, errTruncated, reply{}},
		{"v4 quote of udp", false, icmpErr(false, 11, 0, func() []byte { q := quote4(probe, 1, dst4); q[9] = 17; return q }()), errNotOurs, reply{}},
		{"v4 bad ihl", false, icmpErr(false, 11, 0, func() []byte { q := quote4(probe, 1, dst4); q[0] = 0x41; return q }()), errGarbage, reply{}},
		{"v4 huge ihl", false, icmpErr(false, 11, 0, func() []byte { q := quote4(probe, 1, dst4); q[0] = 0x4f; return q }()), errTruncated, reply{}},
		{"v6 quote with ext header", true, icmpErr(true, 3, 0, func() []byte { q := quote6(probe6, 1, dst6); q[6] = 0; return q }()), errNotOurs, reply{}},
		{"echo request is not a reply", false, probe, errNotOurs, reply{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseReply(tc.v6, tc.msg)
			if err != tc.wantErr {
				t.Fatalf("parseReply err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("parseReply = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseReply feeds arbitrary bytes to the parsers and the matcher; they
// must never panic. Seeds live in testdata/fuzz/FuzzParseReply.
func FuzzParseReply(f *testing.F) {
	probe := buildEcho(false, true, 7, 8)
	f.Add(icmpErr(false, 11, 0, quote4(probe, 1, dst4)), false)
	f.Add(echoReply(true, buildEcho(true, true, 7, 8)), true)
	f.Fuzz(func(t *testing.T, msg []byte, v6 bool) {
		_, _ = parseReply(v6, msg)
		p := &Prober{}
		tr := &tracer{p: p, v6: v6, dst: dst4, id: 7, paris: true,
			sent: map[uint16]sentProbe{8: {ttl: 1, at: time.Now()}}, answers: map[int]answer{}}
		tr.handle(msg, 64, dst4, time.Now())
		if len(tr.answers) == 0 && p.PacketsIgnored() != 1 {
			t.Fatalf("packet neither matched nor counted")
		}
	})
}

func TestRealTraceLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: raw ICMP sockets")
	}
	tests := []struct {
		name   string
		target string
	}{
		{"v4", "127.0.0.1"},
		{"v6", "::1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !RawAvailable(tc.target == "::1") {
				t.Skip("no raw socket for this family")
			}
			p := New(nil)
			res := p.Probe(context.Background(), &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: tc.target,
				Spec: &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{Paris: true, MaxTtl: 5, TimeoutMs: 1000}}})
			if res.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED || res.GetOutcome() != vantagev1.Outcome_OUTCOME_REPLY {
				t.Fatalf("stop/outcome = %v/%v (error %q), want COMPLETED/REPLY", res.GetStopReason(), res.GetOutcome(), res.GetError())
			}
			if len(res.GetHops()) != 1 || res.GetHops()[0].GetAddr() != tc.target || res.GetHops()[0].GetTtl() != 1 {
				t.Fatalf("hops = %v, want one hop: the destination at ttl 1", res.GetHops())
			}
			if res.GetEngine() != Engine || res.GetReplyTtl() == 0 {
				t.Errorf("engine %q reply_ttl %d", res.GetEngine(), res.GetReplyTtl())
			}
		})
	}
}
