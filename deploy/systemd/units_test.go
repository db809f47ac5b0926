package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// unit is a parsed unit file: section -> key -> every assignment, in order.
type unit map[string]map[string][]string

// parseUnit reads the subset of the systemd unit syntax the units use:
// [Section] headers, Key=Value lines, # and ; comments, and lines continued
// with a trailing backslash.
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open unit: %v", err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	var cont strings.Builder
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if cont.Len() > 0 || strings.HasSuffix(line, `\`) {
			if s, ok := strings.CutSuffix(line, `\`); ok {
				cont.WriteString(s)
				cont.WriteString(" ")
				continue
			}
			cont.WriteString(line)
			line = cont.String()
			cont.Reset()
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: want Key=Value inside a section, got %q", path, n, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read unit: %v", err)
	}
	if cont.Len() > 0 {
		t.Fatalf("%s: file ends inside a continued line", path)
	}
	return u
}

// last is the effective value of a single-valued key and whether it is set.
func (u unit) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// argv splits ExecStart into words (the units use no quoting).
func (u unit) argv(t *testing.T) []string {
	t.Helper()
	exec, ok := u.last("Service", "ExecStart")
	if !ok {
		t.Fatal("no ExecStart")
	}
	return strings.Fields(exec)
}

// flagValue finds "--flag value" or "--flag=value" in argv.
func flagValue(argv []string, flag string) (string, bool) {
	for i, a := range argv {
		if a == flag && i+1 < len(argv) {
			return argv[i+1], true
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

// parseEnvFile reads KEY=VALUE lines of an EnvironmentFile.
func parseEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read env file: %v", err)
	}
	env := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s:%d: want KEY=VALUE, got %q", path, i+1, line)
		}
		env[k] = v
	}
	return env
}

// hardening is what both units must set, exactly.
var hardening = map[string]string{
	"DynamicUser":             "no",
	"NoNewPrivileges":         "yes",
	"ProtectSystem":           "strict",
	"ProtectHome":             "yes",
	"PrivateTmp":              "yes",
	"PrivateDevices":          "yes",
	"ProtectKernelTunables":   "yes",
	"ProtectKernelModules":    "yes",
	"ProtectControlGroups":    "yes",
	"RestrictNamespaces":      "yes",
	"RestrictSUIDSGID":        "yes",
	"LockPersonality":         "yes",
	"MemoryDenyWriteExecute":  "yes",
	"StateDirectoryMode":      "0700",
	"UMask":                   "0077",
	"RestrictAddressFamilies": "AF_INET AF_INET6 AF_NETLINK AF_UNIX",
	"SystemCallArchitectures": "native",
	"Restart":                 "always",
}

var envRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

func TestUnits(t *testing.T) {
	tests := []struct {
		file    string
		envFile string
		service map[string]string // exact values beyond hardening
		binary  string
		flags   map[string]string // flag -> exact value ("" = any value)
		// envDefined are variables the env example must set (non-empty).
		envDefined []string
	}{
		{
			file:    "vantage-agent.service",
			envFile: "vantage-agent.env.example",
			service: map[string]string{
				"User":                  "vantage-agent",
				"Group":                 "vantage-agent",
				"StateDirectory":        "vantage-agent",
				"AmbientCapabilities":   "CAP_NET_RAW",
				"CapabilityBoundingSet": "CAP_NET_RAW",
				"EnvironmentFile":       "/etc/vantage/vantage-agent.env",
			},
			binary: "/usr/local/bin/vantage-agent",
			flags: map[string]string{
				"--controller": "${VANTAGE_CONTROLLER}",
				"--state":      "/var/lib/vantage-agent",
				"--ca-hash":    "${VANTAGE_CA_HASH}",
				"--name":       "${VANTAGE_NAME}",
			},
			envDefined: []string{"VANTAGE_CONTROLLER", "VANTAGE_AGENT_ARGS"},
		},
		{
			file:    "vantage-controller.service",
			envFile: "vantage-controller.env.example",
			service: map[string]string{
				"User":                  "vantage",
				"Group":                 "vantage",
				"StateDirectory":        "vantage",
				"AmbientCapabilities":   "",
				"CapabilityBoundingSet": "",
				"EnvironmentFile":       "-/etc/vantage/vantage-controller.env",
			},
			binary: "/usr/local/bin/vantage-controller",
			flags: map[string]string{
				"--data":   "/var/lib/vantage",
				"--listen": ":7443",
			},
			envDefined: []string{"VANTAGE_CONTROLLER_ARGS"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			u := parseUnit(t, tt.file)
			want := map[string]string{}
			for k, v := range hardening {
				want[k] = v
			}
			for k, v := range tt.service {
				want[k] = v
			}
			for k, v := range want {
				got, ok := u.last("Service", k)
				if !ok {
					t.Errorf("[Service] %s is not set; want %q", k, v)
				} else if got != v {
					t.Errorf("[Service] %s=%q, want %q", k, got, v)
				}
			}
			for _, k := range []string{"MemoryMax", "RestartSec", "TasksMax", "LimitNOFILE"} {
				if v, _ := u.last("Service", k); v == "" {
					t.Errorf("[Service] %s must be set", k)
				}
			}
			if !contains(u["Service"]["SystemCallFilter"], "@system-service") {
				t.Errorf("[Service] SystemCallFilter=%q lacks @system-service", u["Service"]["SystemCallFilter"])
			}
			if v, _ := u.last("Unit", "StartLimitIntervalSec"); v != "0" {
				t.Errorf("[Unit] StartLimitIntervalSec=%q, want 0 so that restarts never stop", v)
			}
			if v, _ := u.last("Install", "WantedBy"); v != "multi-user.target" {
				t.Errorf("[Install] WantedBy=%q, want multi-user.target", v)
			}

			argv := u.argv(t)
			if argv[0] != tt.binary {
				t.Errorf("ExecStart runs %q, want %q", argv[0], tt.binary)
			}
			if _, ok := flagValue(argv, "--join-token"); ok {
				t.Errorf("ExecStart passes --join-token: every local user sees it in ps; the agent reads $VANTAGE_JOIN_TOKEN")
			}
			for flag, v := range tt.flags {
				got, ok := flagValue(argv, flag)
				switch {
				case !ok:
					t.Errorf("ExecStart lacks %s", flag)
				case v != "" && got != v:
					t.Errorf("ExecStart %s %q, want %q", flag, got, v)
				}
			}

			// Every variable ExecStart uses is defined by the unit or the
			// env file, so nothing expands to an accidental empty string.
			env := parseEnvFile(t, tt.envFile)
			defined := map[string]bool{}
			for _, kv := range u["Service"]["Environment"] {
				k, _, _ := strings.Cut(kv, "=")
				defined[k] = true
			}
			for k := range env {
				defined[k] = true
			}
			exec, _ := u.last("Service", "ExecStart")
			for _, m := range envRef.FindAllStringSubmatch(exec, -1) {
				if !defined[m[1]] {
					t.Errorf("ExecStart uses $%s, which neither Environment= nor %s defines", m[1], tt.envFile)
				}
			}
			for _, k := range tt.envDefined {
				if env[k] == "" {
					t.Errorf("%s: %s is not set", tt.envFile, k)
				}
			}
		})
	}
}

func TestAgentEnvExampleShowsLabels(t *testing.T) {
	env := parseEnvFile(t, "vantage-agent.env.example")
	if got := strings.Fields(env["VANTAGE_AGENT_ARGS"]); !contains(got, "--label") {
		t.Errorf("VANTAGE_AGENT_ARGS=%q: want an example --label k=v", env["VANTAGE_AGENT_ARGS"])
	}
	if env["VANTAGE_JOIN_TOKEN"] != "" {
		t.Errorf("the example must not ship a join token")
	}
}

func contains(vs []string, want string) bool {
	for _, v := range vs {
		for _, f := range strings.Fields(v) {
			if f == want {
				return true
			}
		}
	}
	return false
}

// tolerated are systemd-analyze lines that are fine: the backoff keys
// appeared in systemd 254; older versions ignore them.
var tolerated = regexp.MustCompile(`Unknown key( name)? '(RestartSteps|RestartMaxDelaySec)'`)

// stagedUnits copies the units into a temporary directory with ExecStart
// pointing at a stub, since verify checks that the binary exists.
func stagedUnits(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	stub := filepath.Join(dir, "stub")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, name := range []string{"vantage-agent", "vantage-controller"} {
		b, err := os.ReadFile(name + ".service")
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "/usr/local/bin/"+name, stub)
		p := filepath.Join(dir, name+".service")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not on PATH (Debian package systemd; make deps installs it)")
	}
	paths := stagedUnits(t)
	out, err := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case line == "" || tolerated.MatchString(line):
		case strings.Contains(line, ".service"):
			t.Errorf("systemd-analyze verify: %s", line)
		default:
			t.Logf("systemd-analyze verify (not about the units): %s", line)
		}
	}

	// The exposure score, where this systemd can rate a unit file offline
	// (v250+): both units must stay in systemd's "OK" band.
	for _, p := range paths {
		out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=20", p).CombinedOutput()
		if err != nil && strings.Contains(string(out), "unrecognized option") {
			t.Logf("systemd-analyze security --offline is not supported here; exposure not checked")
			return
		}
		if err != nil {
			t.Errorf("systemd-analyze security %s: exposure above 2.0 or failure: %v\n%s", filepath.Base(p), err, lastLines(string(out), 3))
			continue
		}
		t.Logf("%s", lastLines(string(out), 1))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
