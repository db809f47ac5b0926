// Package loadtest measures controller ingest under many agents: it starts a
// real vantage-controller process with SQLite, enrols N simulated agents for
// real (key, CSR, join token, certificate) and has each stream results over
// its own mTLS connection on loopback, as an agent does: Hello, then
// ResultBatches with contiguous sequence numbers, a window of unacked batches,
// resend after a reconnect. It exists so "250,000 results/s from 1,000
// agents with flat memory" is a figure measured by a command
// (`make bench-ingest`), not a hope. The load generator runs in this process;
// the controller's RSS is read from /proc.
package loadtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	_ "modernc.org/sqlite" // counts the stored rows at the end

	"github.com/vantage-net/vantage/controller/ingest"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Config is one load run.
type Config struct {
	// BinDir holds vantage-controller.
	BinDir string
	// WorkDir receives the controller's data directory and log.
	WorkDir string
	// Agents is the number of simulated agent sessions.
	Agents int
	// Duration of the measured run (after every session is up).
	Duration time.Duration
	// Warmup is excluded from the sustained rate.
	Warmup time.Duration
	// BatchResults per ResultBatch and Window unacked batches per agent.
	BatchResults int
	Window       int
	// SampleEvery is the period of the rate and RSS samples.
	SampleEvery time.Duration
	// ControllerArgs are extra controller flags.
	ControllerArgs []string
	Log            *slog.Logger
}

// Sample is one point of the time series.
type Sample struct {
	At          time.Duration // since the measured run started
	ResultsPerS float64
	RSSBytes    int64
}

// Report is what a run measured.
type Report struct {
	Agents         int
	Duration       time.Duration
	Acked          uint64 // results acknowledged during the measured run
	ResultsPerS    float64
	AckP50, AckP99 time.Duration
	// CommitAckP50 and CommitAckP99 are measured in the controller: from
	// the end of the commit to the Ack handed to the stream (log2 buckets:
	// the figure is the bucket's upper bound).
	CommitAckP50, CommitAckP99 time.Duration
	Samples                    []Sample
	// ControllerCPU is the controller's CPU time (user+system) over the
	// measured run, in cores: the generator shares the machine, so
	// ResultsPerS / ControllerCPU is what one controller core sustains.
	ControllerCPU float64
	RSSFirst      int64 // after warmup
	RSSMax        int64
	RSSLast       int64
	StoredRows    int64  // results stored (sum of the chunks' counts) after the controller stopped
	SentResults   uint64 // distinct results acked over the whole run
	Throttles     uint64 // Throttle messages received
	Reconnects    uint64 // sessions ended by the controller and resumed
	ReconnectCode map[string]uint64
	// StartRefused counts first sessions refused by the controller's
	// session admission (RESOURCE_EXHAUSTED before the agent's first
	// assignment: the fleet's start is a reconnect storm); they are not
	// in Reconnects.
	StartRefused uint64
}

// String prints the report as the bench prints it.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "agents            %d\n", r.Agents)
	fmt.Fprintf(&b, "measured for      %s\n", r.Duration.Round(time.Second))
	fmt.Fprintf(&b, "sustained         %.0f results/s (%d results acked)\n", r.ResultsPerS, r.Acked)
	if r.ControllerCPU > 0 {
		fmt.Fprintf(&b, "controller CPU    %.2f cores (%.0f results/s per controller core)\n", r.ControllerCPU, r.ResultsPerS/r.ControllerCPU)
	}
	fmt.Fprintf(&b, "commit->ack       p50 <= %s  p99 <= %s (in the controller)\n", r.CommitAckP50, r.CommitAckP99)
	fmt.Fprintf(&b, "batch send->ack   p50 %s  p99 %s\n", r.AckP50.Round(time.Millisecond), r.AckP99.Round(time.Millisecond))
	fmt.Fprintf(&b, "controller RSS    first %.1f MiB  max %.1f MiB  last %.1f MiB\n", mib(r.RSSFirst), mib(r.RSSMax), mib(r.RSSLast))
	fmt.Fprintf(&b, "stored results    %d (acked distinct %d; every acked result must be stored)\n", r.StoredRows, r.SentResults)
	fmt.Fprintf(&b, "throttles         %d, sessions resumed %d %v\n", r.Throttles, r.Reconnects, r.ReconnectCode)
	fmt.Fprintf(&b, "first sessions    %d refused at the start (session admission), each retried after its retry-after\n", r.StartRefused)
	b.WriteString("time      results/s   RSS MiB\n")
	for _, s := range r.Samples {
		fmt.Fprintf(&b, "%7s  %10.0f  %8.1f\n", s.At.Round(time.Second), s.ResultsPerS, mib(s.RSSBytes))
	}
	return b.String()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

