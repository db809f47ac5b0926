package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vantage-net/vantage/agent/spool"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const testAgentID = "agt-0123456789abcdef"

// testServer is a small AgentService: the agent is under test, the server
// only records what it gets and acts as told.
type testServer struct {
	vantagev1.UnimplementedAgentServiceServer
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	caPEM []byte
	token string

	// noAckStreams: streams numbered below this never ack and are dropped
	// once they received dropAtSeq.
	noAckStreams int
	dropAtSeq    uint64
	// exhaustStreams: streams numbered up to this end at once with
	// RESOURCE_EXHAUSTED, carrying exhaustMs as a trailer or a RetryInfo.
	exhaustStreams int
	exhaustMs      int
	exhaustDetail  bool
	// exhaustAfter: those streams end so only after this many batches,
	// while the agent is still sending.
	exhaustAfter int

	mu       sync.Mutex
	streams  int
	hellos   []*vantagev1.Hello
	helloAt  []time.Time
	batches  map[int][]*vantagev1.ResultBatch // by stream number
	statuses []*vantagev1.TaskStatus
	beats    int
	badFirst int
	push     chan *vantagev1.ControllerMessage
	// serials: the client certificate serial of each stream (renew_test.go).
	serials []string
	// renewFails: Renew calls that fail (Unavailable) before one works.
	renewFails int
	renews     int

	// creds and gs serve the AgentService (stop and serve restart it on
	// the same address, as a restarted controller would be).
	creds credentials.TransportCredentials
	gs    *grpc.Server
}

func newTestServer(t *testing.T) (*testServer, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatalf("ca: %v", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "controller"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, srvKey.Public(), caKey)
	if err != nil {
		t.Fatalf("server cert: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	s := &testServer{
		ca: ca, caKey: caKey, token: "join-secret",
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		batches: make(map[int][]*vantagev1.ResultBatch),
		push:    make(chan *vantagev1.ControllerMessage, 16),
	}
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER, caDER}, PrivateKey: srvKey}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	})
	s.creds = creds
	addr := s.serve(t, "127.0.0.1:0")
	t.Cleanup(func() { s.stop() })
	return s, addr
}

// serve listens on addr and serves the AgentService; it returns the
// address.
func (s *testServer) serve(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	gs := grpc.NewServer(grpc.Creds(s.creds))
	vantagev1.RegisterAgentServiceServer(gs, s)
	s.mu.Lock()
	s.gs = gs
	s.mu.Unlock()
	go func() { _ = gs.Serve(ln) }()
	return ln.Addr().String()
}

// stop ends the server and every stream at once (a killed controller).
func (s *testServer) stop() {
	s.mu.Lock()
	gs := s.gs
	s.mu.Unlock()
	gs.Stop()
}

func (s *testServer) Enroll(_ context.Context, req *vantagev1.EnrollRequest) (*vantagev1.EnrollResponse, error) {
	if req.GetJoinToken() != s.token {
		return nil, status.Error(codes.Unauthenticated, "join_token: unknown")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsrDer())
	if err != nil || csr.CheckSignature() != nil {
		return nil, status.Error(codes.InvalidArgument, "csr_der: invalid")
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: testAgentID},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, s.ca, csr.PublicKey, s.caKey)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &vantagev1.EnrollResponse{AgentId: testAgentID,
		CertificatePem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), CaBundlePem: s.caPEM}, nil
}

