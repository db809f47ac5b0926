package reliability

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/agent/uplink"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// An upFleet is many agents in this process, each running the real agent
// session code (agent/uplink: Run, its reconnects, backoff and retry-after)
// over its own disk spool (agent/spool) in a temp dir, each enrolled for
// real with its own key and certificate. Only the probing is left out: a
// producer submits results for the tasks of the agent's assignment, at a
// fixed rate. One process of 1,000 uplinks costs far less than 1,000 agent
// processes (each ~15 MiB RSS with its probe engines), which this machine
// could not hold beside the controller.
type upFleet struct {
	agents []*upAgent
	cancel context.CancelFunc
	runs   errgroup.Group // the uplinks' Run loops
	prod   errgroup.Group // the producers
	stop   chan struct{}  // closed: producers stop
}

type upAgent struct {
	name  string
	ident *uplink.Identity
	sp    *spool.Disk
	cl    *uplink.Client
	h     *upHandler
	rec   *upRecorder
}

// upHandler keeps the assignment in force and when each one came.
type upHandler struct {
	mu      sync.Mutex
	tasks   []*vantagev1.Task
	version uint64
	applied []time.Time
}

func (h *upHandler) Apply(_ context.Context, a *vantagev1.Assignment) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tasks, h.version = a.GetTasks(), a.GetVersion()
	h.applied = append(h.applied, time.Now())
	return nil
}

func (h *upHandler) Trigger(context.Context, *vantagev1.Trigger) error { return nil }

func (h *upHandler) AssignmentVersion() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version
}

// firstApplyAfter is when the first assignment after at came (zero: none).
func (h *upHandler) firstApplyAfter(at time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return firstAfter(h.applied, at)
}

func (h *upHandler) currentTasks() []*vantagev1.Task {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tasks
}

// upEnd is one "session ended; reconnecting" record of an uplink.
type upEnd struct {
	at      time.Time
	err     string
	retryIn time.Duration
}

// upRecorder is the uplink's slog.Handler: it keeps the session opens
// (Hello sent) and the session ends with the wait Run chose before the
// next attempt, so the test sees what the real code decided.
type upRecorder struct {
	mu    sync.Mutex
	opens []time.Time
	ends  []upEnd
}

func (r *upRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *upRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *upRecorder) WithGroup(string) slog.Handler            { return r }

func (r *upRecorder) Handle(_ context.Context, rec slog.Record) error {
	switch rec.Message {
	case "session open":
		r.mu.Lock()
		r.opens = append(r.opens, rec.Time)
		r.mu.Unlock()
	case "session ended; reconnecting":
		e := upEnd{at: rec.Time}
		rec.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "error":
				e.err = a.Value.String()
			case "retry_in":
				e.retryIn = a.Value.Duration()
			}
			return true
		})
		r.mu.Lock()
		r.ends = append(r.ends, e)
		r.mu.Unlock()
	}
	return nil
}

func (r *upRecorder) snapshot() ([]time.Time, []upEnd) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.opens), slices.Clone(r.ends)
}

