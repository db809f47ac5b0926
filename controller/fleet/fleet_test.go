package fleet

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/store"
	"github.com/vantage-net/vantage/controller/store/sqlite"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func newFleet(t *testing.T, approve bool) (*Fleet, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, created, err := LoadOrCreateCA(dir, time.Now())
	if err != nil || !created {
		t.Fatalf("LoadOrCreateCA = %v, %v", created, err)
	}
	return New(st, ca, Options{ApproveAgents: approve}), dir
}

func csrFor(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCAPersistsWithPrivateKeyMode(t *testing.T) {
	f, dir := newFleet(t, false)
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca-key.pem mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	ca2, created, err := LoadOrCreateCA(dir, time.Now())
	if err != nil || created || ca2.Hash() != f.CA().Hash() {
		t.Fatalf("reload: created=%v err=%v hash %s vs %s", created, err, ca2.Hash(), f.CA().Hash())
	}
	cert, err := f.CA().IssueServerCert(HostSANs([]string{"ctl.example"}), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "ctl.example"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: f.CA().Pool()}); err != nil {
			t.Errorf("server cert for %s: %v", host, err)
		}
	}
	if len(cert.Certificate) != 2 {
		t.Errorf("chain length = %d; want leaf + CA", len(cert.Certificate))
	}
}

func TestEnroll(t *testing.T) {
	ctx := context.Background()
	f, _ := newFleet(t, false)
	tok, _, err := f.CreateJoinToken(ctx, JoinTokenRequest{TTL: time.Hour, Labels: map[string]string{"role": "vps"}, Actor: "operator:admin"})
	if err != nil {
		t.Fatal(err)
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	badSig := csrFor(t, p256)
	badSig[len(badSig)-3] ^= 0xff
	tests := []struct {
		name string
		req  EnrollRequest
		want error
	}{
		{"p256", EnrollRequest{JoinToken: tok, CSRDER: csrFor(t, p256), Name: "vps-fra-1"}, nil},
		{"ed25519", EnrollRequest{JoinToken: tok, CSRDER: csrFor(t, edKey), Name: "vps-fra-2"}, nil},
		{"p384 refused", EnrollRequest{JoinToken: tok, CSRDER: csrFor(t, p384), Name: "a"}, ErrBadCSR},
		{"rsa refused", EnrollRequest{JoinToken: tok, CSRDER: csrFor(t, rsaKey), Name: "a"}, ErrBadCSR},
		{"bad signature", EnrollRequest{JoinToken: tok, CSRDER: badSig, Name: "a"}, ErrInvalid},
		{"garbage csr", EnrollRequest{JoinToken: tok, CSRDER: []byte("x"), Name: "a"}, ErrBadCSR},
		{"bad name", EnrollRequest{JoinToken: tok, CSRDER: csrFor(t, p256), Name: "a b"}, ErrInvalid},
		{"empty name", EnrollRequest{JoinToken: tok, CSRDER: csrFor(t, p256)}, ErrInvalid},
		{"bad label", EnrollRequest{JoinToken: tok, CSRDER: csrFor(t, p256), Name: "a", Labels: map[string]string{"": "x"}}, ErrInvalid},
		{"unknown token", EnrollRequest{JoinToken: "nope", CSRDER: csrFor(t, p256), Name: "a"}, store.ErrTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := f.Enroll(ctx, tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Enroll err = %v; want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			b, _ := pem.Decode(e.CertificatePEM)
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != e.AgentID || len(e.AgentID) != 20 {
				t.Fatalf("CN = %q, id %q", cert.Subject.CommonName, e.AgentID)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: f.CA().Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("client cert: %v", err)
			}
			a, err := f.AgentFromCert(ctx, cert)
			if err != nil || a.Labels["role"] != "vps" {
				t.Fatalf("AgentFromCert = %+v, %v", a, err)
			}
		})
	}
}

func TestAgentStates(t *testing.T) {
	ctx := context.Background()
	f, _ := newFleet(t, true)
	tok, _, _ := f.CreateJoinToken(ctx, JoinTokenRequest{})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e, err := f.Enroll(ctx, EnrollRequest{JoinToken: tok, CSRDER: csrFor(t, key), Name: "a"})
	if err != nil || !e.ApprovalPending {
		t.Fatalf("Enroll = %+v, %v; want pending", e, err)
	}
	b, _ := pem.Decode(e.CertificatePEM)
	cert, _ := x509.ParseCertificate(b.Bytes)
	for _, step := range []struct {
		state vantagev1.AgentState
		want  error
	}{
		{vantagev1.AgentState_AGENT_STATE_PENDING, ErrAgentPending},
		{vantagev1.AgentState_AGENT_STATE_ACTIVE, nil},
		{vantagev1.AgentState_AGENT_STATE_REVOKED, ErrAgentRevoked},
	} {
		t.Run(step.state.String(), func(t *testing.T) {
			if _, err := f.st.(*sqlite.DB).SetAgentState(ctx, e.AgentID, step.state, "", store.AuditEntry{}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.AgentFromCert(ctx, cert); !errors.Is(err, step.want) {
				t.Fatalf("AgentFromCert = %v; want %v", err, step.want)
			}
		})
	}
}

func TestAdminToken(t *testing.T) {
	ctx := context.Background()
	f, dir := newFleet(t, false)
	path, created, err := f.EnsureAdminToken(ctx, dir)
	if err != nil || !created {
		t.Fatalf("EnsureAdminToken = %v, %v", created, err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode = %v", st.Mode().Perm())
	}
	if _, created, err := f.EnsureAdminToken(ctx, dir); err != nil || created {
		t.Fatalf("second EnsureAdminToken = %v, %v", created, err)
	}
	b, _ := os.ReadFile(path)
	tok, err := f.Authenticate(ctx, string(b[:len(b)-1]))
	if err != nil || tok.Role != store.RoleAdmin {
		t.Fatalf("Authenticate = %+v, %v", tok, err)
	}
	if _, err := f.Authenticate(ctx, "wrong"); !errors.Is(err, ErrBadOperatorToken) {
		t.Fatalf("Authenticate(wrong) = %v", err)
	}
}
