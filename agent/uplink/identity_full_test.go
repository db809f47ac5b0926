package uplink

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRealEnsureIdentityWaitsForSpace: an enrolled agent whose state disk is
// full at start (it cannot bump its epoch) waits for space instead of
// exiting, which a supervisor would turn into a restart loop; once space
// returns it starts with the next epoch. The disk is a real tmpfs (root).
func TestRealEnsureIdentityWaitsForSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("TestReal disk tests mount a tmpfs: run as root")
	}
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(disk, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(disk, 0); err != nil {
			_ = syscall.Unmount(disk, syscall.MNT_DETACH)
		}
	})
	srv, addr := newTestServer(t)
	cfg := EnrollConfig{Controller: addr, StateDir: filepath.Join(disk, "state"), JoinToken: srv.token,
		CAHash: srv.pin(), Name: "test-agent", Logger: discard()}
	if _, err := Enroll(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(disk, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 512); ; {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	f.Close()

	defer func(d time.Duration) { StateRetry = d }(StateRetry)
	StateRetry = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type loaded struct {
		id  *Identity
		err error
	}
	done := make(chan loaded, 1)
	go func() {
		id, err := EnsureIdentity(ctx, cfg)
		done <- loaded{id, err}
	}()
	select {
	case l := <-done: // the disk is still full: returning now is an exit
		t.Fatalf("EnsureIdentity on a full disk returned %v, %v; want it to wait for space", l.id, l.err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	l := <-done
	if l.err != nil || l.id.Epoch != 1 {
		t.Fatalf("EnsureIdentity after space returned: %+v, %v; want epoch 1", l.id, l.err)
	}
}
