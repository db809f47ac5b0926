//go:build !linux

package tcp

import "syscall"

// capSYNs cannot cap SYN retransmissions outside Linux (no TCP_SYNCNT);
// the limiter is still charged for the ones that fit in the timeout at
// the standard RTO.
func capSYNs(int) func(network, address string, c syscall.RawConn) error { return nil }
