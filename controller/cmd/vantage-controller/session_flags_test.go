package main

import "testing"

// TestSessionFlags: the session admission and shutdown flags default to
// ingest's defaults and refuse negative values, naming the flags.
func TestSessionFlags(t *testing.T) {
	checkFlags(t, map[string]string{"session-rate": "200", "session-burst": "50", "session-starts": "64",
		"shutdown-grace": "5s", "shutdown-timeout": "10s"}, []flagRefusal{
		{"--session-rate", []string{"--session-rate", "-1"}, "--session-rate -1, --session-burst 50, --session-starts 64, --shutdown-grace 5s: must not be negative"},
		{"--session-burst", []string{"--session-burst", "-1"}, "--session-rate 200, --session-burst -1, --session-starts 64, --shutdown-grace 5s: must not be negative"},
		{"--session-starts", []string{"--session-starts", "-1"}, "--session-rate 200, --session-burst 50, --session-starts -1, --shutdown-grace 5s: must not be negative"},
		{"--shutdown-grace", []string{"--shutdown-grace", "-1s"}, "--session-rate 200, --session-burst 50, --session-starts 64, --shutdown-grace -1s: must not be negative"},
	})
}
