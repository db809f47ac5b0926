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
	"log/slog"
	"os"
	"path/filepath"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Certificate renewal: the agent renews its client certificate over its
// current mTLS connection (AgentService.Renew) when the controller advises
// it (RenewAdvice: a CA rotation is under way, or the certificate expires
// soon) or on its own when the certificate expires within RenewBefore
// (checked at every session start and every RenewCheck). The new key and
// certificate are written so that a crash at any point leaves either the old
// or the new pair on disk (see writeRenewal), then the session ends and Run
// reconnects on a new connection with the new certificate. A failed renewal
// is retried with backoff and never ends the session.

// Renewal defaults.
const (
	DefaultRenewBefore = 30 * 24 * time.Hour
	DefaultRenewCheck  = 24 * time.Hour
	// renewRetryMax caps the backoff between failed renewals.
	renewRetryMax = 5 * time.Minute
	renewTimeout  = 30 * time.Second
)

// Files of a renewal being written; LoadIdentity completes or drops them.
const (
	KeyNextFile  = "key.pem.next"
	CertNextFile = "cert.pem.next"
)

// errRenewed ends a session after a renewal so that Run reconnects with the
// new certificate.
var errRenewed = errors.New("certificate renewed")

// Identity returns the identity in use (it changes after a renewal).
func (c *Client) Identity() *Identity { return c.ident.Load() }

// renewLoop runs for one session: it renews on advice, at start when the
// certificate expires within RenewBefore, and checks that again every
// RenewCheck. It returns errRenewed after a renewal, nil when ctx ends.
func (c *Client) renewLoop(ctx context.Context) error {
	check := time.NewTicker(c.cfg.RenewCheck)
	defer check.Stop()
	due := func() string {
		leaf := leafOf(c.ident.Load())
		if leaf != nil && time.Until(leaf.NotAfter) < c.cfg.RenewBefore {
			return "certificate expires at " + leaf.NotAfter.UTC().Format(time.RFC3339)
		}
		return ""
	}
	reason := due()
	for {
		if reason != "" {
			if c.cfg.StateDir == "" {
				c.log.Warn("certificate renewal needed but no state dir is configured", slog.String("reason", reason))
			} else if c.renewRetrying(ctx, reason) {
				return errRenewed
			}
			if ctx.Err() != nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case reason = <-c.renewNow:
		case <-check.C:
			reason = due()
		}
	}
}

