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

// TestListAgentsPages: ListAgents returns pages of page_size agents with
// a token for the next, and refuses a bad token or size naming the field.
func TestListAgentsPages(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	want := map[string]bool{}
	for range 5 {
		want[newAgent(t, c).id] = true
	}
	var got []string
	var pages int
	req := &vantagev1.ListAgentsRequest{PageSize: 2}
	for {
		r, err := ops.ListAgents(bearer(c.admin), req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(r.GetAgents()) > 2 {
			t.Fatalf("page of %d agents; want at most 2", len(r.GetAgents()))
		}
		for _, a := range r.GetAgents() {
			got = append(got, a.GetId())
		}
		if r.GetNextPageToken() == "" || pages > 10 {
			break
		}
		req = &vantagev1.ListAgentsRequest{PageSize: 2, PageToken: r.GetNextPageToken()}
	}
	if pages != 3 || len(got) != 5 {
		t.Fatalf("%d pages, agents %v; want 3 pages and 5 agents", pages, got)
	}
	for _, id := range got {
		if !want[id] {
			t.Fatalf("agents %v: %s twice or unknown", got, id)
		}
		delete(want, id)
	}
	for _, tc := range []struct {
		req   *vantagev1.ListAgentsRequest
		field string
	}{
		{&vantagev1.ListAgentsRequest{PageToken: "!!"}, "page_token"},
		{&vantagev1.ListAgentsRequest{PageSize: 5000}, "page_size"},
	} {
		_, err := ops.ListAgents(bearer(c.admin), tc.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.field) {
			t.Errorf("ListAgents(%v) = %v; want INVALID_ARGUMENT naming %s", tc.req, err, tc.field)
		}
	}
}
