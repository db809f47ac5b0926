package demo

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// namespaceDialer returns a gRPC context dialer whose TCP sockets are created
// inside the named network namespace. The harness runs in the host namespace
// while the controller listens inside the lab; a socket keeps the namespace
// it was created in, so only socket creation has to happen on a thread that
// has switched namespaces.
func namespaceDialer(nsName string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		type result struct {
			conn net.Conn
			err  error
		}
		done := make(chan result, 1)
		go func() {
			conn, err := dialIn(ctx, nsName, addr)
			done <- result{conn, err}
		}()
		select {
		case r := <-done:
			return r.conn, r.err
		case <-ctx.Done():
			go func() {
				if r := <-done; r.conn != nil {
					r.conn.Close()
				}
			}()
			return nil, ctx.Err()
		}
	}
}

// dialIn switches the calling OS thread into nsName, dials, and switches
// back. If switching back fails the thread stays locked, so the runtime
// discards it when the goroutine exits instead of reusing a thread in the
// wrong namespace.
func dialIn(ctx context.Context, nsName, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(nsName)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open netns %s: %w", nsName, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter netns %s: %w", nsName, err)
	}
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, "tcp", addr)
	if err := netns.Set(orig); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("leave netns %s: %w", nsName, err)
	}
	runtime.UnlockOSThread()
	if dialErr != nil {
		return nil, fmt.Errorf("dial %s in netns %s: %w", addr, nsName, dialErr)
	}
	return conn, nil
}
