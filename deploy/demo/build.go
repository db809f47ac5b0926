package demo

import (
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // snapshots the controller's database of a failed test
)

// The commands the lab tests build, as package paths for BuildBinaries.
const (
	AgentCmd      = "github.com/vantage-net/vantage/agent/cmd/vantage-agent"
	ControllerCmd = "github.com/vantage-net/vantage/controller/cmd/vantage-controller"
	GrpcurlCmd    = "github.com/fullstorydev/grpcurl/cmd/grpcurl"
)

// BuildBinaries builds the commands pkgs into dir with "go build", which
// writes its output to stderr.
func BuildBinaries(dir string, pkgs ...string) error {
	build := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build %v: %w", pkgs, err)
	}
	return nil
}

// RunWithBinaries is the body of TestMain for a package of lab tests. When
// they can run (as root, not in -short mode) it builds pkgs into a
// temporary directory, sets *binDir to it, runs the tests and removes the
// directory; otherwise it only runs them, and each lab test skips itself
// with the reason (SkipUnlessLab). It returns the exit code for os.Exit.
// Call flag.Parse first.
func RunWithBinaries(m *testing.M, binDir *string, pkgs ...string) int {
	if os.Geteuid() != 0 || testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "vantage-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "binaries for the lab tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := BuildBinaries(dir, pkgs...); err != nil {
		fmt.Fprintln(os.Stderr, "binaries for the lab tests:", err)
		return 1
	}
	*binDir = dir
	return m.Run()
}

// SkipUnlessLab skips t unless the namespace lab can be built: it needs
// root, ip and nft on PATH, and it does not run in -short mode. what names
// the test in the -short message, e.g. "end-to-end lab test".
func SkipUnlessLab(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces, veth links and nftables rules, and agents use raw ICMP sockets")
	}
	if testing.Short() {
		t.Skip(what + " skipped in -short mode")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s on PATH (iproute2, nftables): %v", tool, err)
		}
	}
}

// CloseAtCleanup has t close h when it ends. If t failed, it first logs
// the last tailBytes of every node's log (controller first), then has every
// running process dump its goroutines into its log at once (SIGQUIT: the Go
// runtime writes every goroutine's stack and exits) and copies the logs to
// a directory that outlives the test, so a stuck process says where it is
// stuck. A process that was no longer running has the harness's line saying
// how it ended at the end of its log instead.
func CloseAtCleanup(t testing.TB, h *Harness, tailBytes int) {
	t.Helper()
	nodes := append([]string{"controller"}, h.Lab.Vantages()...)
	t.Cleanup(func() {
		if t.Failed() {
			keepFailedLogs(t, h, nodes, tailBytes)
		}
		if err := h.Close(); err != nil {
			t.Errorf("close harness: %v", err)
		}
	})
}

func keepFailedLogs(t testing.TB, h *Harness, nodes []string, tailBytes int) {
	for _, n := range nodes {
		b, _ := os.ReadFile(h.LogPath(n))
		if len(b) > tailBytes {
			b = append([]byte("..."), b[len(b)-tailBytes:]...)
		}
		t.Logf("---- %s.log (tail) ----\n%s", n, b)
	}
	keep, err := os.MkdirTemp("", "vantage-failed-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	dumped := h.DumpAll()
	for _, n := range nodes {
		if err := dumped[n]; err != nil {
			t.Logf("%s: no goroutine dump: %v", n, err)
		}
		if b, err := os.ReadFile(h.LogPath(n)); err == nil {
			_ = os.WriteFile(filepath.Join(keep, n+".log"), b, 0o644)
		}
	}
	if err := snapshotDB(filepath.Join(h.DataDir(), "vantage.db"), filepath.Join(keep, "vantage.db")); err != nil {
		t.Logf("no copy of the controller's database: %v", err)
	}
	t.Logf("full logs, with every process's goroutine stacks at the failure, and the controller's database: %s", keep)
}

// snapshotDB copies the SQLite database at src, which the controller may
// still be writing, into a new consistent file dst (VACUUM INTO), so a
// failed test's results, transitions and agents can be queried afterwards.
func snapshotDB(src, dst string) error {
	db, err := sql.Open("sqlite", "file:"+src+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer db.Close()
	if _, err := db.Exec(`VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
