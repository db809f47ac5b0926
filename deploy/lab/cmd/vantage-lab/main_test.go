package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-net/vantage/deploy/lab"
)

// The test binary doubles as vantage-lab when this variable is set, so "up"
// can start its detached "serve" child from os.Executable().
const asCLI = "VANTAGE_LAB_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), asCLI+"=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("vantage-lab %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestRealCLI drives a lab through separate CLI invocations, as a shell
// user would: up (with its detached serve), exec, fault, status, down.
func TestRealCLI(t *testing.T) {
	if err := lab.CheckHost(); err != nil {
		t.Skip("needs root (or CAP_SYS_ADMIN+CAP_NET_ADMIN) and ip/nft to create network namespaces: ", err)
	}
	const prefix = "vlt3"
	t.Cleanup(func() { _ = lab.Cleanup(prefix) })

	out := mustRun(t, "up", "--prefix", prefix)
	if !strings.Contains(out, "services held by pid") || !strings.Contains(out, "controller  controller 198.51.100.34") {
		t.Errorf("up output:\n%s", out)
	}
	pid := lab.ServeRunning(prefix)
	if pid == 0 {
		t.Fatal("no serve process after up")
	}
	// The service outlives "up": it is held by the detached serve process.
	out = mustRun(t, "--prefix", prefix, "exec", "vantage-a", "--", "timeout", "2", "bash", "-c",
		"exec 3<>/dev/tcp/198.18.2.10/80 && head -n1 <&3")
	if strings.TrimSpace(out) != "vantage-lab net2" {
		t.Errorf("banner = %q", out)
	}

	mustRun(t, "--prefix", prefix, "fault", "blackout", "net2")
	if out, err := run(t, "--prefix", prefix, "exec", "vantage-a", "--", "ping", "-c1", "-W1", "198.18.2.10"); err == nil {
		t.Errorf("ping through a blackout succeeded:\n%s", out)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exec must pass ping's exit status 1 through, got %v", err)
	}
	mustRun(t, "--prefix", prefix, "fault", "loss", "upstream", "30")
	out = mustRun(t, "status", "--prefix", prefix)
	for _, want := range []string{"fault: blackout net2", "fault: loss at upstream: ip daddr 198.18.0.0/16 numgen random mod 100 < 30 drop"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if out, err := run(t, "--prefix", prefix, "fault", "loss", "vantage-a", "30"); err == nil || !strings.Contains(out, `"vantage-a" is not a router`) {
		t.Errorf("loss on a vantage: %v\n%s", err, out)
	}
	mustRun(t, "--prefix", prefix, "fault", "restore")
	mustRun(t, "--prefix", prefix, "fault", "loss", "upstream", "0")
	mustRun(t, "--prefix", prefix, "exec", "vantage-a", "--", "ping", "-c1", "-W1", "198.18.2.10")

	// The faults of each cause, through the CLI.
	mustRun(t, "--prefix", prefix, "fault", "cut-inside", "net0")
	mustRun(t, "--prefix", prefix, "fault", "withdraw", "--silent", "upstream-b", "net2")
	mustRun(t, "--prefix", prefix, "fault", "withdraw", "upstream-b", "net3")
	mustRun(t, "--prefix", prefix, "fault", "step-loss", "border", "20", "50")
	mustRun(t, "--prefix", prefix, "fault", "border-down", "upstream")
	out = mustRun(t, "status", "--prefix", prefix)
	for _, want := range []string{"fault: cut-inside net0", "fault: withdraw net2 at upstream-b (silent)",
		"fault: withdraw net3 at upstream-b (unreachable)", "fault: border-down upstream",
		"fault: step-loss at border: ip daddr 198.18.0.0/16 limit rate over 50/second burst 50 packets drop",
		"fault: step-loss at border: ip daddr 198.18.0.0/16 numgen random mod 100 < 20 drop"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if out, err := run(t, "--prefix", prefix, "fault", "step-loss", "border", "x"); err == nil || !strings.Contains(out, `pct "x" is not an integer`) {
		t.Errorf("step-loss x: %v\n%s", err, out)
	}
	mustRun(t, "--prefix", prefix, "fault", "border-up", "upstream")
	mustRun(t, "--prefix", prefix, "fault", "step-loss", "border", "0")
	mustRun(t, "--prefix", prefix, "fault", "reannounce", "upstream-b")
	mustRun(t, "--prefix", prefix, "fault", "repair-inside")
	out = mustRun(t, "status", "--prefix", prefix)
	if !strings.Contains(out, "faults: none") {
		t.Errorf("faults left:\n%s", out)
	}
	for _, a := range []string{"198.18.0.10", "198.18.2.10", "198.18.3.10"} {
		mustRun(t, "--prefix", prefix, "exec", "vantage-a", "--", "ping", "-c1", "-W1", a)
	}

	mustRun(t, "down", "--prefix", prefix)
	if err := syscall.Kill(pid, 0); err == nil {
		// Not our child, so it cannot linger as a zombie of ours; give the
		// kernel a moment to reap it.
		time.Sleep(200 * time.Millisecond)
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.Contains(string(b), "serve") {
			t.Errorf("serve process %d survived down", pid)
		}
	}
	if out, err := run(t, "status", "--prefix", prefix); err == nil || !strings.Contains(out, "lab is not up") {
		t.Errorf("status after down: %v\n%s", err, out)
	}
}

func TestParseStep(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want lab.LossStep
		err  string
	}{
		{in: "20", want: lab.LossStep{Pct: 20}},
		{in: "20%/50", want: lab.LossStep{Pct: 20, Rate: 50}},
		{in: "0/0/512/1536", want: lab.LossStep{Capacity: 512, Flood: 1536}},
		{in: "x", err: `step "x": pct "x" is not an integer`},
		{in: "0/0/fast", err: `step "0/0/fast": capacity "fast" is not an integer`},
		{in: "1/2/3/4/5", err: `step "1/2/3/4/5": want pct[/rate[/capacity[/flood]]]`},
	} {
		got, err := parseStep(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("parseStep(%q) = %v, want error %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseStep(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
