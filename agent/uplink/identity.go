package uplink

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Files in the agent's state directory.
const (
	KeyFile   = "key.pem"
	CertFile  = "cert.pem"
	CAFile    = "ca.pem"
	StateFile = "state.json"
)

// Sentinel errors.
var (
	// ErrPinMismatch: no certificate in the controller's chain has the pinned
	// CA hash, or the chain does not verify against it.
	ErrPinMismatch = errors.New("controller certificate does not match the CA pin")
	// ErrNotEnrolled: the state directory has no certificate yet.
	ErrNotEnrolled = errors.New("agent not enrolled")
	// ErrBadFlag: a required enrolment parameter is missing or malformed.
	ErrBadFlag = errors.New("bad enrolment parameter")
)

// Identity is the agent's enrolled identity, loaded from its state
// directory. The agent id is the certificate's CommonName.
type Identity struct {
	AgentID string
	// Epoch is bumped at every load (every agent start); sequence numbers
	// restart at 1 in each epoch.
	Epoch uint64
	Cert  tls.Certificate
	CAs   *x509.CertPool
}

type stateJSON struct {
	AgentID string `json:"agent_id"`
	Epoch   uint64 `json:"epoch"`
}

// EnrollConfig says how to enrol.
type EnrollConfig struct {
	// Controller is host:port.
	Controller string
	StateDir   string
	JoinToken  string
	// CAHash pins the controller's CA: "sha256:<hex of SubjectPublicKeyInfo>".
	CAHash string
	Name   string
	Labels map[string]string
	Logger *slog.Logger
}

// CAHash is the pin of a CA certificate, as kubeadm computes it.
func CAHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Enrolled reports whether stateDir holds a certificate.
func Enrolled(stateDir string) bool {
	_, err := os.Stat(filepath.Join(stateDir, CertFile))
	return err == nil
}

// EnsureIdentity enrols when the state directory has no certificate yet
// (retrying while the controller is unreachable) and then loads the identity,
// bumping the epoch.
func EnsureIdentity(ctx context.Context, cfg EnrollConfig) (*Identity, error) {
	if !Enrolled(cfg.StateDir) {
		backoff := newBackoff(250*time.Millisecond, 10*time.Second)
		for {
			_, err := Enroll(ctx, cfg)
			if err == nil {
				break
			}
			if status.Code(err) != codes.Unavailable || errors.Is(err, ErrPinMismatch) {
				return nil, err
			}
			d := backoff.next()
			cfg.Logger.Warn("enrolment failed; retrying", slog.Any("error", err), slog.Duration("retry_in", d))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
		}
	}
	return loadWhenWritable(ctx, cfg)
}

// StateRetry is how often an agent whose state directory refuses writes
// (full, over quota) tries again to bump its epoch at start.
var StateRetry = 5 * time.Second

// loadWhenWritable is LoadIdentity, waiting while the state directory's
// disk is full: the epoch must be bumped on disk before any result is
// numbered, and exiting instead would make a supervisor restart the agent
// in a loop. It logs at the first failure and every minute after.
func loadWhenWritable(ctx context.Context, cfg EnrollConfig) (*Identity, error) {
	var since, logged time.Time
	for {
		id, err := LoadIdentity(cfg.StateDir)
		if err == nil || !diskFull(err) {
			if err == nil && !since.IsZero() {
				cfg.Logger.Info("state directory writable again", slog.Duration("waited", time.Since(since).Round(time.Second)))
			}
			return id, err
		}
		now := time.Now()
		if since.IsZero() {
			since = now
		}
		if now.Sub(logged) >= time.Minute {
			cfg.Logger.Warn("state directory refuses writes; waiting for space", slog.String("dir", cfg.StateDir),
				slog.Any("error", err), slog.Duration("retry_every", StateRetry))
			logged = now
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(StateRetry):
		}
	}
}

// diskFull reports whether err is a write refused for lack of space.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func parsePin(pin string) ([]byte, error) {
	hexPart, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(pin)), "sha256:")
	if !ok {
		return nil, fmt.Errorf("--ca-hash %q: want sha256:<64 hex digits>: %w", pin, ErrBadFlag)
	}
	b, err := hex.DecodeString(hexPart)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("--ca-hash %q: want sha256:<64 hex digits>: %w", pin, ErrBadFlag)
	}
	return b, nil
}

// pinnedTLS verifies the controller by the CA pin instead of a trust store:
// some certificate in the presented chain must have the pinned SPKI hash,
// and the leaf must verify against it for serverName. The first verification
// failure is stored in *verr so Enroll can return it unwrapped from gRPC.
func pinnedTLS(serverName string, pin []byte, verr *error) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		// Verification is done by VerifyConnection against the pin.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := verifyPinned(cs.PeerCertificates, serverName, pin)
			if err != nil && *verr == nil {
				*verr = err
			}
			return err
		},
	}
}

