package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vantage-net/vantage/deploy/lab"
)

// TestRealCLIBGP drives a BGP lab through separate CLI invocations: the
// BIRDs outlive "up", the faults and "bird" reach them from other
// processes, and "down" stops them.
func TestRealCLIBGP(t *testing.T) {
	if err := lab.CheckHost(); err != nil {
		t.Skip("needs root (or CAP_SYS_ADMIN+CAP_NET_ADMIN) and ip/nft to create network namespaces: ", err)
	}
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("needs bird (Debian package bird2)")
	}
	const prefix = "bgc"
	t.Cleanup(func() { _ = lab.Cleanup(prefix) })
	mustRun(t, "up", "--prefix", prefix, "--bgp")
	if out := mustRun(t, "bird", "--prefix", prefix, "ix", "route"); !strings.Contains(out, "198.18.0.0/24") {
		t.Errorf("bird ix route:\n%s", out)
	}
	mustRun(t, "fault", "--prefix", prefix, "bgp-withdraw", "upstream", "net0")
	mustRun(t, "fault", "--prefix", prefix, "dataplane-down", "border")
	out := mustRun(t, "status", "--prefix", prefix)
	for _, want := range []string{"routing: BGP", "fault: bgp-withdraw net0 at upstream", "fault: dataplane-down border"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if out := mustRun(t, "bird", "--prefix", prefix, "ix", "route"); strings.Contains(out, "198.18.0.0/24") {
		t.Errorf("bird ix route after bgp-withdraw still has net0:\n%s", out)
	}
	mustRun(t, "fault", "--prefix", prefix, "bgp-announce", "upstream")
	mustRun(t, "fault", "--prefix", prefix, "dataplane-up", "border")
	if out := mustRun(t, "status", "--prefix", prefix); strings.Contains(out, "fault: ") {
		t.Errorf("status after the repairs:\n%s", out)
	}
	if _, err := run(t, "fault", "--prefix", prefix, "blackout", "net0"); err == nil {
		t.Error("fault blackout in a BGP lab: no error")
	}
	dump := filepath.Join(t.TempDir(), "ix.mrt")
	if out := mustRun(t, "mrt", "--prefix", prefix, "ix", dump); !strings.Contains(out, "4 IPv4 and 4 IPv6 prefixes") {
		t.Errorf("mrt: %s", out)
	}
	mustRun(t, "down", "--prefix", prefix)
	if out, _ := exec.Command("pgrep", "-f", "/run/vantage-lab/"+prefix+"-bird-").Output(); len(out) > 0 {
		t.Errorf("bird processes left after down: %s", out)
	}
}
