// Package guard holds the agent's own hard limits. They apply whatever the
// controller says, so that even a compromised controller cannot turn an agent
// into an attack tool: special-purpose address ranges are refused (the table
// the controller refuses too, internal/netrange, IPv4 hidden in IPv6
// included), the global packet rate and payload sizes are capped, and
// expired, replayed or implausible commands (assignments, triggers) are
// refused. A per-target token bucket keeps any one address from being
// probed more often than MaxTargetRate, and the highest assignment version
// accepted is persisted, so a replayed assignment is refused across agent
// restarts too. Every refusal is an error whose text names the field and the
// reason, so the controller can be told why.
package guard

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vantage-net/vantage/internal/netrange"
	"github.com/vantage-net/vantage/internal/tracedefaults"
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
	// DefaultMaxTargetRate is probe runs per second allowed per target
	// address (one run is one task execution: an echo with its retries,
	// a SYN, or one traceroute), with a burst of DefaultTargetBurst.
	DefaultMaxTargetRate = 5
	DefaultTargetBurst   = 20
	// DefaultMaxTargets bounds the per-target bucket map.
	DefaultMaxTargets = 65536
)

// MaxTTL is the highest trace max_ttl the guard accepts: the cap agent and
// controller share (tracedefaults).
const MaxTTL = tracedefaults.MaxTTLCap

// The window of schedule starts accepted: [MinScheduleStart,
// MaxScheduleStart). The scheduler computes rounds with time.Duration,
// which spans 292 years, so a start more than that before the agent's clock
// overflowed the round arithmetic (a start before about 1733 made it spin
// at 100% CPU); this window keeps any clock before 2262 within range. The
// controller refuses the same window for a campaign's schedule.start
// (controller/campaign), and tasks without a start use the Unix epoch.
var (
	MinScheduleStart = time.Unix(0, 0).UTC()
	MaxScheduleStart = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// MaxVersionLead is how far an assignment version may be ahead of the
// agent's clock read as Unix microseconds. The controller numbers
// assignments from its clock at start (time.Now().UnixMicro(), see
// controller/ingest New) plus one per assignment made since, and never
// below one above the version the agent reports in Hello. A version it made
// is therefore close to the clock in microseconds (a million assignments
// add one second), and a day covers clock skew with room to spare, as mTLS
// needs the clocks roughly right anyway. A version far beyond that, such as
// 2^64-1, is refused: once persisted it would make every later assignment
// stale, and the controller's "one above the agent's" would wrap to 0.
const MaxVersionLead = 24 * time.Hour

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
	// MaxTargetRate caps probe runs per second per target address.
	MaxTargetRate float64
	// TargetBurst is the per-target bucket size.
	TargetBurst int
	// MaxTargets bounds the per-target buckets kept (idle ones are evicted).
	MaxTargets int
	// VersionFile, when set, persists the highest assignment version
	// accepted, so replays are refused across restarts.
	VersionFile string
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
	triggers triggerMemory // trigger ids until they expire, for replay refusal
	targets  map[netip.Addr]*bucket
	limited  uint64 // probe runs refused by the per-target rate
}

// bucket is one target's token bucket.
type bucket struct {
	tokens float64
	at     time.Time
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
	if cfg.MaxTargetRate <= 0 {
		cfg.MaxTargetRate = DefaultMaxTargetRate
	}
	if cfg.TargetBurst <= 0 {
		cfg.TargetBurst = DefaultTargetBurst
	}
	if cfg.MaxTargets <= 0 {
		cfg.MaxTargets = DefaultMaxTargets
	}
	// A burst of a tenth of a second keeps bursts short but lets a trace
	// window leave at once.
	burst := max(cfg.MaxPPS/10, 1)
	return &Guard{
		cfg:      cfg,
		limiter:  rate.NewLimiter(rate.Limit(cfg.MaxPPS), burst),
		triggers: triggerMemory{ids: make(map[string]time.Time)},
		targets:  make(map[netip.Addr]*bucket),
	}
}

