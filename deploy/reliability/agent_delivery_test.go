package reliability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/deploy/demo"
)

// The agent-side delivery tests: real controller and agent processes in
// the namespace lab, the agent's link to the controller cut or half cut.
// Each prints its counts. They run in parallel with each other (distinct
// labs); the uplink cut is the long one.

// Agent log messages the tests follow (agent/uplink, agent/spool).
const (
	logSessionOpen  = `msg="session open"`
	logSessionEnded = `msg="session ended; reconnecting"`
	logSpoolFull    = `msg="spool full: oldest results dropped"`
)

var sessionOpenRE = regexp.MustCompile(`msg="session open" .*pending=(\d+)`)

// pendingAtSessionOpen returns the backlog the agent announced (Hello's
// spool.pending_results) in its n-th "session open" line (0-based), or -1.
func pendingAtSessionOpen(t *testing.T, h *demo.Harness, vantage string, n int) int {
	t.Helper()
	b, err := os.ReadFile(h.LogPath(vantage))
	if err != nil {
		t.Fatal(err)
	}
	m := sessionOpenRE.FindAllStringSubmatch(string(b), -1)
	if n >= len(m) {
		return -1
	}
	p, _ := strconv.Atoi(m[n][1])
	return p
}

// TestAgentUplinkCut cuts one vantage's link to the controller for 2
// minutes while the country campaign runs (the vantage keeps probing),
// then restores it: everything the agent produced must be stored, once,
// with no gap. The agent's count is its own: the last sequence number it
// gave a result, logged when it stops.
func TestAgentUplinkCut(t *testing.T) {
	const (
		v   = "vantage-c"
		cut = 2 * time.Minute
	)
	ctx, cancel := labTest(t, 8*time.Minute)
	defer cancel()
	h := startLab(t, ctx, "c", demo.Config{})
	applyCampaign(t, ctx, h, countryCampaign(t))
	id := waitConnected(t, ctx, h, v)
	waitStored(t, ctx, h, v, id, 30)
	opened := countInLog(t, h, v, logSessionOpen)

	cutAt := time.Now()
	if err := h.Lab.CutUplink(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Lab.RestoreUplink(v) })
	// Whatever was in flight at the cut has landed or died by now.
	sleepCtx(t, ctx, 20*time.Second)
	during := mustStored(t, ctx, h, id)
	sleepCtx(t, ctx, cut-time.Since(cutAt))
	atRestore := mustStored(t, ctx, h, id)
	restoreAt := time.Now()
	if err := h.Lab.RestoreUplink(v); err != nil {
		t.Fatal(err)
	}
	if atRestore.distinct() != during.distinct() {
		t.Fatalf("results kept arriving through the cut (%d stored 20 s into it, %d at the restore): the cut did not hold",
			during.distinct(), atRestore.distinct())
	}

	// Delivered: the stored seqs are 1..max with no hole (one epoch, no
	// gap expected), and the newest was produced after the restore.
	waitFor(t, ctx, 3*time.Minute, "the backlog of "+v+" delivered", func() (bool, error) {
		st, err := queryStored(ctx, h, id)
		if err != nil || st.distinct() == 0 {
			return false, err
		}
		m := st.maxKey()
		return uint64(st.distinct()) == m.Seq && st.sentAt[m].After(restoreAt), nil
	})
	deliveredIn := time.Since(restoreAt)
	if err := h.StopAgent(v); err != nil {
		t.Fatal(err)
	}

	p := agentProduced(t, h, v)
	st := mustStored(t, ctx, h, id)
	gaps := storedGaps(t, h, id)
	pending := pendingInSpool(t, filepath.Join(h.AgentStateDir(v), "spool"), p.epoch, spool.DefaultMaxBytes)
	info := mustAgentInfo(t, ctx, h, v)
	a := account(p, st, gaps, pending)
	// Held back: produced during the cut, received after the restore.
	var heldBack int
	for k, sent := range st.sentAt {
		if !sent.Before(cutAt) && sent.Before(restoreAt) && st.received[k].After(restoreAt) {
			heldBack++
		}
	}
	resentAtReconnect := pendingAtSessionOpen(t, h, v, opened)
	t.Logf("uplink cut %s for %s: %s; stored_rows=%d distinct=%d duplicates=%d gaps_stored=%d agent_info{results_stored=%d duplicates_dropped=%d gaps=%d}",
		v, cut, a, st.rows, st.distinct(), st.rows-st.distinct(), len(gaps), info.GetResultsStored(), info.GetDuplicatesDropped(), info.GetGaps())
	t.Logf("uplink cut %s: produced during the cut and delivered after it=%d; backlog announced at reconnect (Hello pending)=%d; sessions opened=%d; backlog delivered %s after the restore",
		v, heldBack, resentAtReconnect, countInLog(t, h, v, logSessionOpen), deliveredIn.Round(time.Second))
	a.check(t)
	if a.gapCovered != 0 || len(gaps) != 0 || a.pending != 0 {
		t.Errorf("not delivered in full: %s, %d gaps stored", a, len(gaps))
	}
	if st.rows != st.distinct() {
		t.Errorf("%d rows for %d distinct (epoch, seq)", st.rows, st.distinct())
	}
	if heldBack == 0 || resentAtReconnect <= 0 {
		t.Errorf("nothing was held back and re-sent (held back %d, pending at reconnect %d): the cut did not bite", heldBack, resentAtReconnect)
	}
	if info.GetResultsStored() != a.stored {
		t.Errorf("AgentInfo.results_stored %d, stored rows of the epoch %d", info.GetResultsStored(), a.stored)
	}
}

