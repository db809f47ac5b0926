package demo

import (
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// endThreads does what the lab does to enter a namespace, n times: a
// goroutine locks its thread and returns without unlocking it, so the
// runtime ends that thread.
func endThreads(n int) {
	for range n {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(done)
		}()
		<-done
	}
}

// TestStartChildSurvivesThreadExits: a child started with Pdeathsig by
// StartChild outlives the runtime ending threads (the lab does so for every
// namespace it enters), while one started by a plain Start is killed by
// them. The plain case is the control: it shows the mechanism that killed
// the agents of TestAgentUplinkCut is real on this machine.
func TestStartChildSurvivesThreadExits(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("needs sleep on PATH")
	}
	const tries = 5
	plainKilled := 0
	for range tries {
		cmd := exec.Command("sleep", "30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		endThreads(32)
		select {
		case <-waited:
			plainKilled++
		case <-time.After(300 * time.Millisecond):
			_ = cmd.Process.Kill()
			<-waited
		}
	}
	t.Logf("plain Start with Pdeathsig: %d of %d children killed by 32 thread exits each", plainKilled, tries)

	for i := range tries {
		cmd := exec.Command("sleep", "30")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		waited, err := StartChild(cmd)
		if err != nil {
			t.Fatal(err)
		}
		endThreads(32)
		select {
		case err := <-waited:
			t.Fatalf("try %d: the child of StartChild ended after thread exits: %v", i, err)
		case <-time.After(300 * time.Millisecond):
		}
		_ = cmd.Process.Kill()
		if err := <-waited; err == nil {
			t.Fatalf("try %d: killed child reported a clean exit", i)
		}
	}
}
