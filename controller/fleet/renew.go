package fleet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/vantage-net/vantage/controller/store"
)

// DefaultRenewBefore is how long before its expiry an agent certificate is
// renewed (Options.RenewBefore).
const DefaultRenewBefore = 30 * 24 * time.Hour

// Renewal is the outcome of Renew.
type Renewal struct {
	AgentID        string
	CertificatePEM []byte
	// CABundlePEM is what the agent must trust from now on (as Enroll's).
	CABundlePEM []byte
	Serial      string
}

// ValidateCSR checks a CSR's size, signature and key type: the checks of
// both Enroll and Renew.
func ValidateCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 || len(der) > MaxCSRBytes {
		return nil, fmt.Errorf("%w: csr_der: size %d not in 1..%d bytes", ErrBadCSR, len(der), MaxCSRBytes)
	}
	return CheckCSR(der)
}

// peerLeaf returns the verified client certificate of the gRPC peer in ctx.
func peerLeaf(ctx context.Context) (*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, ErrNoClientCert
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil, ErrNoClientCert
	}
	return ti.State.VerifiedChains[0][0], nil
}

// Renew issues a new client certificate for the agent authenticated by the
// verified client certificate of the gRPC peer in ctx (the same checks as
// a session: known, ACTIVE, a serial the store accepts), for the public key
// of csrDER. The agent id comes from the certificate, never from the CSR.
// The certificate the agent presented stays accepted until it opens a
// session with the new one (SessionOpened).
func (f *Fleet) Renew(ctx context.Context, csrDER []byte) (Renewal, error) {
	leaf, err := peerLeaf(ctx)
	if err != nil {
		return Renewal{}, err
	}
	a, err := f.AgentFromCert(ctx, leaf)
	if err != nil {
		return Renewal{}, err
	}
	csr, err := ValidateCSR(csrDER)
	if err != nil {
		return Renewal{}, err
	}
	now := f.now()
	certPEM, serial, err := f.ca.SignClient(csr, a.ID, now)
	if err != nil {
		return Renewal{}, err
	}
	presented := leaf.SerialNumber.Text(16)
	audit := store.AuditEntry{At: now, Actor: "agent:" + a.ID, Action: "agent.renew", Subject: a.ID,
		Detail: fmt.Sprintf("serial=%s previous=%s ca=%s", serial, presented, CAHash(f.ca.signer().Cert)[:19])}
	if err := f.st.RenewAgentCert(ctx, a.ID, presented, serial, audit); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// Revoked (or renewed from elsewhere) since AgentFromCert.
			return Renewal{}, fmt.Errorf("%w: %s: %w", ErrAgentRevoked, a.ID, err)
		}
		return Renewal{}, fmt.Errorf("renew %s: %w", a.ID, err)
	}
	f.log.Info("agent certificate renewed", slog.String("agent", a.ID), slog.String("serial", serial),
		slog.String("previous", presented))
	return Renewal{AgentID: a.ID, CertificatePEM: certPEM, CABundlePEM: f.ca.BundlePEM(), Serial: serial}, nil
}

// RenewReason says why leaf should be renewed now ("" when it need not):
// it was not issued by the CA that signs (a CA rotation is under way), or
// it expires within Options.RenewBefore.
func (f *Fleet) RenewReason(leaf *x509.Certificate) string {
	if err := leaf.CheckSignatureFrom(f.ca.signer().Cert); err != nil {
		return "certificate not issued by the signing CA (CA rotation in progress)"
	}
	if left := leaf.NotAfter.Sub(f.now()); left < f.renewBefore {
		return fmt.Sprintf("certificate expires at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return ""
}

// SessionOpened is called once an agent's session is established: a
// session with the certificate of the agent's last renewal makes the
// previous certificate invalid. It returns RenewReason for the peer's
// certificate.
func (f *Fleet) SessionOpened(ctx context.Context, agentID string) (string, error) {
	leaf, err := peerLeaf(ctx)
	if err != nil {
		return "", err
	}
	serial := leaf.SerialNumber.Text(16)
	confirmed, err := f.st.ConfirmAgentCert(ctx, agentID, serial)
	if err != nil {
		return "", fmt.Errorf("confirm %s certificate: %w", agentID, err)
	}
	if confirmed {
		f.log.Info("agent renewed certificate in use; previous one retired", slog.String("agent", agentID),
			slog.String("serial", serial))
	}
	return f.RenewReason(leaf), nil
}
