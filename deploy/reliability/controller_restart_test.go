package reliability

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-net/vantage/deploy/demo"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// reconnectBound is how soon after its controller listens again every agent
// must have a session open. The target is 2 s (gRPC's reconnect attempts
// at most a second apart, 20% jitter, plus the handshake); the bound leaves
// the loaded test machine room. Before, two backoffs of up to 10 s each
// were stacked: 4.5 to 14.2 s.
const reconnectBound = 4 * time.Second

// vkAgentProc is a real vantage-agent process on loopback.
type vkAgentProc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

func startVKAgent(t *testing.T, c *vkController, name, join, caHash string) *vkAgentProc {
	t.Helper()
	dir := t.TempDir()
	a := &vkAgentProc{name: name, log: filepath.Join(dir, "agent.log"), done: make(chan struct{})}
	logf, err := os.Create(a.log)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(filepath.Join(labBinaries(t), "vantage-agent"),
		"--controller", c.addr, "--state", filepath.Join(dir, "state"), "--join-token", join, "--ca-hash", caHash,
		"--name", name, "--label", "provider="+name)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	waited, err := demo.StartChild(a.cmd)
	logf.Close()
	if err != nil {
		t.Fatal(err)
	}
	go func() { <-waited; close(a.done) }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(10 * time.Second):
			_ = a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			if b, err := os.ReadFile(a.log); err == nil {
				t.Logf("---- %s agent.log (tail) ----\n%s", name, tailOf(string(b), 2000))
			}
		}
	})
	return a
}

var logTimeRE = regexp.MustCompile(`(?m)^time=(\S+) .*msg="([^"]*)"`)

// logTimes returns the times of the lines of a log whose message is msg.
func logTimes(t *testing.T, path, msg string) []time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []time.Time
	for _, m := range logTimeRE.FindAllStringSubmatch(string(b), -1) {
		if m[2] != msg {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("%s: time %q: %v", path, m[1], err)
		}
		out = append(out, at)
	}
	return out
}

// firstAfter is the first time in ts not before at, or the zero time.
func firstAfter(ts []time.Time, at time.Time) time.Time {
	for _, x := range ts {
		if !x.Before(at) {
			return x
		}
	}
	return time.Time{}
}

// TestAgentsReconnectAfterControllerRestart runs five real agents against a
// real controller on loopback, kills the controller with SIGKILL, keeps it
// down for 30 s (long enough for every backoff to reach its cap) and starts
// it again on the same address and data directory. Each agent's reconnect
// delay, from the controller's "controller listening" line to the agent's
// "session open" line, is printed; every one must be within reconnectBound.
func TestAgentsReconnectAfterControllerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the controller and agent binaries")
	}
	t.Parallel()
	const (
		agents = 5
		down   = 30 * time.Second
	)
	c := startVKController(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tok, err := c.ops(t).CreateJoinToken(c.bearer(ctx, c.admin), &vantagev1.CreateJoinTokenRequest{TtlS: 3600})
	if err != nil {
		t.Fatal(err)
	}
	var procs []*vkAgentProc
	for i := range agents {
		procs = append(procs, startVKAgent(t, c, fmt.Sprintf("vr-%c", 'a'+i), tok.GetToken(), tok.GetCaHash()))
	}
	connected := func() (int, error) {
		resp, err := c.ops(t).ListAgents(c.bearer(ctx, c.admin), &vantagev1.ListAgentsRequest{})
		n := 0
		for _, a := range resp.GetAgents() {
			if a.GetConnected() {
				n++
			}
		}
		return n, err
	}
	waitFor(t, ctx, time.Minute, "every agent connected", func() (bool, error) {
		n, err := connected()
		return n == agents, err
	})

	c.kill(t)
	sleepCtx(t, ctx, down)
	c.start(t)
	listening := logTimes(t, c.logPath, "controller listening")
	back := listening[len(listening)-1]
	waitFor(t, ctx, time.Minute, "every agent with a session after the restart", func() (bool, error) {
		for _, a := range procs {
			if firstAfter(logTimes(t, a.log, "session open"), back).IsZero() {
				return false, nil
			}
		}
		return true, nil
	})
	var delays []time.Duration
	for _, a := range procs {
		d := firstAfter(logTimes(t, a.log, "session open"), back).Sub(back)
		delays = append(delays, d)
		ended := len(logTimes(t, a.log, "session ended; reconnecting"))
		waiting := len(logTimes(t, a.log, "controller unreachable; still trying"))
		t.Logf("%s: session open %v after the controller listened again (sessions ended %d, unreachable notes %d)",
			a.name, d.Round(time.Millisecond), ended, waiting)
		if d > reconnectBound {
			t.Errorf("%s reconnected %v after the controller listened again, bound %v", a.name, d.Round(time.Millisecond), reconnectBound)
		}
	}
	slices.Sort(delays)
	t.Logf("controller down %v (SIGKILL), %d agents: reconnect delay min %v median %v max %v (target 2s)",
		down, agents, delays[0].Round(time.Millisecond), delays[len(delays)/2].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond))
	waitFor(t, ctx, 30*time.Second, "every agent connected again (ListAgents)", func() (bool, error) {
		n, err := connected()
		return n == agents, err
	})
}
