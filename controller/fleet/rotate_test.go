package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func clientCert(t *testing.T, ca *CA, id string, now time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := CheckCSR(csrFor(t, key))
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := ca.SignClient(csr, id, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(p)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func verifies(c *x509.Certificate, pool *x509.CertPool, now time.Time) bool {
	_, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err == nil
}

// TestCARotation walks a rotation: start, re-enrol, finish.
func TestCARotation(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, _, err := LoadOrCreateCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	oldHash := ca.Hash()
	old := clientCert(t, ca, "agt-0000000000000001", now)

	if err := RotateCA(dir, now); err != nil {
		t.Fatal(err)
	}
	if err := RotateCA(dir, now); err == nil {
		t.Fatal("a second RotateCA during a rotation succeeded")
	}
	if fi, err := os.Stat(filepath.Join(dir, CANextKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", CANextKeyFile, err, fi.Mode().Perm())
	}
	during, _, err := LoadOrCreateCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	fresh := clientCert(t, during, "agt-0000000000000002", now)
	srv, err := during.IssueServerCert([]string{"127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	oldPool := x509.NewCertPool()
	oldPool.AddCert(ca.Cert)
	bundle := x509.NewCertPool()
	if !bundle.AppendCertsFromPEM(during.BundlePEM()) {
		t.Fatal("bundle does not parse")
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"rotating", during.Rotating()},
		{"the serving CA (and the join tokens' pin) is still the old one", during.Hash() == oldHash},
		{"old agents verify the server with their old ca.pem", verifies2(srv.Leaf, oldPool, now)},
		{"re-enrolled agents verify the server with the bundle", verifies2(srv.Leaf, bundle, now)},
		{"old client certificates are still accepted", verifies(old, during.Pool(), now)},
		{"new client certificates are signed by the next CA", fresh.Issuer.String() == during.next.Cert.Subject.String() && verifies(fresh, during.Pool(), now)},
		{"new client certificates do not chain to the old CA", !verifies(fresh, oldPool, now)},
	}
	for _, c := range checks {
		t.Run("during/"+c.name, func(t *testing.T) {
			if !c.ok {
				t.Fail()
			}
		})
	}

	if err := FinishCARotation(dir); err != nil {
		t.Fatal(err)
	}
	after, _, err := LoadOrCreateCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	srv2, err := after.IssueServerCert([]string{"127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, CAPreviousCertFile)); err != nil {
		t.Errorf("previous CA certificate not kept: %v", err)
	}
	checks = []struct {
		name string
		ok   bool
	}{
		{"not rotating", !after.Rotating()},
		{"the pin changed", after.Hash() != oldHash},
		{"old client certificates are refused", !verifies(old, after.Pool(), now)},
		{"re-enrolled client certificates are accepted", verifies(fresh, after.Pool(), now)},
		{"re-enrolled agents verify the new server certificate", verifies2(srv2.Leaf, bundle, now)},
	}
	for _, c := range checks {
		t.Run("after/"+c.name, func(t *testing.T) {
			if !c.ok {
				t.Fail()
			}
		})
	}
}

func verifies2(leaf *x509.Certificate, pool *x509.CertPool, now time.Time) bool {
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, DNSName: "127.0.0.1"})
	return err == nil
}
