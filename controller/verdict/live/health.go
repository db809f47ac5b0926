package live

import (
	"context"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/internal/taskid"
)

// Task refusals and agent health.
//
// An agent whose guard refuses a task (an agent started without
// --allow-special-ranges in a lab refuses every one) tells the controller
// with a TaskStatus, which ingest stores. An agent that refused most of a
// campaign's tasks (more than half) and does not send most of a round's
// results either is left out of that campaign's verdicts (unhealthy, with
// a one-line reason), so it counts toward no quorum and no round waits for
// it. The results test keeps an old refusal (the agent was restarted with
// the flag since) from condemning an agent that now probes.
const (
	// refusalCheckEvery is how often, on the worker's clock, the stored
	// task statuses of the connected agents are read.
	refusalCheckEvery = 10 * time.Second
	// maxReasonRunes bounds the example reason quoted in a summary.
	maxReasonRunes = 200
)

// checkRefusals reads the task statuses of every connected agent and
// excludes from each campaign the agents that refuse most of its tasks.
func (w *Worker) checkRefusals(ctx context.Context, now time.Time) error {
	w.mu.Lock()
	if now.Sub(w.refusalsAt) < refusalCheckEvery && !w.refusalsAt.IsZero() {
		w.mu.Unlock()
		return nil
	}
	w.refusalsAt = now
	var ids []string
	for id, a := range w.agents {
		if a.connected {
			ids = append(ids, id)
		}
	}
	w.mu.Unlock()
	slices.Sort(ids)
	runs := w.all()
	for _, id := range ids {
		sts, err := w.opts.Store.TaskStatuses(ctx, id)
		if err != nil {
			return fmt.Errorf("task statuses of %s: %w", id, err)
		}
		for _, r := range runs {
			w.judgeRefusals(r, id, sts)
		}
	}
	return nil
}

// judgeRefusals sets whether r's engine leaves agent out for refusals.
func (w *Worker) judgeRefusals(r *running, agent string, sts []store.TaskStatus) {
	tasks := r.taskIDs()
	var refused []store.TaskStatus
	for _, st := range sts {
		if st.Refused && tasks[st.TaskID] {
			refused = append(refused, st)
		}
	}
	reason := ""
	r.mu.Lock()
	defer r.mu.Unlock()
	if 2*len(refused) > len(tasks) {
		_, got := r.eng.LatestResults(agent)
		if perRound := r.eng.Config().ResultsPerRound; 2*got < perRound || perRound == 0 && got == 0 {
			reason = refusalSummary(len(refused), len(tasks), refused[0].Reason)
		}
	}
	r.eng.SetAgentExcluded(agent, reason)
}

// taskIDs is the set of the campaign's task ids (computed once).
func (r *running) taskIDs() map[string]bool {
	r.tasksOnce.Do(func() {
		r.tasks = map[string]bool{}
		for _, t := range r.spec.Tasks(r.spec.Start()) {
			r.tasks[t.GetId()] = true
		}
	})
	return r.tasks
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// refusalSummary is the one line an agent's refusals of a campaign's tasks
// come to.
func refusalSummary(n, of int, first string) string {
	s := fmt.Sprintf("refused %d of %d tasks: %s", n, of, clip(first, maxReasonRunes))
	if n > 1 {
		s += fmt.Sprintf(" (and %d more)", n-1)
	}
	return s
}

// clip cuts s to at most n runes, marking the cut.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "..."
}

// TaskStatusReasons summarises an agent's stored task statuses for its
// health reason in a few bounded lines, however many tasks there are:
// per campaign (the task id's first element), the refused tasks with the
// first reason, then the tasks run with a fallback engine, and statuses
// about a whole assignment. Each line quotes at most one reason.
func TaskStatusReasons(sts []store.TaskStatus) []string {
	type group struct {
		refused, fallback     int
		firstRefused, firstFB store.TaskStatus
	}
	groups := map[string]*group{}
	var order, whole []string
	for _, st := range sts {
		if st.TaskID == "" {
			if st.Refused {
				whole = append(whole, "assignment refused: "+clip(st.Reason, maxReasonRunes))
			}
			continue
		}
		c := taskid.Campaign(st.TaskID)
		g := groups[c]
		if g == nil {
			g = &group{}
			groups[c] = g
			order = append(order, c)
		}
		switch {
		case st.Refused:
			if g.refused == 0 {
				g.firstRefused = st
			}
			g.refused++
		case st.Reason != "" || st.Engine != "":
			if g.fallback == 0 {
				g.firstFB = st
			}
			g.fallback++
		}
	}
	out := whole
	for _, c := range order {
		g := groups[c]
		if g.refused > 0 {
			s := fmt.Sprintf("campaign %s: %d tasks refused, e.g. %s: %s", c, g.refused, g.firstRefused.TaskID, clip(g.firstRefused.Reason, maxReasonRunes))
			if g.refused == 1 {
				s = fmt.Sprintf("campaign %s: task %s refused: %s", c, g.firstRefused.TaskID, clip(g.firstRefused.Reason, maxReasonRunes))
			}
			out = append(out, s)
		}
		if g.fallback > 0 {
			out = append(out, fmt.Sprintf("campaign %s: %d %s on a fallback engine, e.g. %s: %s (engine %s)", c, g.fallback,
				plural(g.fallback, "task", "tasks"), g.firstFB.TaskID, clip(g.firstFB.Reason, maxReasonRunes), g.firstFB.Engine))
		}
	}
	return out
}
