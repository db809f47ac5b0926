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

// TestTokensOverTheAPI: join tokens are listed and revoked one by one (a
// revoked one no longer enrols, the other still does), and an admin mints
// operator tokens over the API, audited with the admin as actor; an
// operator may not (issue 14).
func TestTokensOverTheAPI(t *testing.T) {
	c := startController(t)
	ops := c.ops(t)
	first := joinToken(t, c, &vantagev1.CreateJoinTokenRequest{Labels: map[string]string{"provider": "p1"}})
	second := joinToken(t, c, &vantagev1.CreateJoinTokenRequest{MaxUses: 2})
	list, err := ops.ListJoinTokens(bearer(c.admin), &vantagev1.ListJoinTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetTokens()) != 2 {
		t.Fatalf("%d join tokens listed, want 2: %v", len(list.GetTokens()), list)
	}
	var firstID string
	for _, tk := range list.GetTokens() {
		if len(tk.GetId()) != 12 || !tk.GetUsable() || tk.GetCreatedBy() != "operator:admin" {
			t.Errorf("listed token %v", tk)
		}
		if tk.GetLabels()["provider"] == "p1" {
			firstID = tk.GetId()
		}
		if strings.Contains(first+second, tk.GetId()) {
			t.Errorf("token id %s is part of a secret", tk.GetId())
		}
	}
	revoked, err := ops.RevokeJoinToken(bearer(c.admin), &vantagev1.RevokeJoinTokenRequest{Id: firstID})
	if err != nil || revoked.GetUsable() || revoked.GetId() != firstID {
		t.Fatalf("RevokeJoinToken = %v, %v", revoked, err)
	}
	if _, err := enroll(t, c, first); err == nil {
		t.Error("a revoked join token still enrols")
	}
	if _, err := enroll(t, c, second); err != nil {
		t.Errorf("the other join token: %v", err)
	}
	if _, err := ops.RevokeJoinToken(bearer(c.admin), &vantagev1.RevokeJoinTokenRequest{Id: firstID}); status.Code(err) != codes.NotFound {
		t.Errorf("revoking it again: %v, want NotFound", err)
	}
	if _, err := ops.RevokeJoinToken(bearer(c.admin), &vantagev1.RevokeJoinTokenRequest{Id: "nope"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a malformed id: %v, want InvalidArgument", err)
	}

	op, err := ops.CreateOperatorToken(bearer(c.admin), &vantagev1.CreateOperatorTokenRequest{Name: "alice", Role: "operator"})
	if err != nil || op.GetToken() == "" || op.GetRole() != "operator" {
		t.Fatalf("CreateOperatorToken = %v, %v", op, err)
	}
	// The new token works with its role: it may list join tokens, not
	// mint operator tokens.
	if _, err := ops.ListJoinTokens(bearer(op.GetToken()), &vantagev1.ListJoinTokensRequest{}); err != nil {
		t.Errorf("the new operator token: %v", err)
	}
	if _, err := ops.CreateOperatorToken(bearer(op.GetToken()), &vantagev1.CreateOperatorTokenRequest{Name: "mallory", Role: "admin"}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("an operator minting an admin token: %v, want PermissionDenied", err)
	}
	if _, err := ops.CreateOperatorToken(bearer(c.admin), &vantagev1.CreateOperatorTokenRequest{Name: "bob", Role: "root"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("role root: %v, want InvalidArgument", err)
	}
	if _, err := ops.CreateOperatorToken(bearer(c.admin), &vantagev1.CreateOperatorTokenRequest{Name: "alice", Role: "viewer"}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("a second alice: %v, want AlreadyExists", err)
	}
	if n := countRows(t, c.dir, `SELECT count(*) FROM audit WHERE action = 'token.operator.create' AND actor = 'operator:admin' AND subject = 'alice'`); n != 1 {
		t.Errorf("%d audit entries for alice's token by operator:admin, want 1", n)
	}
	if n := countRows(t, c.dir, `SELECT count(*) FROM audit WHERE action = 'token.join.revoke' AND actor = 'operator:admin' AND subject = ?`, firstID); n != 1 {
		t.Errorf("%d audit entries for the join token's revocation, want 1", n)
	}
}
