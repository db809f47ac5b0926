package trace

import (
	"testing"
	"time"

	"github.com/vantage-net/vantage/internal/tracedefaults"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestSpecDefaults: a trace whose spec leaves max_ttl, gap_limit and
// timeout_ms zero runs with the defaults the controller writes into a
// campaign's trace task (tracedefaults), and a max_ttl above the shared
// cap is cut to it. This is the trace engine's half of
// internal/tracedefaults' agreement test, which cannot see unexported
// state.
func TestSpecDefaults(t *testing.T) {
	for _, c := range []struct {
		name     string
		spec     *vantagev1.TraceSpec
		maxTTL   int
		gapLimit int
		timeout  time.Duration
	}{
		{"zero fields", &vantagev1.TraceSpec{}, tracedefaults.MaxTTL, tracedefaults.GapLimit, tracedefaults.Timeout},
		{"set fields", &vantagev1.TraceSpec{MaxTtl: 12, GapLimit: 2, TimeoutMs: 500}, 12, 2, 500 * time.Millisecond},
		{"max_ttl above the cap", &vantagev1.TraceSpec{MaxTtl: tracedefaults.MaxTTLCap + 1}, tracedefaults.MaxTTLCap, tracedefaults.GapLimit, tracedefaults.Timeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newTraceState(probeID{}, c.spec)
			if s.maxTTL != c.maxTTL || s.gapLimit != c.gapLimit || s.timeout != c.timeout {
				t.Errorf("max_ttl %d, gap_limit %d, timeout %v; want %d, %d, %v", s.maxTTL, s.gapLimit, s.timeout, c.maxTTL, c.gapLimit, c.timeout)
			}
		})
	}
}
