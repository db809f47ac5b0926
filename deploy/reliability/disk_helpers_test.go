package reliability

// Helpers of the disk fault tests (disk_stall_test.go, disk_full_test.go):
// real file systems the tests own, mounted under a t.TempDir(): a small
// loop-mounted ext4 (the controller's --data; fsfreeze stalls it), a tmpfs
// with a size (an agent's --state), a filler file that fills either, and a
// way to read the controller's /metrics inside its lab namespace. Nothing
// else is ever frozen or filled: freeze checks that the path is the mount
// point of the loop device this test attached.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/spool"
	"github.com/vantage-net/vantage/deploy/demo"
)

// faultTools are the programs the disk fault tests run, with the Debian
// package of each (deploy/install-deps.sh, group faults).
var faultTools = []struct{ bin, pkg string }{
	{"mkfs.ext4", "e2fsprogs"},
	{"losetup", "mount"},
	{"mount", "mount"},
	{"umount", "mount"},
	{"fsfreeze", "util-linux"},
}

// needLoopDisks skips unless loop devices and the tools to make, mount and
// freeze a file system on one are there (root is checked by needLab).
func needLoopDisks(t *testing.T) {
	t.Helper()
	for _, tool := range faultTools {
		if _, err := exec.LookPath(tool.bin); err != nil {
			t.Skipf("disk fault test needs %s (Debian package %s; bash deploy/install-deps.sh faults)", tool.bin, tool.pkg)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skipf("disk fault test needs loop devices: /dev/loop-control: %v", err)
	}
}

// run runs a command and fails the test with its output on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopDisk is an ext4 file system on a loop device, mounted at dir.
type loopDisk struct {
	dir, dev string
	mu       sync.Mutex
	frozen   bool
}

// newLoopDisk makes a sparse image of sizeMiB in a temporary directory, an
// ext4 on it with no reserved blocks (root's writes fill it as anyone's),
// attaches it to a free loop device and mounts it at dir (created). At
// cleanup it is thawed, unmounted and detached, whatever happened; register
// it before anything that uses dir, so that it is torn down after them.
func newLoopDisk(t *testing.T, dir string, sizeMiB int) *loopDisk {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(sizeMiB) << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, "mkfs.ext4", "-q", "-F", "-m", "0", img)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device to attach (losetup --find: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	d := &loopDisk{dir: dir, dev: strings.TrimSpace(string(out))}
	t.Cleanup(func() {
		d.thaw(t)
		for i := 0; ; i++ {
			err := syscall.Unmount(dir, 0)
			if err == nil || errors.Is(err, syscall.EINVAL) {
				break
			}
			if i == 50 { // still busy after 5 s: detach it lazily
				t.Logf("unmount %s: %v; detaching lazily", dir, err)
				_ = syscall.Unmount(dir, syscall.MNT_DETACH)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if out, err := exec.Command("losetup", "--detach", d.dev).CombinedOutput(); err != nil {
			t.Logf("losetup --detach %s: %v: %s", d.dev, err, out)
		}
	})
	run(t, "mount", "-t", "ext4", d.dev, dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// mounted reports whether dir is the mount point of d's loop device.
func (d *loopDisk) mounted() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options ... - fstype source ...
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != d.dir {
			continue
		}
		if i := strings.Index(line, " - "); i >= 0 {
			if g := strings.Fields(line[i+3:]); len(g) >= 2 && g[1] == d.dev {
				return true
			}
		}
	}
	return false
}

// freeze stalls every write to d (fsfreeze -f): writers block until thaw.
// The cleanup registered here thaws it before anything registered earlier
// (the lab, whose processes may be blocked on it) is torn down.
func (d *loopDisk) freeze(t *testing.T) {
	t.Helper()
	if !d.mounted() {
		t.Fatalf("refusing to freeze %s: not the mount point of %s", d.dir, d.dev)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	run(t, "fsfreeze", "--freeze", d.dir)
	d.frozen = true
	t.Cleanup(func() { d.thaw(t) })
}

// thaw ends a freeze (a no-op when not frozen).
func (d *loopDisk) thaw(t *testing.T) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.frozen {
		return
	}
	if out, err := exec.Command("fsfreeze", "--unfreeze", d.dir).CombinedOutput(); err != nil {
		t.Errorf("fsfreeze --unfreeze %s: %v: %s", d.dir, err, out)
		return
	}
	d.frozen = false
}

// newTmpfs mounts a tmpfs of size (e.g. "2m") at dir (created) and
// unmounts it at cleanup.
func newTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
}

// fillDisk writes a file into dir until its file system is full (ENOSPC),
// syncs it and returns its path and size; removing it gives the space back.
func fillDisk(t *testing.T, dir string) (string, int64) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 20, 4096, 512} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	_ = f.Sync()
	return path, n
}

// startDiskLab is startVKLab with the work directory made first, so that
// mount can put file systems where the harness will keep the controller's
// data ("controller") and the agents' state ("agent-<vantage>").
func startDiskLab(t *testing.T, ctx context.Context, letter string, cfg demo.Config, mount func(workDir string)) *demo.Harness {
	t.Helper()
	return startLabAs(t, ctx, labPrefix("vd", letter), cfg, mount)
}

