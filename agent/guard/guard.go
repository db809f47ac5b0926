// Package guard holds the agent's own hard limits. They apply whatever the
// controller says, so that even a compromised controller cannot turn an agent
// into an attack tool: special-purpose address ranges are refused, the global
// packet rate and payload sizes are capped, and expired or replayed commands
// (assignments, triggers) are refused. Every refusal is an error whose text
// names the field and the reason, so the controller can be told why.
package guard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
	"golang.org/x/time/rate"
)

// Sentinel errors; refusals wrap one of them.
var (
	ErrSpecialRange = errors.New("special-purpose address range")
	ErrExpired      = errors.New("expired")
	ErrStale        = errors.New("stale or replayed")
	ErrLimit        = errors.New("exceeds agent limit")
	ErrInvalid      = errors.New("invalid")
)

// Defaults for Config fields left zero.
const (
	DefaultMaxPPS          = 500
	DefaultMaxPayloadBytes = 1400
	DefaultMinRoundMs      = 1000
	DefaultMaxTimeoutMs    = 30000
	DefaultMaxTTL          = 64
)

// Config sets the limits. Zero values take the defaults above.
type Config struct {
	// AllowSpecialRanges permits loopback, RFC 1918 and the like (the lab).
	AllowSpecialRanges bool
	// MaxPPS caps probe packets per second across the whole agent.
	MaxPPS int
	// MaxPayloadBytes caps ICMP echo payloads.
	MaxPayloadBytes uint32
	// MinRoundMs is the shortest round the agent accepts.
	MinRoundMs uint32
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Guard enforces the limits. It is safe for concurrent use.
type Guard struct {
	cfg     Config
	limiter *rate.Limiter
	sent    atomic.Uint64

	mu       sync.Mutex
	version  uint64
	triggers map[string]time.Time // trigger id -> expiry, for replay refusal
}

// New returns a Guard with cfg's limits.
func New(cfg Config) *Guard {
	if cfg.MaxPPS <= 0 {
		cfg.MaxPPS = DefaultMaxPPS
	}
	if cfg.MaxPayloadBytes == 0 {
		cfg.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if cfg.MinRoundMs == 0 {
		cfg.MinRoundMs = DefaultMinRoundMs
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// A burst of a tenth of a second keeps bursts short but lets a trace
	// window leave at once.
	burst := max(cfg.MaxPPS/10, 1)
	return &Guard{
		cfg:      cfg,
		limiter:  rate.NewLimiter(rate.Limit(cfg.MaxPPS), burst),
		triggers: make(map[string]time.Time),
	}
}

// Wait blocks until one more probe packet may be sent under the global cap,
// and counts it as sent.
func (g *Guard) Wait(ctx context.Context) error {
	if err := g.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("guard: pps limiter: %w", err)
	}
	g.sent.Add(1)
	return nil
}

// ProbesSent is the number of probe packets let through since start.
func (g *Guard) ProbesSent() uint64 { return g.sent.Load() }

// MaxPayloadBytes is the payload cap in force.
func (g *Guard) MaxPayloadBytes() uint32 { return g.cfg.MaxPayloadBytes }

// CheckTarget parses target and refuses special-purpose addresses unless
// they are allowed.
func (g *Guard) CheckTarget(target string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(target)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("target %q: not an IP address: %w", target, ErrInvalid)
	}
	if addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("target %q: zoned addresses are not probed: %w", target, ErrInvalid)
	}
	addr = addr.Unmap()
	if g.cfg.AllowSpecialRanges {
		return addr, nil
	}
	if p, ok := SpecialRange(addr); ok {
		return netip.Addr{}, fmt.Errorf("target %s is in %s (use --allow-special-ranges in a lab): %w", addr, p, ErrSpecialRange)
	}
	return addr, nil
}

