package main

import (
	"io"
	"testing"
)

// flagRefusal is a command line that vantage-controller refuses before it
// starts, and the exact error.
type flagRefusal struct {
	name string
	args []string
	want string
}

// checkFlags checks that each flag's default is as in defaults, and that
// each command line of refused fails with its error.
func checkFlags(t *testing.T, defaults map[string]string, refused []flagRefusal) {
	t.Helper()
	root := newRootCmd()
	for name, want := range defaults {
		if got := root.Flags().Lookup(name).DefValue; got != want {
			t.Errorf("--%s default = %s, want %s", name, got, want)
		}
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
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