func (s *testServer) Session(stream vantagev1.AgentService_SessionServer) error {
	p, _ := peer.FromContext(stream.Context())
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || info.State.VerifiedChains[0][0].Subject.CommonName != testAgentID {
		return status.Error(codes.Unauthenticated, "client certificate required")
	}
	s.mu.Lock()
	s.streams++
	n := s.streams
	s.serials = append(s.serials, info.State.VerifiedChains[0][0].SerialNumber.Text(16))
	s.mu.Unlock()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetHello() == nil {
		s.mu.Lock()
		s.badFirst++
		s.mu.Unlock()
		return status.Error(codes.FailedPrecondition, "hello first")
	}
	s.mu.Lock()
	s.hellos = append(s.hellos, first.GetHello())
	s.helloAt = append(s.helloAt, time.Now())
	s.mu.Unlock()
	exhaust := func() error {
		st := status.New(codes.ResourceExhausted, "controller overloaded")
		if s.exhaustDetail {
			st, _ = st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(s.exhaustMs) * time.Millisecond)})
		} else {
			stream.SetTrailer(metadata.Pairs(RetryAfterTrailer, strconv.Itoa(s.exhaustMs)))
		}
		return st.Err()
	}
	if n <= s.exhaustStreams && s.exhaustAfter == 0 {
		return exhaust()
	}
	var sendMu sync.Mutex
	send := func(m *vantagev1.ControllerMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case m := <-s.push:
				_ = send(m)
			case <-done:
				return
			}
		}
	}()
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		switch m := msg.GetMsg().(type) {
		case *vantagev1.AgentMessage_Results:
			s.batches[n] = append(s.batches[n], m.Results)
		case *vantagev1.AgentMessage_TaskStatus:
			s.statuses = append(s.statuses, m.TaskStatus)
		case *vantagev1.AgentMessage_Heartbeat:
			s.beats++
		case *vantagev1.AgentMessage_Hello:
			s.badFirst++ // a second hello
		}
		s.mu.Unlock()
		b := msg.GetResults()
		if b == nil {
			continue
		}
		s.mu.Lock()
		got := len(s.batches[n])
		s.mu.Unlock()
		if n <= s.exhaustStreams && got >= s.exhaustAfter {
			return exhaust()
		}
		if n <= s.noAckStreams {
			if b.GetLastSeq() >= s.dropAtSeq {
				return status.Error(codes.Unavailable, "test drops the stream")
			}
			continue
		}
		if err := send(&vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Ack{Ack: &vantagev1.Ack{Epoch: b.GetEpoch(), UpToSeq: b.GetLastSeq()}}}); err != nil {
			return err
		}
	}
}

func (s *testServer) pin() string { return CAHash(s.ca) }

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestEnroll(t *testing.T) {
	srv, addr := newTestServer(t)
	tests := []struct {
		name    string
		token   string
		pin     string
		wantErr error
		code    codes.Code
	}{
		{"good pin", srv.token, srv.pin(), nil, codes.OK},
		{"wrong pin", srv.token, "sha256:" + fmt.Sprintf("%064x", 1), ErrPinMismatch, codes.OK},
		{"malformed pin", srv.token, "md5:abc", ErrBadFlag, codes.OK},
		{"no token", "", srv.pin(), ErrBadFlag, codes.OK},
		{"bad token", "nope", srv.pin(), nil, codes.Unauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			_, err := Enroll(context.Background(), EnrollConfig{
				Controller: addr, StateDir: dir, JoinToken: tc.token, CAHash: tc.pin, Name: "test-agent", Logger: discard(),
			})
			switch {
			case tc.code != codes.OK:
				if status.Code(err) != tc.code {
					t.Fatalf("Enroll = %v, want code %v", err, tc.code)
				}
			case !errors.Is(err, tc.wantErr):
				t.Fatalf("Enroll = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if Enrolled(dir) {
					t.Fatalf("failed enrolment left a certificate in %s", dir)
				}
				return
			}
			fi, err := os.Stat(filepath.Join(dir, KeyFile))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key.pem mode = %v (%v), want 0600", fi.Mode().Perm(), err)
			}
			for want := uint64(1); want <= 2; want++ {
				id, err := LoadIdentity(dir)
				if err != nil {
					t.Fatalf("LoadIdentity: %v", err)
				}
				if id.AgentID != testAgentID || id.Epoch != want {
					t.Fatalf("identity = %s epoch %d, want %s epoch %d", id.AgentID, id.Epoch, testAgentID, want)
				}
			}
		})
	}
}

// fakeHandler records assignments and refuses versions not newer.
type fakeHandler struct {
	mu      sync.Mutex
	version uint64
	applied []uint64
}

func (h *fakeHandler) Apply(_ context.Context, a *vantagev1.Assignment) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a.GetVersion() <= h.version {
		return fmt.Errorf("assignment.version %d: not newer than %d", a.GetVersion(), h.version)
	}
	h.version = a.GetVersion()
	h.applied = append(h.applied, a.GetVersion())
	return nil
}

func (h *fakeHandler) Trigger(context.Context, *vantagev1.Trigger) error { return nil }

func (h *fakeHandler) AssignmentVersion() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version
}

type counters struct{}

func (counters) ProbesSent() uint64     { return 42 }
func (counters) PacketsIgnored() uint64 { return 7 }

func startClient(t *testing.T, srv *testServer, addr string, opts ...func(*Config)) (*Client, *fakeHandler, func()) {
	t.Helper()
	return startClientIn(t, srv, addr, t.TempDir(), opts...)
}

