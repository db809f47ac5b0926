package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// scrape GETs /metrics and returns each sample line's value by its series
// ("name{labels}" as exposed).
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s = %s: %s", url, resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetricsEndpoint runs the real controller with --metrics-addr, sends
// batches through a real agent session and scrapes /metrics over HTTP.
func TestMetricsEndpoint(t *testing.T) {
	metricsAddr := make(chan net.Addr, 1)
	c := startController(t, func(cfg *Config) {
		cfg.MetricsAddr = "127.0.0.1:0"
		cfg.MetricsReady = func(a net.Addr) { metricsAddr <- a }
	})
	url := "http://" + (<-metricsAddr).String() + "/metrics"

	m := scrape(t, url)
	for series, want := range map[string]float64{
		`vantage_ingest_results_total{outcome="stored"}`: 0,
		`vantage_agent_sessions`:                         0,
		`vantage_retention_pruned_results_total`:         0,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("before any agent: %s = %v (present %v); want %v", series, got, ok, want)
		}
	}
	if _, ok := m["go_goroutines"]; !ok {
		t.Error("no go_goroutines: the Go collector is missing")
	}

	ops := c.ops(t)
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: fastCampaign}); err != nil {
		t.Fatalf("ApplyCampaign: %v", err)
	}
	a := newAgent(t, c)
	s, _ := openSession(t, c, a, 3)
	as := fixture.RecvAssignment(t, s)
	b := batch(as.GetTasks(), 3, 1, 1)
	sent := len(b.GetResults())
	for range 2 { // the second time as a re-send after a lost ack: duplicates
		if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			t.Fatal(err)
		}
		fixture.RecvAck(t, s)
	}

	// The verdict engine is evaluated every 50ms; wait for the scope's
	// verdict to show up together with the transition that led to it (the
	// engine's state changes before the transition is stored and counted,
	// so one scrape can fall between the two), then check everything in
	// that scrape.
	scope := `vantage_verdict_state{campaign="fast",level="scope",state="`
	transitions := func(state string) string {
		return `vantage_verdict_transitions_total{campaign="fast",level="scope",to="` + state + `"}`
	}
	deadline := time.Now().Add(15 * time.Second)
	var state string
	for {
		m, state = scrape(t, url), ""
		for series, v := range m {
			if rest, ok := strings.CutPrefix(series, scope); ok && v == 1 {
				state, _, _ = strings.Cut(rest, `"`)
			}
		}
		if state != "" && m[transitions(state)] >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s...} series with its transition counted after 15s (state %q)", scope, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for series, want := range map[string]float64{
		`vantage_ingest_results_total{outcome="stored"}`:    float64(sent),
		`vantage_ingest_results_total{outcome="duplicate"}`: float64(sent),
		`vantage_ingest_results_total{outcome="refused"}`:   0,
		`vantage_ingest_batches_total`:                      2,
		`vantage_agent_sessions`:                            1,
		`vantage_ingest_queue_results`:                      0,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v); want %v", series, got, ok, want)
		}
	}
	if n := m["vantage_ingest_commit_duration_seconds_count"]; n < 1 {
		t.Errorf("vantage_ingest_commit_duration_seconds_count = %v; want >= 1", n)
	}
}

func TestMetricsAddrRefused(t *testing.T) {
	err := Run(context.Background(), Config{DataDir: filepath.Join(t.TempDir(), "data"), Listen: "127.0.0.1:0",
		MetricsAddr: "127.0.0.1:notaport"})
	if err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("Run with a bad --metrics-addr = %v; want an error naming --metrics-addr", err)
	}
}
