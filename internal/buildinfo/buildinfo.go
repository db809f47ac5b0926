// Package buildinfo says which build a binary is, for --version.
//
// Version is stamped at build by the Makefile:
//
//	go build -ldflags "-X github.com/vantage-net/vantage/internal/buildinfo.Version=v1.2.3"
//
// A plain go build leaves it "dev", and String then adds what the Go
// toolchain recorded: the module version (a pseudo-version when built from
// a module proxy or a tagged checkout), the VCS revision and whether the
// tree was modified.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is the release, set with -ldflags -X; "dev" when not stamped.
var Version = "dev"

// String is the line --version prints for the named binary, e.g.
// "vantagectl v1.2.3 (module (devel), commit 75fe3c9, go1.24.0 linux/amd64)".
func String(binary string) string {
	return format(binary, Version, readBuildInfo())
}

func readBuildInfo() *debug.BuildInfo {
	bi, _ := debug.ReadBuildInfo()
	return bi
}

func format(binary, version string, bi *debug.BuildInfo) string {
	var parts []string
	if bi != nil {
		if v := bi.Main.Version; v != "" {
			parts = append(parts, "module "+v)
		}
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if modified == "true" {
				rev += "+modified"
			}
			parts = append(parts, "commit "+rev)
		}
	}
	goVersion := runtime.Version()
	if bi != nil && bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	parts = append(parts, goVersion+" "+runtime.GOOS+"/"+runtime.GOARCH)
	return fmt.Sprintf("%s %s (%s)", binary, version, strings.Join(parts, ", "))
}
