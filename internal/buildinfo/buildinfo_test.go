package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.99.0", Main: debug.Module{Version: "v0.0.0-20261203-abcdef"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "75fe3c9aaaaabbbbbccccc"}, {Key: "vcs.modified", Value: "true"}}}
	tests := []struct {
		name, version string
		bi            *debug.BuildInfo
		want          string
	}{
		{"stamped", "v1.2.3", bi, "vantagectl v1.2.3 (module v0.0.0-20261203-abcdef, commit 75fe3c9aaaaa+modified, go1.99.0 "},
		{"dev without build info", "dev", nil, "vantagectl dev (go"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := format("vantagectl", tt.version, tt.bi); !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want prefix %q", got, tt.want)
			}
		})
	}
	// The test binary has build info: String names the module version.
	if got := String("x"); !strings.HasPrefix(got, "x dev (module ") {
		t.Errorf("String = %q", got)
	}
}