func verifyPinned(chain []*x509.Certificate, serverName string, pin []byte) error {
	if len(chain) == 0 {
		return fmt.Errorf("no certificate presented: %w", ErrPinMismatch)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	found := false
	for _, c := range chain {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		if string(sum[:]) == string(pin) {
			roots.AddCert(c)
			found = true
		} else {
			inter.AddCert(c)
		}
	}
	if !found {
		return fmt.Errorf("none of %d certificates has the pinned hash: %w", len(chain), ErrPinMismatch)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, DNSName: serverName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("server certificate does not verify against the pinned CA: %v: %w", err, ErrPinMismatch)
	}
	return nil
}

// Enroll generates a key, sends a CSR with the join token over pinned TLS,
// and writes key.pem (0600), cert.pem, ca.pem and state.json.
func Enroll(ctx context.Context, cfg EnrollConfig) (*vantagev1.EnrollResponse, error) {
	if cfg.JoinToken == "" {
		return nil, fmt.Errorf("--join-token: required to enrol (state dir %s has no %s): %w", cfg.StateDir, CertFile, ErrBadFlag)
	}
	pin, err := parsePin(cfg.CAHash)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(cfg.Controller)
	if err != nil {
		return nil, fmt.Errorf("--controller %q: want host:port: %w", cfg.Controller, ErrBadFlag)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("enroll: generate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cfg.Name}}, key)
	if err != nil {
		return nil, fmt.Errorf("enroll: create csr: %w", err)
	}
	var verr error
	conn, err := grpc.NewClient(cfg.Controller, grpc.WithTransportCredentials(credentials.NewTLS(pinnedTLS(host, pin, &verr))))
	if err != nil {
		return nil, fmt.Errorf("enroll: dial %s: %w", cfg.Controller, err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := vantagev1.NewAgentServiceClient(conn).Enroll(cctx, &vantagev1.EnrollRequest{
		JoinToken: cfg.JoinToken, CsrDer: csr, Name: cfg.Name, Labels: cfg.Labels,
	})
	if verr != nil {
		return nil, fmt.Errorf("enroll: %w", verr)
	}
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if err := writeEnrolment(cfg.StateDir, key, resp); err != nil {
		return nil, err
	}
	cfg.Logger.Info("enrolled", slog.String("agent_id", resp.GetAgentId()), slog.Bool("approval_pending", resp.GetApprovalPending()))
	return resp, nil
}

func writeEnrolment(dir string, key *ecdsa.PrivateKey, resp *vantagev1.EnrollResponse) error {
	certBlock, _ := pem.Decode(resp.GetCertificatePem())
	if certBlock == nil {
		return fmt.Errorf("enroll: certificate_pem: no PEM block")
	}
	leaf, err := x509.ParseCertificate(certBlock.Bytes)
	if err != nil {
		return fmt.Errorf("enroll: certificate_pem: %w", err)
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return fmt.Errorf("enroll: certificate_pem: certificate is not for our key")
	}
	if len(resp.GetCaBundlePem()) == 0 || !x509.NewCertPool().AppendCertsFromPEM(resp.GetCaBundlePem()) {
		return fmt.Errorf("enroll: ca_bundle_pem: no certificate")
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("enroll: marshal key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("enroll: state dir: %w", err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600},
		{CAFile, resp.GetCaBundlePem(), 0o644},
		{StateFile, mustJSON(stateJSON{AgentID: leaf.Subject.CommonName}), 0o644},
		// cert.pem last: its presence means "enrolled".
		{CertFile, resp.GetCertificatePem(), 0o644},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("enroll: %w", err)
		}
	}
	return nil
}

// LoadIdentity reads the state directory and bumps the epoch on disk. A
// certificate renewal interrupted by a crash is completed first, or
// dropped when its files are incomplete.
func LoadIdentity(dir string) (*Identity, error) {
	if !Enrolled(dir) {
		return nil, fmt.Errorf("state dir %s: %w", dir, ErrNotEnrolled)
	}
	if err := finishRenewal(dir); err != nil { // a renewal cut short by a crash
		return nil, fmt.Errorf("load identity: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("load identity: %s: %w", CertFile, err)
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("load identity: %s: no certificate", CAFile)
	}
	var st stateJSON
	if b, err := os.ReadFile(filepath.Join(dir, StateFile)); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("load identity: %s: %w", StateFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	st.AgentID = leaf.Subject.CommonName // the certificate is the truth
	st.Epoch++
	if err := writeFileAtomic(filepath.Join(dir, StateFile), mustJSON(st), 0o644); err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	return &Identity{AgentID: st.AgentID, Epoch: st.Epoch, Cert: cert, CAs: cas}, nil
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only called with plain structs
	}
	return append(b, '\n')
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