// startClientIn starts a client whose state directory is dir (a restart
// when dir was used before: the epoch goes up).
func startClientIn(t *testing.T, srv *testServer, addr, dir string, opts ...func(*Config)) (*Client, *fakeHandler, func()) {
	t.Helper()
	id, err := EnsureIdentity(context.Background(), EnrollConfig{
		Controller: addr, StateDir: dir, JoinToken: srv.token, CAHash: srv.pin(), Name: "t", Logger: discard(),
	})
	if err != nil {
		t.Fatalf("EnsureIdentity: %v", err)
	}
	h := &fakeHandler{}
	cfg := Config{
		Controller: addr, Identity: id, AgentVersion: "test", Labels: map[string]string{"role": "test"},
		Capabilities: &vantagev1.Capabilities{TcpConnect: true}, Handler: h, Counters: counters{}, Logger: discard(),
		BatchInterval: 20 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond,
		BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	return c, h, func() { cancel(); <-done }
}

func submit(c *Client, n int) {
	for i := range n {
		c.Submit(&vantagev1.ProbeResult{TaskId: "c/icmp/192.0.2.1", Target: "192.0.2.1", Round: int64(i)})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkContiguous verifies batches of one stream and returns the seqs seen.
func checkContiguous(t *testing.T, bs []*vantagev1.ResultBatch, epoch uint64) map[uint64]int {
	t.Helper()
	seen := make(map[uint64]int)
	for _, b := range bs {
		if b.GetEpoch() != epoch {
			t.Fatalf("batch epoch %d, want %d", b.GetEpoch(), epoch)
		}
		if len(b.GetResults()) > spool.DefaultBatchMax {
			t.Fatalf("batch of %d results, max %d", len(b.GetResults()), spool.DefaultBatchMax)
		}
		if want := b.GetLastSeq() - b.GetFirstSeq() + 1; uint64(len(b.GetResults())) != want {
			t.Fatalf("batch %d..%d carries %d results", b.GetFirstSeq(), b.GetLastSeq(), len(b.GetResults()))
		}
		for i, r := range b.GetResults() {
			if r.GetSeq() != b.GetFirstSeq()+uint64(i) {
				t.Fatalf("batch %d..%d: result %d has seq %d", b.GetFirstSeq(), b.GetLastSeq(), i, r.GetSeq())
			}
			seen[r.GetSeq()]++
		}
	}
	return seen
}

func TestSession(t *testing.T) {
	srv, addr := newTestServer(t)
	c, h, stop := startClient(t, srv, addr)
	defer stop()
	submit(c, 1200)
	waitFor(t, "all 1200 results acked", func() bool { return c.out.State().GetPendingResults() == 0 && c.Acked().Seq == 1200 })

	srv.push <- &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Assignment{Assignment: &vantagev1.Assignment{Version: 5}}}
	srv.push <- &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Assignment{Assignment: &vantagev1.Assignment{Version: 5}}}
	waitFor(t, "refusal of the replayed assignment", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.statuses) == 1 && srv.beats > 0
	})
	submit(c, 10)
	waitFor(t, "10 more acked", func() bool { return c.Acked().Seq == 1210 })

	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.badFirst != 0 || len(srv.hellos) != 1 {
		t.Fatalf("hellos = %d, streams not starting with hello = %d", len(srv.hellos), srv.badFirst)
	}
	hello := srv.hellos[0]
	if hello.GetEpoch() != 1 || hello.GetLabels()["role"] != "test" || !hello.GetCapabilities().GetTcpConnect() || hello.GetAgentVersion() != "test" {
		t.Fatalf("hello = %v", hello)
	}
	seen := checkContiguous(t, srv.batches[1], 1)
	for s := uint64(1); s <= 1210; s++ {
		if seen[s] != 1 {
			t.Fatalf("seq %d sent %d times on a healthy stream, want once", s, seen[s])
		}
	}
	if st := srv.statuses[0]; !st.GetRefused() || st.GetReason() == "" {
		t.Fatalf("status = %v, want a refusal with a reason", st)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.applied) != 1 || h.applied[0] != 5 {
		t.Fatalf("applied = %v, want [5]", h.applied)
	}
}