const campaignYAML = `name: load
scope: {country: KP}
targets:
  networks:
    - {name: net0, prefix: 198.18.0.0/24}
  hosts: {per_network: 64}
probes:
  - icmp: {timeout: 500ms}
schedule: {round: 1s}
budget: {per_target_pps: 1, agent_pps: 500}
`

// Run performs one load run and stops the controller afterwards.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Agents <= 0 || cfg.BatchResults <= 0 || cfg.Window <= 0 || cfg.Duration <= 0 {
		return Report{}, errors.New("loadtest: agents, batch, window and duration must be > 0")
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 5 * time.Second
	}
	c, err := startController(ctx, cfg)
	if err != nil {
		return Report{}, err
	}
	defer c.stop()
	rep, err := c.load(ctx, cfg)
	if err != nil {
		return rep, err
	}
	if err := c.stop(); err != nil {
		return rep, err
	}
	rows, err := countRows(filepath.Join(c.dataDir, "vantage.db"))
	if err != nil {
		return rep, err
	}
	rep.StoredRows = rows
	return rep, nil
}

// enroll makes a key and CSR and exchanges them for a certificate.
func enroll(ctx context.Context, cl vantagev1.AgentServiceClient, token, name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	resp, err := cl.Enroll(ctx, &vantagev1.EnrollRequest{JoinToken: token, CsrDer: csr, Name: name})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("enroll %s: %w", name, err)
	}
	cert, err := tls.X509KeyPair(resp.GetCertificatePem(), pemKey(key))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("enroll %s: %w", name, err)
	}
	return cert, nil
}

func (c *controller) load(ctx context.Context, cfg Config) (Report, error) {
	rep := Report{Agents: cfg.Agents, ReconnectCode: map[string]uint64{}}
	opConn, err := c.dial()
	if err != nil {
		return rep, err
	}
	defer opConn.Close()
	agents, err := c.prepare(ctx, cfg, opConn)
	if err != nil {
		return rep, err
	}

	st := &stats{}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	ready := make(chan struct{}, len(agents))
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run(runCtx, c, cfg, st, ready)
		}()
	}
	if err := awaitReady(ctx, ready, len(agents)); err != nil {
		cancel()
		wg.Wait()
		return rep, err
	}
	cfg.Log.Info("sessions up", slog.Int("n", len(agents)))

	// Warm up, then measure.
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
	}
	c.measure(ctx, cfg, st, &rep)
	cancel()
	wg.Wait()
	st.totals(&rep)
	return rep, ctx.Err()
}

