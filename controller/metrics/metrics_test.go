package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vantage-net/vantage/controller/ingest"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

type fakeIngest struct{ s ingest.Stats }

func (f *fakeIngest) Stats() ingest.Stats { return f.s }

type fakeVerdicts struct{ vs []*vantagev1.Verdict }

func (f *fakeVerdicts) Verdicts(campaign string, level vantagev1.Level) []*vantagev1.Verdict {
	if campaign != "" || level != vantagev1.Level_LEVEL_UNSPECIFIED {
		panic("the collector must ask for every verdict")
	}
	return f.vs
}

func verdict(campaign string, level vantagev1.Level, subject string, st vantagev1.State) *vantagev1.Verdict {
	return &vantagev1.Verdict{Campaign: campaign, Level: level, Subject: subject, State: st}
}

func TestIngestMetrics(t *testing.T) {
	fi := &fakeIngest{s: ingest.Stats{ResultsStored: 250, ResultsDuplicate: 40, ResultsRefused: 3, Batches: 7,
		GapResults: 12, QueuedResults: 500, Sessions: 3,
		CommitSeconds: ingest.Histogram{Bounds: []float64{0.01, 0.1, 1}, Cumulative: []uint64{5, 6, 6}, Count: 7, Sum: 2.5}}}
	fi.s.Throttles[ingest.ThrottleSoft], fi.s.Throttles[ingest.ThrottleHard], fi.s.Throttles[ingest.ThrottleRate] = 2, 1, 4
	m := New(Config{Ingest: fi})
	const want = `
# HELP vantage_agent_sessions Agent sessions connected now.
# TYPE vantage_agent_sessions gauge
vantage_agent_sessions 3
# HELP vantage_ingest_batches_total Agent result batches committed to the store and acknowledged.
# TYPE vantage_ingest_batches_total counter
vantage_ingest_batches_total 7
# HELP vantage_ingest_commit_duration_seconds Duration of each store commit (a group of batches in one transaction).
# TYPE vantage_ingest_commit_duration_seconds histogram
vantage_ingest_commit_duration_seconds_bucket{le="0.01"} 5
vantage_ingest_commit_duration_seconds_bucket{le="0.1"} 6
vantage_ingest_commit_duration_seconds_bucket{le="1"} 6
vantage_ingest_commit_duration_seconds_bucket{le="+Inf"} 7
vantage_ingest_commit_duration_seconds_sum 2.5
vantage_ingest_commit_duration_seconds_count 7
# HELP vantage_ingest_gap_results_total Results agents reported lost in the gap records of committed batches (e.g. spool full); refused results are not included.
# TYPE vantage_ingest_gap_results_total counter
vantage_ingest_gap_results_total 12
# HELP vantage_ingest_queue_results Results queued for, or being committed to, the store (soft bound --ingest-queue, hard bound twice that).
# TYPE vantage_ingest_queue_results gauge
vantage_ingest_queue_results 500
# HELP vantage_ingest_results_total Results in committed agent batches, by outcome: stored (new), duplicate (already stored, e.g. re-sent after a lost ack), refused (task not given to the agent; acked and recorded as a gap).
# TYPE vantage_ingest_results_total counter
vantage_ingest_results_total{outcome="duplicate"} 40
vantage_ingest_results_total{outcome="refused"} 3
vantage_ingest_results_total{outcome="stored"} 250
# HELP vantage_ingest_throttles_total Throttle messages sent to agents, by kind: soft (queue long, batch taken), hard (queue full or commits slow, batch refused), rate (agent over --ingest-rate, batch refused), store (the batch's commit failed, batch not acked).
# TYPE vantage_ingest_throttles_total counter
vantage_ingest_throttles_total{kind="hard"} 1
vantage_ingest_throttles_total{kind="rate"} 4
vantage_ingest_throttles_total{kind="soft"} 2
vantage_ingest_throttles_total{kind="store"} 0
`
	err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "vantage_agent_sessions", "vantage_ingest_batches_total",
		"vantage_ingest_commit_duration_seconds", "vantage_ingest_gap_results_total", "vantage_ingest_queue_results",
		"vantage_ingest_results_total", "vantage_ingest_throttles_total")
	if err != nil {
		t.Fatal(err)
	}
	// The values follow the source at every scrape.
	fi.s.ResultsStored, fi.s.Sessions = 300, 0
	if n, err := testutil.GatherAndCount(m.Gatherer(), "vantage_ingest_results_total"); err != nil || n != 3 {
		t.Fatalf("vantage_ingest_results_total series = %d, %v; want 3", n, err)
	}
	const after = `
# HELP vantage_agent_sessions Agent sessions connected now.
# TYPE vantage_agent_sessions gauge
vantage_agent_sessions 0
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(after), "vantage_agent_sessions"); err != nil {
		t.Fatal(err)
	}
}

// TestDiskFaultMetrics: a stalled store (the commit running now), a failing
// one (commits failed by class, the failing gauge) and agents whose spool
// disk refuses writes.
func TestDiskFaultMetrics(t *testing.T) {
	fi := &fakeIngest{}
	m := New(Config{Ingest: fi})
	names := []string{"vantage_store_write_failures_total", "vantage_store_failing", "vantage_agents_spool_failing",
		"vantage_ingest_commit_running_seconds"}
	const head = `