// Open is New plus the assignment version persisted in cfg.VersionFile.
func Open(cfg Config) (*Guard, error) {
	g := New(cfg)
	if cfg.VersionFile == "" {
		return g, nil
	}
	b, err := os.ReadFile(cfg.VersionFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("guard: %w", err)
	default:
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("guard: %s: not a version: %w", cfg.VersionFile, ErrInvalid)
		}
		if limit := g.versionLimit(); v > limit {
			// Kept by an agent that accepted any version: every assignment
			// would be stale. Only the operator can tell a wrong clock from
			// a poisoned file.
			return nil, fmt.Errorf("guard: %s: version %d is above %d, the clock in Unix microseconds plus %s (check the clock, or delete the file): %w",
				cfg.VersionFile, v, limit, MaxVersionLead, ErrInvalid)
		}
		g.version = v
	}
	return g, nil
}

// AllowTarget takes one token from addr's bucket; a refusal wraps ErrLimit.
// The map of buckets is bounded: when full, buckets that have refilled
// (idle targets) are evicted, and if none has, an arbitrary one.
func (g *Guard) AllowTarget(addr netip.Addr) error {
	now := g.cfg.Now()
	burst := float64(g.cfg.TargetBurst)
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.targets[addr]
	if b == nil {
		if len(g.targets) >= g.cfg.MaxTargets {
			g.evict(now)
		}
		b = &bucket{tokens: burst, at: now}
		g.targets[addr] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*g.cfg.MaxTargetRate)
	b.at = now
	if b.tokens < 1 {
		g.limited++
		return fmt.Errorf("target %s: more than %g probe runs/s (burst %d): %w", addr, g.cfg.MaxTargetRate, g.cfg.TargetBurst, ErrLimit)
	}
	b.tokens--
	return nil
}

func (g *Guard) evict(now time.Time) {
	full := float64(g.cfg.TargetBurst) / g.cfg.MaxTargetRate
	for a, b := range g.targets {
		if now.Sub(b.at).Seconds() >= full {
			delete(g.targets, a)
		}
	}
	for a := range g.targets {
		if len(g.targets) < g.cfg.MaxTargets {
			return
		}
		delete(g.targets, a)
	}
}

// TargetsTracked is the number of per-target buckets held.
func (g *Guard) TargetsTracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.targets)
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
	// The controller refuses the same table (internal/netrange), IPv6 forms
	// that embed IPv4 included, before a campaign is stored.
	if m, ok := netrange.Lookup(addr); ok {
		return netip.Addr{}, fmt.Errorf("target %s %s; refused unless the agent runs with --allow-special-ranges (lab only): %w", addr, m, ErrSpecialRange)
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
	if ss := t.GetScheduleStart(); ss != nil {
		if st := ss.AsTime(); st.Before(MinScheduleStart) || !st.Before(MaxScheduleStart) {
			return fmt.Errorf("task.schedule_start %s: outside %s..%s: %w", st.Format(time.RFC3339Nano),
				MinScheduleStart.Format(time.RFC3339), MaxScheduleStart.Format(time.RFC3339), ErrInvalid)
		}
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
		if s.GetMaxTtl() > MaxTTL {
			return fmt.Errorf("task.trace.max_ttl %d > %d: %w", s.GetMaxTtl(), MaxTTL, ErrLimit)
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
	if limit := g.versionLimit(); a.GetVersion() > limit {
		return fmt.Errorf("assignment.version %d: above %d, the agent's clock in Unix microseconds plus %s; not a version a controller makes: %w",
			a.GetVersion(), limit, MaxVersionLead, ErrInvalid)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if a.GetVersion() <= g.version {
		return fmt.Errorf("assignment.version %d: not newer than %d: %w", a.GetVersion(), g.version, ErrStale)
	}
	return nil
}

// versionLimit is the highest assignment version accepted now.
func (g *Guard) versionLimit() uint64 {
	return uint64(max(g.cfg.Now().Add(MaxVersionLead).UnixMicro(), 0))
}

// CommitAssignment records version as the current one if it is newer, and
// persists it when a VersionFile is set (a failure to persist is returned;
// the version still holds for this run).
func (g *Guard) CommitAssignment(version uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if version <= g.version {
		return
	}
	g.version = version
	if g.cfg.VersionFile != "" {
		_ = writeAtomic(g.cfg.VersionFile, []byte(strconv.FormatUint(version, 10)+"\n"))
	}
}

func writeAtomic(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		_ = f.Sync()
		_ = f.Close()
	}
	return os.Rename(tmp, path)
}

// AssignmentVersion is the highest assignment version accepted.
func (g *Guard) AssignmentVersion() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.version
}
