package main

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// TestRevokedAdminTokenStaysRevoked revokes the admin token while
// admin.token is still on disk and restarts the controller: the revoked
// secret stays refused, and the file holds a new admin token.
func TestRevokedAdminTokenStaysRevoked(t *testing.T) {
	c := startController(t)
	old := c.admin
	cmd := newRootCmd()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"revoke-token", "--data", c.dir, "--operator", "admin"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("revoke-token: %v", err)
	}
	if _, err := c.ops(t).ListAgents(bearer(old), &vantagev1.ListAgentsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked admin token before the restart: %v; want UNAUTHENTICATED", err)
	}
	c.stop()
	c2 := startController(t, func(cfg *Config) { cfg.DataDir = c.dir })
	if _, err := c2.ops(t).ListAgents(bearer(old), &vantagev1.ListAgentsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("revoked admin token after the restart: %v; want UNAUTHENTICATED", err)
	}
	if c2.admin == old {
		t.Fatal("admin.token still holds the revoked token")
	}
	if _, err := c2.ops(t).ListAgents(bearer(c2.admin), &vantagev1.ListAgentsRequest{}); err != nil {
		t.Fatalf("the new admin token: %v", err)
	}
}
