package main

import (
	"bufio"
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func reference(t testing.TB, r *vantagev1.ProbeResult) string {
	t.Helper()
	var p protoJSONLine
	return string(p.append(nil, r))
}

// typicalResult is a one-shot echo's REPLY sent at sent.
func typicalResult(sent time.Time) *vantagev1.ProbeResult {
	return &vantagev1.ProbeResult{TaskId: "oneshot/icmp/198.19.0.1", Campaign: "oneshot", Target: "198.19.0.1",
		Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, SentAt: timestamppb.New(sent),
		Outcome: vantagev1.Outcome_OUTCOME_REPLY, RttUs: 21, ReplyFrom: "198.19.0.1", ReplyTtl: 60, Attempts: 1,
		Engine: "icmp/bulk-raw"}
}

func TestResultJSONMatchesProtojson(t *testing.T) {
	if !fastJSON {
		t.Fatal("ProbeResult's fields changed: update probeResultFields and appendResultJSON")
	}
	sent := time.Date(2026, 11, 22, 9, 4, 5, 123456789, time.UTC)
	typical := func() *vantagev1.ProbeResult { return typicalResult(sent) }
	with := func(f func(r *vantagev1.ProbeResult)) *vantagev1.ProbeResult {
		r := typical()
		f(r)
		return r
	}
	tests := []struct {
		name string
		r    *vantagev1.ProbeResult
		fast bool // the fast path must handle it (else it must decline)
	}{
		{"empty", &vantagev1.ProbeResult{}, true},
		{"typical reply", typical(), true},
		{"timeout", with(func(r *vantagev1.ProbeResult) {
			r.Outcome, r.RttUs, r.ReplyFrom, r.ReplyTtl = vantagev1.Outcome_OUTCOME_TIMEOUT, 0, "", 0
		}), true},
		{"tcp unreachable", with(func(r *vantagev1.ProbeResult) {
			r.Kind, r.Port, r.Outcome, r.UnreachableCode = vantagev1.ProbeKind_PROBE_KIND_TCP, 443, vantagev1.Outcome_OUTCOME_UNREACHABLE, 13
			r.ReplyFrom = "2001:db8::1"
		}), true},
		{"max integers", with(func(r *vantagev1.ProbeResult) {
			r.Seq, r.Round, r.RttUs, r.ReplyTtl, r.Attempts, r.UnreachableCode, r.Port = math.MaxUint64, math.MinInt64,
				math.MaxUint32, math.MaxUint32, math.MaxUint32, math.MaxUint32, math.MaxUint32
		}), true},
		{"negative round", with(func(r *vantagev1.ProbeResult) { r.Round = -5 }), true},
		{"escapes", with(func(r *vantagev1.ProbeResult) {
			r.Error = "a\"b\\c\bd\fe\nf\rg\th\x00i\x01j\x1fk\x7fl<>&\u2028\u2029é😀\ufffd/"
			r.TriggerId = "trg-1"
		}), true},
		{"whole seconds", with(func(r *vantagev1.ProbeResult) { r.SentAt = timestamppb.New(sent.Truncate(time.Second)) }), true},
		{"milliseconds", with(func(r *vantagev1.ProbeResult) { r.SentAt = timestamppb.New(sent.Truncate(time.Millisecond)) }), true},
		{"microseconds", with(func(r *vantagev1.ProbeResult) { r.SentAt = timestamppb.New(sent.Truncate(time.Microsecond)) }), true},
		{"one nanosecond", with(func(r *vantagev1.ProbeResult) { r.SentAt = &timestamppb.Timestamp{Seconds: 0, Nanos: 1} }), true},
		{"zero timestamp", with(func(r *vantagev1.ProbeResult) { r.SentAt = &timestamppb.Timestamp{} }), true},
		{"before 1970", with(func(r *vantagev1.ProbeResult) { r.SentAt = &timestamppb.Timestamp{Seconds: -1, Nanos: 5e8} }), true},
		{"first second", with(func(r *vantagev1.ProbeResult) { r.SentAt = &timestamppb.Timestamp{Seconds: minJSONSeconds} }), true},
		{"last second", with(func(r *vantagev1.ProbeResult) {
			r.SentAt = &timestamppb.Timestamp{Seconds: maxJSONSeconds, Nanos: 999999999}
		}), true},
		{"stop reason", with(func(r *vantagev1.ProbeResult) { r.StopReason = vantagev1.TraceStopReason(1) }), true},
		{"timestamp too late", with(func(r *vantagev1.ProbeResult) { r.SentAt = &timestamppb.Timestamp{Seconds: maxJSONSeconds + 1} }), false},
		{"negative nanos", with(func(r *vantagev1.ProbeResult) { r.SentAt = &timestamppb.Timestamp{Nanos: -1} }), false},
		{"invalid utf-8", with(func(r *vantagev1.ProbeResult) { r.Error = "bad \xff byte" }), false},
		{"unnamed enum", with(func(r *vantagev1.ProbeResult) { r.Outcome = 999 }), false},
		{"hops", with(func(r *vantagev1.ProbeResult) {
			r.Kind = vantagev1.ProbeKind_PROBE_KIND_TRACE
			r.Hops = []*vantagev1.Hop{{Ttl: 1, Addr: "198.51.100.1", RttUs: 40}, {Ttl: 2}}
		}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := reference(t, tc.r)
			got, ok := appendResultJSON([]byte("prefix"), tc.r)
			if ok != tc.fast {
				t.Fatalf("fast path ok=%v, want %v (protojson: %s)", ok, tc.fast, want)
			}
			if ok && string(got) != "prefix"+want {
				t.Fatalf("fast path\n got %s\nwant prefix%s", got, want)
			}
			// Whatever path it takes, the writer prints protojson's line.
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			resultWriter("json", w)(tc.r)
			_ = w.Flush()
			if out.String() != want+"\n" {
				t.Fatalf("writer\n got %s\nwant %s", out.String(), want)
			}
		})
	}
}

// TestResultJSONRandom compares many random results with protojson.
func TestResultJSONRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcz09./:-_ \"\\\x00\x01\x1f\x7f\t\n\r\b\féß€😀\u2028<>&\ufffd")
	str := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		r := make([]rune, rng.IntN(12))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(r)
	}
	u32 := func() uint32 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return math.MaxUint32
		}
		return rng.Uint32() >> rng.IntN(32)
	}
	fast := 0
	var enc jsonEncoder // one encoder throughout, as in a sweep
	for i := range 20000 {
		r := &vantagev1.ProbeResult{
			TaskId: str(), Campaign: str(), Target: str(), ReplyFrom: str(), Error: str(), Engine: str(), TriggerId: str(),
			Kind: vantagev1.ProbeKind(rng.IntN(5)), Outcome: vantagev1.Outcome(rng.IntN(10)),
			StopReason:      vantagev1.TraceStopReason(rng.IntN(6)),
			UnreachableCode: u32(), RttUs: u32(), ReplyTtl: u32(), Port: u32(), Attempts: u32(),
		}
		if rng.IntN(2) == 0 {
			r.Seq = rng.Uint64() >> rng.IntN(64)
		}
		if rng.IntN(2) == 0 {
			r.Round = rng.Int64() >> rng.IntN(64)
			if rng.IntN(2) == 0 {
				r.Round = -r.Round
			}
		}
		if rng.IntN(4) != 0 {
			r.SentAt = &timestamppb.Timestamp{Seconds: rng.Int64N(maxJSONSeconds-minJSONSeconds+1) + minJSONSeconds,
				Nanos: int32(rng.IntN(1e9))}
			switch rng.IntN(4) {
			case 0:
				r.SentAt.Nanos -= r.SentAt.Nanos % 1e6
			case 1:
				r.SentAt.Nanos -= r.SentAt.Nanos % 1e3
			case 2:
				r.SentAt.Nanos = 0
			}
		}
		if i%3 == 0 && r.SentAt != nil && i > 0 {
			r.SentAt.Seconds = enc.sec // the cached second again
		}
		want := reference(t, r)
		got, ok := enc.appendResult(nil, r)
		if !ok {
			continue // an enum number without a name: protojson's line
		}
		fast++
		if string(got) != want {
			t.Fatalf("result %d:\n got %s\nwant %s", i, got, want)
		}
	}
	if fast < 10000 {
		t.Fatalf("fast path took only %d of 20000 results", fast)
	}
}

func TestResultJSONAllocs(t *testing.T) {
	r := typicalResult(time.Now())
	buf := make([]byte, 0, 512)
	var enc jsonEncoder
	if n := testing.AllocsPerRun(100, func() { buf, _ = enc.appendResult(buf[:0], r) }); n != 0 {
		t.Fatalf("appendResultJSON: %v allocations per result, want 0", n)
	}
}

func BenchmarkResultJSON(b *testing.B) {
	r := typicalResult(time.Now())
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		var enc jsonEncoder
		for b.Loop() {
			buf, _ = enc.appendResult(buf[:0], r)
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		var p protoJSONLine
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = p.append(buf[:0], r)
		}
	})
}
