package reliability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/deploy/demo"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// startVKLab is startLab with this file's namespace prefix ("vk"): the
// controller-side tests never share namespaces with the agent-side ones.
func startVKLab(t *testing.T, ctx context.Context, letter string, cfg demo.Config) *demo.Harness {
	t.Helper()
	return startLabAs(t, ctx, labPrefix("vk", letter), cfg, nil)
}

// TestControllerSIGKILL kills the controller with SIGKILL for 60 s in the
// middle of a campaign, restarts it on the same data directory, and then
// checks every agent's books seq by seq: produced (the agent's own count,
// logged when it stops) = stored once + covered by a stored gap + still in
// its spool, with 0 missing and 0 duplicated. The campaign is steady (the
// scope REACHABLE before the kill): the restarted controller must publish
// no transition for the outage's 20 rounds (no UNKNOWN episode, no
// UNSPECIFIED -> same state) once it has evaluated them.
func TestControllerSIGKILL(t *testing.T) {
	const down = 60 * time.Second
	ctx, cancel := labTest(t, 8*time.Minute)
	defer cancel()
	h := startVKLab(t, ctx, "k", demo.Config{})
	applyCampaign(t, ctx, h, countryCampaign(t))
	vantages := h.Lab.Vantages()
	ids := waitAllStreaming(t, ctx, h)
	waitFor(t, ctx, time.Minute, "the scope REACHABLE", func() (bool, error) {
		return scopeState(ctx, h) == vantagev1.State_STATE_REACHABLE, nil
	})
	sleepCtx(t, ctx, 10*time.Second) // settled: the next rounds add nothing
	before := map[string]int{}
	for _, v := range vantages {
		before[v] = mustStored(t, ctx, h, ids[v]).distinct()
	}
	timelineBefore := mustTimeline(t, ctx, h)
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
	// Evaluated through the restart: the missed rounds were caught up.
	waitFor(t, ctx, 2*time.Minute, "verdicts evaluated past the restart", func() (bool, error) {
		return scopeRound(ctx, h) > roundOf(restartedAt)+1, nil
	})
	var added []string
	lastBefore := int64(0)
	for _, tr := range timelineBefore {
		lastBefore = max(lastBefore, tr.GetId())
	}
	for _, tr := range mustTimeline(t, ctx, h) {
		if tr.GetId() <= lastBefore {
			continue
		}
		added = append(added, fmt.Sprintf("round %d %s %s -> %s", tr.GetRound(), tr.GetVerdictId(), tr.GetFrom(), tr.GetTo()))
	}
	t.Logf("controller SIGKILL: %d transitions before the kill, %d published after the restart %v; caught up: %s",
		len(timelineBefore), len(added), added, lastLogLine(t, h, "controller", `msg="verdict engine caught up"`))
	if len(added) != 0 {
		t.Errorf("a restart of a steady campaign published %d transitions: %v", len(added), added)
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
		total.add(a)
	}
	t.Logf("controller SIGKILL for %s, all agents: lost=%d duplicated=%d (produced=%d = stored %d + gaps %d + still spooled %d)",
		down, total.missing, total.duplicateRows, total.produced, total.stored, total.gapCovered, total.pending)
}

// scopeState and scopeRound are the country scope verdict's state and last
// closed round (UNSPECIFIED, -1 when there is none yet).
func scopeState(ctx context.Context, h *demo.Harness) vantagev1.State {
	v := scopeVerdict(ctx, h)
	return v.GetState()
}

func scopeRound(ctx context.Context, h *demo.Harness) int64 {
	if v := scopeVerdict(ctx, h); v != nil {
		return v.GetRound()
	}
	return -1
}

func scopeVerdict(ctx context.Context, h *demo.Harness) *vantagev1.Verdict {
	resp, err := h.Operator.GetVerdicts(h.Authed(ctx), &vantagev1.GetVerdictsRequest{Campaign: "country", Level: vantagev1.Level_LEVEL_SCOPE})
	if err != nil || len(resp.GetVerdicts()) == 0 {
		return nil
	}
	return resp.GetVerdicts()[0]
}

// roundOf is the country campaign's round (3 s from 1970) at t.
func roundOf(t time.Time) int64 { return t.UnixNano() / int64(3*time.Second) }

func mustTimeline(t *testing.T, ctx context.Context, h *demo.Harness) []*vantagev1.Transition {
	t.Helper()
	resp, err := h.Operator.GetTimeline(h.Authed(ctx), &vantagev1.GetTimelineRequest{Campaign: "country"})
	if err != nil {
		t.Fatalf("timeline: %v", err)
	}
	return resp.GetTransitions()
}

// lastLogLine is the last line of a node's log containing substr.
func lastLogLine(t *testing.T, h *demo.Harness, node, substr string) string {
	t.Helper()
	b, err := os.ReadFile(h.LogPath(node))
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			last = l
		}
	}
	return last
}
