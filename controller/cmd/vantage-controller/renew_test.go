package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vantage-net/vantage/agent/uplink"
	"github.com/vantage-net/vantage/controller/fleet"
	"github.com/vantage-net/vantage/internal/syncbuf"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// tasksHandler keeps the tasks of the newest assignment.
type tasksHandler struct {
	mu      sync.Mutex
	version uint64
	tasks   []*vantagev1.Task
}

func (h *tasksHandler) Apply(_ context.Context, a *vantagev1.Assignment) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version, h.tasks = a.GetVersion(), a.GetTasks()
	return nil
}

func (h *tasksHandler) Trigger(context.Context, *vantagev1.Trigger) error { return nil }

func (h *tasksHandler) AssignmentVersion() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version
}

func (h *tasksHandler) task() *vantagev1.Task {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.tasks) == 0 {
		return nil
	}
	return h.tasks[0]
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCARotationRenewsAgents walks a CA rotation with a real agent uplink
// and no manual re-enrolment: rotate-ca and a restart make the controller
// advise the agent to renew; it renews and reconnects with a certificate
// of the next CA; rotate-ca --finish and another restart leave it
// connected (it trusts the new CA) with its results acked.
func TestCARotationRenewsAgents(t *testing.T) {
	c := startController(t)
	if _, err := c.ops(t).ApplyCampaign(bearer(c.admin), &vantagev1.ApplyCampaignRequest{AllowFewerVantages: true, SpecYaml: minimalCampaign}); err != nil {
		t.Fatalf("ApplyCampaign: %v", err)
	}
	hash, err := c.ops(t).CreateJoinToken(bearer(c.admin), &vantagev1.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	id, err := uplink.EnsureIdentity(context.Background(), uplink.EnrollConfig{Controller: c.addr, StateDir: state,
		JoinToken: hash.GetToken(), CAHash: hash.GetCaHash(), Name: "vps-rot-1", Logger: log})
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	h := &tasksHandler{}
	client, err := uplink.New(uplink.Config{Controller: c.addr, Identity: id, AgentVersion: "test", Handler: h,
		Logger: log, StateDir: state, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		BatchInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = client.Run(ctx) }()
	defer func() { cancel(); <-done }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})

	var round int64
	delivered := func(step string) {
		t.Helper()
		waitUntil(t, step+": an assignment", 20*time.Second, func() bool { return h.task() != nil })
		round++
		tk := h.task()
		client.Submit(&vantagev1.ProbeResult{TaskId: tk.GetId(), Campaign: tk.GetCampaign(), Target: tk.GetTarget(),
			Kind: tk.GetKind(), Round: round, SentAt: timestamppb.Now(), Outcome: vantagev1.Outcome_OUTCOME_REPLY, Attempts: 1})
		want := client.Produced()
		waitUntil(t, step+": the result acked", 20*time.Second, func() bool { return client.Acked().Seq >= want })
	}
	restart := func() {
		t.Helper()
		dir, addr := c.dir, c.addr
		c.stop()
		c = startController(t, func(cfg *Config) { cfg.DataDir, cfg.Listen = dir, addr })
	}
	issuedBy := func(caFile string) bool {
		b, err := os.ReadFile(filepath.Join(c.dir, caFile))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM block", caFile)
		}
		ca, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return client.Identity().Cert.Leaf.CheckSignatureFrom(ca) == nil
	}

	delivered("before the rotation")
	firstSerial := client.Identity().Cert.Leaf.SerialNumber.Text(16)

	if err := fleet.RotateCA(c.dir, time.Now()); err != nil {
		t.Fatal(err)
	}
	restart()
	waitUntil(t, "a certificate of the next CA", 20*time.Second, func() bool { return issuedBy(fleet.CANextCertFile) })
	renewedSerial := client.Identity().Cert.Leaf.SerialNumber.Text(16)
	waitUntil(t, "a session with the renewed certificate", 20*time.Second, func() bool {
		return countRows(t, c.dir, `SELECT count(*) FROM agents WHERE id = ? AND cert_serial = ? AND prev_cert_serial = ''`, id.AgentID, renewedSerial) == 1
	})
	if n := countRows(t, c.dir, `SELECT count(*) FROM audit WHERE action = 'agent.renew' AND subject = ?`, id.AgentID); n != 1 {
		t.Fatalf("%d agent.renew audit entries; want 1", n)
	}
	delivered("during the rotation")
	if !strings.Contains(logs.String(), "certificate renewal advised by controller") {
		t.Fatal("the agent was not advised to renew")
	}

	if err := fleet.FinishCARotation(c.dir); err != nil {
		t.Fatal(err)
	}
	restart()
	sessions := client.Sessions()
	waitUntil(t, "a session after the rotation finished", 20*time.Second, func() bool { return client.Sessions() > sessions })
	delivered("after the rotation")
	if !issuedBy(fleet.CACertFile) || client.Identity().Cert.Leaf.SerialNumber.Text(16) != renewedSerial {
		t.Fatal("the agent's certificate changed again, or is not of the now current CA")
	}
	if renewedSerial == firstSerial {
		t.Fatal("no new certificate")
	}
	// On disk too: a restarted agent comes back with the renewed identity.
	loaded, err := uplink.LoadIdentity(state)
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.Cert.Leaf.SerialNumber.Text(16); got != renewedSerial {
		t.Fatalf("state dir holds serial %s; want %s", got, renewedSerial)
	}
}
