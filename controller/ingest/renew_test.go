package ingest

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/controller/internal/fixture"
	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// renewEnv is AgentService on real TLS over loopback and real SQLite, with
// one enrolled agent whose certificate is cert.
type renewEnv struct {
	db   *sqlite.DB
	fl   *fleet.Fleet
	ca   *fleet.CA
	addr string
	id   string
	cert tls.Certificate
}

func newRenewEnv(t *testing.T, opts fleet.Options) *renewEnv {
	t.Helper()
	ctx := context.Background()
	db, ca, _ := fixture.StoreAndCA(t)
	fl := fleet.New(db, ca, opts)
	addr := serveTLS(t, ca, New(Config{Store: db, Fleet: fl}))
	tok, _, err := fl.CreateJoinToken(ctx, fleet.JoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	key, csr := fixture.AgentCSR(t, "agt-someone-else")
	e, err := fl.Enroll(ctx, fleet.EnrollRequest{JoinToken: tok, CSRDER: csr, Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	return &renewEnv{db: db, fl: fl, ca: ca, addr: addr, id: e.AgentID, cert: fixture.KeyPair(t, e.CertificatePEM, key)}
}

// client dials with cert (none when nil) on a connection of its own.
func (e *renewEnv) client(t *testing.T, cert *tls.Certificate) vantagev1.AgentServiceClient {
	t.Helper()
	var certs []tls.Certificate
	if cert != nil {
		certs = append(certs, *cert)
	}
	return vantagev1.NewAgentServiceClient(fixture.Dial(t, e.addr, e.ca.Pool(), certs...))
}

// renew renews cert and returns the new certificate (with its key).
func (e *renewEnv) renew(t *testing.T, cert *tls.Certificate) (tls.Certificate, *vantagev1.RenewResponse, error) {
	t.Helper()
	key, csr := fixture.AgentCSR(t, "agt-someone-else")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := e.client(t, cert).Renew(ctx, &vantagev1.RenewRequest{CsrDer: csr})
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return fixture.KeyPair(t, resp.GetCertificatePem(), key), resp, nil
}

// open opens a session with cert and returns the messages before the
// first assignment's follow-up (the assignment, and a RenewAdvice if any
// arrives within a short wait), or the error.
func (e *renewEnv) open(t *testing.T, cert *tls.Certificate) (*vantagev1.RenewAdvice, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := e.client(t, cert).Session(ctx)
	if err != nil {
		return nil, err
	}
	s.Send(&vantagev1.AgentMessage{Msg: &vantagev1.AgentMessage_Hello{Hello: &vantagev1.Hello{Epoch: 1}}})
	m, err := s.Recv()
	if err != nil {
		return nil, err
	}
	if m.GetAssignment() == nil {
		t.Fatalf("first message %v; want an assignment", m)
	}
	got := make(chan *vantagev1.RenewAdvice, 1)
	go func() {
		m, _ := s.Recv()
		got <- m.GetRenew()
	}()
	select {
	case a := <-got:
		return a, nil
	case <-time.After(300 * time.Millisecond):
		return nil, nil
	}
}

func TestRenew(t *testing.T) {
	e := newRenewEnv(t, fleet.Options{})
	old := e.cert
	renewed, resp, err := e.renew(t, &old)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if cn := renewed.Leaf.Subject.CommonName; cn != e.id {
		t.Fatalf("renewed CN = %q; want the agent id %q (never the CSR's)", cn, e.id)
	}
	if renewed.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) == 0 {
		t.Fatal("renewed certificate has the old serial")
	}
	if string(resp.GetCaBundlePem()) != string(e.ca.BundlePEM()) {
		t.Fatal("ca_bundle_pem is not the enrolment bundle")
	}
	ag, err := e.db.GetAgent(context.Background(), e.id)
	if err != nil || ag.CertSerial != renewed.Leaf.SerialNumber.Text(16) {
		t.Fatalf("stored serial %q, %v; want the new one", ag.CertSerial, err)
	}
	audit, _ := e.db.ListAudit(context.Background(), 10)
	if len(audit) == 0 || audit[0].Action != "agent.renew" || audit[0].Subject != e.id {
		t.Fatalf("newest audit entry %+v; want agent.renew of %s", audit, e.id)
	}

	// Old and new both open a session until the new one has been used.
	steps := []struct {
		name string
		cert *tls.Certificate
		code codes.Code
	}{
		{"old before the new is used", &old, codes.OK},
		{"old again", &old, codes.OK},
		{"new", &renewed, codes.OK},
		{"old after the new was used", &old, codes.Unauthenticated},
		{"new again", &renewed, codes.OK},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if _, err := e.open(t, s.cert); status.Code(err) != s.code {
				t.Fatalf("session: %v; want %v", err, s.code)
			}
		})
	}
}

func TestRenewRefused(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, e *renewEnv) (*tls.Certificate, []byte)
		code    codes.Code
		msg     string
	}{
		{"no client certificate", func(t *testing.T, e *renewEnv) (*tls.Certificate, []byte) {
			_, csr := fixture.AgentCSR(t, "agt-someone-else")
			return nil, csr
		}, codes.Unauthenticated, ""},
		{"revoked agent", func(t *testing.T, e *renewEnv) (*tls.Certificate, []byte) {
			if _, err := e.db.SetAgentState(context.Background(), e.id, vantagev1.AgentState_AGENT_STATE_REVOKED, "leak", store.AuditEntry{}); err != nil {
				t.Fatal(err)
			}
			_, csr := fixture.AgentCSR(t, "agt-someone-else")
			return &e.cert, csr
		}, codes.PermissionDenied, ""},
		{"bad csr", func(t *testing.T, e *renewEnv) (*tls.Certificate, []byte) {
			return &e.cert, []byte("not a csr")
		}, codes.InvalidArgument, "csr_der"},
		{"empty csr", func(t *testing.T, e *renewEnv) (*tls.Certificate, []byte) {
			return &e.cert, nil
		}, codes.InvalidArgument, "csr_der: size 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newRenewEnv(t, fleet.Options{})
			cert, csr := tc.prepare(t, e)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := e.client(t, cert).Renew(ctx, &vantagev1.RenewRequest{CsrDer: csr})
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.msg) {
				t.Fatalf("Renew: %v; want %v naming %q", err, tc.code, tc.msg)
			}
			if ag, _ := e.db.GetAgent(context.Background(), e.id); ag.CertSerial != e.cert.Leaf.SerialNumber.Text(16) {
				t.Fatal("a refused renewal changed the stored serial")
			}
		})
	}
}

func TestRenewAdvice(t *testing.T) {
	tests := []struct {
		name        string
		renewBefore time.Duration
		want        string // "" means no advice
	}{
		{"fresh certificate", 0, ""},
		{"expires within the renewal window", 400 * 24 * time.Hour, "certificate expires at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newRenewEnv(t, fleet.Options{RenewBefore: tc.renewBefore})
			adv, err := e.open(t, &e.cert)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" && adv != nil || tc.want != "" && !strings.Contains(adv.GetReason(), tc.want) {
				t.Fatalf("advice %v; want %q", adv, tc.want)
			}
		})
	}
}
