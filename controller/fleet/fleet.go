// Package fleet is the controller's trust root: its own CA, join tokens,
// agent enrolment, agent identity from verified client certificates, and
// operator bearer tokens with roles. It exists so that every decision about
// "who is this and may it do that" is made in one place, above the store
// and below the gRPC services.
package fleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// AdminTokenFile is the admin operator token inside the data directory.
const AdminTokenFile = "admin.token"

// Limits on enrolment input.
const (
	MaxCSRBytes      = 4 << 10
	MaxNameLen       = 64
	MaxLabels        = 32
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 128
	DefaultTokenTTL  = time.Hour
	MaxTokenTTL      = 30 * 24 * time.Hour
)

// Sentinel errors; the gRPC layers map them to codes in one table each.
var (
	// ErrInvalid: a request field is malformed (InvalidArgument).
	ErrInvalid = errors.New("invalid argument")
	// ErrBadCSR: the CSR does not parse, verify or use an allowed key.
	ErrBadCSR = fmt.Errorf("%w: bad csr", ErrInvalid)
	// ErrNoClientCert: the peer presented no verified client certificate.
	ErrNoClientCert = errors.New("no verified client certificate")
	// ErrUnknownAgent: the certificate names no enrolled agent.
	ErrUnknownAgent = errors.New("unknown agent")
	// ErrAgentRevoked: the agent was revoked.
	ErrAgentRevoked = errors.New("agent revoked")
	// ErrAgentPending: the agent awaits approval.
	ErrAgentPending = errors.New("agent awaiting approval")
	// ErrBadOperatorToken: missing or unknown bearer token.
	ErrBadOperatorToken = errors.New("missing or unknown operator token")
)

// Options configures a Fleet.
type Options struct {
	// ApproveAgents makes new agents PENDING until an admin approves them.
	ApproveAgents bool
	// RenewBefore: agents are advised to renew a certificate expiring
	// within it (DefaultRenewBefore when 0).
	RenewBefore time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	Log *slog.Logger
}

// Registry is what the fleet keeps in the store: agents' enrolment and
// certificate serials, join tokens and operator tokens.
type Registry interface {
	EnrollAgent(ctx context.Context, joinTokenHash string, now time.Time, a store.Agent) (store.Agent, error)
	GetAgent(ctx context.Context, id string) (store.Agent, error)
	AgentCertSerials(ctx context.Context, id string) (current, previous string, err error)
	RenewAgentCert(ctx context.Context, id, presented, newSerial string, audit store.AuditEntry) error
	ConfirmAgentCert(ctx context.Context, id, serial string) (bool, error)
	CreateJoinToken(ctx context.Context, t store.JoinToken, audit store.AuditEntry) error
	PutOperatorToken(ctx context.Context, t store.OperatorToken) error
	OperatorTokenByHash(ctx context.Context, hash string) (store.OperatorToken, error)
}

// Fleet manages enrolment and identities.
type Fleet struct {
	st          Registry
	ca          *CA
	approve     bool
	renewBefore time.Duration
	now         func() time.Time
	log         *slog.Logger
}

// New returns a Fleet over st, signing with ca.
func New(st Registry, ca *CA, opts Options) *Fleet {
	f := &Fleet{st: st, ca: ca, approve: opts.ApproveAgents, renewBefore: opts.RenewBefore, now: opts.Now, log: opts.Log}
	if f.renewBefore <= 0 {
		f.renewBefore = DefaultRenewBefore
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	return f
}

// CA returns the fleet's CA.
func (f *Fleet) CA() *CA { return f.ca }

// HashSecret is how tokens are stored: hex(sha256(secret)).
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// NewAgentID returns "agt-" followed by 16 random hex characters.
func NewAgentID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "agt-" + hex.EncodeToString(b)
}

// JoinTokenRequest is what CreateJoinToken needs.
type JoinTokenRequest struct {
	TTL     time.Duration // 0: DefaultTokenTTL
	MaxUses uint32        // 0: unlimited until expiry
	Labels  map[string]string
	Actor   string
}

// CreateJoinToken makes a random 32-byte join token, stores its hash and
// returns the secret and its expiry.
func (f *Fleet) CreateJoinToken(ctx context.Context, req JoinTokenRequest) (string, time.Time, error) {
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return "", time.Time{}, fmt.Errorf("%w: ttl_s: must be at most %d", ErrInvalid, int(MaxTokenTTL/time.Second))
	}
	if err := ValidateLabels("labels", req.Labels); err != nil {
		return "", time.Time{}, err
	}
	now := f.now()
	secret := newSecret()
	t := store.JoinToken{Hash: HashSecret(secret), ExpiresAt: now.Add(ttl), MaxUses: req.MaxUses,
		Labels: req.Labels, CreatedBy: req.Actor, CreatedAt: now}
	audit := store.AuditEntry{At: now, Actor: req.Actor, Action: "token.join.create", Subject: t.Hash[:12],
		Detail: fmt.Sprintf("ttl=%s max_uses=%d", ttl, req.MaxUses)}
	if err := f.st.CreateJoinToken(ctx, t, audit); err != nil {
		return "", time.Time{}, fmt.Errorf("create join token: %w", err)
	}
	return secret, t.ExpiresAt, nil
}

