package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/controller/internal/fixture"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestRetentionFlags(t *testing.T) {
	checkFlags(t, map[string]string{"results-retention": "720h0m0s", "retention-every": "10m0s"}, []flagRefusal{
		{"negative retention", []string{"--results-retention", "-1h"}, "--results-retention: must not be negative (0 keeps results forever), got -1h0m0s"},
		{"negative interval", []string{"--retention-every", "-1s"}, "--retention-every: must be positive, got -1s"},
		{"zero interval", []string{"--retention-every", "0"}, "--retention-every: must be positive, got 0s"},
	})
}

// TestResultsRetention runs the controller with a 1h retention: results
// sent 2h ago are deleted by the pruner, fresh ones stay, and the old
// batch sent again is acked as a duplicate, not stored again.
func TestResultsRetention(t *testing.T) {
	c := startController(t, func(cfg *Config) {
		cfg.ResultsRetention = time.Hour
		cfg.RetentionEvery = 10 * time.Millisecond
	})
	ops := c.ops(t)
	if _, err := ops.ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: minimalCampaign}); err != nil {
		t.Fatalf("ApplyCampaign: %v", err)
	}
	a := newAgent(t, c)
	s, _ := openSession(t, c, a, 1)
	tasks := fixture.RecvAssignment(t, s).GetTasks()
	old := batch(tasks, 1, 1, 1)
	for _, r := range old.GetResults() {
		r.SentAt = timestamppb.New(time.Now().Add(-2 * time.Hour))
	}
	fresh := batch(tasks, 1, old.GetLastSeq()+1, 2)
	send := func(b *vantagev1.ResultBatch) {
		t.Helper()
		if err := s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			t.Fatal(err)
		}
		if ack := fixture.RecvAck(t, s); ack.GetUpToSeq() != b.GetLastSeq() {
			t.Fatalf("ack = %v, want up to %d", ack, b.GetLastSeq())
		}
	}
	send(old)
	send(fresh)
	stored := func() string {
		return strings.Join([]string{
			"chunks=" + strconv.Itoa(countRows(t, c.dir, `SELECT count(*) FROM result_chunks`)),
			"results=" + strconv.Itoa(countRows(t, c.dir, `SELECT coalesce(sum(n), 0) FROM result_chunks`)),
			"first=" + strconv.Itoa(countRows(t, c.dir, `SELECT coalesce(min(first_seq), 0) FROM result_chunks`)),
		}, " ")
	}
	want := "chunks=1 results=" + strconv.Itoa(len(tasks)) + " first=" + strconv.Itoa(int(fresh.GetFirstSeq()))
	deadline := time.Now().Add(10 * time.Second)
	for stored() != want {
		if time.Now().After(deadline) {
			t.Fatalf("stored %s, want %s (the old batch pruned)", stored(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	send(old) // re-sent after pruning: a duplicate
	if got := stored(); got != want {
		t.Errorf("after re-sending the pruned batch: stored %s, want %s", got, want)
	}
	agents, err := ops.ListAgents(bearer(c.admin), &vantagev1.ListAgentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d := agents.GetAgents()[0].GetDuplicatesDropped(); d != uint64(len(tasks)) {
		t.Errorf("duplicates_dropped = %d, want %d", d, len(tasks))
	}
}
