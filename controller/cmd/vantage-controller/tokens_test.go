package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
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

// lockedBuffer is a log sink for a controller under test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// TestEnrolNameNotLoggedUnchecked: an enrolment with a 3 MB name and no
// join token is refused naming the field, and the log stays small.
func TestEnrolNameNotLoggedUnchecked(t *testing.T) {
	var logs lockedBuffer
	c := startController(t, func(cfg *Config) {
		cfg.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	before := logs.Len()
	_, err := vantagev1.NewAgentServiceClient(c.dial(t)).Enroll(context.Background(), &vantagev1.EnrollRequest{
		JoinToken: "", CsrDer: []byte("x"), Name: strings.Repeat("n", 3<<20)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "name: length 3145728") {
		t.Errorf("Enroll with a 3 MB name = %v; want INVALID_ARGUMENT naming name", err)
	}
	logged := logs.Len() - before
	t.Logf("the refused enrolment logged %d bytes", logged)
	if logged > 4<<10 {
		t.Errorf("the refused enrolment logged %d bytes; want its name unlogged (< 4 KiB)", logged)
	}
}