// renewRetrying renews until it succeeds (true) or ctx ends (false).
func (c *Client) renewRetrying(ctx context.Context, reason string) bool {
	b := newBackoff(c.cfg.BackoffMin, max(c.cfg.BackoffMax, renewRetryMax))
	for {
		c.log.Info("certificate renewal started", slog.String("reason", reason))
		err := c.renew(ctx)
		if err == nil {
			select {
			case <-c.renewNow: // advice that came meanwhile is answered
			default:
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d := b.next()
		c.log.Warn("certificate renewal failed; retrying", slog.Any("error", err), slog.Duration("retry_in", d))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
		case <-c.renewNow: // advised again: the retry is already pending
		}
	}
}

// renew makes a new key and CSR, calls Renew, checks and writes the answer
// and puts the new identity in force for new connections.
func (c *Client) renew(ctx context.Context) error {
	id := c.ident.Load()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("renew: generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id.AgentID}}, key)
	if err != nil {
		return fmt.Errorf("renew: create csr: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	resp, err := c.api.Renew(cctx, &vantagev1.RenewRequest{CsrDer: csr})
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	next, err := renewedIdentity(id, key, resp)
	if err != nil {
		return err
	}
	c.log.Info("certificate renewal received", slog.String("serial", next.Cert.Leaf.SerialNumber.Text(16)),
		slog.Time("not_after", next.Cert.Leaf.NotAfter))
	if err := writeRenewal(c.cfg.StateDir, key, resp); err != nil {
		return err
	}
	c.ident.Store(next)
	c.log.Info("certificate renewed; reconnecting with it", slog.String("serial", next.Cert.Leaf.SerialNumber.Text(16)))
	return nil
}

// renewedIdentity checks a RenewResponse against the request (our key, our
// agent id, a certificate the new bundle verifies) and builds the identity.
func renewedIdentity(id *Identity, key *ecdsa.PrivateKey, resp *vantagev1.RenewResponse) (*Identity, error) {
	b, _ := pem.Decode(resp.GetCertificatePem())
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("renew: certificate_pem: no CERTIFICATE block")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("renew: certificate_pem: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, errors.New("renew: certificate_pem: certificate is not for our key")
	}
	if leaf.Subject.CommonName != id.AgentID {
		return nil, fmt.Errorf("renew: certificate_pem: common name %q is not our agent id %q", leaf.Subject.CommonName, id.AgentID)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(resp.GetCaBundlePem()) {
		return nil, errors.New("renew: ca_bundle_pem: no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: cas, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("renew: certificate_pem: does not verify against ca_bundle_pem: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key, Leaf: leaf}
	return &Identity{AgentID: id.AgentID, Epoch: id.Epoch, Cert: cert, CAs: cas}, nil
}

// writeRenewal stores a renewal so that a crash at any point leaves a
// usable pair: ca.pem (the new bundle always holds the CA of the
// controller's serving certificate) first, then key.pem.next and
// cert.pem.next, then both renamed over key.pem and cert.pem. LoadIdentity
// completes a renewal whose .next files are complete (finishRenewal). Every
// file is fsynced before its rename, and the directory after.
func writeRenewal(dir string, key *ecdsa.PrivateKey, resp *vantagev1.RenewResponse) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("renew: marshal key: %w", err)
	}
	steps := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{CAFile, resp.GetCaBundlePem(), 0o644},
		{KeyNextFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600},
		{CertNextFile, resp.GetCertificatePem(), 0o644},
	}
	for _, s := range steps {
		if err := writeFileAtomic(filepath.Join(dir, s.name), s.data, s.mode); err != nil {
			return fmt.Errorf("renew: %w", err)
		}
	}
	if err := finishRenewal(dir); err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	return nil
}

// finishRenewal completes or drops a renewal left in dir: when
// cert.pem.next pairs with key.pem.next (or, once that was renamed, with
// key.pem), both become key.pem and cert.pem; otherwise the .next files are
// removed and the old pair stays.
func finishRenewal(dir string) error {
	nextKey, nextCert := filepath.Join(dir, KeyNextFile), filepath.Join(dir, CertNextFile)
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)
	if _, err := os.Stat(nextCert); errors.Is(err, os.ErrNotExist) {
		if err := os.Remove(nextKey); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	pairKey := nextKey
	if _, err := os.Stat(nextKey); errors.Is(err, os.ErrNotExist) {
		pairKey = keyPath // key.pem.next was renamed already
	}
	if _, err := tls.LoadX509KeyPair(nextCert, pairKey); err != nil {
		return errors.Join(os.Remove(nextCert), ignoreNotExist(os.Remove(nextKey)))
	}
	if pairKey == nextKey {
		if err := os.Rename(nextKey, keyPath); err != nil {
			return err
		}
	}
	if err := os.Rename(nextCert, certPath); err != nil {
		return err
	}
	return syncDir(dir)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// leafOf returns the identity's parsed certificate, nil when it has none.
func leafOf(id *Identity) *x509.Certificate {
	if id == nil || len(id.Cert.Certificate) == 0 {
		return nil
	}
	if id.Cert.Leaf != nil {
		return id.Cert.Leaf
	}
	leaf, err := x509.ParseCertificate(id.Cert.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// redial replaces the connection with one using the current identity; it
// runs in Run between sessions. On failure the old connection stays.
func (c *Client) redial() {
	conn, err := dial(c.cfg, c.host, c.ident.Load())
	if err != nil {
		c.log.Warn("reconnect with renewed certificate failed; keeping the old connection", slog.Any("error", err))
		return
	}
	old := c.conn
	c.conn, c.api = conn, vantagev1.NewAgentServiceClient(conn)
	old.Close()
	c.log.Info("connection replaced for the renewed certificate")
}