# HELP vantage_agents_spool_failing Connected agents whose last heartbeat says their spool's disk refuses writes (results kept in the agent's memory, or dropped into gaps).
# TYPE vantage_agents_spool_failing gauge
vantage_agents_spool_failing %d
# HELP vantage_ingest_commit_running_seconds How long the store commit in progress has been running, 0 when none: a stalled disk shows here while it lasts (above 5 s new batches are refused).
# TYPE vantage_ingest_commit_running_seconds gauge
vantage_ingest_commit_running_seconds %g
# HELP vantage_store_write_failures_total Store writes by ingest that failed, by class: disk_full (no space left), io (I/O error, read-only), other. Commits of agent batches (not acked: the agents send them again) and agent rows updated at Hello (the session is refused) and heartbeat.
# TYPE vantage_store_write_failures_total counter
vantage_store_write_failures_total{class="disk_full"} %d
vantage_store_write_failures_total{class="io"} %d
vantage_store_write_failures_total{class="other"} 0
# HELP vantage_store_failing 1 while the store's writes fail (a full disk or an I/O error: results stay with the agents), 0 once a commit succeeds again.
# TYPE vantage_store_failing gauge
vantage_store_failing %d
`
	tests := []struct {
		name                         string
		full, io, failing, agentsBad int
		running                      time.Duration
	}{
		{"healthy", 0, 0, 0, 0, 0},
		{"a commit stalled for 12.5 s", 0, 0, 0, 0, 12500 * time.Millisecond},
		{"disk full now, one agent's spool too", 12, 1, 1, 1, 0},
		{"recovered", 12, 1, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fi.s.StoreFailures[ingest.StoreDiskFull], fi.s.StoreFailures[ingest.StoreIO] = uint64(tc.full), uint64(tc.io)
			fi.s.StoreFailing, fi.s.AgentsSpoolFailing, fi.s.CommitRunning = tc.failing == 1, tc.agentsBad, tc.running
			want := fmt.Sprintf(head, tc.agentsBad, tc.running.Seconds(), tc.full, tc.io, tc.failing)
			if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), names...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestVerdictState(t *testing.T) {
	fv := &fakeVerdicts{}
	m := New(Config{Verdicts: fv})
	const head = `
# HELP vantage_verdict_state 1 for each current verdict, labelled with its state (REACHABLE, DEGRADED, UNSTABLE, UNREACHABLE, UNKNOWN); level is target, network or scope, subject the target address, network name or scope name. Only the current state has a series; a verdict not yet evaluated has none.
# TYPE vantage_verdict_state gauge
`
	tests := []struct {
		name string
		vs   []*vantagev1.Verdict
		want string
	}{
		{"no campaigns", nil, ""},
		{"one per verdict, current state only", []*vantagev1.Verdict{
			verdict("kp", vantagev1.Level_LEVEL_SCOPE, "KP", vantagev1.State_STATE_UNREACHABLE),
			verdict("kp", vantagev1.Level_LEVEL_NETWORK, "star-jv", vantagev1.State_STATE_DEGRADED),
			verdict("kp", vantagev1.Level_LEVEL_TARGET, "175.45.176.1", vantagev1.State_STATE_REACHABLE),
			verdict("kp", vantagev1.Level_LEVEL_TARGET, "175.45.176.2", vantagev1.State_STATE_UNSPECIFIED), // not evaluated yet
		}, head + `vantage_verdict_state{campaign="kp",level="network",state="DEGRADED",subject="star-jv"} 1
vantage_verdict_state{campaign="kp",level="scope",state="UNREACHABLE",subject="KP"} 1
vantage_verdict_state{campaign="kp",level="target",state="REACHABLE",subject="175.45.176.1"} 1
`},
		// The scope recovered: its UNREACHABLE series is gone, not left at 1.
		{"state changed, old series gone", []*vantagev1.Verdict{
			verdict("kp", vantagev1.Level_LEVEL_SCOPE, "KP", vantagev1.State_STATE_REACHABLE),
		}, head + `vantage_verdict_state{campaign="kp",level="scope",state="REACHABLE",subject="KP"} 1