// CheckTask validates one task against the limits; the error names the field.
func (g *Guard) CheckTask(t *vantagev1.Task) error {
	if t == nil {
		return fmt.Errorf("task: missing: %w", ErrInvalid)
	}
	if t.GetId() == "" {
		return fmt.Errorf("task.id: empty: %w", ErrInvalid)
	}
	if _, err := g.CheckTarget(t.GetTarget()); err != nil {
		return fmt.Errorf("task.target: %w", err)
	}
	if t.GetExpiresAt() != nil && !g.cfg.Now().Before(t.GetExpiresAt().AsTime()) {
		return fmt.Errorf("task.expires_at %s: %w", t.GetExpiresAt().AsTime().Format(time.RFC3339), ErrExpired)
	}
	switch t.GetKind() {
	case vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO:
		s := t.GetIcmp()
		if s.GetPayloadBytes() > g.cfg.MaxPayloadBytes {
			return fmt.Errorf("task.icmp.payload_bytes %d > %d: %w", s.GetPayloadBytes(), g.cfg.MaxPayloadBytes, ErrLimit)
		}
		if s.GetRetries() > 5 {
			return fmt.Errorf("task.icmp.retries %d > 5: %w", s.GetRetries(), ErrLimit)
		}
		if s.GetTimeoutMs() > DefaultMaxTimeoutMs {
			return fmt.Errorf("task.icmp.timeout_ms %d > %d: %w", s.GetTimeoutMs(), DefaultMaxTimeoutMs, ErrLimit)
		}
	case vantagev1.ProbeKind_PROBE_KIND_TCP:
		s := t.GetTcp()
		if s == nil || s.GetPort() == 0 || s.GetPort() > 65535 {
			return fmt.Errorf("task.tcp.port %d: must be 1..65535: %w", s.GetPort(), ErrInvalid)
		}
		if s.GetTimeoutMs() > DefaultMaxTimeoutMs {
			return fmt.Errorf("task.tcp.timeout_ms %d > %d: %w", s.GetTimeoutMs(), DefaultMaxTimeoutMs, ErrLimit)
		}
	case vantagev1.ProbeKind_PROBE_KIND_TRACE:
		s := t.GetTrace()
		if s.GetMaxTtl() > DefaultMaxTTL {
			return fmt.Errorf("task.trace.max_ttl %d > %d: %w", s.GetMaxTtl(), DefaultMaxTTL, ErrLimit)
		}
		if s.GetTimeoutMs() > DefaultMaxTimeoutMs {
			return fmt.Errorf("task.trace.timeout_ms %d > %d: %w", s.GetTimeoutMs(), DefaultMaxTimeoutMs, ErrLimit)
		}
	default:
		return fmt.Errorf("task.kind %v: unknown: %w", t.GetKind(), ErrInvalid)
	}
	return nil
}

// CheckSchedule validates the recurring-schedule fields of a task (not
// needed for one-off trigger tasks).
func (g *Guard) CheckSchedule(t *vantagev1.Task) error {
	if t.GetRoundMs() < g.cfg.MinRoundMs {
		return fmt.Errorf("task.round_ms %d < %d: %w", t.GetRoundMs(), g.cfg.MinRoundMs, ErrLimit)
	}
	if t.GetJitterMs() >= t.GetRoundMs() {
		return fmt.Errorf("task.jitter_ms %d: must be less than round_ms %d: %w", t.GetJitterMs(), t.GetRoundMs(), ErrInvalid)
	}
	return nil
}

// CheckAssignment refuses an expired assignment or one whose version is not
// newer than the current one. It does not record the version: call
// CommitAssignment once the assignment is in force.
func (g *Guard) CheckAssignment(a *vantagev1.Assignment) error {
	if a == nil {
		return fmt.Errorf("assignment: missing: %w", ErrInvalid)
	}
	if a.GetExpiresAt() != nil && !g.cfg.Now().Before(a.GetExpiresAt().AsTime()) {
		return fmt.Errorf("assignment.expires_at %s (version %d): %w", a.GetExpiresAt().AsTime().Format(time.RFC3339), a.GetVersion(), ErrExpired)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if a.GetVersion() <= g.version {
		return fmt.Errorf("assignment.version %d: not newer than %d: %w", a.GetVersion(), g.version, ErrStale)
	}
	return nil
}

// CommitAssignment records version as the current one if it is newer.
func (g *Guard) CommitAssignment(version uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.version = max(g.version, version)
}

// AssignmentVersion is the highest assignment version accepted.
func (g *Guard) AssignmentVersion() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.version
}

// maxTriggerMemory bounds the replay memory when triggers carry no expiry.
const maxTriggerMemory = 4096

// CheckTrigger refuses expired triggers and trigger ids seen before, and
// remembers tr's id until it expires.
func (g *Guard) CheckTrigger(tr *vantagev1.Trigger) error {
	if tr == nil {
		return fmt.Errorf("trigger: missing: %w", ErrInvalid)
	}
	if tr.GetId() == "" {
		return fmt.Errorf("trigger.id: empty: %w", ErrInvalid)
	}
	now := g.cfg.Now()
	exp := now.Add(time.Hour)
	if tr.GetExpiresAt() != nil {
		exp = tr.GetExpiresAt().AsTime()
		if !now.Before(exp) {
			return fmt.Errorf("trigger.expires_at %s (id %s): %w", exp.Format(time.RFC3339), tr.GetId(), ErrExpired)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, seen := g.triggers[tr.GetId()]; seen {
		return fmt.Errorf("trigger.id %s: %w", tr.GetId(), ErrStale)
	}
	for id, e := range g.triggers {
		if !now.Before(e) {
			delete(g.triggers, id)
		}
	}
	if len(g.triggers) >= maxTriggerMemory {
		return fmt.Errorf("trigger.id %s: %d triggers pending: %w", tr.GetId(), len(g.triggers), ErrLimit)
	}
	g.triggers[tr.GetId()] = exp
	return nil
}
