package reliability

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/vantage-net/vantage/controller/ingest"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// sigtermExitBound is how long the controller may take from SIGTERM to
// exit: the drain's grace and the graceful stop's timeout (both defaults),
// plus the loaded machine's slack.
const sigtermExitBound = ingest.DefaultShutdownGrace + 10*time.Second + 10*time.Second

var drainedRE = regexp.MustCompile(`msg="agent sessions drained" sessions=(\d+) batches_committed=(\d+) acks_sent=(\d+) took=(\S+)`)

// TestControllerSIGTERMDrains: agents (the real agent/uplink code, see
// upFleet) stream results fast to a real controller process; the
// controller gets SIGTERM mid-stream, with two long-lived streams open
// beside them: an agent session that never said Hello and an operator
// WatchVerdicts. It must commit and ack the batches its sessions had
// taken, end every session and exit; then it is started again on the same
// data. Printed: the shutdown's duration, the batches committed and acks
// sent during the drain, the duplicates after the restart. Asserted: the
// controller exited within sigtermExitBound, its drain was not cut, every
// result produced is stored exactly once with no gap, and the agents
// re-sent nothing that had been stored: duplicates_dropped stays 0. That
// is the bound: a batch taken before the drain is committed and its ack
// written before the session's end status, which the agent reads in order
// (it applies the ack first); a batch that arrives after the drain began
// is not read, so it is stored only when re-sent. Only a drain cut by its
// grace (a store stuck for --shutdown-grace) could leave a committed batch
// unacked, and that is asserted not to happen here.
func TestControllerSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a controller and agent uplinks")
	}
	const agents = 10
	rate := 4000 // results per second per agent
	if raceEnabled {
		rate = 500
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startVKController(t, "--allow-special-ranges")
	f := enrolFleet(t, ctx, c, agents+1, "drain", 64<<20)
	idle := f.agents[agents] // its identity holds a Hello-less session
	f.agents = f.agents[:agents]
	t.Cleanup(func() { idle.sp.Close() })
	if _, err := c.ops(t).ApplyCampaign(c.bearer(ctx, c.admin), &vantagev1.ApplyCampaignRequest{SpecYaml: stormCampaign, AllowFewerVantages: true}); err != nil {
		t.Fatalf("apply campaign: %v", err)
	}
	f.start(t, c.addr, float64(rate), nil)
	waitFor(t, ctx, time.Minute, "every agent's first assignment", func() (bool, error) {
		for _, a := range f.agents {
			if a.h.firstApplyAfter(time.Time{}).IsZero() {
				return false, nil
			}
		}
		return true, nil
	})
	sleepCtx(t, ctx, 8*time.Second)
	longLived(t, ctx, c, idle)
	before := f.books(t, ctx, c)

	took := c.sigterm(t)
	d := drainLine(t, c)
	t.Logf("SIGTERM mid-stream (%d agents at %d results/s each): the controller exited %v after the signal; drain: %s",
		agents, rate, took.Round(time.Millisecond), d)
	c.start(t)
	sleepCtx(t, ctx, 5*time.Second)
	f.stopProducing()
	f.waitAllAcked(t, ctx, 2*time.Minute)
	after := f.books(t, ctx, c)
	t.Logf("books: produced %d, stored %d, gaps %d; duplicates dropped %d before the SIGTERM, %d after the restart",
		after.produced, after.stored, after.gaps, before.duplicates, after.duplicates-before.duplicates)
	if took > sigtermExitBound {
		t.Errorf("the controller exited %v after SIGTERM, bound %v", took.Round(time.Millisecond), sigtermExitBound)
	}
	if !strings.HasPrefix(d, "sessions") {
		t.Errorf("no complete drain logged: %s", d)
	}
	if cut := logTimes(t, c.logPath, "graceful stop timed out; closing connections"); len(cut) > 0 {
		t.Errorf("the graceful stop timed out and cut the connections: a stream held the shutdown for --shutdown-timeout")
	}
	if len(after.short) > 0 || after.gaps > 0 || after.stored != after.produced {
		t.Errorf("%d agents short (e.g. %v); produced %d stored %d gaps %d", len(after.short), after.short[:min(3, len(after.short))],
			after.produced, after.stored, after.gaps)
	}
	if dup := after.duplicates - before.duplicates; dup != 0 {
		t.Errorf("%d results stored before the SIGTERM were re-sent after the restart: their acks were lost at shutdown", dup)
	}
}

// longLived opens the streams a shutdown must not wait for: a Session
// with idle's certificate that never sends Hello, and an operator
// WatchVerdicts. They end with the controller.
func longLived(t *testing.T, ctx context.Context, c *vkController, idle *upAgent) {
	t.Helper()
	conn := c.dial(t, idle.ident.Cert)
	if _, err := vantagev1.NewAgentServiceClient(conn).Session(ctx, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("open a Hello-less session: %v", err)
	}
	w, err := c.ops(t).WatchVerdicts(c.bearer(ctx, c.admin), &vantagev1.WatchVerdictsRequest{Campaign: "storm"})
	if err != nil {
		t.Fatalf("watch verdicts: %v", err)
	}
	go func() { // ends when the controller ends the stream
		for {
			if _, err := w.Recv(); err != nil {
				return
			}
		}
	}()
	sleepCtx(t, ctx, 500*time.Millisecond) // both streams reach their handlers
}

// sigterm sends SIGTERM to the controller and returns how long it took to
// exit (it is killed after a minute).
func (c *vkController) sigterm(t *testing.T) time.Duration {
	t.Helper()
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		return time.Since(start)
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("the controller did not exit within a minute of SIGTERM")
		return 0
	}
}

// drainLine is what the controller logged of its last drain.
func drainLine(t *testing.T, c *vkController) string {
	t.Helper()
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	last := "no drain logged"
	for _, l := range strings.Split(string(b), "\n") {
		if m := drainedRE.FindStringSubmatch(l); m != nil {
			last = fmt.Sprintf("sessions %s, batches committed %s, acks sent %s, took %s", m[1], m[2], m[3], m[4])
		} else if strings.Contains(l, "not drained within the grace") {
			last = "cut: " + l
		}
	}
	return last
}
