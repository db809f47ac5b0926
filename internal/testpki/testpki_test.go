package testpki

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// TestKeyPairOfIssuedCertificate signs the request as a CA would and checks
// that the key pair built from the result is usable: the certificate is the
// one issued and the key matches it.
func TestKeyPairOfIssuedCertificate(t *testing.T) {
	caKey, _ := AgentCSR(t, "ca")
	key, csrDER := AgentCSR(t, "agent-1")
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if csr.Subject.CommonName != "agent-1" {
		t.Fatalf("CSR common name %q, want agent-1", csr.Subject.CommonName)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "agt-7"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pair := KeyPair(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key)
	if got := pair.PrivateKey.(*ecdsa.PrivateKey); !got.Equal(key) {
		t.Fatal("key pair holds another key")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || leaf.SerialNumber.Int64() != 7 {
		t.Fatalf("key pair certificate: serial %v, err %v", leaf.SerialNumber, err)
	}
}
