//go:build !linux

package rawsock

import "time"

func sockopts(int, int) error { return ErrUnsupported }

// ParseOOB returns zeros outside Linux.
func ParseOOB([]byte) (time.Time, int) { return time.Time{}, 0 }

// RouteSource is Linux-only.
type RouteSource struct{}

// NewRouteSource fails outside Linux.
func NewRouteSource() (*RouteSource, error) { return nil, ErrUnsupported }

// Lookup fails outside Linux.
func (*RouteSource) Lookup([4]byte) ([4]byte, error) { return [4]byte{}, ErrUnsupported }

// Close does nothing.
func (*RouteSource) Close() error { return nil }
