package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveJoinToken(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("token", "  0123abcd\n")
	empty := file("empty", "\n")
	huge := file("huge", strings.Repeat("a", maxJoinTokenFile+1))
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == joinTokenEnv {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name    string
		o       options
		env     string
		want    string
		wantErr string
	}{
		{"flag", options{joinToken: "flag-token"}, "env-token", "flag-token", ""},
		{"file", options{joinTokenFile: good}, "env-token", "0123abcd", ""},
		{"environment", options{}, " env-token\n", "env-token", ""},
		{"none", options{}, "", "", ""},
		{"both flags", options{joinToken: "x", joinTokenFile: good}, "", "", "--join-token and --join-token-file: give one, not both"},
		{"missing file", options{joinTokenFile: filepath.Join(dir, "nope")}, "", "", "--join-token-file: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"empty file", options{joinTokenFile: empty}, "env-token", "", "--join-token-file " + empty + ": empty"},
		{"huge file", options{joinTokenFile: huge}, "", "", "--join-token-file " + huge + ": larger than 4096 bytes; want the token alone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveJoinToken(tc.o, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v; want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resolveJoinToken = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if newRootCmd().Flags().Lookup("join-token-file") == nil {
		t.Error("no --join-token-file flag")
	}
}
