package reliability

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/deploy/demo"
)

// startVKLab is startLab with this file's namespace prefix ("vk"): the
// controller-side tests never share namespaces with the agent-side ones.
func startVKLab(t *testing.T, ctx context.Context, letter string, cfg demo.Config) *demo.Harness {
	t.Helper()
	cfg.BinDir = labBinaries(t)
	cfg.Prefix = fmt.Sprintf("vk%d%s", os.Getpid()%10000, letter)
	cfg.WorkDir = t.TempDir()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := demo.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start lab %s: %v", cfg.Prefix, err)
	}
	demo.CloseAtCleanup(t, h, 3000)
	return h
}

// TestControllerSIGKILL kills the controller with SIGKILL for 60 s in the
// middle of a campaign, restarts it on the same data directory, and then
// checks every agent's books seq by seq: produced (the agent's own count,
// logged when it stops) = stored once + covered by a stored gap + still in
// its spool, with 0 missing and 0 duplicated.
func TestControllerSIGKILL(t *testing.T) {
	needLab(t)
	t.Parallel()
	const down = 60 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	h := startVKLab(t, ctx, "k", demo.Config{})
	applyCampaign(t, ctx, h, countryCampaign(t))
	vantages := h.Lab.Vantages()
	ids := map[string]string{}
	for _, v := range vantages {
		ids[v] = waitConnected(t, ctx, h, v)
	}
	for _, v := range vantages {
		waitFor(t, ctx, time.Minute, v+" results stored", func() (bool, error) {
			st, err := queryStored(ctx, h, ids[v])
			return st.distinct() >= 30, err
		})
	}
	before := map[string]int{}
	for _, v := range vantages {
		before[v] = mustStored(t, ctx, h, ids[v]).distinct()
	}
	killedAt := time.Now()
	if err := h.KillNode("controller"); err != nil {
		t.Fatal(err)
	}
	sleepCtx(t, ctx, down)
	if err := h.StartController(ctx); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	// Every agent reconnects, delivers its backlog and keeps going.
	for _, v := range vantages {
		waitFor(t, ctx, 2*time.Minute, v+" backlog delivered", func() (bool, error) {
			st, err := queryStored(ctx, h, ids[v])
			if err != nil || st.distinct() == 0 {
				return false, err
			}
			m := st.maxKey()
			return st.sentAt[m].After(restartedAt.Add(5 * time.Second)), nil
		})
	}
	for _, v := range vantages {
		if err := h.StopAgent(v); err != nil {
			t.Fatal(err)
		}
	}
	var total accounting
	for _, v := range vantages {
		id := ids[v]
		p := agentProduced(t, h, v)
		st := mustStored(t, ctx, h, id)
		gaps := storedGaps(t, h, id)
		pending := pendingInSpool(t, filepath.Join(h.AgentStateDir(v), "spool"), p.epoch, spool.DefaultMaxBytes)
		a := account(p, st, gaps, pending)
		var duringOutage int
		for _, sent := range st.sentAt {
			if !sent.Before(killedAt) && sent.Before(restartedAt) {
				duringOutage++
			}
		}
		info := mustAgentInfo(t, ctx, h, v)
		t.Logf("controller SIGKILL %s: %s; stored_rows=%d before_kill=%d produced_during_the_%s_outage_and_stored=%d gaps_stored=%d resent_and_deduplicated=%d",
			v, a, st.rows, before[v], down, duringOutage, len(gaps), info.GetDuplicatesDropped())
		a.check(t)
		if duringOutage == 0 {
			t.Errorf("%s: nothing produced during the outage was stored: the outage did not bite", v)
		}
		total.produced += a.produced
		total.stored += a.stored
		total.gapCovered += a.gapCovered
		total.pending += a.pending
		total.missing += a.missing
		total.duplicateRows += a.duplicateRows
		total.unknown += a.unknown
	}
	t.Logf("controller SIGKILL for %s, all agents: lost=%d duplicated=%d (produced=%d = stored %d + gaps %d + still spooled %d)",
		down, total.missing, total.duplicateRows, total.produced, total.stored, total.gapCovered, total.pending)
}
