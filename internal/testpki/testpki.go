// Package testpki makes the agent-side key material that tests need to talk
// to a real controller: a P-256 key with a certificate request (as the agent
// makes them at enrolment) and the TLS client certificate from what the
// controller issued. It lives in internal/ because the controller's test
// fixture and the lab tests under deploy/ both need it, and deploy cannot
// import controller/internal. Only tests import it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"
)

// AgentCSR is a new agent key (P-256, as the agent makes) and a certificate
// request for it with common name cn, which the controller ignores: it names
// the agent itself.
func AgentCSR(t testing.TB, cn string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

// KeyPEM is key in PEM ("PRIVATE KEY", PKCS #8).
func KeyPEM(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// KeyPair is the TLS client certificate of certPEM (as the controller issued
// it) with its key.
func KeyPair(t testing.TB, certPEM []byte, key *ecdsa.PrivateKey) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, KeyPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
