package reliability

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/deploy/demo"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Agent log messages of a spool whose disk refuses writes (agent/spool).
const (
	logSpoolRefuses = `msg="spool disk refuses writes; new results are kept in memory"`
	logSpoolResumed = `msg="spool writes resumed"`
	logResultLost   = `msg="spool append failed; result lost"`
	logRoundNotKept = `msg="round not recorded; a restart may run it again"`
)

// TestAgentDiskFull fills the file system of one agent's --state (a 4 MiB
// tmpfs) while it runs the country campaign with --spool-bytes 1 MiB (a
// 64 KiB memory tail), then: 20 s with its uplink up, 60 s with the uplink
// cut too, the uplink back, and the space back. The agent must not crash
// or restart; results it cannot write go on from memory while the uplink
// is up, overflow into a counted gap while it is cut; `agents list` and
// vantage_agents_spool_failing show the condition while it lasts; once
// space returns the spool writes again; and its books balance seq by seq
// (produced = stored once + in a stored gap + still spooled). Before, every
// result produced on the full disk was lost without a gap (its seq reused)
// and the spool never wrote again after a failed segment rotation.
func TestAgentDiskFull(t *testing.T) {
	const (
		v       = "vantage-a"
		upPhase = 20 * time.Second
		cut     = 60 * time.Second
	)
	ctx, cancel := labTest(t, 8*time.Minute)
	defer cancel()
	var state string
	h := startDiskLab(t, ctx, "a", demo.Config{Agents: []string{v}, AgentArgs: []string{"--spool-bytes", "1048576"},
		ControllerArgs: []string{"--metrics-addr", metricsAddr}}, func(work string) {
		state = filepath.Join(work, "agent-"+v)
		newTmpfs(t, state, "4m")
	})
	applyCampaign(t, ctx, h, countryCampaign(t))
	id := waitConnected(t, ctx, h, v)
	waitStored(t, ctx, h, v, id, 30)
	pid := h.Pid(v)

	filler, size := fillDisk(t, state)
	fullAt := time.Now()
	var info *vantagev1.AgentInfo
	waitFor(t, ctx, time.Minute, "agents list showing the agent's spool fault", func() (bool, error) {
		var err error
		info, err = agentInfo(ctx, h, v)
		return info.GetSpool().GetWriteError() != "", err
	})
	shownIn := time.Since(fullAt)
	list := vantagectl(t, ctx, h, "agents", "list")
	m := mustMetrics(t, ctx, h)
	t.Logf("agent disk full (%d bytes of filler): shown %s later; spool %v; vantage_agents_spool_failing %.0f; agents list:\n%s",
		size, shownIn.Round(100*time.Millisecond), info.GetSpool(), m[mSpoolFailing], list)
	if !strings.Contains(list, "(disk failing)") || !strings.Contains(list, "spool disk refuses writes since") ||
		!strings.Contains(list, "no space left on device") {
		t.Errorf("agents list does not show the agent's full disk:\n%s", list)
	}
	if m[mSpoolFailing] != 1 {
		t.Errorf("vantage_agents_spool_failing = %v, want 1", m[mSpoolFailing])
	}

	// The uplink is up: what the disk refuses goes on from memory.
	sleepCtx(t, ctx, upPhase)
	st := mustStored(t, ctx, h, id)
	fromMemory := 0
	for _, sent := range st.sentAt {
		if sent.After(fullAt.Add(2 * time.Second)) {
			fromMemory++
		}
	}
	if fromMemory == 0 {
		t.Errorf("nothing produced on the full disk was stored in %s with the uplink up", upPhase)
	}

	// The uplink cut too: the memory tail fills, its oldest go into a gap.
	if err := h.Lab.CutUplink(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Lab.RestoreUplink(v) })
	sleepCtx(t, ctx, cut)
	if err := h.Lab.RestoreUplink(v); err != nil {
		t.Fatal(err)
	}
	restoredAt := time.Now()
	waitFor(t, ctx, 2*time.Minute, v+" memory backlog delivered", func() (bool, error) {
		st, err := queryStored(ctx, h, id)
		return err == nil && st.distinct() > 0 && st.sentAt[st.maxKey()].After(restoredAt), err
	})
	deliveredIn := time.Since(restoredAt)
	info = mustAgentInfo(t, ctx, h, v)
	sp := info.GetSpool()
	t.Logf("agent disk full, uplink cut %s: backlog delivered %s after the restore; spool %v; controller counts gaps=%d",
		cut, deliveredIn.Round(100*time.Millisecond), sp, info.GetGaps())

	// The space back: the spool writes again and the agent carries on.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freedAt := time.Now()
	waitFor(t, ctx, time.Minute, "agents list showing the spool healthy", func() (bool, error) {
		var err error
		info, err = agentInfo(ctx, h, v)
		return info != nil && info.GetSpool() != nil && info.GetSpool().GetWriteError() == "", err
	})
	clearedIn := time.Since(freedAt)
	healthy := info.GetSpool() // its first heartbeat after the fault: the final count of drops
	if n := mustMetrics(t, ctx, h)[mSpoolFailing]; n != 0 {
		t.Errorf("vantage_agents_spool_failing = %v after the space returned, want 0", n)
	}
	sleepCtx(t, ctx, 10*time.Second)
	segBytes := int64(0)
	segs, _ := filepath.Glob(filepath.Join(state, "spool", "*.seg"))
	for _, s := range segs {
		if fi, err := os.Stat(s); err == nil {
			segBytes += fi.Size()
		}
	}
	if h.Pid(v) != pid || countInLog(t, h, v, `msg="agent starting"`) != 1 {
		t.Errorf("the agent restarted (pid %d -> %d, %d starts)", pid, h.Pid(v), countInLog(t, h, v, `msg="agent starting"`))
	}
	if err := h.StopAgent(v); err != nil {
		t.Fatal(err)
	}
	p := agentProduced(t, h, v)
	st = mustStored(t, ctx, h, id)
	gaps := storedGaps(t, h, id)
	pending := pendingInSpool(t, filepath.Join(state, "spool"), p.epoch, 1<<20)
	a := account(p, st, gaps, pending)
	var writeGap uint64
	for _, g := range gaps {
		if g.reason == spool.GapReasonWriteFailed {
			writeGap += g.last - g.first + 1
		}
	}
	afterFreed := 0
	for _, sent := range st.sentAt {
		if sent.After(freedAt) {
			afterFreed++
		}
	}
	t.Logf("agent disk full: %s; stored_rows=%d gaps_stored=%d (%d results in gaps \"%s\"); produced on the full disk and stored with the uplink up=%d; spool back %s after the space returned, %d results stored since, segments %d bytes; log: refuses %d, resumed %d, result lost %d, round not recorded %d",
		a, st.rows, len(gaps), writeGap, spool.GapReasonWriteFailed, fromMemory, clearedIn.Round(100*time.Millisecond), afterFreed, segBytes,
		countInLog(t, h, v, logSpoolRefuses), countInLog(t, h, v, logSpoolResumed), countInLog(t, h, v, logResultLost), countInLog(t, h, v, logRoundNotKept))
	t.Logf("agent disk full: the agent's WARN/ERROR lines: %v", warnings(t, h, v))
	a.check(t)
	if writeGap == 0 || writeGap != healthy.GetWriteDroppedResults() {
		t.Errorf("the agent dropped %d results from memory (spool %v), %d are in stored gaps: want them equal and > 0",
			healthy.GetWriteDroppedResults(), healthy, writeGap)
	}
	if n := countInLog(t, h, v, logResultLost); n != 0 {
		t.Errorf("%d results logged as lost", n)
	}
	if afterFreed == 0 || countInLog(t, h, v, logSpoolResumed) == 0 {
		t.Errorf("the spool did not resume: %d results stored after the space returned, %d \"resumed\" lines", afterFreed, countInLog(t, h, v, logSpoolResumed))
	}
}

