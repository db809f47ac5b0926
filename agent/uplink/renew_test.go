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
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Renew signs the CSR's key for the agent of the client certificate, valid
// 48 hours, after failing renewFails times.
func (s *testServer) Renew(ctx context.Context, req *vantagev1.RenewRequest) (*vantagev1.RenewResponse, error) {
	p, _ := peer.FromContext(ctx)
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return nil, status.Error(codes.Unauthenticated, "client certificate required")
	}
	s.mu.Lock()
	s.renews++
	fail := s.renews <= s.renewFails
	s.mu.Unlock()
	if fail {
		return nil, status.Error(codes.Unavailable, "test fails this renewal")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsrDer())
	if err != nil || csr.CheckSignature() != nil {
		return nil, status.Error(codes.InvalidArgument, "csr_der: invalid")
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: info.State.VerifiedChains[0][0].Subject.CommonName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, s.ca, csr.PublicKey, s.caKey)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &vantagev1.RenewResponse{CertificatePem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), CaBundlePem: s.caPEM}, nil
}

func (s *testServer) streamSerials() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.serials...)
}

// TestRenew: on advice (and on its own when the certificate expires
// within RenewBefore) the client renews, failed attempts are retried
// without ending the session, the new files are written with their modes,
// the next session presents the new certificate, and LoadIdentity reads
// it back.
func TestRenew(t *testing.T) {
	tests := []struct {
		name        string
		advise      bool
		renewBefore time.Duration // enrolment certificates are valid 1 hour
	}{
		{"advised by the controller", true, time.Minute},
		{"certificate expiring", false, 2 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := newTestServer(t)
			srv.renewFails = 2
			dir := t.TempDir()
			c, _, stop := startClientIn(t, srv, addr, dir, func(cfg *Config) {
				cfg.StateDir, cfg.RenewBefore = dir, tc.renewBefore
			})
			defer stop()
			oldSerial := c.Identity().Cert.Leaf.SerialNumber.Text(16)
			waitFor(t, "first session", func() bool { return len(srv.streamSerials()) == 1 })
			if tc.advise {
				srv.push <- &vantagev1.ControllerMessage{Msg: &vantagev1.ControllerMessage_Renew{Renew: &vantagev1.RenewAdvice{Reason: "test"}}}
			}
			waitFor(t, "a session with the renewed certificate", func() bool { return len(srv.streamSerials()) >= 2 })
			serials := srv.streamSerials()
			srv.mu.Lock()
			renews := srv.renews
			srv.mu.Unlock()
			if renews != 3 {
				t.Fatalf("%d Renew calls; want 2 failures then 1 success", renews)
			}
			if serials[0] != oldSerial || len(serials) != 2 {
				t.Fatalf("stream serials %v; want one session with %s until the renewal worked, then one more", serials, oldSerial)
			}
			newSerial := c.Identity().Cert.Leaf.SerialNumber.Text(16)
			if serials[1] != newSerial || newSerial == oldSerial {
				t.Fatalf("second session used serial %s; want the renewed %s", serials[1], newSerial)
			}
			for name, mode := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o644, CAFile: 0o644} {
				if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != mode {
					t.Fatalf("%s: %v, mode %v; want %v", name, err, fi.Mode().Perm(), mode)
				}
			}
			for _, name := range []string{KeyNextFile, CertNextFile} {
				if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
					t.Fatalf("%s left behind: %v", name, err)
				}
			}
			id, err := LoadIdentity(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := id.Cert.Leaf.SerialNumber.Text(16); got != newSerial || id.AgentID != testAgentID {
				t.Fatalf("LoadIdentity: %s serial %s; want %s serial %s", id.AgentID, got, testAgentID, newSerial)
			}
		})
	}
}

// TestFinishRenewal: LoadIdentity after a crash at each point of
// writeRenewal loads a matching pair, the new one once it is complete.
func TestFinishRenewal(t *testing.T) {
	srv, addr := newTestServer(t)
	tests := []struct {
		name    string
		crash   func(t *testing.T, dir string) // leaves the files as a crash would
		wantNew bool
	}{
		{"key.pem.next written", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, CertNextFile))
		}, false},
		{"both .next written", func(t *testing.T, dir string) {}, true},
		{"key renamed", func(t *testing.T, dir string) {
			if err := os.Rename(filepath.Join(dir, KeyNextFile), filepath.Join(dir, KeyFile)); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"cert.pem.next torn", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, CertNextFile), []byte("-----BEGIN CERT"), 0o644)
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Enroll(context.Background(), EnrollConfig{Controller: addr, StateDir: dir, JoinToken: srv.token,
				CAHash: srv.pin(), Name: "t", Logger: discard()}); err != nil {
				t.Fatal(err)
			}
			old, err := LoadIdentity(dir)
			if err != nil {
				t.Fatal(err)
			}
			// The files of a renewal, not yet renamed.
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
			resp, err := srv.Renew(peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tlsStateFor(old)}}),
				&vantagev1.RenewRequest{CsrDer: csr})
			if err != nil {
				t.Fatal(err)
			}
			der, _ := x509.MarshalECPrivateKey(key)
			os.WriteFile(filepath.Join(dir, KeyNextFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
			os.WriteFile(filepath.Join(dir, CertNextFile), resp.GetCertificatePem(), 0o644)
			tc.crash(t, dir)

			id, err := LoadIdentity(dir)
			if err != nil {
				t.Fatalf("LoadIdentity after the crash: %v", err)
			}
			got := id.Cert.Leaf.SerialNumber.Cmp(old.Cert.Leaf.SerialNumber) != 0
			if got != tc.wantNew {
				t.Fatalf("loaded the new certificate: %v; want %v", got, tc.wantNew)
			}
			if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key.pem: %v, mode %v; want 0600", err, fi.Mode().Perm())
			}
			for _, name := range []string{KeyNextFile, CertNextFile} {
				if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
					t.Fatalf("%s left behind: %v", name, err)
				}
			}
		})
	}
}

// tlsStateFor is a TLS state whose verified chain is id's certificate.
func tlsStateFor(id *Identity) tls.ConnectionState {
	return tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{id.Cert.Leaf}}}
}
