package trace

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/probe/rawsock"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	pICMP = vantagev1.TraceProtocol_TRACE_PROTOCOL_ICMP
	pUDP  = vantagev1.TraceProtocol_TRACE_PROTOCOL_UDP
	pTCP  = vantagev1.TraceProtocol_TRACE_PROTOCOL_TCP_SYN
)

func traceTask(dst netip.Addr, spec *vantagev1.TraceSpec) *vantagev1.Task {
	return &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: dst.String(),
		Spec: &vantagev1.Task_Trace{Trace: spec}}
}

// newFakeTracer runs an engine on the same responder for both families,
// with pacing loose enough not to matter.
func newFakeTracer(t testing.TB, respond func([]byte) []fakePkt) (*Tracer, *fakeFamily, *fakeFamily) {
	t.Helper()
	ff4, ff6 := newFakeFamily(false, respond), newFakeFamily(true, respond)
	e, err := NewTracer(Config{open: fakeOpen(ff4, ff6), PPS: 1e6, Burst: 1000, RouterPPS: 1e6, RouterBurst: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, ff4, ff6
}

func TestTraceMatching(t *testing.T) {
	silentAfter := func(n int) func([]byte) []fakePkt {
		inner := path(99)
		return func(p []byte) []fakePkt {
			if inspect(p).ttl > n {
				return nil
			}
			return inner(p)
		}
	}
	unreachAt := func(at int) func([]byte) []fakePkt {
		inner := path(99)
		return func(p []byte) []fakePkt {
			pi := inspect(p)
			switch {
			case pi.ttl == at && pi.v6:
				return []fakePkt{icmpErr(v6Unreachable, 0, routerAddr(true, at), p, 250)}
			case pi.ttl == at:
				return []fakePkt{icmpErr(v4Unreachable, 0, routerAddr(false, at), p, 250)}
			case pi.ttl > at:
				return nil
			}
			return inner(p)
		}
	}
	type tc struct {
		name      string
		dst       netip.Addr
		spec      *vantagev1.TraceSpec
		net       func([]byte) []fakePkt
		outcome   vantagev1.Outcome
		stop      vantagev1.TraceStopReason
		hops      int
		lastAddr  string
		unreachCd uint32
	}
	var tests []tc
	for _, dst := range []netip.Addr{dst4, dst6} {
		for _, proto := range []vantagev1.TraceProtocol{pICMP, pUDP, pTCP} {
			for _, paris := range []bool{true, false} {
				tests = append(tests, tc{fmt.Sprintf("%s %v paris=%v three hops", dst, proto, paris), dst,
					&vantagev1.TraceSpec{Protocol: proto, Paris: paris, TimeoutMs: 300}, path(3),
					vantagev1.Outcome_OUTCOME_REPLY, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, 3, dst.String(), 0})
			}
		}
		tests = append(tests,
			tc{dst.String() + " eleven hops", dst, &vantagev1.TraceSpec{Paris: true, TimeoutMs: 300}, path(11),
				vantagev1.Outcome_OUTCOME_REPLY, vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED, 11, dst.String(), 0},
			tc{dst.String() + " unreachable at 2", dst, &vantagev1.TraceSpec{Protocol: pUDP, Paris: true, TimeoutMs: 300}, unreachAt(2),
				vantagev1.Outcome_OUTCOME_UNREACHABLE, vantagev1.TraceStopReason_TRACE_STOP_REASON_UNREACHABLE, 2,
				routerAddr(dst.Is6(), 2).String(), 0},
			tc{dst.String() + " gap limit", dst, &vantagev1.TraceSpec{GapLimit: 3, TimeoutMs: 50}, silentAfter(1),
				vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.TraceStopReason_TRACE_STOP_REASON_GAP_LIMIT, 4, "", 0},
			tc{dst.String() + " max ttl", dst, &vantagev1.TraceSpec{MaxTtl: 4, GapLimit: 10, TimeoutMs: 50}, silentAfter(2),
				vantagev1.Outcome_OUTCOME_TIMEOUT, vantagev1.TraceStopReason_TRACE_STOP_REASON_MAX_TTL, 4, "", 0},
		)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := newFakeTracer(t, tc.net)
			res := e.Probe(context.Background(), traceTask(tc.dst, tc.spec))
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
			if last := res.GetHops()[tc.hops-1]; last.GetAddr() != tc.lastAddr {
				t.Errorf("last hop addr = %q, want %q", last.GetAddr(), tc.lastAddr)
			}
			if tc.outcome == vantagev1.Outcome_OUTCOME_REPLY {
				first := res.GetHops()[0]
				if first.GetAddr() != routerAddr(tc.dst.Is6(), 1).String() || first.GetQuotedTtl() != 1 || first.GetReplyTtl() != 255 {
					t.Errorf("hop 1 = %v, want router 1 with quoted_ttl 1 and reply ttl 255", first)
				}
				if res.GetReplyFrom() != tc.dst.String() || res.GetSentAt() == nil || res.GetReplyTtl() != uint32(64-tc.hops+1) {
					t.Errorf("reply_from %q sent_at %v reply_ttl %d", res.GetReplyFrom(), res.GetSentAt(), res.GetReplyTtl())
				}
			}
			if e.PacketsIgnored() != 0 {
				t.Errorf("PacketsIgnored = %d, want 0 on a clean path", e.PacketsIgnored())
			}
		})
	}
}

