package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vantage-net/vantage/controller/store"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func auditActions(t *testing.T, db *DB) []string {
	t.Helper()
	es, err := db.ListAudit(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(es) - 1; i >= 0; i-- {
		out = append(out, es[i].Action)
	}
	return out
}

// TestNoOpChangesWriteNoAudit: a change that changes nothing writes no
// audit entry, and a second revoke without a reason keeps the first one.
func TestNoOpChangesWriteNoAudit(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	enroll(t, db, "agt-000000000000000a")
	base := len(auditActions(t, db))
	revoked := vantagev1.AgentState_AGENT_STATE_REVOKED
	audit := func(action, detail string) store.AuditEntry {
		return store.AuditEntry{At: t0, Actor: "operator:admin", Action: action, Subject: "x", Detail: detail}
	}
	if _, err := db.SetAgentState(ctx, "agt-000000000000000a", revoked, "key leaked", audit("agent.revoke", "key leaked")); err != nil {
		t.Fatal(err)
	}
	a, err := db.SetAgentState(ctx, "agt-000000000000000a", revoked, "", audit("agent.revoke", ""))
	if err != nil || a.StateReason != "key leaked" {
		t.Fatalf("second revoke without a reason: reason %q, %v; want the first reason kept", a.StateReason, err)
	}
	if a, err = db.SetAgentState(ctx, "agt-000000000000000a", revoked, "host sold", audit("agent.revoke", "host sold")); err != nil || a.StateReason != "host sold" {
		t.Fatalf("revoke with a new reason: %q, %v", a.StateReason, err)
	}
	if _, err := db.SetAgentState(ctx, "agt-nope", revoked, "", audit("agent.revoke", "")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown agent: %v; want ErrNotFound", err)
	}
	if _, _, err := db.PutCampaign(ctx, "kp", "name: kp\n", t0, audit("campaign.apply", "")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := db.SetCampaignState(ctx, "kp", vantagev1.CampaignState_CAMPAIGN_STATE_PAUSED, t0.Add(time.Minute), audit("campaign.pause", "")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.SetCampaignState(ctx, "nope", vantagev1.CampaignState_CAMPAIGN_STATE_PAUSED, t0, audit("campaign.pause", "")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown campaign: %v; want ErrNotFound", err)
	}
	// Every join token already expired: nothing expires now.
	if n, err := db.ExpireJoinTokens(ctx, t0.Add(2*time.Hour), audit("token.join.expire_all", "")); err != nil || n != 0 {
		t.Fatalf("ExpireJoinTokens = %d, %v", n, err)
	}
	got := auditActions(t, db)[base:]
	want := []string{"agent.revoke", "agent.revoke", "campaign.apply", "campaign.pause"}
	if len(got) != len(want) {
		t.Fatalf("audit entries %v; want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("audit entries %v; want %v", got, want)
		}
	}
}

func TestRevokedOperatorTokenNeverComesBack(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	tok := store.OperatorToken{Name: "admin", Hash: "h-admin", Role: store.RoleAdmin, CreatedAt: t0}
	if err := db.PutOperatorToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteOperatorToken(ctx, "admin", store.AuditEntry{At: t0, Actor: "controller", Action: "token.operator.revoke", Subject: "admin"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutOperatorToken(ctx, tok); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("PutOperatorToken of a revoked token = %v; want ErrRevoked", err)
	}
	if _, err := db.OperatorTokenByHash(ctx, "h-admin"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("OperatorTokenByHash of a revoked token = %v; want ErrNotFound", err)
	}
	tok.Hash = "h-admin-2" // a new secret under the same name is fine
	if err := db.PutOperatorToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
}