`},
		{"campaign deleted", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fv.vs = tc.vs
			if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(tc.want), "vantage_verdict_state"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTransitions(t *testing.T) {
	m := New(Config{})
	tr := func(level vantagev1.Level, to vantagev1.State) *vantagev1.Transition {
		return &vantagev1.Transition{Campaign: "kp", Level: level, To: to}
	}
	refined := tr(vantagev1.Level_LEVEL_SCOPE, vantagev1.State_STATE_REACHABLE)
	refined.From = vantagev1.State_STATE_REACHABLE // a location refinement: no state change
	m.ObserveTransitions([]*vantagev1.Transition{
		tr(vantagev1.Level_LEVEL_SCOPE, vantagev1.State_STATE_UNREACHABLE),
		tr(vantagev1.Level_LEVEL_SCOPE, vantagev1.State_STATE_REACHABLE),
		tr(vantagev1.Level_LEVEL_NETWORK, vantagev1.State_STATE_UNREACHABLE),
		refined,
	})
	m.ObserveTransitions([]*vantagev1.Transition{tr(vantagev1.Level_LEVEL_SCOPE, vantagev1.State_STATE_UNREACHABLE)})
	tests := []struct {
		level, to string
		want      float64
	}{
		{"scope", "UNREACHABLE", 2},
		{"scope", "REACHABLE", 1},
		{"network", "UNREACHABLE", 1},
		{"target", "UNREACHABLE", 0},
	}
	for _, tc := range tests {
		t.Run(tc.level+"/"+tc.to, func(t *testing.T) {
			if got := testutil.ToFloat64(m.transitions.WithLabelValues("kp", tc.level, tc.to)); got != tc.want {
				t.Fatalf("vantage_verdict_transitions_total{level=%q,to=%q} = %v; want %v", tc.level, tc.to, got, tc.want)
			}
		})
	}
}

// prunes is a store whose PruneResults deletes n results per call.
type prunes struct{ n int64 }

func (p prunes) PruneResults(context.Context, time.Time, int) (int64, int64, error) {
	return 1, p.n, nil
}

func TestCountPruned(t *testing.T) {
	m := New(Config{})
	st := m.CountPruned(prunes{n: 250})
	for range 3 {
		if _, n, err := st.PruneResults(context.Background(), time.Now(), 256); err != nil || n != 250 {
			t.Fatalf("PruneResults = %d, %v; want 250 passed through", n, err)
		}
	}
	if got := testutil.ToFloat64(m.pruned); got != 750 {
		t.Fatalf("vantage_retention_pruned_results_total = %v; want 750", got)
	}
}

// TestHandler scrapes the handler over HTTP: the Go and process
// collectors are there, and every vantage_ metric passes promlint.
func TestHandler(t *testing.T) {
	m := New(Config{Ingest: &fakeIngest{s: ingest.Stats{CommitSeconds: ingest.Histogram{Bounds: []float64{1}, Cumulative: []uint64{0}}}},
		Verdicts: &fakeVerdicts{vs: []*vantagev1.Verdict{verdict("kp", vantagev1.Level_LEVEL_SCOPE, "KP", vantagev1.State_STATE_UNKNOWN)}}})
	m.ObserveTransitions([]*vantagev1.Transition{{Campaign: "kp", Level: vantagev1.Level_LEVEL_SCOPE, To: vantagev1.State_STATE_UNKNOWN}})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET = %s", resp.Status)
	}
	for _, s := range []string{"go_goroutines ", "process_cpu_seconds_total ", `vantage_verdict_state{campaign="kp",level="scope",state="UNKNOWN",subject="KP"} 1`,
		`vantage_verdict_transitions_total{campaign="kp",level="scope",to="UNKNOWN"} 1`, "vantage_retention_pruned_results_total 0",
		`vantage_ingest_results_total{outcome="stored"} 0`} {
		if !strings.Contains(string(body), s) {
			t.Errorf("scrape lacks %q", s)
		}
	}
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "vantage_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

func TestSessionAdmissionMetrics(t *testing.T) {
	fi := &fakeIngest{s: ingest.Stats{Admission: ingest.AdmissionStats{Admitted: 1000, Refused: 912, Appointments: 37}}}
	m := New(Config{Ingest: fi})
	const want = `
# HELP vantage_ingest_session_appointments Refused agents with a session start reserved for them now (their retry-after).
# TYPE vantage_ingest_session_appointments gauge
vantage_ingest_session_appointments 37
# HELP vantage_ingest_session_starts_total Agent session starts by outcome: admitted (went on to its Hello), refused (beyond --session-rate, --session-burst or --session-starts: RESOURCE_EXHAUSTED with a retry-after, e.g. in a reconnect storm).
# TYPE vantage_ingest_session_starts_total counter
vantage_ingest_session_starts_total{outcome="admitted"} 1000
vantage_ingest_session_starts_total{outcome="refused"} 912
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want),
		"vantage_ingest_session_starts_total", "vantage_ingest_session_appointments"); err != nil {
		t.Fatal(err)
	}
}