// flowOf is what per-flow load balancers hash beyond the addresses: for
// ICMP the first 4 bytes (type, code, checksum), for UDP and TCP the ports.
// probeOf is what tells the probes of one trace apart.
func flowOf(p probeInfo) (flow, probe string) {
	switch p.proto {
	case protoUDP:
		return string(p.l4[0:4]), string(p.l4[6:8])
	case protoTCP:
		return string(p.l4[0:4]), string(p.l4[4:8])
	}
	return string(p.l4[0:6]), string(p.l4[6:8])
}

func TestParisKeepsFlow(t *testing.T) {
	for _, dst := range []netip.Addr{dst4, dst6} {
		for _, proto := range []vantagev1.TraceProtocol{pICMP, pUDP, pTCP} {
			for _, paris := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s %v paris=%v", dst, proto, paris), func(t *testing.T) {
					e, ff4, ff6 := newFakeTracer(t, path(8))
					e.Probe(context.Background(), traceTask(dst, &vantagev1.TraceSpec{Protocol: proto, Paris: paris, MaxTtl: 8, TimeoutMs: 300}))
					ff := ff4
					if dst.Is6() {
						ff = ff6
					}
					ff.mu.Lock()
					defer ff.mu.Unlock()
					if len(ff.sent) != 8 {
						t.Fatalf("sent %d probes, want 8", len(ff.sent))
					}
					flows, probes := map[string]bool{}, map[string]bool{}
					for _, b := range ff.sent {
						pi := inspect(b)
						if sum := rawsock.Checksum(pseudoIfAny(pi), pi.l4); sum != 0 {
							t.Fatalf("probe ttl %d has a bad transport checksum (%#x)", pi.ttl, sum)
						}
						f, p := flowOf(pi)
						flows[f], probes[p] = true, true
					}
					if len(probes) != 8 {
						t.Errorf("%d distinct probe identifiers, want 8", len(probes))
					}
					wantFlows := 1
					if !paris && proto != pTCP {
						wantFlows = 8 // classic traceroute changes the flow per TTL
					}
					if len(flows) != wantFlows {
						t.Errorf("%d distinct flows, want %d", len(flows), wantFlows)
					}
				})
			}
		}
	}
}

func pseudoIfAny(p probeInfo) uint32 {
	if p.proto == protoICMP {
		return 0
	}
	return rawsock.PseudoSum(p.src, p.dst, p.proto, len(p.l4))
}

