package demo

import (
	"os/exec"
	"runtime"
)

// StartChild starts cmd from an OS thread kept for it until it exits, and
// returns a channel that receives cmd.Wait's result once (then closes).
//
// Why a thread of its own: Linux sends SysProcAttr.Pdeathsig when the
// thread that forked the child ends, not when the process does (prctl(2),
// golang/go#27505). The lab enters a namespace on a locked thread and lets
// that thread die with its goroutine (lab.onThreadIn, Lab.Listen, Lab.Dial,
// the TCP services of every Lab.Up), and the Go runtime runs any goroutine
// on any idle thread, including the one that forked an agent. A child
// started from an ordinary goroutine was therefore SIGKILLed, with no line
// in its log and no stack dump, whenever another test brought a lab up on
// the thread that had forked it. While this goroutine holds the thread
// locked, no other goroutine runs on it, so it cannot be ended early.
//
// The goroutine ends when the child does; the caller owns stopping the
// child (and so the goroutine) and reads the channel to wait for it.
func StartChild(cmd *exec.Cmd) (<-chan error, error) {
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread() // the thread is still in the host namespace
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}