func TestResendAfterDrop(t *testing.T) {
	srv, addr := newTestServer(t)
	srv.noAckStreams, srv.dropAtSeq = 1, 300
	c, _, stop := startClient(t, srv, addr)
	defer stop()
	submit(c, 300)
	waitFor(t, "resend acked on the second stream", func() bool { return c.Acked().Seq == 300 })
	submit(c, 5)
	waitFor(t, "new results acked", func() bool { return c.Acked().Seq == 305 && c.out.State().GetPendingResults() == 0 })

	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.streams < 2 || c.Sessions() < 2 {
		t.Fatalf("streams = %d sessions = %d, want a reconnect", srv.streams, c.Sessions())
	}
	if srv.badFirst != 0 {
		t.Fatalf("%d streams did not start with hello", srv.badFirst)
	}
	if got := srv.hellos[1].GetSpool().GetPendingResults(); got != 300 {
		t.Fatalf("second hello reports %d pending, want 300", got)
	}
	first := checkContiguous(t, srv.batches[1], 1)
	second := checkContiguous(t, srv.batches[2], 1)
	if len(first) != 300 {
		t.Fatalf("first stream saw %d results, want 300", len(first))
	}
	for s := uint64(1); s <= 305; s++ {
		if second[s] != 1 {
			t.Fatalf("seq %d sent %d times after reconnect, want once", s, second[s])
		}
	}
	if b := srv.batches[2][0]; b.GetFirstSeq() != 1 {
		t.Fatalf("first batch after reconnect starts at %d, want 1 (unacked results re-sent)", b.GetFirstSeq())
	}
}

// TestAckTimeout: a controller that takes batches and never acks them (the
// stream stays up, so gRPC keepalive sees nothing wrong) makes the agent end
// the session after AckTimeout and re-send on a new one.
func TestAckTimeout(t *testing.T) {
	srv, addr := newTestServer(t)
	srv.noAckStreams, srv.dropAtSeq = 1, 1<<62 // the first stream never acks and is never dropped
	c, _, stop := startClient(t, srv, addr, func(cfg *Config) { cfg.AckTimeout = 300 * time.Millisecond })
	defer stop()
	submit(c, 50)
	waitFor(t, "results acked on a second session", func() bool { return c.Acked().Seq == 50 })
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.streams < 2 {
		t.Fatalf("streams = %d, want the unacked one given up and a second", srv.streams)
	}
	if seen := checkContiguous(t, srv.batches[2], 1); seen[1] != 1 || len(seen) != 50 {
		t.Fatalf("second stream carried %d distinct results (seq 1 %d times), want all 50 re-sent once", len(seen), seen[1])
	}
}

// gapSpool is a spool holding only gaps (every result it had was acked or
// lost): what an agent has after its spool dropped results and nothing new
// was produced.
type gapSpool struct {
	mu   sync.Mutex
	gaps []*vantagev1.Gap
}

func (g *gapSpool) Append(*vantagev1.ProbeResult) error { return errors.New("gapSpool: no appends") }
func (g *gapSpool) Last() spool.Key                     { return spool.Key{Epoch: 1} }
func (g *gapSpool) Read(spool.Key, int) (spool.Batch, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return spool.Batch{Gaps: slices.Clone(g.gaps)}, nil
}
func (g *gapSpool) Ack(_ spool.Key, acked []*vantagev1.Gap) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gaps = slices.DeleteFunc(g.gaps, func(x *vantagev1.Gap) bool {
		return slices.ContainsFunc(acked, func(a *vantagev1.Gap) bool { return a.GetEpoch() == x.GetEpoch() && a.GetFirstSeq() == x.GetFirstSeq() })
	})
	return nil
}
func (g *gapSpool) State() *vantagev1.SpoolState { return &vantagev1.SpoolState{} }
func (g *gapSpool) Close() error                 { return nil }

// TestGapsOnlyBatch: gaps with no result to ride along are sent on their
// own (first_seq = last_seq = 0), once per stream, and forgotten on the
// ack with up_to_seq 0.
func TestGapsOnlyBatch(t *testing.T) {
	srv, addr := newTestServer(t)
	sp := &gapSpool{gaps: []*vantagev1.Gap{{Epoch: 1, FirstSeq: 3, LastSeq: 9, Reason: "spool full"}}}
	c, _, stop := startClient(t, srv, addr, func(cfg *Config) { cfg.Outbox = spool.NewOutbox(sp, spool.OutboxOptions{}) })
	defer stop()
	waitFor(t, "the gap acked and forgotten", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return len(sp.gaps) == 0
	})
	time.Sleep(100 * time.Millisecond) // a few more batch ticks: nothing more to send
	srv.mu.Lock()
	defer srv.mu.Unlock()
	var sent []*vantagev1.ResultBatch
	for _, bs := range srv.batches {
		sent = append(sent, bs...)
	}
	if len(sent) != 1 {
		t.Fatalf("%d batches sent, want 1 (the gaps-only one, once)", len(sent))
	}
	if b := sent[0]; len(b.GetResults()) != 0 || b.GetFirstSeq() != 0 || b.GetLastSeq() != 0 || len(b.GetGaps()) != 1 || b.GetGaps()[0].GetFirstSeq() != 3 {
		t.Fatalf("batch = %v, want gaps only (seq 3..9) with first_seq = last_seq = 0", b)
	}
	if c.Acked() != (spool.Key{}) {
		t.Fatalf("acked key %v after a gaps-only ack, want none", c.Acked())
	}
}

