package reliability

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-net/vantage/deploy/demo"
	"github.com/vantage-net/vantage/deploy/lab"
)

// logProcessExited is the line the harness appends to a node's log when
// its process ends (deploy/demo).
const logProcessExited = "harness: "

// TestAgentsOutliveOtherLabs is the regression test of TestAgentUplinkCut's
// stall (2026-12-01: every agent went silent at once, no reconnect, no
// stack dump). The agents had been SIGKILLed by their Pdeathsig: Linux
// sends it when the thread that forked the child ends, and the lab ends the
// threads it enters namespaces on. Another test bringing its lab up (its TCP
// services enter four namespaces) or dialling into one ended the thread the
// harness had forked the agents from. Here one lab runs agents while the
// test does what a parallel test does: bring a second lab up and down, and
// listen inside the first one. It then restarts one agent several times,
// each time followed by such namespace entries (whether the forking thread
// is the one ended depends on the scheduler, so one try would prove
// little). Every agent process must still run and be connected, and the
// dump a failed test takes must leave every process's stacks in its log.
func TestAgentsOutliveOtherLabs(t *testing.T) {
	const restarts = 8
	ctx, cancel := labTest(t, 5*time.Minute)
	defer cancel()
	h := startLab(t, ctx, "t", demo.Config{})
	vantages := h.Lab.Vantages()
	pids := map[string]int{}
	for _, v := range vantages {
		waitConnected(t, ctx, h, v)
		pids[v] = h.Pid(v)
	}
	enterNamespaces := func() {
		for range 32 {
			ln, err := h.Lab.Listen(vantages[0], "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			_ = ln.(*net.TCPListener).Close()
		}
	}
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	other, err := lab.Up(ctx, topo, lab.Options{Prefix: labPrefix("vr", "u")})
	if err != nil {
		t.Fatalf("second lab up: %v", err)
	}
	if err := other.Down(); err != nil {
		t.Errorf("second lab down: %v", err)
	}
	enterNamespaces()

	v := vantages[len(vantages)-1]
	died := 0
	for i := range restarts {
		if err := h.StopAgent(v); err != nil {
			t.Fatal(err)
		}
		if err := h.StartAgent(ctx, v); err != nil {
			t.Fatal(err)
		}
		pid := h.Pid(v)
		sleepCtx(t, ctx, 300*time.Millisecond) // the agent is running, not starting
		enterNamespaces()
		sleepCtx(t, ctx, 300*time.Millisecond)
		if syscall.Kill(pid, 0) != nil {
			died++
			t.Errorf("restart %d: %s (pid %d) died when the lab entered namespaces", i, v, pid)
		}
	}
	t.Logf("%s restarted %d times, each followed by 32 namespace entries: died %d times", v, restarts, died)
	for _, v := range vantages[:len(vantages)-1] {
		if syscall.Kill(pids[v], 0) != nil {
			t.Errorf("%s (pid %d, never restarted) died while the lab entered namespaces", v, pids[v])
		}
	}
	for _, v := range vantages {
		exits := countInLog(t, h, v, logProcessExited)
		signalled := countInLog(t, h, v, logProcessExited) - countInLog(t, h, v, "exited: exit status 0")
		t.Logf("%s: process ends noted in its log=%d, of them not a clean exit=%d", v, exits, signalled)
		if signalled != 0 {
			t.Errorf("%s: a process ended by a signal (see the harness lines in its log)", v)
		}
		if a := waitConnectedInfo(t, ctx, h, v); !a {
			t.Errorf("%s is not connected", v)
		}
	}
	if n := countInLog(t, h, "controller", logProcessExited); n != 0 {
		t.Errorf("the controller died while the lab entered namespaces")
	}
	// What a failed test keeps: every process's goroutine stacks.
	for node, err := range h.DumpAll() {
		stacks := countInLog(t, h, node, "\ngoroutine ")
		t.Logf("%s: dump %v, %d goroutine stacks in its log", node, err, stacks)
		if err != nil || stacks == 0 {
			t.Errorf("%s left no goroutine stacks in its log: %v", node, err)
		}
	}
}

// waitConnectedInfo waits up to 30 s for the agent to be connected.
func waitConnectedInfo(t *testing.T, ctx context.Context, h *demo.Harness, v string) bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if a, err := agentInfo(ctx, h, v); err == nil && a != nil && a.GetConnected() {
			return true
		}
		sleepCtx(t, ctx, 200*time.Millisecond)
	}
	return false
}
