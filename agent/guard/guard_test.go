package guard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestCheckTarget(t *testing.T) {
	g := New(Config{})
	lab := New(Config{AllowSpecialRanges: true})
	tests := []struct {
		name    string
		target  string
		wantErr error
		labOK   bool
	}{
		{"public v4", "8.8.8.8", nil, true},
		{"public v6", "2a00:1450::1", nil, true},
		{"loopback", "127.0.0.1", ErrSpecialRange, true},
		{"loopback v6", "::1", ErrSpecialRange, true},
		{"rfc1918 10", "10.1.2.3", ErrSpecialRange, true},
		{"rfc1918 172", "172.31.0.1", ErrSpecialRange, true},
		{"rfc1918 192", "192.168.1.1", ErrSpecialRange, true},
		{"cgnat", "100.64.0.1", ErrSpecialRange, true},
		{"link-local", "169.254.1.1", ErrSpecialRange, true},
		{"multicast", "224.0.0.1", ErrSpecialRange, true},
		{"test-net-1", "192.0.2.1", ErrSpecialRange, true},
		{"test-net-2", "198.51.100.7", ErrSpecialRange, true},
		{"test-net-3", "203.0.113.9", ErrSpecialRange, true},
		{"benchmark", "198.19.255.255", ErrSpecialRange, true},
		{"broadcast", "255.255.255.255", ErrSpecialRange, true},
		{"doc v6", "2001:db8::1", ErrSpecialRange, true},
		{"ula", "fd00::1", ErrSpecialRange, true},
		{"link-local v6", "fe80::1", ErrSpecialRange, true},
		{"multicast v6", "ff02::1", ErrSpecialRange, true},
		{"v4-mapped loopback", "::ffff:127.0.0.1", ErrSpecialRange, true},
		{"v4-mapped public", "::ffff:8.8.8.8", nil, true},
		{"AS112 v6", "2620:4f:8000::1", ErrSpecialRange, true},
		{"NAT64 of private", "64:ff9b::a00:1", ErrSpecialRange, true},
		{"NAT64 of metadata", "64:ff9b::a9fe:a9fe", ErrSpecialRange, true},
		{"NAT64 of public", "64:ff9b::808:808", nil, true},
		{"NAT64 local-use", "64:ff9b:1::808:808", ErrSpecialRange, true},
		{"v4-compatible", "::808:808", ErrSpecialRange, true},
		{"v4-translated", "::ffff:0:808:808", ErrSpecialRange, true},
		{"6to4", "2002:808:808::1", ErrSpecialRange, true},
		{"teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2", ErrSpecialRange, true},
		{"name not ip", "example.com", ErrInvalid, false},
		{"zoned", "fe80::1%eth0", ErrInvalid, false},
		{"empty", "", ErrInvalid, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.CheckTarget(tc.target)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckTarget(%q) = %v, want %v", tc.target, err, tc.wantErr)
			}
			_, err = lab.CheckTarget(tc.target)
			if (err == nil) != tc.labOK {
				t.Fatalf("lab CheckTarget(%q) = %v, want ok=%v", tc.target, err, tc.labOK)
			}
		})
	}
}

func TestCheckTask(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := New(Config{Now: func() time.Time { return now }})
	icmp := func(payload uint32) *vantagev1.Task {
		return &vantagev1.Task{Id: "c/icmp/8.8.8.8", Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: "8.8.8.8",
			Spec: &vantagev1.Task_Icmp{Icmp: &vantagev1.IcmpSpec{PayloadBytes: payload}}}
	}
	expired := icmp(16)
	expired.ExpiresAt = timestamppb.New(now.Add(-time.Second))
	startAt := func(ts time.Time) *vantagev1.Task {
		t := icmp(16)
		t.ScheduleStart = timestamppb.New(ts)
		return t
	}
	tests := []struct {
		name    string
		task    *vantagev1.Task
		wantErr error
		wantMsg string
	}{
		{"ok", icmp(16), nil, ""},
		{"payload too big", icmp(1401), ErrLimit, "task.icmp.payload_bytes 1401 > 1400: exceeds agent limit"},
		{"expired", expired, ErrExpired, "task.expires_at 2025-12-31T23:59:59Z: expired"},
		{"no id", &vantagev1.Task{Target: "8.8.8.8"}, ErrInvalid, "task.id: empty: invalid"},
		{"special target", &vantagev1.Task{Id: "x", Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: "10.0.0.1"}, ErrSpecialRange, ""},
		{"tcp no port", &vantagev1.Task{Id: "x", Kind: vantagev1.ProbeKind_PROBE_KIND_TCP, Target: "8.8.8.8"}, ErrInvalid, "task.tcp.port 0: must be 1..65535: invalid"},
		{"trace ttl", &vantagev1.Task{Id: "x", Kind: vantagev1.ProbeKind_PROBE_KIND_TRACE, Target: "8.8.8.8",
			Spec: &vantagev1.Task_Trace{Trace: &vantagev1.TraceSpec{MaxTtl: 65}}}, ErrLimit, ""},
		{"unknown kind", &vantagev1.Task{Id: "x", Target: "8.8.8.8"}, ErrInvalid, "task.kind PROBE_KIND_UNSPECIFIED: unknown: invalid"},
		{"NAT64 of a private host", &vantagev1.Task{Id: "x", Kind: vantagev1.ProbeKind_PROBE_KIND_ICMP_ECHO, Target: "64:ff9b::a00:1"}, ErrSpecialRange,
			"task.target: target 64:ff9b::a00:1 embeds 10.0.0.1/32 (NAT64 well-known prefix (RFC 6052) 64:ff9b::/96), which is in 10.0.0.0/8 (private use (RFC 1918)); refused unless the agent runs with --allow-special-ranges (lab only): special-purpose address range"},
		{"schedule start 1700", startAt(time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC)), ErrInvalid,
			"task.schedule_start 1700-01-01T00:00:00Z: outside 1970-01-01T00:00:00Z..2200-01-01T00:00:00Z: invalid"},
		{"schedule start just before the epoch", startAt(time.Unix(0, -1)), ErrInvalid, ""},
		{"schedule start at the epoch", startAt(time.Unix(0, 0)), nil, ""},
		{"schedule start in 2199", startAt(time.Date(2199, 12, 31, 23, 59, 59, 0, time.UTC)), nil, ""},
		{"schedule start in 2200", startAt(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)), ErrInvalid, ""},
		{"schedule start year 1", startAt(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)), ErrInvalid, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := g.CheckTask(tc.task)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CheckTask = %v, want %v", err, tc.wantErr)
			}
			if tc.wantMsg != "" && err.Error() != tc.wantMsg {
				t.Fatalf("CheckTask message = %q, want %q", err.Error(), tc.wantMsg)
			}
		})
	}
}

