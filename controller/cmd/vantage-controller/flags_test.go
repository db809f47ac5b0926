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

// TestBGPFlags: the collector's flags are off by default, and every
// mistake is refused naming its flag before anything starts.
func TestBGPFlags(t *testing.T) {
	checkFlags(t, map[string]string{"bgp-listen": "", "bmp-listen": "", "bgp-as": "0", "bgp-router-id": "", "bgp-peer": "[]"},
		[]flagRefusal{
			{"peer without a listener", []string{"--bgp-peer", "198.51.100.33,as=64511"}, "--bgp-peer: needs --bgp-listen (the collector only accepts sessions)"},
			{"no router id", []string{"--bgp-listen", "127.0.0.1:0", "--bgp-as", "64496"}, "--bgp-router-id: required with --bgp-listen or --bmp-listen"},
			{"no AS", []string{"--bgp-listen", "127.0.0.1:0", "--bgp-router-id", "192.0.2.9"}, "--bgp-as: required with --bgp-listen"},
			{"bad router id", []string{"--bmp-listen", "127.0.0.1:0", "--bgp-router-id", "x"}, `--bgp-router-id: ParseAddr("x"): unable to parse IP`},
			{"bad peer", []string{"--bgp-listen", "127.0.0.1:0", "--bgp-as", "64496", "--bgp-router-id", "192.0.2.9", "--bgp-peer", "198.51.100.33"},
				"--bgp-peer 1 (\"198.51.100.33\"): invalid collector config: peer \"198.51.100.33\": as=: missing"},
		})
}
