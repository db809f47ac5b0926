package live

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestRefusingAgentIsLeftOut: quorum 2, two agents; the second one's guard
// refuses 3 of the campaign's 4 tasks (special-purpose ranges, an agent
// started without --allow-special-ranges) and it probes only the last one.
// It must not make the quorum: the verdicts are UNKNOWN, not REACHABLE on
// the strength of one target, and its reason is one bounded line.
func TestRefusingAgentIsLeftOut(t *testing.T) {
	g := newRig(t, specRestart, 2)
	refuser := g.agents[1]
	kept := g.spec.Targets()[len(g.spec.Targets())-1].Addr.String()
	g.runs = func(agent, target string) bool { return agent != refuser || target == kept }
	w := g.worker()
	g.connect(w, start)
	for _, tk := range g.spec.Tasks(start) {
		if strings.HasSuffix(tk.GetId(), "/"+kept) {
			continue
		}
		err := g.db.SetTaskStatus(g.ctx, store.TaskStatus{AgentID: refuser, TaskID: tk.GetId(), Refused: true, At: start,
			Reason: fmt.Sprintf("task.target %s: special-purpose range (RFC 2544 benchmarking); start the agent with --allow-special-ranges in a lab", tk.GetTarget())})
		if err != nil {
			t.Fatal(err)
		}
	}
	g.live(w, 0, 4)
	scope, _ := w.Verdict("r/scope/KP")
	var ev *vantagev1.VantageEvidence
	for _, e := range scope.GetEvidence() {
		if e.GetAgentId() == refuser {
			ev = e
		}
	}
	healthy, reason, known := w.AgentHealth(refuser)
	t.Logf("scope %s (%v); refuser evidence healthy=%v reason %q; AgentHealth healthy=%v known=%v reason (%d chars) %q",
		shortName(scope.GetState()), scope.GetNotes(), ev.GetHealthy(), ev.GetReason(), healthy, known, len(reason), reason)
	if scope.GetState() != vantagev1.State_STATE_UNKNOWN {
		t.Errorf("scope is %s with one healthy vantage and quorum 2; want UNKNOWN", shortName(scope.GetState()))
	}
	if ev == nil || ev.GetHealthy() || !strings.HasPrefix(ev.GetReason(), "refused 3 of 4 tasks: task.target ") || !strings.HasSuffix(ev.GetReason(), "(and 2 more)") {
		t.Errorf("refuser's evidence: %v", ev)
	}
	if healthy || !known || len(reason) > 400 {
		t.Errorf("AgentHealth = %v, %q, %v; want unhealthy with a short reason", healthy, reason, known)
	}

	// Restarted with the flag: it runs every task again, and counts once
	// its results show it (its stored refusals are stale).
	g.runs = nil
	g.clk.Set(g.clk.Now().Add(refusalCheckEvery))
	g.live(w, 5, 8)
	g.clk.Set(g.clk.Now().Add(refusalCheckEvery))
	g.live(w, 9, 10)
	scope, _ = w.Verdict("r/scope/KP")
	if healthy, reason, _ := w.AgentHealth(refuser); !healthy || scope.GetState() != vantagev1.State_STATE_REACHABLE {
		t.Errorf("after it runs its tasks: AgentHealth %v %q, scope %s; want healthy and REACHABLE", healthy, reason, shortName(scope.GetState()))
	}
}

func TestTaskStatusReasons(t *testing.T) {
	var sts []store.TaskStatus
	for i := range 312 {
		sts = append(sts, store.TaskStatus{TaskID: fmt.Sprintf("country/icmp/198.18.%d.%d", i/250, 10+i%250), Refused: true,
			Reason: strings.Repeat("special-purpose range refused; ", 10)})
	}
	sts = append(sts, store.TaskStatus{TaskID: "country/tcp/198.18.0.10:80", Reason: "no raw sockets", Engine: "tcp/connect"},
		store.TaskStatus{TaskID: "", Refused: true, Reason: "assignment version 3 refused: not newer than 3"})
	got := TaskStatusReasons(sts)
	all := strings.Join(got, "; ")
	t.Logf("%d statuses -> %d chars:\n%s", len(sts), len(all), strings.Join(got, "\n"))
	if len(got) != 3 || len(all) > 1000 || !strings.Contains(all, "campaign country: 312 tasks refused, e.g. country/icmp/198.18.0.10: ") ||
		!strings.Contains(all, "1 task on a fallback engine") || !strings.HasPrefix(got[0], "assignment refused: ") {
		t.Errorf("TaskStatusReasons = %q", got)
	}
}
