//go:build !linux

package rawsock

import "time"

func sockopts(int, int) error { return ErrUnsupported }

// ParseOOB returns zeros outside Linux.
func ParseOOB([]byte) (time.Time, int) { return time.Time{}, 0 }
