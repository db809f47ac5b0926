// Package metrics exposes the controller to Prometheus. Operators come from
// blackbox_exporter, Cloudprober and RIPE Atlas and alert from Prometheus:
// on a blackout (a scope UNREACHABLE), on ingest falling behind, on agents
// dropping away. Everything here is read from the state the controller
// keeps anyway (ingest's counters, the verdict engines' current verdicts,
// the BGP view's prefixes) at scrape time, through collectors, so the hot
// paths carry no metric calls of their own and a verdict series can never
// go stale. The package
// owns its own registry, not the global one, so nothing another library
// registers leaks into /metrics and tests get a fresh one each.
package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vantage-net/vantage/controller/ingest"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// IngestSource gives ingest's counters (*ingest.Server implements it).
type IngestSource interface {
	Stats() ingest.Stats
}

// VerdictSource gives the current verdicts of every campaign
// ("" and LEVEL_UNSPECIFIED: all); *live.Worker implements it.
type VerdictSource interface {
	Verdicts(campaign string, level vantagev1.Level) []*vantagev1.Verdict
}

// Config wires a Metrics. A nil source leaves its metrics out.
type Config struct {
	Ingest   IngestSource
	Verdicts VerdictSource
	// BGP is the routing view, BGPRecorder what stores it (bgp.go).
	BGP         BGPSource
	BGPRecorder BGPRecorderSource
	Log         *slog.Logger
	// Now is the clock the BGP state is read at; time.Now when nil.
	Now func() time.Time
}

// Metrics owns the controller's registry and the few metrics counted as
// events rather than read from state (transitions, pruned results).
type Metrics struct {
	reg         *prometheus.Registry
	log         *slog.Logger
	transitions *prometheus.CounterVec
	pruned      prometheus.Counter
}

// New returns a Metrics with the Go runtime and process collectors, ingest
// and verdict collectors for cfg's sources, and the event counters.
func New(cfg Config) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), log: cfg.Log}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vantage_verdict_transitions_total",
		Help: "Verdict transitions stored since the controller started, by campaign, level (target, network, scope) and the state entered.",
	}, []string{"campaign", "level", "to"})
	m.pruned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vantage_retention_pruned_results_total",
		Help: "Raw probe results deleted by retention (--results-retention) since the controller started.",
	})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.transitions, m.pruned,
	)
	if cfg.Ingest != nil {
		m.reg.MustRegister(newIngestCollector(cfg.Ingest))
	}
	if cfg.Verdicts != nil {
		m.reg.MustRegister(newVerdictCollector(cfg.Verdicts))
	}
	if cfg.BGP != nil || cfg.BGPRecorder != nil {
		now := cfg.Now
		if now == nil {
			now = time.Now
		}
		m.reg.MustRegister(newBGPCollector(cfg.BGP, cfg.BGPRecorder, now))
	}
	return m
}

// Gatherer is the registry, for tests and for anyone embedding the
// controller's metrics elsewhere.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Handler serves the registry in the Prometheus exposition formats. A
// collector that fails is logged and left out; the rest is still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog{m.log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
		Timeout:       10 * time.Second,
	})
}

// ObserveTransitions counts stored transitions (live.Options.OnTransitions).
// An entry whose from and to are the same state (a location refinement, no
// state change) is not counted.
func (m *Metrics) ObserveTransitions(ts []*vantagev1.Transition) {
	for _, t := range ts {
		if t.GetFrom() == t.GetTo() {
			continue
		}
		m.transitions.WithLabelValues(t.GetCampaign(), levelName(t.GetLevel()), stateName(t.GetTo())).Inc()
	}
}

// ResultPruner deletes old raw results (retention.ResultPruner).
type ResultPruner interface {
	PruneResults(ctx context.Context, sentBefore time.Time, maxChunks int) (chunks, results int64, err error)
}

// CountPruned wraps st so that the results its PruneResults deletes are
// counted in vantage_retention_pruned_results_total; give the wrapper to
// the retention pruner only.
func (m *Metrics) CountPruned(st ResultPruner) ResultPruner {
	return pruneCounting{st: st, c: m.pruned}
}

type pruneCounting struct {
	st ResultPruner
	c  prometheus.Counter
}

func (p pruneCounting) PruneResults(ctx context.Context, sentBefore time.Time, maxChunks int) (int64, int64, error) {
	chunks, results, err := p.st.PruneResults(ctx, sentBefore, maxChunks)
	if results > 0 {
		p.c.Add(float64(results))
	}
	return chunks, results, err
}

// levelName is a Level as in verdict ids: target, network, scope.
func levelName(l vantagev1.Level) string {
	return strings.ToLower(strings.TrimPrefix(l.String(), "LEVEL_"))
}

// stateName is a State as vantagectl prints it: REACHABLE, UNREACHABLE...
func stateName(s vantagev1.State) string {
	return strings.TrimPrefix(s.String(), "STATE_")
}

// errorLog passes promhttp's errors to slog.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Println(v ...any) {
	e.log.Warn("metrics scrape error", slog.String("error", strings.TrimSuffix(fmt.Sprintln(v...), "\n")))
}
