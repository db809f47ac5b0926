package fleet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files of a CA rotation in progress (see RotateCA).
const (
	CANextCertFile     = "ca-next.pem"
	CANextKeyFile      = "ca-next-key.pem"
	CAPreviousCertFile = "ca-previous.pem"
)

// RotateCA starts a CA rotation in dir: it creates the next CA
// (ca-next.pem, ca-next-key.pem 0600) beside the current one. A controller
// started on dir during the rotation keeps serving with a certificate of
// the current CA (so every agent still verifies it), trusts client
// certificates of both CAs, signs new enrolments with the next CA and
// hands out both CA certificates as the bundle. Once every agent has
// re-enrolled, FinishCARotation makes the next CA current.
func RotateCA(dir string, now time.Time) error {
	if _, err := os.Stat(filepath.Join(dir, CACertFile)); err != nil {
		return fmt.Errorf("no current CA: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CANextCertFile)); err == nil {
		return fmt.Errorf("a rotation is already in progress (%s exists): finish it first", CANextCertFile)
	}
	_, err := createCA(filepath.Join(dir, CANextCertFile), filepath.Join(dir, CANextKeyFile), now)
	return err
}

// FinishCARotation makes the next CA current: ca.pem is kept as
// ca-previous.pem (certificate only; its key is deleted), and ca-next*.pem
// become ca.pem and ca-key.pem. Agents still holding a certificate of the
// previous CA are refused from the next start.
func FinishCARotation(dir string) error {
	next, nextKey := filepath.Join(dir, CANextCertFile), filepath.Join(dir, CANextKeyFile)
	if _, err := os.Stat(next); err != nil {
		return fmt.Errorf("no rotation in progress: %w", err)
	}
	cur, curKey := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	if err := os.Rename(cur, filepath.Join(dir, CAPreviousCertFile)); err != nil {
		return err
	}
	if err := os.Remove(curKey); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(nextKey, curKey); err != nil {
		return err
	}
	return os.Rename(next, cur)
}

// loadNext loads the next CA of a rotation in progress, nil when none.
func loadNext(dir string) (*CA, error) {
	certPEM, cerr := os.ReadFile(filepath.Join(dir, CANextCertFile))
	keyPEM, kerr := os.ReadFile(filepath.Join(dir, CANextKeyFile))
	switch {
	case errors.Is(cerr, os.ErrNotExist) && errors.Is(kerr, os.ErrNotExist):
		return nil, nil
	case cerr != nil:
		return nil, fmt.Errorf("read %s: %w", CANextCertFile, cerr)
	case kerr != nil:
		return nil, fmt.Errorf("read %s: %w", CANextKeyFile, kerr)
	}
	ca, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CANextCertFile, err)
	}
	return ca, nil
}

// Rotating reports whether a CA rotation is in progress.
func (ca *CA) Rotating() bool { return ca.next != nil }

// BundlePEM is what enrolled agents trust: the current CA, and the next
// one during a rotation.
func (ca *CA) BundlePEM() []byte {
	if ca.next == nil {
		return ca.CertPEM
	}
	return append(slices.Clone(ca.CertPEM), ca.next.CertPEM...)
}

// signer is the CA that signs new client certificates: the next one
// during a rotation.
func (ca *CA) signer() *CA {
	if ca.next != nil {
		return ca.next
	}
	return ca
}