// TestIgnoredPackets injects garbage, foreign and spoofed packets with every
// real answer: each is dropped and counted, and the trace still completes.
func TestIgnoredPackets(t *testing.T) {
	other := netip.MustParseAddr("198.51.100.99")
	inner := path(2)
	const perProbe = 9
	e, _, _ := newFakeTracer(t, func(probe []byte) []fakePkt {
		pi := inspect(probe)
		foreignID := append([]byte(nil), probe...)
		foreignID[20+4] ^= 0x7f // echo id: another slot
		badCookie := append([]byte(nil), probe...)
		badCookie[20+10] ^= 0xff
		badSum := icmpErr(v4TimeExceeded, 0, other, probe, 250)
		badSum.b[20+2] ^= 0x01
		notEcho := append([]byte(nil), probe...)
		notEcho[20] = 13
		otherDst := append([]byte(nil), probe...)
		copy(otherDst[16:20], other.AsSlice())
		junk := []fakePkt{
			{b: []byte{0x45, 0xad}, hl: -1},                    // truncated
			{b: nil, hl: -1},                                   // empty
			icmpErr(v4TimeExceeded, 0, other, probe[:24], 250), // quote cut in the ICMP header
			icmpErr(v4TimeExceeded, 0, other, foreignID, 250),  // another slot
			icmpErr(v4TimeExceeded, 0, other, badCookie, 250),  // spoofed: wrong cookie
			icmpErr(v4TimeExceeded, 0, other, otherDst, 250),   // quoted dst not ours
			icmpErr(v4TimeExceeded, 0, other, notEcho, 250),    // quoted packet not an echo
			badSum,                           // bad checksum
			icmpErr(5, 0, other, probe, 250), // redirect
		}
		_ = pi
		return append(junk, inner(probe)...)
	})
	res := e.Probe(context.Background(), traceTask(dst4, &vantagev1.TraceSpec{Paris: true, MaxTtl: 2, TimeoutMs: 300}))
	if res.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED || len(res.GetHops()) != 2 {
		t.Fatalf("stop = %v hops = %d (error %q), want COMPLETED with 2 hops", res.GetStopReason(), len(res.GetHops()), res.GetError())
	}
	if got := e.PacketsIgnored(); got < 2*perProbe-1 {
		t.Fatalf("PacketsIgnored = %d, want at least %d", got, 2*perProbe-1)
	}
}

// TestMPLS: a router's RFC 4950 label stack (RFC 4884 extension) lands in
// the hop.
func TestMPLS(t *testing.T) {
	tests := []struct {
		name   string
		v6     bool
		compat bool // pre-RFC 4884: length 0, extensions at 128
	}{
		{"v4 rfc4884", false, false},
		{"v4 compat", false, true},
		{"v6 rfc4884", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := path(3)
			e, _, _ := newFakeTracer(t, func(probe []byte) []fakePkt {
				pi := inspect(probe)
				if pi.ttl != 2 {
					return inner(probe)
				}
				return []fakePkt{mplsErr(probe, routerAddr(pi.v6, 2), tc.compat)}
			})
			dst := dst4
			if tc.v6 {
				dst = dst6
			}
			res := e.Probe(context.Background(), traceTask(dst, &vantagev1.TraceSpec{Paris: true, TimeoutMs: 300}))
			if len(res.GetHops()) != 3 {
				t.Fatalf("hops = %v (error %q)", res.GetHops(), res.GetError())
			}
			m := res.GetHops()[1].GetMpls()
			if len(m) != 2 || m[0].GetLabel() != 16001 || m[0].GetExp() != 5 || m[0].GetBottomOfStack() || m[0].GetTtl() != 1 ||
				m[1].GetLabel() != 0xfffff || !m[1].GetBottomOfStack() || m[1].GetTtl() != 255 {
				t.Fatalf("mpls = %v, want 16001/exp 5/ttl 1 then 1048575/S/ttl 255", m)
			}
		})
	}
}

// mplsErr is a time exceeded quoting probe padded to 128 bytes, with an
// RFC 4950 label stack of two entries.
func mplsErr(probe []byte, router netip.Addr, compat bool) fakePkt {
	pi := inspect(probe)
	q := make([]byte, 128)
	copy(q, quoted(probe))
	obj := []byte{0, 12, 1, 1}
	obj = binary.BigEndian.AppendUint32(obj, 16001<<12|5<<9|1)
	obj = binary.BigEndian.AppendUint32(obj, 0xfffff<<12|1<<8|255)
	ext := append([]byte{0x20, 0, 0, 0}, obj...)
	binary.BigEndian.PutUint16(ext[2:4], rawsock.Checksum(0, ext))
	typ := uint8(v4TimeExceeded)
	if pi.v6 {
		typ = v6TimeExceeded
	}
	m := append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, append(q, ext...)...)
	if !compat {
		if pi.v6 {
			m[4] = 128 / 8
		} else {
			m[5] = 128 / 4
		}
	}
	if pi.v6 {
		return fakePkt{b: m, src: router, hl: 254}
	}
	binary.BigEndian.PutUint16(m[2:4], rawsock.Checksum(0, m))
	return fakePkt{b: ip4(protoICMP, 254, router, pi.src, m), src: router, hl: -1}
}

