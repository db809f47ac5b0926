package main

import (
	"io"
	"testing"
)

// TestSessionFlags: the session admission and shutdown flags default to
// ingest's defaults and refuse negative values, naming the flags.
func TestSessionFlags(t *testing.T) {
	root := newRootCmd()
	for name, want := range map[string]string{"session-rate": "200", "session-burst": "50", "session-starts": "64",
		"shutdown-grace": "5s", "shutdown-timeout": "10s"} {
		if got := root.Flags().Lookup(name).DefValue; got != want {
			t.Errorf("--%s default = %s, want %s", name, got, want)
		}
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--session-rate", "-1"}, "--session-rate -1, --session-burst 50, --session-starts 64, --shutdown-grace 5s: must not be negative"},
		{[]string{"--session-burst", "-1"}, "--session-rate 200, --session-burst -1, --session-starts 64, --shutdown-grace 5s: must not be negative"},
		{[]string{"--session-starts", "-1"}, "--session-rate 200, --session-burst 50, --session-starts -1, --shutdown-grace 5s: must not be negative"},
		{[]string{"--shutdown-grace", "-1s"}, "--session-rate 200, --session-burst 50, --session-starts 64, --shutdown-grace -1s: must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.args[0], func(t *testing.T) {
			cmd := newRootCmd()
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			cmd.SetArgs(append([]string{"--data", t.TempDir(), "--listen", "127.0.0.1:0"}, tc.args...))
			if err := cmd.Execute(); err == nil || err.Error() != tc.want {
				t.Errorf("Execute = %v, want %q", err, tc.want)
			}
		})
	}
}
