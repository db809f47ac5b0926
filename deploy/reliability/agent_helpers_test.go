package reliability

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite" // read-only look at the controller's gaps table

	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/deploy/demo"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The lab tests share one build of the two binaries; TestMain removes it.
var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

func labBinaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vantage-reliability-bin-")
		if err != nil {
			binErr = err
			return
		}
		if err := demo.BuildBinaries(dir, demo.AgentCmd, demo.ControllerCmd); err != nil {
			_ = os.RemoveAll(dir)
			binErr = err
			return
		}
		binDir = dir
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

func removeBinaries() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// needLab skips unless the namespace lab can be built.
func needLab(t *testing.T) {
	t.Helper()
	demo.SkipUnlessLab(t, "lab reliability test")
}

// labTest starts a lab test: it skips unless the lab can be built (and
// every extra check passes), runs in parallel with the other lab tests, and
// returns the test's context, bounded by timeout.
func labTest(t *testing.T, timeout time.Duration, extra ...func(*testing.T)) (context.Context, context.CancelFunc) {
	t.Helper()
	needLab(t)
	for _, need := range extra {
		need(t)
	}
	t.Parallel()
	return context.WithTimeout(context.Background(), timeout)
}

// labPrefix names a test's lab: its family ("vr" agent side, "vk"
// controller side, "vd" disk faults), the process id, and a letter per
// test, so parallel tests and parallel runs never share namespaces.
func labPrefix(family, letter string) string {
	return fmt.Sprintf("%s%d%s", family, os.Getpid()%10000, letter)
}

// startLab brings up a lab with a controller and the agents cfg asks for.
// Cleanup stops everything and, when the test failed, prints log tails.
func startLab(t *testing.T, ctx context.Context, letter string, cfg demo.Config) *demo.Harness {
	t.Helper()
	return startLabAs(t, ctx, labPrefix("vr", letter), cfg, nil)
}

// startLabAs is startLab with the whole prefix given; mount, when not nil,
// runs on the work directory before the harness starts.
func startLabAs(t *testing.T, ctx context.Context, prefix string, cfg demo.Config, mount func(workDir string)) *demo.Harness {
	t.Helper()
	cfg.BinDir = labBinaries(t)
	cfg.Prefix = prefix
	cfg.WorkDir = t.TempDir()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if mount != nil {
		mount(cfg.WorkDir)
	}
	h, err := demo.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start lab %s: %v", cfg.Prefix, err)
	}
	demo.CloseAtCleanup(t, h, 3000)
	return h
}

// countryCampaign is deploy/examples/country.yaml, optionally edited.
func countryCampaign(t *testing.T, edits ...[2]string) string {
	t.Helper()
	b, err := os.ReadFile("../examples/country.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, e := range edits {
		if !strings.Contains(s, e[0]) {
			t.Fatalf("country.yaml no longer contains %q", e[0])
		}
		s = strings.Replace(s, e[0], e[1], 1)
	}
	return s
}

func applyCampaign(t *testing.T, ctx context.Context, h *demo.Harness, spec string) *vantagev1.Campaign {
	t.Helper()
	// These tests run fewer agents than the campaign's quorum on purpose
	// (delivery, not verdicts), and some apply before any agent starts.
	c, err := h.Operator.ApplyCampaign(h.Authed(ctx), &vantagev1.ApplyCampaignRequest{SpecYaml: spec, AllowFewerVantages: true})
	if err != nil {
		t.Fatalf("apply campaign: %v", err)
	}
	return c
}

// waitFor polls cond every 200 ms until it holds, failing after timeout.
func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sleepCtx sleeps d unless ctx ends first.
func sleepCtx(t *testing.T, ctx context.Context, d time.Duration) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatalf("interrupted: %v", ctx.Err())
	case <-time.After(d):
	}
}

