//go:build linux

package tcp

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// capSYNs returns a net.Dialer Control that sets TCP_SYNCNT, the most SYN
// retransmissions the kernel makes for the socket's connect.
func capSYNs(retries int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT, retries)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("TCP_SYNCNT %d: %w", retries, serr)
		}
		return nil
	}
}
