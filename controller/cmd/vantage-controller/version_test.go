package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestVersionFlag: --version names the binary and its build (issue 14).
func TestVersionFlag(t *testing.T) {
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "vantage-controller dev (module ") || !strings.HasSuffix(got, "\n") {
		t.Errorf("--version printed %q", got)
	}
}