// agentInfo returns the controller's view of the agent named vantage (nil
// when it has not enrolled yet).
func agentInfo(ctx context.Context, h *demo.Harness, vantage string) (*vantagev1.AgentInfo, error) {
	resp, err := h.Operator.ListAgents(h.Authed(ctx), &vantagev1.ListAgentsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	for _, a := range resp.GetAgents() {
		if a.GetName() == vantage {
			return a, nil
		}
	}
	return nil, nil
}

func mustAgentInfo(t *testing.T, ctx context.Context, h *demo.Harness, vantage string) *vantagev1.AgentInfo {
	t.Helper()
	a, err := agentInfo(ctx, h, vantage)
	if err != nil {
		t.Fatal(err)
	}
	if a == nil {
		t.Fatalf("agent %s is not enrolled", vantage)
	}
	return a
}

// waitConnected waits until the agent in vantage is enrolled and connected
// and returns its id.
func waitConnected(t *testing.T, ctx context.Context, h *demo.Harness, vantage string) string {
	t.Helper()
	var id string
	waitFor(t, ctx, 60*time.Second, vantage+" connected", func() (bool, error) {
		a, err := agentInfo(ctx, h, vantage)
		if err != nil || a == nil {
			return false, err
		}
		id = a.GetId()
		return a.GetConnected(), nil
	})
	return id
}

// waitStored waits up to a minute until the controller holds at least n
// distinct results from agent id (in vantage).
func waitStored(t *testing.T, ctx context.Context, h *demo.Harness, vantage, id string, n int) {
	t.Helper()
	waitFor(t, ctx, time.Minute, vantage+" results stored", func() (bool, error) {
		st, err := queryStored(ctx, h, id)
		return st.distinct() >= n, err
	})
}

// waitAllStreaming waits until every vantage of the lab is connected and
// has 30 results stored, and returns the agents' ids by vantage.
func waitAllStreaming(t *testing.T, ctx context.Context, h *demo.Harness) map[string]string {
	t.Helper()
	vantages := h.Lab.Vantages()
	ids := map[string]string{}
	for _, v := range vantages {
		ids[v] = waitConnected(t, ctx, h, v)
	}
	for _, v := range vantages {
		waitStored(t, ctx, h, v, ids[v], 30)
	}
	return ids
}

// stored is what the controller holds for one agent, read back through
// OperatorService.QueryResults.
type stored struct {
	rows     int
	count    map[spool.Key]int // rows per (epoch, seq)
	sentAt   map[spool.Key]time.Time
	received map[spool.Key]time.Time
	kinds    map[string]int // results per probe kind (icmp, tcp, trace)
}

func (s stored) distinct() int { return len(s.count) }

// maxKey is the highest stored key.
func (s stored) maxKey() spool.Key {
	var m spool.Key
	for k := range s.count {
		if k.Compare(m) > 0 {
			m = k
		}
	}
	return m
}

func queryStored(ctx context.Context, h *demo.Harness, agentID string) (stored, error) {
	s := stored{count: map[spool.Key]int{}, sentAt: map[spool.Key]time.Time{}, received: map[spool.Key]time.Time{},
		kinds: map[string]int{}}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := h.Operator.QueryResults(h.Authed(qctx), &vantagev1.QueryResultsRequest{AgentId: agentID, Limit: 100000})
	if err != nil {
		return s, fmt.Errorf("query results: %w", err)
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s, fmt.Errorf("query results: %w", err)
		}
		if r.GetAgentId() != agentID {
			return s, fmt.Errorf("query results for %s returned a row of %s", agentID, r.GetAgentId())
		}
		k := spool.Key{Epoch: r.GetEpoch(), Seq: r.GetResult().GetSeq()}
		s.rows++
		s.count[k]++
		s.sentAt[k] = r.GetResult().GetSentAt().AsTime()
		s.received[k] = r.GetReceivedAt().AsTime()
		// Task ids are "<campaign>/<kind>/<target>".
		if parts := strings.SplitN(r.GetResult().GetTaskId(), "/", 3); len(parts) == 3 {
			s.kinds[parts[1]]++
		}
	}
	if s.rows >= 100000 {
		return s, errors.New("query results: 100000 rows, the limit; counts would be truncated")
	}
	return s, nil
}