// TestControllerDiskFull fills the file system holding the controller's
// --data (a 64 MiB loop-mounted ext4) while three agents stream the country
// campaign. Once SQLite can no longer grow its WAL, its writes fail: batch
// commits, and the agent row's update at each Hello (so sessions are
// refused and the agents retry with their backoff). The controller must
// not crash or restart, must ack nothing it did not store (the agents keep
// their results: the backlog they announce grows), must show the condition
// in /metrics (vantage_store_failing, vantage_store_write_failures_total by
// class) and in its log once per interval, not per batch; it is then
// restarted while the disk is still full (it must start, serve and report
// the failing store); when the filler is removed ingest resumes by itself,
// and every agent's books balance seq by seq. Before, each failed batch
// ended its session with UNAVAILABLE and one WARN line, and nothing in
// /metrics said the store was failing.
func TestControllerDiskFull(t *testing.T) {
	const hold = 30 * time.Second
	ctx, cancel := labTest(t, 10*time.Minute, needLoopDisks)
	defer cancel()
	h, disk, ids := startStoreDiskLab(t, ctx, "f", 64)
	pid := h.Pid("controller")
	sessionFailed := countInLog(t, h, "controller", `msg="agent session failed"`)

	filler, size := fillDisk(t, disk.dir)
	fullAt := time.Now()
	// SQLite first writes into the free space its WAL file already has.
	waitFor(t, ctx, 3*time.Minute, "store writes failing", func() (bool, error) {
		m, err := metrics(ctx, h)
		return m[mStoreFailing] == 1, err
	})
	failingAt := time.Now()
	// The controller cannot store the agents' spool states now: their own
	// Hellos (the "session open" lines of each retry) say what they hold.
	pendingAt := func() map[string]int {
		out := map[string]int{}
		for v := range ids {
			out[v] = pendingAtSessionOpen(t, h, v, countInLog(t, h, v, logSessionOpen)-1)
		}
		return out
	}
	pending0 := pendingAt()
	sleepCtx(t, ctx, hold)
	m := mustMetrics(t, ctx, h)
	pending1 := pendingAt()
	// Operator reads still work on the full disk.
	readable := mustAgentInfo(t, ctx, h, "vantage-a")
	failures, storeThrottles := m[mStoreFull], m[mThrottleStore]
	logged := countInLog(t, h, "controller", logStoreFailing) + countInLog(t, h, "controller", logStoreStill)
	failedSessions := countInLog(t, h, "controller", `msg="agent session failed"`) - sessionFailed
	t.Logf("controller disk full (%d bytes of filler): store writes failing %s after the fill; over %s: failed writes (disk_full) %.0f, store throttles %.0f, store log lines %d, \"agent session failed\" lines %d; backlog the agents announced %v -> %v; ListAgents on the full disk: vantage-a results_stored=%d",
		size, failingAt.Sub(fullAt).Round(100*time.Millisecond), hold, failures, storeThrottles, logged, failedSessions, pending0, pending1,
		readable.GetResultsStored())
	if h.Pid("controller") != pid || controllerStarts(t, h) != 1 {
		t.Fatalf("the controller crashed or restarted on a full disk (pid %d -> %d, %d starts)", pid, h.Pid("controller"), controllerStarts(t, h))
	}
	if failures < 2 {
		t.Errorf("failed store writes %.0f over %s: want the agents retrying", failures, hold)
	}
	if maxLines := int(time.Since(failingAt)/30/time.Second) + 2; logged > maxLines || failedSessions > 0 {
		t.Errorf("%d store log lines (at most %d: once per 30 s) and %d \"agent session failed\" lines for %.0f failed writes: logged per batch",
			logged, maxLines, failedSessions, failures)
	}
	for v := range ids {
		if pending1[v] <= pending0[v] {
			t.Errorf("%s: spool %d -> %d over %s: its results should wait in its spool", v, pending0[v], pending1[v], hold)
		}
	}

	// A restart on the still full disk: it starts, serves and still
	// reports the failing store.
	if err := h.StopController(); err != nil {
		t.Logf("controller stop on a full disk: %v", err)
	}
	if err := h.StartController(ctx); err != nil {
		t.Fatalf("the controller does not start on a full disk: %v", err)
	}
	waitFor(t, ctx, time.Minute, "the restarted controller reporting the failing store", func() (bool, error) {
		m, err := metrics(ctx, h)
		return m[mStoreFailing] == 1, err
	})
	restartFailing := lastLogLine(t, h, "controller", logStoreFailing)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freedAt := time.Now()
	waitFor(t, ctx, 2*time.Minute, "store writes recovered", func() (bool, error) {
		m, err := metrics(ctx, h)
		return err == nil && m[mStoreFailing] == 0 && m[mBatches] > 0, err
	})
	recoveredIn := time.Since(freedAt)
	deliveredIn := backlogDelivered(t, ctx, h, ids, freedAt, 3*time.Minute)
	t.Logf("controller disk full: restarted on the full disk and served (%s); space back: commits recovered %s later, backlog delivered %s after; %s",
		strings.TrimSpace(restartFailing), recoveredIn.Round(100*time.Millisecond), deliveredIn.Round(100*time.Millisecond),
		lastLogLine(t, h, "controller", logStoreRecovered))
	t.Logf("controller disk full: the controller's WARN/ERROR lines over the whole test: %v (last evaluation failure: %s); vantage-a's: %v",
		warnings(t, h, "controller"), lastLogLine(t, h, "controller", `msg="verdict evaluation failed"`), warnings(t, h, "vantage-a"))
	total := accountAgents(t, ctx, h, ids, "controller disk full")
	t.Logf("controller disk full, all agents: produced=%d stored=%d gaps=%d still_spooled=%d lost=%d duplicated=%d",
		total.produced, total.stored, total.gapCovered, total.pending, total.missing, total.duplicateRows)
}
