//go:build !linux

package trace

import "errors"

// openRaw: the shared raw-socket tracer is Linux only (header inclusion,
// recvmmsg, SO_TIMESTAMPNS).
func openRaw(bool, int) (*family, error) {
	return nil, errors.New("raw traceroute sockets are implemented on Linux only")
}
