package trace

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestLoopAt(t *testing.T) {
	// path builds answers from addresses: "" is a silent TTL, a trailing
	// "!" marks a final answer (destination or unreachable).
	path := func(addrs ...string) []answer {
		ans := make([]answer, len(addrs)+1)
		for i, a := range addrs {
			if a == "" {
				continue
			}
			var final uint8
			if a[len(a)-1] == '!' {
				a, final = a[:len(a)-1], finalDest
			}
			ans[i+1] = answer{final: final, hop: &vantagev1.Hop{Ttl: uint32(i + 1), Addr: a}}
		}
		return ans
	}
	tests := []struct {
		name  string
		addrs []string
		want  int
	}{
		{"no answers", nil, 0},
		{"plain path", []string{"A", "B", "C", "D!"}, 0},
		{"two in a row is not a loop", []string{"A", "B", "B", "C!"}, 0},
		{"three in a row", []string{"A", "B", "B", "B", "B"}, 4},
		{"cycle", []string{"A", "B", "C", "B", "C"}, 4},
		{"cycle across a silent TTL", []string{"A", "B", "", "B"}, 4},
		{"a silent TTL breaks a run", []string{"A", "B", "B", "", "C"}, 0},
		{"repeat after a run", []string{"A", "B", "B", "C", "B"}, 5},
		{"destination first", []string{"A", "B!", "A"}, 0},
		{"destination after the loop", []string{"A", "B", "A", "D!"}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := loopAt(path(tc.addrs...)); got != tc.want {
				t.Errorf("loopAt(%q) = %d, want %d", tc.addrs, got, tc.want)
			}
		})
	}
}

// TestTraceLoop: a path whose routers bounce the packet between two of
// them stops with LOOP at the first repeat, without waiting for max_ttl.
func TestTraceLoop(t *testing.T) {
	for _, dst := range []netip.Addr{dst4, dst6} {
		t.Run(dst.String(), func(t *testing.T) {
			e, _, _ := newFakeTracer(t, func(p []byte) []fakePkt {
				pi := inspect(p)
				r := pi.ttl
				if r > 3 { // 1 2 3 2 3 2 3 ...
					r = 2 + (r-2)%2
				}
				te := uint8(v4TimeExceeded)
				if pi.v6 {
					te = v6TimeExceeded
				}
				return []fakePkt{icmpErr(te, 0, routerAddr(pi.v6, r), p, 250)}
			})
			res := e.Probe(context.Background(), traceTask(dst, &vantagev1.TraceSpec{Paris: true, TimeoutMs: 5000}))
			if res.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_LOOP {
				t.Fatalf("stop = %v (error %q), want LOOP", res.GetStopReason(), res.GetError())
			}
			var got []string
			for _, h := range res.GetHops() {
				got = append(got, h.GetAddr())
			}
			want := []string{routerAddr(dst.Is6(), 1).String(), routerAddr(dst.Is6(), 2).String(),
				routerAddr(dst.Is6(), 3).String(), routerAddr(dst.Is6(), 2).String()}
			if !slices.Equal(got, want) {
				t.Errorf("hops = %v, want %v", got, want)
			}
			if res.GetOutcome() != vantagev1.Outcome_OUTCOME_TIMEOUT {
				t.Errorf("outcome = %v, want TIMEOUT (destination not reached)", res.GetOutcome())
			}
		})
	}
}

// TestUnpaced: NoLimit turns off the global and the per-router buckets;
// traces still complete.
func TestUnpaced(t *testing.T) {
	ff4, ff6 := newFakeFamily(false, path(3)), newFakeFamily(true, path(3))
	e, err := NewTracer(Config{open: fakeOpen(ff4, ff6), PPS: NoLimit, RouterPPS: NoLimit})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.global != nil {
		t.Fatal("global bucket with PPS NoLimit")
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			dst := netip.AddrFrom4([4]byte{198, 18, byte(i), 1})
			res := e.Probe(context.Background(), traceTask(dst, &vantagev1.TraceSpec{Paris: true, TimeoutMs: 2000}))
			if res.GetStopReason() != vantagev1.TraceStopReason_TRACE_STOP_REASON_COMPLETED {
				t.Errorf("%s: stop %v (error %q)", dst, res.GetStopReason(), res.GetError())
			}
		})
	}
	wg.Wait()
}

// TestSendTimePerPacket: every probe's send time is taken right before its
// own write, so a slow write of the probes before it in a batch does not
// count in its RTT. Each write here takes 5 ms and the answer comes when it
// ends: RTTs of ~5 ms, where one send time per batch would give the probes
// behind others in a batch 10, 15, 20 ms and more.
func TestSendTimePerPacket(t *testing.T) {
	const traces, writeDelay = 20, 5 * time.Millisecond
	inner := path(1)
	ff4, ff6 := newFakeFamily(false, func(p []byte) []fakePkt {
		time.Sleep(writeDelay) // the write; the answer comes right after
		return inner(p)
	}), newFakeFamily(true, path(1))
	// While the sender is busy writing, the other traces' probes queue up
	// and go in the next batches.
	e, err := NewTracer(Config{open: fakeOpen(ff4, ff6), PPS: NoLimit, RouterPPS: NoLimit})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var mu sync.Mutex
	var rtts []time.Duration
	var wg sync.WaitGroup
	for i := range traces {
		wg.Go(func() {
			dst := netip.AddrFrom4([4]byte{198, 18, byte(i), 1})
			res := e.Probe(context.Background(), traceTask(dst, &vantagev1.TraceSpec{Paris: true, MaxTtl: 1, TimeoutMs: 5000}))
			if len(res.GetHops()) != 1 || res.GetHops()[0].GetAddr() == "" {
				t.Errorf("%s: hops %v (error %q)", dst, res.GetHops(), res.GetError())
				return
			}
			mu.Lock()
			rtts = append(rtts, time.Duration(res.GetHops()[0].GetRttUs())*time.Microsecond)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(rtts) != traces {
		t.Fatalf("%d answers, want %d", len(rtts), traces)
	}
	slices.Sort(rtts)
	if med := rtts[traces/2]; med >= 2*writeDelay {
		t.Errorf("median RTT %v with %v per write: the send time is not taken per packet (RTTs %v)", med, writeDelay, rtts)
	}
}
