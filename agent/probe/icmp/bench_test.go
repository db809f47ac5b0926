//go:build linux

package icmp

import (
	"context"
	"net/netip"
	"syscall"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBulkLoopback sweeps 127.0.0.0/8 addresses (loopback answers
// every one) through the sweep API with no pacing. It reports the process
// CPU time per probe (user + system, from getrusage, so it includes the
// kernel's work for both the request and the reply on loopback) and the
// engine's allocations per probe.
func BenchmarkBulkLoopback(b *testing.B) {
	eng := newTestBulk(b, BulkConfig{})
	// The tasks are built before the clock starts, so that allocs/op is
	// the engine's own (result and job).
	all := make([]*vantagev1.Task, b.N)
	spec := &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{TimeoutMs: 2000}}
	a := netip.MustParseAddr("127.0.0.1")
	for i := range all {
		all[i] = &vantagev1.Task{Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: a.String(), Spec: spec}
		if a = a.Next(); !a.Is4() || a.As4()[0] != 127 {
			a = netip.MustParseAddr("127.0.0.1")
		}
	}
	tasks := make(chan *vantagev1.Task, 4096)
	replies := 0
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	go func() {
		defer close(tasks)
		for _, t := range all {
			tasks <- t
		}
	}()
	err := eng.Run(context.Background(), tasks, func(r *vantagev1.ProbeResult) {
		if r.GetOutcome() == vantagev1.Outcome_OUTCOME_REPLY {
			replies++
		}
	})
	b.StopTimer()
	if err != nil {
		b.Fatalf("Run: %v", err)
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/probe")
	b.ReportMetric(float64(replies)/float64(b.N), "replies/probe")
}