func mustStored(t *testing.T, ctx context.Context, h *demo.Harness, agentID string) stored {
	t.Helper()
	s, err := queryStored(ctx, h, agentID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gapRow is one row of the controller's gaps table.
type gapRow struct {
	epoch, first, last uint64
	reason             string
}

// storedGaps reads the agent's gaps from the controller's SQLite file,
// read-only (no RPC lists gaps; AgentInfo only counts them).
func storedGaps(t *testing.T, h *demo.Harness, agentID string) []gapRow {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(h.DataDir(), "vantage.db")+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT epoch, first_seq, last_seq, reason FROM gaps WHERE agent_id = ? ORDER BY epoch, first_seq`, agentID)
	if err != nil {
		t.Fatalf("read gaps: %v", err)
	}
	defer rows.Close()
	var gs []gapRow
	for rows.Next() {
		var g gapRow
		if err := rows.Scan(&g.epoch, &g.first, &g.last, &g.reason); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return gs
}

// countInLog counts the lines of a node's log containing substr.
func countInLog(t *testing.T, h *demo.Harness, node, substr string) int {
	t.Helper()
	b, err := os.ReadFile(h.LogPath(node))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), substr)
}

var stoppedRE = regexp.MustCompile(`msg="agent stopped" epoch=(\d+) results_produced=(\d+) pending=(\d+)`)

// produced is the agent's own count, from the line it logs when it stops:
// the last sequence number it gave a result in its epoch (every result is
// numbered before it is spooled), and what its spool still held.
type produced struct {
	epoch, results, pending uint64
}

func agentProduced(t *testing.T, h *demo.Harness, vantage string) produced {
	t.Helper()
	b, err := os.ReadFile(h.LogPath(vantage))
	if err != nil {
		t.Fatal(err)
	}
	m := stoppedRE.FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		t.Fatalf("%s.log has no \"agent stopped\" line", vantage)
	}
	last := m[len(m)-1]
	p := produced{}
	p.epoch, _ = strconv.ParseUint(last[1], 10, 64)
	p.results, _ = strconv.ParseUint(last[2], 10, 64)
	p.pending, _ = strconv.ParseUint(last[3], 10, 64)
	return p
}

// pendingInSpool reopens a stopped agent's spool and returns the keys it
// still holds (results it would re-send at its next start).
func pendingInSpool(t *testing.T, dir string, epoch uint64, maxBytes int64) map[spool.Key]bool {
	t.Helper()
	d, err := spool.OpenDisk(dir, epoch+1, spool.Options{MaxBytes: maxBytes})
	if err != nil {
		t.Fatalf("reopen the agent's spool: %v", err)
	}
	defer d.Close()
	keys := map[spool.Key]bool{}
	after := spool.Key{}
	for {
		b, err := d.Read(after, 500)
		if err != nil {
			t.Fatalf("read the agent's spool: %v", err)
		}
		if len(b.Results) == 0 {
			return keys
		}
		for _, r := range b.Results {
			keys[spool.Key{Epoch: b.Epoch, Seq: r.GetSeq()}] = true
		}
		after = b.End()
	}
}

// accounting checks, seq by seq, that every result the agent produced in
// its epoch is stored exactly once, or covered by a gap the controller
// stored, or still in the agent's spool, and that nothing else is stored.
type accounting struct {
	produced, stored, duplicateRows, gapCovered, storedAndGap, pending, missing, unknown uint64
}

func account(p produced, st stored, gaps []gapRow, pending map[spool.Key]bool) accounting {
	a := accounting{produced: p.results}
	inGap := func(seq uint64) bool {
		for _, g := range gaps {
			if g.epoch == p.epoch && g.first <= seq && seq <= g.last {
				return true
			}
		}
		return false
	}
	for seq := uint64(1); seq <= p.results; seq++ {
		k := spool.Key{Epoch: p.epoch, Seq: seq}
		n, g := st.count[k], inGap(seq)
		switch {
		case n > 0 && g:
			a.stored++
			a.storedAndGap++
		case n > 0:
			a.stored++
		case g:
			a.gapCovered++
		case pending[k]:
			a.pending++
		default:
			a.missing++
		}
		if n > 1 {
			a.duplicateRows += uint64(n - 1)
		}
	}
	for k := range st.count {
		if k.Epoch != p.epoch || k.Seq == 0 || k.Seq > p.results {
			a.unknown++
		}
	}
	return a
}

// add sums b's balance into a (storedAndGap is a detail of one agent's
// line and stays out of the totals).
func (a *accounting) add(b accounting) {
	a.produced += b.produced
	a.stored += b.stored
	a.gapCovered += b.gapCovered
	a.pending += b.pending
	a.missing += b.missing
	a.duplicateRows += b.duplicateRows
	a.unknown += b.unknown
}

func (a accounting) String() string {
	return fmt.Sprintf("produced=%d stored=%d gap_covered=%d pending_in_spool=%d missing=%d duplicate_rows=%d stored_and_in_gap=%d stored_not_produced=%d",
		a.produced, a.stored, a.gapCovered, a.pending, a.missing, a.duplicateRows, a.storedAndGap, a.unknown)
}

// check fails the test unless produced = stored + gap-covered + pending
// with no seq missing, doubled or unknown.
func (a accounting) check(t *testing.T) {
	t.Helper()
	if a.missing != 0 || a.duplicateRows != 0 || a.unknown != 0 || a.stored+a.gapCovered+a.pending != a.produced {
		t.Errorf("accounting does not balance: %s", a)
	}
}
