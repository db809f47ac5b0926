package reliability

import (
	"testing"
	"time"
)

// Metric names the disk tests read (controller/metrics).
const (
	mStoreFailing     = `vantage_store_failing`
	mStoreFull        = `vantage_store_write_failures_total{class="disk_full"}`
	mThrottleHard     = `vantage_ingest_throttles_total{kind="hard"}`
	mThrottleStore    = `vantage_ingest_throttles_total{kind="store"}`
	mBatches          = `vantage_ingest_batches_total`
	mQueue            = `vantage_ingest_queue_results`
	mCommitRunning    = `vantage_ingest_commit_running_seconds`
	mSessions         = `vantage_agent_sessions`
	mSpoolFailing     = `vantage_agents_spool_failing`
	mCommitsOver10s   = `vantage_ingest_commit_duration_seconds_bucket{le="+Inf"}`
	mCommitsUnder10s  = `vantage_ingest_commit_duration_seconds_bucket{le="10"}`
	logStoreFailing   = `msg="store writes failing`
	logStoreStill     = `msg="store writes still failing"`
	logStoreRecovered = `msg="store writes recovered"`
)

// TestControllerDiskStall freezes the file system holding the controller's
// --data (a loop-mounted ext4, fsfreeze) for 25 s while three agents stream
// the country campaign: every write of the store blocks, in the kernel,
// until the thaw. The agents keep probing into their spools; ingest pauses
// (each session waits for the commit its batch is in, so the next batches
// wait unread in the stream; any batch that does arrive while the stuck
// commit runs past 5 s is refused with RESOURCE_EXHAUSTED) and the stall
// shows in /metrics while it lasts (vantage_ingest_commit_running_seconds);
// nothing crashes or restarts; after the thaw it recovers by itself and
// every agent's books balance seq by seq, with nothing lost or doubled.
// Before, nothing said a commit was stuck until it returned.
func TestControllerDiskStall(t *testing.T) {
	const stall = 25 * time.Second
	ctx, cancel := labTest(t, 8*time.Minute, needLoopDisks)
	defer cancel()
	h, disk, ids := startStoreDiskLab(t, ctx, "s", 256)
	pid, starts := h.Pid("controller"), controllerStarts(t, h)
	before := mustMetrics(t, ctx, h)

	disk.freeze(t)
	frozenAt := time.Now()
	var maxQueue, maxRunning float64
	var scrapes, scrapeErrs int
	for time.Since(frozenAt) < stall {
		if m, err := metrics(ctx, h); err != nil {
			scrapeErrs++
		} else {
			scrapes++
			maxQueue, maxRunning = max(maxQueue, m[mQueue]), max(maxRunning, m[mCommitRunning])
		}
		sleepCtx(t, ctx, time.Second)
	}
	during := mustMetrics(t, ctx, h)
	disk.thaw(t)
	thawedAt := time.Now()

	deliveredIn := backlogDelivered(t, ctx, h, ids, thawedAt, 3*time.Minute)
	after := mustMetrics(t, ctx, h)
	if h.Pid("controller") != pid || controllerStarts(t, h) != starts {
		t.Errorf("the controller restarted during the stall (pid %d -> %d, starts %d -> %d)", pid, h.Pid("controller"), starts, controllerStarts(t, h))
	}
	hard := during[mThrottleHard] - before[mThrottleHard]
	slow := after[mCommitsOver10s] - after[mCommitsUnder10s]
	t.Logf("disk stall %s (fsfreeze of --data): metrics scraped %d times during it (%d failed): commit running up to %.1f s, queue up to %.0f results, hard throttles %.0f; afterwards commits over 10 s %.0f, sessions %.0f -> %.0f, controller starts %d; backlog delivered %s after the thaw",
		thawedAt.Sub(frozenAt).Round(100*time.Millisecond), scrapes, scrapeErrs, maxRunning, maxQueue, hard, slow,
		before[mSessions], after[mSessions], controllerStarts(t, h), deliveredIn.Round(100*time.Millisecond))
	if maxRunning < 10 {
		t.Errorf("vantage_ingest_commit_running_seconds reached %.1f s during a %s stall: the stall did not show", maxRunning, stall)
	}
	if after[mCommitRunning] != 0 && after[mBatches] <= during[mBatches] {
		t.Errorf("after the thaw: commit running %.1f s, batches %v -> %v: ingest did not resume", after[mCommitRunning], during[mBatches], after[mBatches])
	}
	t.Logf("disk stall: the controller's WARN/ERROR lines: %v; vantage-a's: %v", warnings(t, h, "controller"), warnings(t, h, "vantage-a"))
	total := accountAgents(t, ctx, h, ids, "disk stall")
	t.Logf("disk stall %s, all agents: produced=%d stored=%d gaps=%d still_spooled=%d lost=%d duplicated=%d",
		stall, total.produced, total.stored, total.gapCovered, total.pending, total.missing, total.duplicateRows)
}