// TestConcurrentTraces: 200 traces to different destinations, over all
// protocols and both families, share one engine; each finds its own path.
func TestConcurrentTraces(t *testing.T) {
	// The path length depends on the destination, so a mismatch shows.
	hopsFor := func(dst netip.Addr) int { return 2 + int(dst.As16()[15])%7 }
	e, _, _ := newFakeTracer(t, func(probe []byte) []fakePkt {
		return path(hopsFor(inspect(probe).dst))(probe)
	})
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		dst := netip.AddrFrom4([4]byte{198, 18, byte(i / 50), byte(i)})
		if i%2 == 1 {
			dst = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x18, 14: byte(i / 50), 15: byte(i)})
		}
		proto := []vantagev1.TraceProtocol{pICMP, pUDP, pTCP}[i%3]
		wg.Go(func() {
			res := e.Probe(context.Background(), traceTask(dst, &vantagev1.TraceSpec{Protocol: proto, Paris: true, TimeoutMs: 2000}))
			if res.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED || len(res.GetHops()) != hopsFor(dst) ||
				res.GetReplyFrom() != dst.String() {
				errs <- fmt.Errorf("%s %v: stop %v hops %d reply_from %s (error %q)", dst, proto, res.GetStopReason(),
					len(res.GetHops()), res.GetReplyFrom(), res.GetError())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if e.PacketsIgnored() != 0 {
		t.Errorf("PacketsIgnored = %d, want 0", e.PacketsIgnored())
	}
}

// TestRun drives the batch API.
func TestRun(t *testing.T) {
	e, _, _ := newFakeTracer(t, path(3))
	tasks := make(chan *vantagev1.Task)
	go func() {
		defer close(tasks)
		for i := range 20 {
			tasks <- traceTask(netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}), &vantagev1.TraceSpec{Paris: true, TimeoutMs: 500})
		}
		tasks <- &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: "not-an-ip"}
	}()
	var got []*vantagev1.ProbeResult
	if err := e.Run(context.Background(), tasks, func(r *vantagev1.ProbeResult) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 21 {
		t.Fatalf("%d results, want 21", len(got))
	}
	bad := 0
	for _, r := range got {
		if r.GetOutcome() == vantagev1.Outcome_OUTCOME_ERROR {
			bad++
			if r.GetError() != `target "not-an-ip": not an IP address` {
				t.Errorf("error = %q", r.GetError())
			}
		} else if r.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED {
			t.Errorf("%s: %v", r.GetTarget(), r.GetStopReason())
		}
	}
	if bad != 1 {
		t.Errorf("%d errors, want 1", bad)
	}
}

func TestBadTasks(t *testing.T) {
	e, _, _ := newFakeTracer(t, path(3))
	tests := []struct {
		name string
		task *vantagev1.Task
		want string
	}{
		{"not an ip", &vantagev1.Task{Target: "example.org"}, `target "example.org": not an IP address`},
		{"port on icmp", traceTask(dst4, &vantagev1.TraceSpec{Port: 80}), "trace.port 80: ICMP traces have no port"},
		{"port too big", traceTask(dst4, &vantagev1.TraceSpec{Protocol: pTCP, Port: 70000}), "trace.port 70000: must be at most 65535"},
		{"unknown protocol", traceTask(dst4, &vantagev1.TraceSpec{Protocol: 9}), "trace.protocol 9: unknown protocol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.Probe(context.Background(), tc.task)
			if res.GetOutcome() != vantagev1.Outcome_OUTCOME_ERROR || res.GetError() != tc.want {
				t.Fatalf("outcome %v error %q, want ERROR %q", res.GetOutcome(), res.GetError(), tc.want)
			}
		})
	}
}

