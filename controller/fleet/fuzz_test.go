package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
)

// FuzzCheckCSR feeds arbitrary DER to the enrolment's CSR check: it must
// refuse or accept without panicking, and whatever it accepts must carry a
// verified signature over an allowed key.
func FuzzCheckCSR(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "agt-0000000000000001"}}, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(der[:len(der)/2])
	f.Add([]byte{0x30, 0x82, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > MaxCSRBytes {
			return // Enroll refuses these before parsing
		}
		csr, err := CheckCSR(b)
		if err != nil {
			if !errors.Is(err, ErrBadCSR) {
				t.Fatalf("CheckCSR error %v does not wrap ErrBadCSR", err)
			}
			return
		}
		if csr.CheckSignature() != nil {
			t.Fatal("CheckCSR accepted a CSR whose signature does not verify")
		}
	})
}

// FuzzEnrollFields runs the enrolment request's field validation (name,
// labels) on arbitrary input.
func FuzzEnrollFields(f *testing.F) {
	f.Add("vps-fra-1", "role", "vps")
	f.Add("", "", "")
	f.Add("a\x00b", "k/ey", "v\xff")
	f.Fuzz(func(t *testing.T, name, k, v string) {
		if err := ValidateName("name", name); err == nil && (len(name) == 0 || len(name) > MaxNameLen) {
			t.Fatalf("ValidateName accepted %q", name)
		}
		_ = ValidateLabels("labels", map[string]string{k: v})
	})
}