// ValidateName checks an agent name: 1..64 chars of [a-zA-Z0-9._-].
func ValidateName(field, s string) error {
	if len(s) < 1 || len(s) > MaxNameLen {
		return fmt.Errorf("%w: %s: length %d not in 1..%d", ErrInvalid, field, len(s), MaxNameLen)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %s: character %q not allowed (want [a-zA-Z0-9._-])", ErrInvalid, field, c)
		}
	}
	return nil
}

// ValidateLabels bounds a label map: at most 32 entries, keys 1..63 chars
// of [a-zA-Z0-9._/-], values at most 128 printable ASCII characters.
func ValidateLabels(field string, m map[string]string) error {
	if len(m) > MaxLabels {
		return fmt.Errorf("%w: %s: %d labels, at most %d", ErrInvalid, field, len(m), MaxLabels)
	}
	for k, v := range m {
		if len(k) < 1 || len(k) > MaxLabelKeyLen {
			return fmt.Errorf("%w: %s: key %.70q: length %d not in 1..%d", ErrInvalid, field, k, len(k), MaxLabelKeyLen)
		}
		for _, c := range k {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._/-", c)) {
				return fmt.Errorf("%w: %s: key %q: character %q not allowed", ErrInvalid, field, k, c)
			}
		}
		if len(v) > MaxLabelValueLen {
			return fmt.Errorf("%w: %s[%s]: value longer than %d", ErrInvalid, field, k, MaxLabelValueLen)
		}
		for _, c := range v {
			if c < 0x20 || c > 0x7e {
				return fmt.Errorf("%w: %s[%s]: value has non-printable character %q", ErrInvalid, field, k, c)
			}
		}
	}
	return nil
}

// EnrollRequest is an agent's enrolment.
type EnrollRequest struct {
	JoinToken string
	CSRDER    []byte
	Name      string
	Labels    map[string]string
}

// Enrollment is the outcome of Enroll.
type Enrollment struct {
	AgentID         string
	CertificatePEM  []byte
	CABundlePEM     []byte
	ApprovalPending bool
}

// Enroll validates the request, consumes one use of the join token, stores
// the agent and signs its client certificate. Bad fields give ErrInvalid,
// checked first, so that whoever logs a refused enrolment's name (ingest,
// on a bad token) logs a valid one, 64 characters at most; a bad token
// gives store.ErrTokenInvalid.
func (f *Fleet) Enroll(ctx context.Context, req EnrollRequest) (Enrollment, error) {
	if err := ValidateName("name", req.Name); err != nil {
		return Enrollment{}, err
	}
	if err := ValidateLabels("labels", req.Labels); err != nil {
		return Enrollment{}, err
	}
	if req.JoinToken == "" || len(req.JoinToken) > 256 {
		return Enrollment{}, fmt.Errorf("join_token: %w", store.ErrTokenInvalid)
	}
	csr, err := ValidateCSR(req.CSRDER)
	if err != nil {
		return Enrollment{}, err
	}
	now := f.now()
	id := NewAgentID()
	certPEM, serial, err := f.ca.SignClient(csr, id, now)
	if err != nil {
		return Enrollment{}, err
	}
	state := vantagev1.AgentState_AGENT_STATE_ACTIVE
	if f.approve {
		state = vantagev1.AgentState_AGENT_STATE_PENDING
	}
	a := store.Agent{ID: id, Name: req.Name, Labels: maps.Clone(req.Labels), State: state, CertSerial: serial}
	if _, err := f.st.EnrollAgent(ctx, HashSecret(req.JoinToken), now, a); err != nil {
		return Enrollment{}, fmt.Errorf("enroll %s: %w", id, err)
	}
	f.log.Info("agent enrolled", slog.String("agent", id), slog.String("name", req.Name),
		slog.String("state", state.String()))
	return Enrollment{AgentID: id, CertificatePEM: certPEM, CABundlePEM: f.ca.BundlePEM(),
		ApprovalPending: state == vantagev1.AgentState_AGENT_STATE_PENDING}, nil
}

// AgentFromPeer returns the active agent named by the verified client
// certificate of the gRPC peer in ctx.
func (f *Fleet) AgentFromPeer(ctx context.Context) (store.Agent, error) {
	leaf, err := peerLeaf(ctx)
	if err != nil {
		return store.Agent{}, err
	}
	return f.AgentFromCert(ctx, leaf)
}

