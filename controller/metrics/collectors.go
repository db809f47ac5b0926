package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vantage-net/vantage/controller/ingest"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// ingestCollector turns one ingest.Stats snapshot per scrape into metrics.
type ingestCollector struct {
	src       IngestSource
	results   *prometheus.Desc
	batches   *prometheus.Desc
	gaps      *prometheus.Desc
	queue     *prometheus.Desc
	commit    *prometheus.Desc
	running   *prometheus.Desc
	throttles *prometheus.Desc
	sessions  *prometheus.Desc
	// The store's and the agents' disks (docs/OPERATIONS.md, Disk faults).
	storeFailures *prometheus.Desc
	storeFailing  *prometheus.Desc
	spoolFailing  *prometheus.Desc
	// Session admission (docs/OPERATIONS.md, Reconnect storms).
	sessionStarts *prometheus.Desc
	appointments  *prometheus.Desc
}

func newIngestCollector(src IngestSource) *ingestCollector {
	return &ingestCollector{
		src: src,
		results: prometheus.NewDesc("vantage_ingest_results_total",
			"Results in committed agent batches, by outcome: stored (new), duplicate (already stored, e.g. re-sent after a lost ack), refused (task not given to the agent; acked and recorded as a gap).",
			[]string{"outcome"}, nil),
		batches: prometheus.NewDesc("vantage_ingest_batches_total",
			"Agent result batches committed to the store and acknowledged.", nil, nil),
		gaps: prometheus.NewDesc("vantage_ingest_gap_results_total",
			"Results agents reported lost in the gap records of committed batches (e.g. spool full); refused results are not included.", nil, nil),
		queue: prometheus.NewDesc("vantage_ingest_queue_results",
			"Results queued for, or being committed to, the store (soft bound --ingest-queue, hard bound twice that).", nil, nil),
		commit: prometheus.NewDesc("vantage_ingest_commit_duration_seconds",
			"Duration of each store commit (a group of batches in one transaction).", nil, nil),
		running: prometheus.NewDesc("vantage_ingest_commit_running_seconds",
			"How long the store commit in progress has been running, 0 when none: a stalled disk shows here while it lasts (above 5 s new batches are refused).", nil, nil),
		throttles: prometheus.NewDesc("vantage_ingest_throttles_total",
			"Throttle messages sent to agents, by kind: soft (queue long, batch taken), hard (queue full or commits slow, batch refused), rate (agent over --ingest-rate, batch refused), store (the batch's commit failed, batch not acked).",
			[]string{"kind"}, nil),
		sessions: prometheus.NewDesc("vantage_agent_sessions",
			"Agent sessions connected now.", nil, nil),
		storeFailures: prometheus.NewDesc("vantage_store_write_failures_total",
			"Store writes by ingest that failed, by class: disk_full (no space left), io (I/O error, read-only), other. Commits of agent batches (not acked: the agents send them again) and agent rows updated at Hello (the session is refused) and heartbeat.",
			[]string{"class"}, nil),
		storeFailing: prometheus.NewDesc("vantage_store_failing",
			"1 while the store's writes fail (a full disk or an I/O error: results stay with the agents), 0 once a commit succeeds again.", nil, nil),
		sessionStarts: prometheus.NewDesc("vantage_ingest_session_starts_total",
			"Agent session starts by outcome: admitted (went on to its Hello), refused (beyond --session-rate, --session-burst or --session-starts: RESOURCE_EXHAUSTED with a retry-after, e.g. in a reconnect storm).",
			[]string{"outcome"}, nil),
		appointments: prometheus.NewDesc("vantage_ingest_session_appointments",
			"Refused agents with a session start reserved for them now (their retry-after).", nil, nil),
		spoolFailing: prometheus.NewDesc("vantage_agents_spool_failing",
			"Connected agents whose last heartbeat says their spool's disk refuses writes (results kept in the agent's memory, or dropped into gaps).", nil, nil),
	}
}

func (c *ingestCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.results, c.batches, c.gaps, c.queue, c.commit, c.running, c.throttles, c.sessions,
		c.storeFailures, c.storeFailing, c.spoolFailing, c.sessionStarts, c.appointments} {
		ch <- d
	}
}

func (c *ingestCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	ch <- prometheus.MustNewConstMetric(c.results, prometheus.CounterValue, float64(s.ResultsStored), "stored")
	ch <- prometheus.MustNewConstMetric(c.results, prometheus.CounterValue, float64(s.ResultsDuplicate), "duplicate")
	ch <- prometheus.MustNewConstMetric(c.results, prometheus.CounterValue, float64(s.ResultsRefused), "refused")
	ch <- prometheus.MustNewConstMetric(c.batches, prometheus.CounterValue, float64(s.Batches))
	ch <- prometheus.MustNewConstMetric(c.gaps, prometheus.CounterValue, float64(s.GapResults))
	ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(s.QueuedResults))
	ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, s.CommitRunning.Seconds())
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(s.Sessions))
	ch <- prometheus.MustNewConstMetric(c.sessionStarts, prometheus.CounterValue, float64(s.Admission.Admitted), "admitted")
	ch <- prometheus.MustNewConstMetric(c.sessionStarts, prometheus.CounterValue, float64(s.Admission.Refused), "refused")
	ch <- prometheus.MustNewConstMetric(c.appointments, prometheus.GaugeValue, float64(s.Admission.Appointments))
	for k, n := range s.Throttles {
		ch <- prometheus.MustNewConstMetric(c.throttles, prometheus.CounterValue, float64(n), ingest.ThrottleKind(k).String())
	}
	for k, n := range s.StoreFailures {
		ch <- prometheus.MustNewConstMetric(c.storeFailures, prometheus.CounterValue, float64(n), ingest.StoreErrorClass(k).String())
	}
	failing := 0.0
	if s.StoreFailing {
		failing = 1
	}
	ch <- prometheus.MustNewConstMetric(c.storeFailing, prometheus.GaugeValue, failing)
	ch <- prometheus.MustNewConstMetric(c.spoolFailing, prometheus.GaugeValue, float64(s.AgentsSpoolFailing))
	h := s.CommitSeconds
	buckets := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		buckets[b] = h.Cumulative[i]
	}
	ch <- prometheus.MustNewConstHistogram(c.commit, h.Count, h.Sum, buckets)
}

// verdictCollector reports each current verdict's state, read from the
// engines at every scrape: a verdict that no longer exists (campaign
// deleted or paused, target dropped) simply stops being reported.
type verdictCollector struct {
	src   VerdictSource
	state *prometheus.Desc
}

func newVerdictCollector(src VerdictSource) *verdictCollector {
	return &verdictCollector{src: src, state: prometheus.NewDesc("vantage_verdict_state",
		"1 for each current verdict, labelled with its state (REACHABLE, DEGRADED, UNSTABLE, UNREACHABLE, UNKNOWN); level is target, network or scope, subject the target address, network name or scope name. Only the current state has a series; a verdict not yet evaluated has none.",
		[]string{"campaign", "level", "subject", "state"}, nil)}
}

func (c *verdictCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.state }

func (c *verdictCollector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.src.Verdicts("", vantagev1.Level_LEVEL_UNSPECIFIED) {
		if v.GetState() == vantagev1.State_STATE_UNSPECIFIED {
			continue // not evaluated yet (a campaign just applied)
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, 1,
			v.GetCampaign(), levelName(v.GetLevel()), v.GetSubject(), stateName(v.GetState()))
	}
}