func TestThrottle(t *testing.T) {
	srv, addr := newTestServer(t)
	c, _, stop := startClient(t, srv, addr)
	defer stop()
	waitFor(t, "session", func() bool { return c.Sessions() == 1 })
	srv.push <- &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Throttle{Throttle: &vantagev1.Throttle{RetryAfterMs: 400}}}
	waitFor(t, "throttle received", func() bool { return c.throttle.Load() != 0 })
	start := time.Now()
	submit(c, 3)
	waitFor(t, "results acked after the throttle", func() bool { return c.Acked().Seq == 3 })
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("results sent %v after a 400ms throttle", waited)
	}
}

func TestShutdownFlushes(t *testing.T) {
	srv, addr := newTestServer(t)
	c, _, stop := startClient(t, srv, addr, func(cfg *Config) { cfg.BatchInterval = time.Hour })
	waitFor(t, "session", func() bool { return c.Sessions() == 1 })
	submit(c, 10)
	stop()
	if got := c.Acked().Seq; got != 10 {
		t.Fatalf("acked %d at shutdown, want 10 (final flush)", got)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if seen := checkContiguous(t, srv.batches[1], 1); len(seen) != 10 {
		t.Fatalf("server got %d results, want 10", len(seen))
	}
}

// TestReplayAfterRestart: results spooled on disk by a run whose acks
// never came are sent by the next run (a new epoch) with their original
// (epoch, seq), before the new epoch's results, and then forgotten.
func TestReplayAfterRestart(t *testing.T) {
	srv, addr := newTestServer(t)
	srv.noAckStreams, srv.dropAtSeq = 1, 1<<62 // the first run is never acked
	dir := t.TempDir()
	var disks []*spool.Disk
	withDisk := func(epoch uint64) func(*Config) {
		return func(cfg *Config) {
			d, err := spool.OpenDisk(filepath.Join(dir, "spool"), cfg.Identity.Epoch, spool.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Identity.Epoch != epoch {
				t.Fatalf("epoch %d, want %d", cfg.Identity.Epoch, epoch)
			}
			cfg.Outbox = spool.NewOutbox(d, spool.OutboxOptions{})
			disks = append(disks, d)
		}
	}
	c1, _, stop1 := startClientIn(t, srv, addr, dir, withDisk(1))
	submit(c1, 40)
	waitFor(t, "first run's results sent", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		n := 0
		for _, b := range srv.batches[1] {
			n += len(b.GetResults())
		}
		return n == 40
	})
	stop1()
	_ = disks[0].Close()

	c2, _, stop2 := startClientIn(t, srv, addr, dir, withDisk(2))
	defer stop2()
	waitFor(t, "second run connected", func() bool { return c2.Sessions() > 0 })
	submit(c2, 10)
	waitFor(t, "both epochs acked", func() bool { return c2.Acked() == spool.Key{Epoch: 2, Seq: 10} })
	if st := c2.out.State(); st.GetPendingResults() != 0 {
		t.Fatalf("pending = %d after all acks", st.GetPendingResults())
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	var got []spool.Key
	for _, b := range srv.batches[2] {
		for _, r := range b.GetResults() {
			got = append(got, spool.Key{Epoch: b.GetEpoch(), Seq: r.GetSeq()})
		}
	}
	if len(got) != 50 || got[0] != (spool.Key{Epoch: 1, Seq: 1}) || got[39] != (spool.Key{Epoch: 1, Seq: 40}) || got[40] != (spool.Key{Epoch: 2, Seq: 1}) {
		t.Fatalf("second run sent %d results %v, want epoch 1 seq 1..40 then epoch 2 seq 1..10", len(got), got)
	}
	if h := srv.hellos[len(srv.hellos)-1]; h.GetEpoch() != 2 || h.GetSpool().GetPendingResults() < 40 {
		t.Fatalf("second hello = epoch %d pending %d", h.GetEpoch(), h.GetSpool().GetPendingResults())
	}
}
