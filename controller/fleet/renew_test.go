package fleet

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRenewReason: a certificate of the current CA is advised to renew
// during a rotation, one of the next CA is not; any certificate expiring
// within RenewBefore is.
func TestRenewReason(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, _, err := LoadOrCreateCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	old := clientCert(t, ca, "agt-0000000000000001", now)
	if err := RotateCA(dir, now); err != nil {
		t.Fatal(err)
	}
	rotating, _, err := LoadOrCreateCA(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	next := clientCert(t, rotating, "agt-0000000000000001", now)
	clock := func() time.Time { return now }
	tests := []struct {
		name string
		ca   *CA
		opts Options
		cert int // 0 old, 1 next
		want string
	}{
		{"no rotation, fresh", ca, Options{}, 0, ""},
		{"rotation, current CA", rotating, Options{}, 0, "not issued by the signing CA"},
		{"rotation, next CA", rotating, Options{}, 1, ""},
		{"expiring", ca, Options{RenewBefore: ClientCertValidity + time.Hour}, 0, "expires at"},
		{"default window", ca, Options{Now: func() time.Time { return now.Add(ClientCertValidity - DefaultRenewBefore + time.Hour) }}, 0, "expires at"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Now == nil {
				tc.opts.Now = clock
			}
			f := New(nil, tc.ca, tc.opts)
			got := f.RenewReason([]*x509.Certificate{old, next}[tc.cert])
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("RenewReason = %q; want %q", got, tc.want)
			}
		})
	}
}

func TestValidateCSR(t *testing.T) {
	tests := []struct {
		name string
		der  []byte
		want string
	}{
		{"empty", nil, "csr_der: size 0"},
		{"too big", make([]byte, MaxCSRBytes+1), "csr_der: size 4097"},
		{"garbage", []byte("x"), "csr_der"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ValidateCSR(tc.der)
			if !errors.Is(err, ErrBadCSR) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ValidateCSR = %v; want ErrBadCSR naming %q", err, tc.want)
			}
		})
	}
}