// AgentFromCert checks an already verified leaf certificate against the
// store: its serial must be the agent's current one, or the previous one
// while a renewal has not been used yet.
func (f *Fleet) AgentFromCert(ctx context.Context, leaf *x509.Certificate) (store.Agent, error) {
	id := leaf.Subject.CommonName
	if !strings.HasPrefix(id, "agt-") {
		return store.Agent{}, fmt.Errorf("%w: certificate CN %q", ErrUnknownAgent, id)
	}
	a, err := f.st.GetAgent(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return store.Agent{}, fmt.Errorf("%w: %s", ErrUnknownAgent, id)
	}
	if err != nil {
		return store.Agent{}, err
	}
	if serial := leaf.SerialNumber.Text(16); a.CertSerial != "" && a.CertSerial != serial {
		_, prev, err := f.st.AgentCertSerials(ctx, id)
		if err != nil {
			return store.Agent{}, err
		}
		if prev != serial {
			return store.Agent{}, fmt.Errorf("%w: %s: certificate serial does not match enrolment", ErrUnknownAgent, id)
		}
	}
	switch a.State {
	case vantagev1.AgentState_AGENT_STATE_ACTIVE:
		return a, nil
	case vantagev1.AgentState_AGENT_STATE_PENDING:
		return a, fmt.Errorf("%w: %s", ErrAgentPending, id)
	default:
		return a, fmt.Errorf("%w: %s", ErrAgentRevoked, id)
	}
}

// CreateOperatorToken makes a random operator token with a name and role,
// on the controller's host (its audit actor is "controller").
func (f *Fleet) CreateOperatorToken(ctx context.Context, name string, role store.Role) (string, error) {
	return f.CreateOperatorTokenAs(ctx, "", name, role)
}

// CreateOperatorTokenAs is CreateOperatorToken by actor, an admin over the
// API, whom the audit entry names.
func (f *Fleet) CreateOperatorTokenAs(ctx context.Context, actor, name string, role store.Role) (string, error) {
	if err := ValidateName("name", name); err != nil {
		return "", err
	}
	if role < store.RoleViewer || role > store.RoleAdmin {
		return "", fmt.Errorf("%w: role: %d unknown", ErrInvalid, role)
	}
	secret := newSecret()
	t := store.OperatorToken{Name: name, Hash: HashSecret(secret), Role: role, CreatedAt: f.now(), CreatedBy: actor}
	if err := f.st.PutOperatorToken(ctx, t); err != nil {
		return "", fmt.Errorf("create operator token: %w", err)
	}
	return secret, nil
}

// Authenticate returns the operator token whose secret is given.
func (f *Fleet) Authenticate(ctx context.Context, secret string) (store.OperatorToken, error) {
	if secret == "" || len(secret) > 256 {
		return store.OperatorToken{}, ErrBadOperatorToken
	}
	t, err := f.st.OperatorTokenByHash(ctx, HashSecret(secret))
	if errors.Is(err, store.ErrNotFound) {
		return t, ErrBadOperatorToken
	}
	return t, err
}

// EnsureAdminToken makes sure <dir>/admin.token exists (mode 0600) and is
// stored as the admin token named "admin". It returns the file's path and
// whether it was created now.
func (f *Fleet) EnsureAdminToken(ctx context.Context, dir string) (string, bool, error) {
	path := filepath.Join(dir, AdminTokenFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		secret := strings.TrimSpace(string(b))
		if _, err := f.Authenticate(ctx, secret); err == nil {
			return path, false, nil
		} else if !errors.Is(err, ErrBadOperatorToken) {
			return "", false, err
		}
		// The file exists but the database does not know it (a fresh
		// vantage.db): register it again.
		t := store.OperatorToken{Name: "admin", Hash: HashSecret(secret), Role: store.RoleAdmin, CreatedAt: f.now()}
		err := f.st.PutOperatorToken(ctx, t)
		if errors.Is(err, store.ErrRevoked) {
			// Revoked (revoke-token --operator admin): never again. The
			// file gets a new admin token in its place.
			f.log.Warn("admin token file holds a revoked token; writing a new one", slog.String("path", path))
			return f.replaceAdminToken(ctx, path)
		}
		if err != nil {
			return "", false, fmt.Errorf("register %s: %w", path, err)
		}
		return path, false, nil
	case errors.Is(err, os.ErrNotExist):
	default:
		return "", false, fmt.Errorf("read %s: %w", path, err)
	}
	secret, err := f.CreateOperatorToken(ctx, "admin", store.RoleAdmin)
	if err != nil {
		return "", false, err
	}
	if err := writeFileExcl(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", false, err
	}
	return path, true, nil
}

// replaceAdminToken creates a new admin token and puts it in place of the
// file at path (written beside it, then renamed over it).
func (f *Fleet) replaceAdminToken(ctx context.Context, path string) (string, bool, error) {
	secret, err := f.CreateOperatorToken(ctx, "admin", store.RoleAdmin)
	if err != nil {
		return "", false, err
	}
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("remove %s: %w", tmp, err)
	}
	if err := writeFileExcl(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", false, fmt.Errorf("replace %s: %w", path, err)
	}
	return path, true, nil
}