// enrolFleet enrols n agents named prefix-NNNN with the controller, a few
// at a time, each in its own state directory with a spool of spoolBytes.
func enrolFleet(t *testing.T, ctx context.Context, c *vkController, n int, prefix string, spoolBytes int64) *upFleet {
	t.Helper()
	tok, err := c.ops(t).CreateJoinToken(c.bearer(ctx, c.admin), &vantagev1.CreateJoinTokenRequest{TtlS: 3600})
	if err != nil {
		t.Fatalf("join token: %v", err)
	}
	root := t.TempDir()
	f := &upFleet{agents: make([]*upAgent, n), stop: make(chan struct{})}
	var eg errgroup.Group
	eg.SetLimit(8)
	quiet := slog.New(slog.DiscardHandler)
	for i := range f.agents {
		eg.Go(func() error {
			name := fmt.Sprintf("%s-%04d", prefix, i)
			dir := filepath.Join(root, name)
			if _, err := uplink.Enroll(ctx, uplink.EnrollConfig{Controller: c.addr, StateDir: dir, JoinToken: tok.GetToken(),
				CAHash: tok.GetCaHash(), Name: name, Labels: map[string]string{"provider": name}, Logger: quiet}); err != nil {
				return fmt.Errorf("enrol %s: %w", name, err)
			}
			id, err := uplink.LoadIdentity(dir)
			if err != nil {
				return err
			}
			sp, err := spool.OpenDisk(filepath.Join(dir, "spool"), id.Epoch, spool.Options{MaxBytes: spoolBytes, Logger: quiet})
			if err != nil {
				return err
			}
			f.agents[i] = &upAgent{name: name, ident: id, sp: sp, h: &upHandler{}, rec: &upRecorder{}}
			return nil
		})
	}
	err = eg.Wait()
	t.Cleanup(func() {
		for _, a := range f.agents {
			if a != nil {
				a.sp.Close()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// start runs every uplink against addr, and a producer per agent that
// submits perSecond results a second (in ticks of 100 ms, phases spread)
// for the tasks of its assignment once it has one.
func (f *upFleet) start(t *testing.T, addr string, perSecond float64, tune func(*uplink.Config)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for _, a := range f.agents {
		cfg := uplink.Config{Controller: addr, Identity: a.ident, AgentVersion: "reliability-fleet",
			Labels: map[string]string{"provider": a.name}, Handler: a.h, Outbox: spool.NewOutbox(a.sp, spool.OutboxOptions{Logger: slog.New(a.rec)}), Logger: slog.New(a.rec)}
		if tune != nil {
			tune(&cfg)
		}
		cl, err := uplink.New(cfg)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		a.cl = cl
		f.runs.Go(func() error { return cl.Run(ctx) })
		f.prod.Go(func() error { a.produce(f.stop, perSecond); return nil })
	}
	t.Cleanup(f.shutdown)
}

// produce submits results until stop is closed.
func (a *upAgent) produce(stop <-chan struct{}, perSecond float64) {
	const tick = 100 * time.Millisecond
	select { // spread the agents' ticks
	case <-stop:
		return
	case <-time.After(rand.N(tick)):
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	owed := 0.0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		tasks := a.h.currentTasks()
		if len(tasks) == 0 {
			continue
		}
		owed += perSecond * tick.Seconds()
		for ; owed >= 1; owed-- {
			a.cl.Submit(fakeResult(tasks, a.cl.Produced()))
		}
	}
}

// fakeResult is a reply to the task the next seq falls on.
func fakeResult(tasks []*vantagev1.Task, produced uint64) *vantagev1.ProbeResult {
	task := tasks[int(produced%uint64(len(tasks)))]
	round := int64(0)
	if ms := int64(task.GetRoundMs()); ms > 0 {
		round = time.Since(task.GetScheduleStart().AsTime()).Milliseconds() / ms
	}
	return &vantagev1.ProbeResult{TaskId: task.GetId(), Campaign: task.GetCampaign(), Target: task.GetTarget(),
		Kind: task.GetKind(), Round: round, SentAt: timestamppb.Now(), Outcome: vantagev1.Outcome_OUTCOME_REPLY,
		RttUs: 1234, ReplyFrom: task.GetTarget(), ReplyTtl: 60, Attempts: 1}
}

// stopProducing stops every producer and waits for them.
func (f *upFleet) stopProducing() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	_ = f.prod.Wait()
}

// shutdown stops the producers and the uplinks.
func (f *upFleet) shutdown() {
	f.stopProducing()
	if f.cancel != nil {
		f.cancel()
	}
	_ = f.runs.Wait()
}

// waitAllAcked waits until every agent's produced results are acked.
func (f *upFleet) waitAllAcked(t *testing.T, ctx context.Context, timeout time.Duration) {
	t.Helper()
	waitFor(t, ctx, timeout, "every produced result acknowledged", func() (bool, error) {
		for _, a := range f.agents {
			if a.cl.Acked().Seq < a.cl.Produced() {
				return false, nil
			}
		}
		return true, nil
	})
}

// listAgents returns the controller's AgentInfo of every agent, by name.
func listAgents(ctx context.Context, c *vkController, t *testing.T) (map[string]*vantagev1.AgentInfo, error) {
	out := map[string]*vantagev1.AgentInfo{}
	ops := c.ops(t)
	page := ""
	for {
		resp, err := ops.ListAgents(c.bearer(ctx, c.admin), &vantagev1.ListAgentsRequest{PageSize: 1000, PageToken: page})
		if err != nil {
			return nil, fmt.Errorf("list agents: %w", err)
		}
		for _, a := range resp.GetAgents() {
			out[a.GetName()] = a
		}
		if page = resp.GetNextPageToken(); page == "" {
			return out, nil
		}
	}
}

// fleetBooks is what the controller stored of the fleet's results.
type fleetBooks struct {
	produced, stored, duplicates, gaps uint64
	short                              []string // agents with fewer stored than produced
}

// books compares each agent's produced count (its last seq, one epoch)
// with the controller's per-agent counters: results stored for the first
// time, duplicates dropped, and gaps.
func (f *upFleet) books(t *testing.T, ctx context.Context, c *vkController) fleetBooks {
	t.Helper()
	infos, err := listAgents(ctx, c, t)
	if err != nil {
		t.Fatal(err)
	}
	var b fleetBooks
	for _, a := range f.agents {
		info := infos[a.name]
		if info == nil {
			t.Fatalf("%s: not listed by the controller", a.name)
		}
		p := a.cl.Produced()
		b.produced += p
		b.stored += info.GetResultsStored()
		b.duplicates += info.GetDuplicatesDropped()
		b.gaps += info.GetGaps()
		if info.GetResultsStored() != p {
			b.short = append(b.short, fmt.Sprintf("%s produced %d stored %d gaps %d", a.name, p, info.GetResultsStored(), info.GetGaps()))
		}
	}
	return b
}

// quantiles returns min, median, p99 and max of ds (sorted in place).
func quantiles(ds []time.Duration) (lo, med, p99, hi time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	return ds[0], ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)], ds[len(ds)-1]
}

// errCode is the gRPC code named in an uplink's error text ("" if none).
func errCode(s string) string {
	_, rest, ok := strings.Cut(s, "code = ")
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, " ")
	return code
}