func TestAssignmentVersions(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := New(Config{Now: func() time.Time { return now }})
	future := timestamppb.New(now.Add(time.Hour))
	steps := []struct {
		name    string
		a       *vantagev1.Assignment
		wantErr error
	}{
		{"first", &vantagev1.Assignment{Version: 3, ExpiresAt: future}, nil},
		{"same version replayed", &vantagev1.Assignment{Version: 3, ExpiresAt: future}, ErrStale},
		{"older", &vantagev1.Assignment{Version: 2, ExpiresAt: future}, ErrStale},
		{"expired", &vantagev1.Assignment{Version: 9, ExpiresAt: timestamppb.New(now)}, ErrExpired},
		{"2^64-1", &vantagev1.Assignment{Version: math.MaxUint64, ExpiresAt: future}, ErrInvalid},
		{"a day and a microsecond ahead of the clock", &vantagev1.Assignment{Version: uint64(now.Add(MaxVersionLead).UnixMicro()) + 1}, ErrInvalid},
		{"newer", &vantagev1.Assignment{Version: 4}, nil},
		{"a controller's version", &vantagev1.Assignment{Version: uint64(now.UnixMicro()) + 7}, nil},
		{"a day ahead of the clock", &vantagev1.Assignment{Version: uint64(now.Add(MaxVersionLead).UnixMicro())}, nil},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := g.CheckAssignment(s.a)
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("CheckAssignment = %v, want %v", err, s.wantErr)
			}
			if err == nil {
				g.CommitAssignment(s.a.GetVersion())
			}
		})
	}
	if v, want := g.AssignmentVersion(), uint64(now.Add(MaxVersionLead).UnixMicro()); v != want {
		t.Fatalf("AssignmentVersion = %d, want %d", v, want)
	}
	err := g.CheckAssignment(&vantagev1.Assignment{Version: math.MaxUint64})
	if want := "assignment.version 18446744073709551615: above 1767312000000000, the agent's clock in Unix microseconds plus 24h0m0s; not a version a controller makes: invalid"; err == nil || err.Error() != want {
		t.Fatalf("2^64-1: %v, want %q", err, want)
	}
}

func TestTriggerReplay(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := New(Config{Now: func() time.Time { return now }})
	tr := &vantagev1.Trigger{Id: "t1", ExpiresAt: timestamppb.New(now.Add(time.Minute))}
	if err := g.CheckTrigger(tr); err != nil {
		t.Fatalf("first CheckTrigger: %v", err)
	}
	if err := g.CheckTrigger(tr); !errors.Is(err, ErrStale) {
		t.Fatalf("replayed CheckTrigger = %v, want ErrStale", err)
	}
	old := &vantagev1.Trigger{Id: "t2", ExpiresAt: timestamppb.New(now.Add(-time.Minute))}
	if err := g.CheckTrigger(old); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired CheckTrigger = %v, want ErrExpired", err)
	}
}