// startStoreDiskLab starts a disk lab whose controller keeps its --data on
// a loop-mounted ext4 of sizeMiB and serves /metrics on metricsAddr, applies
// the country campaign and waits until every agent streams; it returns the
// agents' ids by vantage.
func startStoreDiskLab(t *testing.T, ctx context.Context, letter string, sizeMiB int) (*demo.Harness, *loopDisk, map[string]string) {
	t.Helper()
	var disk *loopDisk
	h := startDiskLab(t, ctx, letter, demo.Config{ControllerArgs: []string{"--metrics-addr", metricsAddr}}, func(work string) {
		disk = newLoopDisk(t, filepath.Join(work, "controller"), sizeMiB)
	})
	applyCampaign(t, ctx, h, countryCampaign(t))
	return h, disk, waitAllStreaming(t, ctx, h)
}

// metricsAddr is where the disk tests' controllers serve /metrics, inside
// the controller's namespace.
const metricsAddr = "127.0.0.1:9464"

// metrics reads the controller's /metrics from inside its namespace and
// returns each sample line's value by its name and labels as printed, e.g.
// `vantage_store_write_failures_total{class="disk_full"}`.
func metrics(ctx context.Context, h *demo.Harness) (map[string]float64, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return h.Lab.Dial(ctx, "controller", network, addr)
		}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+metricsAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

func mustMetrics(t *testing.T, ctx context.Context, h *demo.Harness) map[string]float64 {
	t.Helper()
	m, err := metrics(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// vantagectl builds vantagectl once (beside the lab binaries, removed with
// them) and runs it inside the controller's namespace with the admin
// token, returning its standard output.
var (
	ctlOnce sync.Once
	ctlErr  error
)

func vantagectl(t *testing.T, ctx context.Context, h *demo.Harness, args ...string) string {
	t.Helper()
	bin := labBinaries(t)
	ctlOnce.Do(func() { ctlErr = demo.BuildBinaries(bin, "github.com/vantage-net/vantage/controller/cmd/vantagectl") })
	if ctlErr != nil {
		t.Fatal(ctlErr)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, h.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := h.Lab.Command(ctx, "controller", filepath.Join(bin, "vantagectl"),
		append([]string{"--controller", h.ControllerAddr(), "--ca", ca, "--token-file", filepath.Join(h.DataDir(), "admin.token")}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("vantagectl %v: %v: %s", args, err, ee.Stderr)
		}
		t.Fatalf("vantagectl %v: %v", args, err)
	}
	return string(out)
}

// controllerStarts counts the controller's starts in its log.
func controllerStarts(t *testing.T, h *demo.Harness) int {
	t.Helper()
	return countInLog(t, h, "controller", `msg="controller listening"`)
}

// backlogDelivered waits until every agent's stored results are seqs 1..max
// of one epoch with no hole and the newest was produced after since: what
// it held back has arrived. It returns how long after since that was.
func backlogDelivered(t *testing.T, ctx context.Context, h *demo.Harness, ids map[string]string, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	for v, id := range ids {
		waitFor(t, ctx, timeout, v+" backlog delivered", func() (bool, error) {
			st, err := queryStored(ctx, h, id)
			if err != nil || st.distinct() == 0 {
				return false, err
			}
			m := st.maxKey()
			return uint64(st.distinct()) == m.Seq && st.sentAt[m].After(since), nil
		})
	}
	return time.Since(since)
}

// accountAgents stops every agent and checks its books seq by seq
// (produced = stored once + covered by a stored gap + still spooled), logs
// each agent's line and returns the totals.
func accountAgents(t *testing.T, ctx context.Context, h *demo.Harness, ids map[string]string, label string) accounting {
	t.Helper()
	for v := range ids {
		if err := h.StopAgent(v); err != nil {
			t.Fatal(err)
		}
	}
	var total accounting
	for v, id := range ids {
		p := agentProduced(t, h, v)
		st := mustStored(t, ctx, h, id)
		gaps := storedGaps(t, h, id)
		pending := pendingInSpool(t, filepath.Join(h.AgentStateDir(v), "spool"), p.epoch, spool.DefaultMaxBytes)
		a := account(p, st, gaps, pending)
		t.Logf("%s %s: %s; stored_rows=%d gaps_stored=%d", label, v, a, st.rows, len(gaps))
		a.check(t)
		total.add(a)
	}
	return total
}

var levelMsgRE = regexp.MustCompile(`level=(WARN|ERROR) msg="([^"]*)"`)

// warnings counts a node's WARN and ERROR log lines by message, for the
// figures: what an operator's log shows of a fault.
func warnings(t *testing.T, h *demo.Harness, node string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(h.LogPath(node))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range levelMsgRE.FindAllStringSubmatch(string(b), -1) {
		out[m[1]+" "+m[2]]++
	}
	return out
}