// prepare enrols cfg.Agents agents for real, a few at a time, and then
// applies the load campaign (its quorum needs enrolled agents).
func (c *controller) prepare(ctx context.Context, cfg Config, opConn *grpc.ClientConn) ([]*agent, error) {
	ops := vantagev1.NewOperatorServiceClient(opConn)
	actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	wctx, wcancel := context.WithTimeout(actx, 20*time.Second)
	tok, err := ops.CreateJoinToken(wctx, &vantagev1.CreateJoinTokenRequest{TtlS: 3600}, grpc.WaitForReady(true))
	wcancel()
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	agents := make([]*agent, cfg.Agents)
	ac := vantagev1.NewAgentServiceClient(opConn)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(8)
	for i := range agents {
		eg.Go(func() error {
			cert, err := enroll(ectx, ac, tok.GetToken(), fmt.Sprintf("load-%04d", i))
			if err != nil {
				return err
			}
			agents[i] = &agent{cert: cert, epoch: 1, nextSeq: 1}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	cfg.Log.Info("agents enrolled", slog.Int("n", len(agents)))
	wctx, wcancel = context.WithTimeout(actx, 20*time.Second)
	_, err = ops.ApplyCampaign(wctx, &vantagev1.ApplyCampaignRequest{SpecYaml: campaignYAML})
	wcancel()
	if err != nil {
		return nil, fmt.Errorf("apply campaign: %w", err)
	}
	return agents, nil
}

// awaitReady waits for n sessions to report up, for at most two minutes.
func awaitReady(ctx context.Context, ready <-chan struct{}, n int) error {
	for range n {
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Minute):
			return errors.New("sessions not all up within 2 minutes")
		}
	}
	return nil
}

// measure runs the measured window: it samples the rate and the
// controller's RSS every cfg.SampleEvery for cfg.Duration, then fills in
// rep's figures for the window.
func (c *controller) measure(ctx context.Context, cfg Config, st *stats, rep *Report) {
	st.measuring.Store(true)
	start := time.Now()
	startAcked := st.acked.Load()
	rep.RSSFirst = c.rss()
	cpu0 := c.cpu()
	ack0, _ := c.ackBuckets()
	tick := time.NewTicker(cfg.SampleEvery)
	prev, prevAt := startAcked, start
	end := time.After(cfg.Duration)
loop:
	for {
		select {
		case <-end:
			break loop
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			cur := st.acked.Load()
			s := Sample{At: now.Sub(start), ResultsPerS: float64(cur-prev) / now.Sub(prevAt).Seconds(), RSSBytes: c.rss()}
			rep.Samples = append(rep.Samples, s)
			rep.RSSMax = max(rep.RSSMax, s.RSSBytes)
			cfg.Log.Info("sample", slog.Duration("t", s.At.Round(time.Second)),
				slog.Int("results_per_s", int(s.ResultsPerS)), slog.Int("rss_mib", int(mib(s.RSSBytes))))
			prev, prevAt = cur, now
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	rep.Acked = st.acked.Load() - startAcked
	rep.Duration = elapsed
	rep.ResultsPerS = float64(rep.Acked) / elapsed.Seconds()
	rep.RSSLast = c.rss()
	rep.ControllerCPU = (c.cpu() - cpu0).Seconds() / elapsed.Seconds()
	if ack1, err := c.ackBuckets(); err == nil {
		for i := range ack1 {
			ack1[i] -= ack0[i]
		}
		rep.CommitAckP50, rep.CommitAckP99 = ingest.BucketQuantile(ack1, 0.50), ingest.BucketQuantile(ack1, 0.99)
	}
	rep.RSSMax = max(rep.RSSMax, rep.RSSLast)
	st.measuring.Store(false)
	rep.AckP50, rep.AckP99 = st.percentiles()
}

type stats struct {
	measuring    atomic.Bool
	acked        atomic.Uint64
	throttles    atomic.Uint64
	startRefused atomic.Uint64
	mu           sync.Mutex
	lat          []time.Duration
	codes        map[string]uint64
}

func (s *stats) addLatencies(d []time.Duration) {
	if !s.measuring.Load() {
		return
	}
	s.mu.Lock()
	s.lat = append(s.lat, d...)
	s.mu.Unlock()
}

// totals copies the whole run's counters into rep; the sessions have ended.
func (s *stats) totals(rep *Report) {
	rep.SentResults = s.acked.Load()
	rep.Throttles = s.throttles.Load()
	rep.StartRefused = s.startRefused.Load()
	s.mu.Lock()
	for k, v := range s.codes {
		rep.ReconnectCode[k] = v
		rep.Reconnects += v
	}
	s.mu.Unlock()
}

func (s *stats) code(c string) {
	s.mu.Lock()
	if s.codes == nil {
		s.codes = map[string]uint64{}
	}
	s.codes[c]++
	s.mu.Unlock()
}

func (s *stats) percentiles() (p50, p99 time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lat) == 0 {
		return 0, 0
	}
	slices.Sort(s.lat)
	return s.lat[len(s.lat)*50/100], s.lat[min(len(s.lat)-1, len(s.lat)*99/100)]
}

// agent is one simulated vantage: its certificate, its sequence numbers and
// the batches sent but not yet acknowledged (resent after a reconnect).
type agent struct {
	cert    tls.Certificate
	epoch   uint64
	nextSeq uint64
	pending []sentBatch
	// buf is reused for every batch: Send encodes synchronously, and a
	// resend rebuilds the batch from its first sequence number, so the
	// generator spends its CPU on the wire, not on garbage.
	buf *vantagev1.ResultBatch
}

type sentBatch struct {
	first, last uint64
	sentAt      time.Time
}

func (a *agent) run(ctx context.Context, c *controller, cfg Config, st *stats, ready chan<- struct{}) {
	conn, err := c.dial(a.cert)
	if err != nil {
		cfg.Log.Warn("dial", slog.Any("error", err))
		return
	}
	defer conn.Close()
	cl := vantagev1.NewAgentServiceClient(conn)
	first := true
	for ctx.Err() == nil {
		wait, err := a.session(ctx, cl, cfg, st, func() {
			if first {
				first = false
				ready <- struct{}{}
			}
		})
		if ctx.Err() != nil {
			return
		}
		if first && status.Code(err) == codes.ResourceExhausted {
			st.startRefused.Add(1) // admission spreads the fleet's start
		} else {
			st.code(status.Code(err).String())
		}
		if wait <= 0 {
			wait = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// session runs one Session stream until it fails; it returns the
// controller's retry-after, if any.
func (a *agent) session(ctx context.Context, cl vantagev1.AgentServiceClient, cfg Config, st *stats, up func()) (time.Duration, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := cl.Session(sctx)
	if err != nil {
		return 0, err
	}
	tasks, err := a.hello(stream)
	if err != nil {
		return retryAfter(stream), err
	}
	up()
	w := &window{recvErr: make(chan error, 1)}
	w.cond = sync.NewCond(&w.mu)
	go a.receive(stream, w, st)
	go func() {
		<-sctx.Done()
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	}()
	if err := a.resend(stream, w, tasks); err != nil {
		return 0, err
	}
	return a.send(sctx, stream, w, tasks, cfg)
}

// window is one session's flow control, shared by its send and receive
// loops under mu: acks shrink a.pending and wake the sender through cond,
// a Throttle sets throttleUntil, and the receive loop's error ends the
// session.
type window struct {
	mu            sync.Mutex
	cond          *sync.Cond
	throttleUntil time.Time
	recvErr       chan error
}

// hello sends Hello and waits for the first assignment that has tasks.
func (a *agent) hello(stream vantagev1.AgentService_SessionClient) ([]*vantagev1.Task, error) {
	if err := stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{
		AgentVersion: "loadtest", Epoch: a.epoch}}}); err != nil {
		return nil, err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		if as := m.GetAssignment(); as != nil && len(as.GetTasks()) > 0 {
			return as.GetTasks(), nil
		}
	}
}

// receive reads acks and throttles until the stream fails, then hands the
// error to the sender.
func (a *agent) receive(stream vantagev1.AgentService_SessionClient, w *window, st *stats) {
	var lat []time.Duration
	for {
		m, err := stream.Recv()
		if err != nil {
			w.mu.Lock()
			w.recvErr <- err
			w.cond.Broadcast()
			w.mu.Unlock()
			return
		}
		now := time.Now()
		switch msg := m.GetMsg().(type) {
		case *vantagev1.ControllerMessage_Ack:
			w.mu.Lock()
			n := 0
			for _, p := range a.pending {
				if a.epoch != msg.Ack.GetEpoch() || p.last > msg.Ack.GetUpToSeq() {
					break
				}
				n++
				lat = append(lat, now.Sub(p.sentAt))
				st.acked.Add(p.last - p.first + 1)
			}
			a.pending = a.pending[n:]
			w.cond.Broadcast()
			w.mu.Unlock()
			st.addLatencies(lat)
			lat = lat[:0]
		case *vantagev1.ControllerMessage_Throttle:
			st.throttles.Add(1)
			w.mu.Lock()
			w.throttleUntil = now.Add(time.Duration(msg.Throttle.GetRetryAfterMs()) * time.Millisecond)
			w.mu.Unlock()
		}
	}
}

// resend sends again what the last session left unacknowledged.
func (a *agent) resend(stream vantagev1.AgentService_SessionClient, w *window, tasks []*vantagev1.Task) error {
	w.mu.Lock()
	resend := slices.Clone(a.pending)
	w.mu.Unlock()
	for i, p := range resend {
		w.mu.Lock()
		if i < len(a.pending) {
			a.pending[i].sentAt = time.Now()
		}
		w.mu.Unlock()
		b := a.fill(tasks, p.first, int(p.last-p.first+1))
		if err := stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			return err
		}
	}
	return nil
}

// send keeps cfg.Window batches in flight, pausing while throttled, until
// the stream fails or sctx ends.
func (a *agent) send(sctx context.Context, stream vantagev1.AgentService_SessionClient, w *window, tasks []*vantagev1.Task, cfg Config) (time.Duration, error) {
	for {
		w.mu.Lock()
		for len(a.pending) >= cfg.Window && len(w.recvErr) == 0 && sctx.Err() == nil {
			w.cond.Wait()
		}
		wait := time.Until(w.throttleUntil)
		w.mu.Unlock()
		select {
		case err := <-w.recvErr:
			return retryAfter(stream), err
		default:
		}
		if sctx.Err() != nil {
			return 0, sctx.Err()
		}
		if wait > 0 {
			time.Sleep(wait)
		}
		b := a.fill(tasks, a.nextSeq, cfg.BatchResults)
		a.nextSeq += uint64(cfg.BatchResults)
		w.mu.Lock()
		a.pending = append(a.pending, sentBatch{first: b.GetFirstSeq(), last: b.GetLastSeq(), sentAt: time.Now()})
		w.mu.Unlock()
		if err := stream.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Results{Results: b}}); err != nil {
			// The stream is broken; Recv reports why.
			return retryAfter(stream), <-w.recvErr
		}
	}
}

