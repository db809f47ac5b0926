package main

import (
	"io"
	"testing"
)

// TestIngestLimitFlags: the ingest limits' flags default to ingest's
// defaults and refuse negative values, naming the flags.
func TestIngestLimitFlags(t *testing.T) {
	root := newRootCmd()
	for name, want := range map[string]string{"ingest-gap-rows": "4096", "ingest-gap-rate": "10000",
		"ingest-gap-burst": "10000000", "ingest-clock-skew": "5m0s"} {
		if got := root.Flags().Lookup(name).DefValue; got != want {
			t.Errorf("--%s default = %s, want %s", name, got, want)
		}
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--ingest-gap-rate", "-1"}, "--ingest-gap-rate -1, --ingest-gap-burst 10000000, --ingest-clock-skew 5m0s: must not be negative"},
		{[]string{"--ingest-gap-burst", "-1"}, "--ingest-gap-rate 10000, --ingest-gap-burst -1, --ingest-clock-skew 5m0s: must not be negative"},
		{[]string{"--ingest-clock-skew", "-1s"}, "--ingest-gap-rate 10000, --ingest-gap-burst 10000000, --ingest-clock-skew -1s: must not be negative"},
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
