// Package probetest holds the setup the probe packages' tests share, so
// that each test says what it probes rather than how its peer is built.
// Only tests import it.
package probetest

import (
	"net"
	"sync"
	"testing"
)

// Listen is an open TCP port on addr ("127.0.0.1:0" for any free one):
// every connection is accepted and closed at once. It is closed, and its
// accept loop waited for, when the test ends.
func Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	Serve(t, ln)
	return ln
}

// Serve accepts and closes every connection ln receives until the test
// ends, then closes ln and waits for the accept loop.
func Serve(t testing.TB, ln net.Listener) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
}

// Port is ln's TCP port.
func Port(ln net.Listener) uint32 { return uint32(ln.Addr().(*net.TCPAddr).Port) }
