package sqlite

import (
	"context"
	"errors"
	"testing"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func TestRenewAgentCert(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	enroll(t, db, "agt-a") // enrolled with serial ""
	serials := func() (string, string) {
		t.Helper()
		cur, prev, err := db.AgentCertSerials(ctx, "agt-a")
		if err != nil {
			t.Fatal(err)
		}
		return cur, prev
	}
	audit := store.AuditEntry{At: t0, Actor: "agent:agt-a", Action: "agent.renew", Subject: "agt-a"}
	// A legacy agent without a recorded serial cannot renew by serial.
	if err := db.RenewAgentCert(ctx, "agt-a", "aa", "bb", audit); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("renew with unknown serial: %v, want ErrConflict", err)
	}
	if _, err := db.w.Exec(`UPDATE agents SET cert_serial = 'aa' WHERE id = 'agt-a'`); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name              string
		presented, serial string
		wantErr           error
		wantCur, wantPrev string
	}{
		{"renew with current", "aa", "bb", nil, "bb", "aa"},
		{"renew again with previous (new cert lost)", "aa", "cc", nil, "cc", "aa"},
		{"lost serial refused", "bb", "dd", store.ErrConflict, "cc", "aa"},
		{"renew with current drops the oldest", "cc", "ee", nil, "ee", "cc"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := db.RenewAgentCert(ctx, "agt-a", s.presented, s.serial, audit)
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("RenewAgentCert: %v, want %v", err, s.wantErr)
			}
			if cur, prev := serials(); cur != s.wantCur || prev != s.wantPrev {
				t.Fatalf("serials = %q, %q; want %q, %q", cur, prev, s.wantCur, s.wantPrev)
			}
		})
	}
	if ok, err := db.ConfirmAgentCert(ctx, "agt-a", "cc"); err != nil || ok {
		t.Fatalf("confirm with the previous serial = %v, %v; want false", ok, err)
	}
	if ok, err := db.ConfirmAgentCert(ctx, "agt-a", "ee"); err != nil || !ok {
		t.Fatalf("confirm with the current serial = %v, %v; want true", ok, err)
	}
	if cur, prev := serials(); cur != "ee" || prev != "" {
		t.Fatalf("after confirm: %q, %q", cur, prev)
	}
	if ok, err := db.ConfirmAgentCert(ctx, "agt-a", "ee"); err != nil || ok {
		t.Fatalf("second confirm = %v, %v; want false", ok, err)
	}
	entries, err := db.ListAudit(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Action == "agent.renew" {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d agent.renew audit entries, want 3", n)
	}
	if _, err := db.SetAgentState(ctx, "agt-a", vantagev1.AgentState_AGENT_STATE_REVOKED, "test", store.AuditEntry{}); err != nil {
		t.Fatal(err)
	}
	if err := db.RenewAgentCert(ctx, "agt-a", "ee", "ff", audit); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("revoked renew: %v, want ErrConflict", err)
	}
	if err := db.RenewAgentCert(ctx, "agt-none", "ee", "ff", audit); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown agent: %v, want ErrNotFound", err)
	}
	if _, _, err := db.AgentCertSerials(ctx, "agt-none"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AgentCertSerials unknown: %v", err)
	}
}