func retryAfter(stream grpc.ClientStream) time.Duration {
	v := stream.Trailer().Get("retry-after-ms")
	if len(v) == 0 {
		return 0
	}
	ms, _ := strconv.Atoi(v[0])
	return time.Duration(ms) * time.Millisecond
}

// fill makes the batch of n ICMP results from sequence number first, in
// a.buf.
func (a *agent) fill(tasks []*vantagev1.Task, first uint64, n int) *vantagev1.ResultBatch {
	t0 := tasks[0]
	round := int64(0)
	if ms := int64(t0.GetRoundMs()); ms > 0 {
		round = time.Since(t0.GetScheduleStart().AsTime()).Milliseconds() / ms
	}
	if a.buf == nil || len(a.buf.Results) != n {
		a.buf = &vantagev1.ResultBatch{Results: make([]*vantagev1.ProbeResult, n)}
		for i := range a.buf.Results {
			a.buf.Results[i] = &vantagev1.ProbeResult{}
		}
	}
	b := a.buf
	b.Epoch, b.FirstSeq, b.LastSeq = a.epoch, first, first+uint64(n)-1
	now := timestamppb.Now()
	for i, r := range b.Results {
		seq := first + uint64(i)
		t := tasks[int(seq%uint64(len(tasks)))]
		*r = vantagev1.ProbeResult{Seq: seq, TaskId: t.GetId(), Campaign: t.GetCampaign(),
			Target: t.GetTarget(), Kind: t.GetKind(), Round: round, SentAt: now, Outcome: vantagev1.Outcome_OUTCOME_REPLY,
			RttUs: 1234, ReplyFrom: t.GetTarget(), ReplyTtl: 60, Attempts: 1}
	}
	return b
}

func pemKey(key *ecdsa.PrivateKey) []byte {
	der, _ := x509.MarshalECPrivateKey(key) // a P-256 key always marshals
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func countRows(path string) (int64, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	if err := db.QueryRow(`SELECT coalesce(sum(n), 0) FROM result_chunks`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count stored rows: %w", err)
	}
	return n, nil
}
