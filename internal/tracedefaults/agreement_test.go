package tracedefaults_test

// These tests hold both sides to the one set of trace defaults: what the
// controller writes into a campaign's trace task when the file leaves a
// field out, what the agent's trace engine assumes for a field left zero,
// and the highest max_ttl each accepts. They live here because agent/ and
// controller/ never import each other.

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/guard"
	"github.com/vantage-net/vantage/agent/probe/trace"
	"github.com/vantage-net/vantage/controller/campaign"
	"github.com/vantage-net/vantage/internal/tracedefaults"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func traceSpec(settings string) string {
	return fmt.Sprintf(`name: agree
scope: {country: KP}
targets:
  networks:
    - {name: n0, prefix: 198.18.0.0/24, hosts: [198.18.0.10]}
probes:
  - trace: %s
schedule: {round: 60s}
`, settings)
}

// TestAgentDefaults: the agent's trace engine fills a zero field with the
// shared default. (That a trace really runs with them, and cuts max_ttl at
// the cap, is TestSpecDefaults in agent/probe/trace, which sees the
// engine's unexported state.)
func TestAgentDefaults(t *testing.T) {
	if trace.DefaultMaxTTL != tracedefaults.MaxTTL || trace.DefaultGapLimit != tracedefaults.GapLimit || trace.DefaultTimeout != tracedefaults.Timeout {
		t.Errorf("agent trace defaults max_ttl %d, gap_limit %d, timeout %v; shared %d, %d, %v",
			trace.DefaultMaxTTL, trace.DefaultGapLimit, trace.DefaultTimeout, tracedefaults.MaxTTL, tracedefaults.GapLimit, tracedefaults.Timeout)
	}
}

// TestControllerDefaults: a campaign trace probe without settings becomes a
// task with the shared defaults.
func TestControllerDefaults(t *testing.T) {
	s, err := campaign.Parse([]byte(traceSpec("{}")))
	if err != nil {
		t.Fatal(err)
	}
	tasks := s.Tasks(time.Now().Add(time.Minute))
	if len(tasks) != 1 {
		t.Fatalf("%d tasks, want 1", len(tasks))
	}
	tr := tasks[0].GetTrace()
	if tr.GetMaxTtl() != tracedefaults.MaxTTL || tr.GetGapLimit() != tracedefaults.GapLimit ||
		time.Duration(tr.GetTimeoutMs())*time.Millisecond != tracedefaults.Timeout {
		t.Errorf("campaign trace task %v; want max_ttl %d, gap_limit %d, timeout %v",
			tr, tracedefaults.MaxTTL, tracedefaults.GapLimit, tracedefaults.Timeout)
	}
}

// TestMaxTTLCap: both sides accept max_ttl up to the cap and refuse one
// above it.
func TestMaxTTLCap(t *testing.T) {
	g := guard.New(guard.Config{AllowSpecialRanges: true})
	for _, ttl := range []int{tracedefaults.MaxTTLCap, tracedefaults.MaxTTLCap + 1} {
		_, perr := campaign.Parse([]byte(traceSpec(fmt.Sprintf("{max_ttl: %d}", ttl))))
		task := &vantagev1.Task{Id: "agree/trace/198.18.0.10", Campaign: "agree", Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE,
			Target: "198.18.0.10", RoundMs: 60000, Spec: &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{MaxTtl: uint32(ttl)}}}
		gerr := g.CheckTask(task)
		within := ttl <= tracedefaults.MaxTTLCap
		if (perr == nil) != within || (gerr == nil) != within {
			t.Errorf("max_ttl %d: controller %v, agent %v; want both to accept it: %v", ttl, perr, gerr, within)
		}
		if !within && !errors.Is(gerr, guard.ErrLimit) {
			t.Errorf("max_ttl %d: agent refused with %v; want ErrLimit", ttl, gerr)
		}
	}
}
