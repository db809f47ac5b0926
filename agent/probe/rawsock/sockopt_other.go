//go:build !linux

package rawsock

import (
	"net/netip"
	"time"
)

// Conn is Linux-only: Listen fails elsewhere.
type Conn struct{}

// Listen fails outside Linux.
func Listen(bool, Proto, Options) (*Conn, error) { return nil, ErrUnsupported }

// V6 reports false.
func (*Conn) V6() bool { return false }

// ReadBatch fails.
func (*Conn) ReadBatch([]Message) (int, error) { return 0, ErrUnsupported }

// ReadBatchNow fails.
func (*Conn) ReadBatchNow([]Message) (int, error) { return 0, ErrUnsupported }

// WriteBatch fails.
func (*Conn) WriteBatch([]Message) (int, error) { return 0, ErrUnsupported }

// SetReadDeadline fails.
func (*Conn) SetReadDeadline(time.Time) error { return ErrUnsupported }

// Close does nothing.
func (*Conn) Close() error { return nil }

// ParseOOB returns zeros outside Linux.
func ParseOOB([]byte) (time.Time, int) { return time.Time{}, 0 }

// RouteSource is Linux-only.
type RouteSource struct{}

// NewRouteSource fails outside Linux.
func NewRouteSource(bool) (*RouteSource, error) { return nil, ErrUnsupported }

// Lookup fails outside Linux.
func (*RouteSource) Lookup(netip.Addr) (netip.Addr, error) { return netip.Addr{}, ErrUnsupported }

// Close does nothing.
func (*RouteSource) Close() error { return nil }