// dropFromController installs, in the vantage's namespace, a rule that
// drops every packet from the controller's port: the agent's batches still
// reach the controller and are committed, but no Ack (and no TCP ack) gets
// back. It returns the function that removes it.
func dropFromController(t *testing.T, ctx context.Context, h *demo.Harness, vantage string) func() {
	t.Helper()
	rules := ""
	if a := h.Lab.Addr("controller"); a.IsValid() {
		rules += fmt.Sprintf("ip saddr %s tcp sport %d drop\n", a, demo.ControllerPort)
	}
	if a := h.Lab.Addr6("controller"); a.IsValid() {
		rules += fmt.Sprintf("ip6 saddr %s tcp sport %d drop\n", a, demo.ControllerPort)
	}
	script := "table inet vr_ackloss {\n chain in {\n  type filter hook input priority -10; policy accept;\n" + rules + " }\n}\n"
	nft := func(stdin string, args ...string) error {
		cmd := h.Lab.Command(ctx, vantage, "nft", args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft %s in %s: %w: %s", strings.Join(args, " "), vantage, err, out)
		}
		return nil
	}
	if err := nft(script, "-f", "-"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	undo := func() {
		once.Do(func() {
			if err := nft("", "delete", "table", "inet", "vr_ackloss"); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(undo)
	return undo
}

// TestAgentAckLostAfterCommit cuts the path from the controller to one
// agent only: batches the agent sends after that are committed, but their
// Acks never arrive. Once the agent has given the session up, the path is
// restored: the agent re-sends everything not acked, the controller finds
// those (agent, epoch, seq) already stored, acks them again and counts them
// as duplicates; every such result is stored once.
func TestAgentAckLostAfterCommit(t *testing.T) {
	const v = "vantage-b"
	ctx, cancel := labTest(t, 5*time.Minute)
	defer cancel()
	h := startLab(t, ctx, "b", demo.Config{Agents: []string{v}})
	applyCampaign(t, ctx, h, countryCampaign(t))
	id := waitConnected(t, ctx, h, v)
	waitStored(t, ctx, h, v, id, 30)
	dups0 := mustAgentInfo(t, ctx, h, v).GetDuplicatesDropped()
	ended0 := countInLog(t, h, v, logSessionEnded)
	opened0 := countInLog(t, h, v, logSessionOpen)

	undo := dropFromController(t, ctx, h, v)
	cutAt := time.Now()
	// Everything committed after this snapshot was committed after the
	// rule was in force, so its Ack was dropped.
	before := mustStored(t, ctx, h, id)
	waitFor(t, ctx, 30*time.Second, "a batch committed after the acks were cut", func() (bool, error) {
		st, err := queryStored(ctx, h, id)
		return st.distinct() > before.distinct(), err
	})
	firstLost := time.Since(cutAt)
	waitFor(t, ctx, 2*time.Minute, v+" giving its session up", func() (bool, error) {
		return countInLog(t, h, v, logSessionEnded) > ended0, nil
	})
	gaveUp := time.Since(cutAt)
	committed := mustStored(t, ctx, h, id)
	var lost []spool.Key
	for k := range committed.count {
		if before.count[k] == 0 {
			lost = append(lost, k)
		}
	}
	undo()
	restoreAt := time.Now()

	waitFor(t, ctx, 2*time.Minute, "the unacked batches re-sent and dropped as duplicates", func() (bool, error) {
		a, err := agentInfo(ctx, h, v)
		if err != nil || a == nil {
			return false, err
		}
		return a.GetDuplicatesDropped()-dups0 >= uint64(len(lost)), nil
	})
	resentIn := time.Since(restoreAt)
	info := mustAgentInfo(t, ctx, h, v)
	after := mustStored(t, ctx, h, id)
	once := 0
	for _, k := range lost {
		if after.count[k] == 1 {
			once++
		} else {
			t.Errorf("(epoch %d, seq %d): %d rows, want 1", k.Epoch, k.Seq, after.count[k])
		}
	}
	dups := info.GetDuplicatesDropped() - dups0
	t.Logf("ack lost after commit %s: committed_with_ack_lost=%d stored_once=%d duplicates_dropped=%d (re-sent, already stored) pending_at_reconnect=%d stored_rows=%d distinct=%d",
		v, len(lost), once, dups, pendingAtSessionOpen(t, h, v, opened0), after.rows, after.distinct())
	t.Logf("ack lost after commit %s: first commit with a lost ack %s after the cut; agent gave the session up after %s; re-sent and deduplicated %s after the restore",
		v, firstLost.Round(time.Millisecond), gaveUp.Round(time.Second), resentIn.Round(time.Second))
	if len(lost) == 0 {
		t.Fatal("no batch was committed while the acks were cut")
	}
	if after.rows != after.distinct() {
		t.Errorf("%d rows for %d distinct (epoch, seq)", after.rows, after.distinct())
	}
}

// spoolBytes is the size of every file in dir (segments, gaps, cursor and
// any rewrite in progress); -1 when dir cannot be read.
func spoolBytes(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestAgentSpoolCapFill runs one agent with the smallest spool
// (--spool-bytes 65536) and a campaign producing ~36 results/s, cuts its
// uplink until the spool has dropped its oldest segment several times,
// then restores it. The bytes in <state>/spool, sampled every 100 ms from
// start to end, never exceed the cap; the controller learns the gap; and
// every produced result is stored or covered by a stored gap.
func TestAgentSpoolCapFill(t *testing.T) {
	const (
		v        = "vantage-a"
		capBytes = 65536
	)
	ctx, cancel := labTest(t, 6*time.Minute)
	defer cancel()
	h := startLab(t, ctx, "a", demo.Config{Agents: []string{}})
	if err := h.StartAgent(ctx, v, "--spool-bytes", strconv.Itoa(capBytes)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.AgentStateDir(v), "spool")

	// The sampler: owned by this test, stopped and waited for below.
	var (
		maxBytes      int64
		samples, over int
		stop          = make(chan struct{})
		wg            sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if n := spoolBytes(dir); n >= 0 {
				samples++
				maxBytes = max(maxBytes, n)
				if n > capBytes {
					over++
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	stopSampler := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopSampler)

	applyCampaign(t, ctx, h, countryCampaign(t,
		[2]string{"name: country", "name: fill"},
		[2]string{"icmp: {retries: 1, timeout: 1s}", "icmp: {retries: 0, timeout: 500ms}"},
		[2]string{"mode: connect, timeout: 1s}", "mode: connect, timeout: 500ms}"},
		[2]string{"schedule: {round: 3s, jitter: 500ms}", "schedule: {round: 1s, jitter: 300ms}"},
		[2]string{"per_target_pps: 2", "per_target_pps: 3"}))
	id := waitConnected(t, ctx, h, v)
	waitStored(t, ctx, h, v, id, 20)

	drops0 := countInLog(t, h, v, logSpoolFull)
	cutAt := time.Now()
	if err := h.Lab.CutUplink(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Lab.RestoreUplink(v) })
	waitFor(t, ctx, 3*time.Minute, "the spool of "+v+" dropping its oldest results 3 times", func() (bool, error) {
		return countInLog(t, h, v, logSpoolFull) >= drops0+3, nil
	})
	cutFor := time.Since(cutAt)
	restoreAt := time.Now()
	if err := h.Lab.RestoreUplink(v); err != nil {
		t.Fatal(err)
	}
	// Delivered: the controller knows a gap, and stored results and stored
	// gaps cover 1..max with the newest produced after the restore.
	waitFor(t, ctx, 2*time.Minute, "the backlog and the gap of "+v+" delivered", func() (bool, error) {
		a, err := agentInfo(ctx, h, v)
		if err != nil || a == nil || a.GetGaps() == 0 {
			return false, err
		}
		st, err := queryStored(ctx, h, id)
		if err != nil || st.distinct() == 0 {
			return false, err
		}
		m := st.maxKey()
		if !st.sentAt[m].After(restoreAt) {
			return false, nil
		}
		a2 := account(produced{epoch: m.Epoch, results: m.Seq}, st, storedGaps(t, h, id), nil)
		return a2.missing == 0, nil
	})
	deliveredIn := time.Since(restoreAt)
	if err := h.StopAgent(v); err != nil {
		t.Fatal(err)
	}
	stopSampler()

	p := agentProduced(t, h, v)
	st := mustStored(t, ctx, h, id)
	gaps := storedGaps(t, h, id)
	pending := pendingInSpool(t, dir, p.epoch, capBytes)
	info := mustAgentInfo(t, ctx, h, v)
	a := account(p, st, gaps, pending)
	drops := countInLog(t, h, v, logSpoolFull) - drops0
	t.Logf("spool cap %s: %s; gaps_stored=%d agent_info{gaps=%d results_stored=%d duplicates_dropped=%d}; stored+gap_covered=%d",
		v, a, len(gaps), info.GetGaps(), info.GetResultsStored(), info.GetDuplicatesDropped(), a.stored+a.gapCovered)
	t.Logf("spool cap %s: max_bytes_on_disk=%d cap=%d samples=%d samples_over_cap=%d; cut %s, %d drops logged; delivered %s after the restore",
		v, maxBytes, capBytes, samples, over, cutFor.Round(time.Second), drops, deliveredIn.Round(time.Second))
	for _, g := range gaps {
		t.Logf("spool cap %s: gap epoch=%d seq %d..%d (%d results): %s", v, g.epoch, g.first, g.last, g.last-g.first+1, g.reason)
	}
	a.check(t)
	if maxBytes > capBytes {
		t.Errorf("bytes on disk reached %d, cap %d (%d of %d samples over)", maxBytes, capBytes, over, samples)
	}
	if len(gaps) == 0 || info.GetGaps() == 0 || a.gapCovered == 0 {
		t.Errorf("the gap is not visible to the controller: %d gaps stored, AgentInfo.gaps %d", len(gaps), info.GetGaps())
	}
	if uint64(info.GetGaps()) != a.gapCovered+a.storedAndGap {
		t.Errorf("AgentInfo.gaps %d, results in stored gaps %d", info.GetGaps(), a.gapCovered+a.storedAndGap)
	}
}