// BenchmarkMatch measures the receive path: parse an ICMP time exceeded
// and match it to its trace and TTL (stateless lookup, cookie check, hop
// record).
func BenchmarkMatch(b *testing.B) {
	quiet := func([]byte) []fakePkt { return nil }
	ff4, ff6 := newFakeFamily(false, quiet), newFakeFamily(true, quiet)
	e, err := NewTracer(Config{open: fakeOpen(ff4, ff6), MaxTraces: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	tr := &traceState{maxTTL: 30, gapLimit: 5, kick: make(chan struct{}, 1), done: make(chan struct{})}
	tr.id = probeID{proto: protoICMP, src: src4, dst: dst4, paris: true, slot: 5, gen: 1}
	tr.horizon = 30
	tr.id.cookie = e.cookie(&tr.id)
	for ttl := range tr.sent {
		tr.sent[ttl] = time.Now()
	}
	e.slots[5] = slot{gen: 1, tr: tr, lastDst: dst4}
	id := tr.id
	id.ttl = 3
	pb := make([]byte, 128)
	probe := pb[:buildProbe(pb, &id)]
	pkt := icmpErr(v4TimeExceeded, 0, routerAddr(false, 3), probe, 253).b
	in := &inPacket{buf: pkt, n: len(pkt), at: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		e.handle(rxICMP4, in)
		tr.ans[3] = answer{} // free the TTL again
	}
	if e.matched.Load() == 0 || e.PacketsIgnored() != 0 {
		b.Fatalf("matched %d ignored %d", e.matched.Load(), e.PacketsIgnored())
	}
}

// TestHorizon: once a destination's distance is known, later traces probe
// only one TTL beyond it, and extend to max_ttl when the path got longer.
func TestHorizon(t *testing.T) {
	var mu sync.Mutex
	hops := 3
	e, ff4, _ := newFakeTracer(t, func(p []byte) []fakePkt {
		mu.Lock()
		defer mu.Unlock()
		return path(hops)(p)
	})
	sent := func() int {
		ff4.mu.Lock()
		defer ff4.mu.Unlock()
		n := len(ff4.sent)
		ff4.sent = nil
		return n
	}
	spec := &vantagev1.TraceSpec{Paris: true, TimeoutMs: 300}
	steps := []struct {
		name     string
		hops     int
		maxSent  int
		wantHops int
	}{
		{"first trace bursts every TTL", 3, 30, 3},
		{"known distance: up to one beyond", 3, 4, 3},
		{"longer path: extends", 6, 30, 6},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			mu.Lock()
			hops = st.hops
			mu.Unlock()
			res := e.Probe(context.Background(), traceTask(dst4, spec))
			if res.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED || len(res.GetHops()) != st.wantHops {
				t.Fatalf("stop %v hops %d (error %q)", res.GetStopReason(), len(res.GetHops()), res.GetError())
			}
			if n := sent(); n > st.maxSent {
				t.Errorf("sent %d probes, want at most %d", n, st.maxSent)
			}
		})
	}
}

// TestRouterPacing: the first-hop router's bucket spaces the TTL 1 probes
// of traces that start together, while the global rate is much higher.
func TestRouterPacing(t *testing.T) {
	var mu sync.Mutex
	var ttl1 []time.Time
	inner := path(2)
	respond := func(p []byte) []fakePkt {
		if inspect(p).ttl == 1 {
			mu.Lock()
			ttl1 = append(ttl1, time.Now())
			mu.Unlock()
		}
		return inner(p)
	}
	ff4, ff6 := newFakeFamily(false, respond), newFakeFamily(true, respond)
	const routerPPS, traces = 200, 10
	e, err := NewTracer(Config{open: fakeOpen(ff4, ff6), PPS: 1e6, Burst: 1000, RouterPPS: routerPPS, RouterBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var wg sync.WaitGroup
	for i := range traces {
		wg.Go(func() {
			e.Probe(context.Background(), traceTask(netip.AddrFrom4([4]byte{198, 18, byte(i), 1}), &vantagev1.TraceSpec{Paris: true, MaxTtl: 3, TimeoutMs: 1000}))
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(ttl1) != traces {
		t.Fatalf("%d TTL 1 probes, want %d", len(ttl1), traces)
	}
	slices.SortFunc(ttl1, time.Time.Compare)
	// (n - burst) tokens at routerPPS; allow 20% for timer slack.
	minSpread := time.Duration(float64(traces-1) / routerPPS * 0.8 * float64(time.Second))
	if got := ttl1[traces-1].Sub(ttl1[0]); got < minSpread {
		t.Fatalf("TTL 1 probes spread over %v, want at least %v at %d pps", got, minSpread, routerPPS)
	}
}