// TestTriggerMemory: far-future expiries are refused, and a full memory
// forgets the id expiring soonest instead of refusing every later trigger.
func TestTriggerMemory(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := New(Config{Now: func() time.Time { return now }})
	trig := func(id string, in time.Duration) *vantagev1.Trigger {
		return &vantagev1.Trigger{Id: id, ExpiresAt: timestamppb.New(now.Add(in))}
	}
	farErrs := 0
	for i := range maxTriggerMemory {
		if err := g.CheckTrigger(trig(fmt.Sprintf("far-%d", i), 200*365*24*time.Hour)); errors.Is(err, ErrLimit) {
			farErrs++
		}
	}
	if farErrs != maxTriggerMemory {
		t.Errorf("%d of %d triggers expiring in 200 years refused, want all", farErrs, maxTriggerMemory)
	}
	if err := g.CheckTrigger(trig("just-over", MaxTriggerLifetime+time.Second)); !errors.Is(err, ErrLimit) ||
		!strings.Contains(err.Error(), "trigger.expires_at 2026-01-01T01:00:01Z (id just-over): more than 1h0m0s ahead") {
		t.Fatalf("trigger an hour and a second ahead: %v", err)
	}
	if err := g.CheckTrigger(trig("soonest", time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i := range maxTriggerMemory - 1 {
		if err := g.CheckTrigger(trig(fmt.Sprintf("t-%d", i), MaxTriggerLifetime)); err != nil {
			t.Fatalf("trigger %d: %v", i, err)
		}
	}
	// Full: the next one is taken, and the id expiring soonest forgotten.
	if err := g.CheckTrigger(trig("one-more", 2*time.Minute)); err != nil {
		t.Fatalf("trigger after %d remembered: %v", maxTriggerMemory, err)
	}
	if n := g.TriggersRemembered(); n != maxTriggerMemory {
		t.Fatalf("%d ids remembered, bound %d", n, maxTriggerMemory)
	}
	if err := g.CheckTrigger(trig("t-7", MaxTriggerLifetime)); !errors.Is(err, ErrStale) {
		t.Fatalf("replayed t-7: %v, want ErrStale", err)
	}
	if err := g.CheckTrigger(trig("soonest", time.Minute)); err != nil {
		t.Fatalf("the evicted id: %v (it was the one expiring soonest)", err)
	}
	// Expired ids are pruned as time passes.
	now = now.Add(MaxTriggerLifetime)
	if err := g.CheckTrigger(trig("later", time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := g.TriggersRemembered(); n != 1 {
		t.Fatalf("%d ids remembered an hour later, want 1", n)
	}
	if err := g.CheckTrigger(&vantagev1.Trigger{Id: strings.Repeat("x", 129)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("129-byte id: %v", err)
	}
}

func TestWaitCapsRate(t *testing.T) {
	g := New(Config{MaxPPS: 50})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	n := 0
	for g.Wait(ctx) == nil {
		n++
	}
	// 5 burst + 50/s * 0.2s = 15; allow slack for slow machines, never a flood.
	if n > 20 {
		t.Fatalf("limiter let %d packets through in 200ms at 50 pps", n)
	}
	if got := g.ProbesSent(); got != uint64(n) {
		t.Fatalf("ProbesSent = %d, want %d", got, n)
	}
}

func TestAllowTarget(t *testing.T) {
	now := time.Unix(1000, 0)
	g := New(Config{MaxTargetRate: 2, TargetBurst: 3, MaxTargets: 4, Now: func() time.Time { return now }})
	a := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		name    string
		advance time.Duration
		wantErr bool
	}{
		{"burst 1", 0, false},
		{"burst 2", 0, false},
		{"burst 3", 0, false},
		{"bucket empty", 0, true},
		{"half a second refills one", 500 * time.Millisecond, false},
		{"empty again", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now = now.Add(tc.advance)
			err := g.AllowTarget(a)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrLimit)) {
				t.Fatalf("AllowTarget = %v, want error %v", err, tc.wantErr)
			}
		})
	}
	// Another target has its own bucket; the map stays bounded.
	for i := range 20 {
		if err := g.AllowTarget(netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)})); err != nil {
			t.Fatalf("fresh target %d refused: %v", i, err)
		}
		if n := g.TargetsTracked(); n > 4 {
			t.Fatalf("%d buckets, bound 4", n)
		}
	}
}

func TestAssignmentVersionPersists(t *testing.T) {
	file := filepath.Join(t.TempDir(), "assignment.version")
	g, err := Open(Config{VersionFile: file})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.CheckAssignment(&vantagev1.Assignment{Version: 9}); err != nil {
		t.Fatal(err)
	}
	g.CommitAssignment(9)
	g2, err := Open(Config{VersionFile: file}) // the agent restarted
	if err != nil {
		t.Fatal(err)
	}
	if err := g2.CheckAssignment(&vantagev1.Assignment{Version: 9}); !errors.Is(err, ErrStale) {
		t.Fatalf("replayed version 9 after restart: err = %v, want ErrStale", err)
	}
	if err := g2.CheckAssignment(&vantagev1.Assignment{Version: 10}); err != nil {
		t.Fatalf("version 10: %v", err)
	}
	if err := os.WriteFile(file, []byte("18446744073709551615\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{VersionFile: file}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "delete the file") {
		t.Fatalf("version file holding 2^64-1: err = %v, want ErrInvalid", err)
	}
	if err := os.WriteFile(file, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{VersionFile: file}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("junk version file: err = %v", err)
	}
}
