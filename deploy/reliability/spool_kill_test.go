package reliability

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/vantage-net/vantage/agent/spool"
	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// The child process: it opens the spool with the epoch it is given and
// appends results as fast as it can, acking now and then the way an uplink
// would, until it is killed. Otherwise the tests run, and the binaries the
// lab tests built are removed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("VR_SPOOL_CHILD_DIR"); dir != "" {
		os.Exit(spoolChild(dir))
	}
	code := m.Run()
	removeBinaries() // built by the lab tests (agent_helpers_test.go)
	os.Exit(code)
}

const killCap = 256 << 10 // small, so drops happen while being killed

func spoolChild(dir string) int {
	epoch, _ := strconv.ParseUint(os.Getenv("VR_SPOOL_CHILD_EPOCH"), 10, 64)
	d, err := spool.OpenDisk(dir, epoch, spool.Options{MaxBytes: killCap, SyncInterval: 5 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 3
	}
	// Tell the parent we are writing.
	fmt.Println("open")
	after := spool.Key{}
	for seq := uint64(1); ; seq++ {
		if err := d.Append(result(epoch, seq)); err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			return 4
		}
		if seq%97 == 0 {
			b, err := d.Read(after, 50)
			if err != nil {
				fmt.Fprintln(os.Stderr, "read:", err)
				return 5
			}
			if len(b.Results) > 0 {
				_ = d.Ack(b.End(), b.Gaps)
				after = b.End()
			}
		}
	}
}

// result has content derived from (epoch, seq), so a replayed record can
// be checked field by field.
func result(epoch, seq uint64) *vantagev1.ProbeResult {
	return &vantagev1.ProbeResult{
		Seq: seq, TaskId: fmt.Sprintf("kill/icmp/%d-%d", epoch, seq), Target: "192.0.2.1",
		Campaign: "kill", Round: int64(seq * 3), RttUs: uint32(epoch*1000 + seq%1000),
		Error: fmt.Sprintf("pad-%040d", seq),
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestSpoolSurvivesSIGKILL kills a process writing to the disk spool at
// random moments, at least 100 times; after every kill the spool must open,
// every record it replays must be intact (CRC and content), keys must
// increase strictly with no seq hole that is not reported as a gap, and the
// bytes on disk must stay under the cap.
func TestSpoolSurvivesSIGKILL(t *testing.T) {
	kills := 100
	if testing.Short() {
		kills = 20
	}
	dir := filepath.Join(t.TempDir(), "spool")
	var replayed, corrupt, gapsSeen, maxBytes int64
	epoch := uint64(0)
	for i := range kills {
		epoch++
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "VR_SPOOL_CHILD_DIR="+dir, "VR_SPOOL_CHILD_EPOCH="+strconv.FormatUint(epoch, 10))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := out.Read(buf); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("kill %d: child did not open the spool: %v", i, err)
		}
		time.Sleep(time.Duration(rand.N(40)+1) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: child ended with %v, not by SIGKILL (it failed on its own)", i, cmd.ProcessState)
		}
		maxBytes = max(maxBytes, dirSize(t, dir))

		// Reopen as the next run would (in the parent, then close again)
		// and validate everything it would replay.
		epoch++
		d, err := spool.OpenDisk(dir, epoch, spool.Options{MaxBytes: killCap})
		if err != nil {
			t.Fatalf("kill %d: spool does not open: %v", i, err)
		}
		st := d.Stats()
		corrupt += int64(st.CorruptRecords)
		after := spool.Key{}
		var gaps []*vantagev1.Gap
		for {
			b, err := d.Read(after, 500)
			if err != nil {
				t.Fatalf("kill %d: read: %v", i, err)
			}
			gaps = b.Gaps
			if len(b.Results) == 0 {
				break
			}
			for j, r := range b.Results {
				want := result(b.Epoch, r.GetSeq())
				if !protoEqual(r, want) {
					t.Fatalf("kill %d: replayed record (%d,%d) differs from what was written: %v", i, b.Epoch, r.GetSeq(), r)
				}
				k := spool.Key{Epoch: b.Epoch, Seq: r.GetSeq()}
				if k.Compare(after) <= 0 {
					t.Fatalf("kill %d: key %v after %v", i, k, after)
				}
				if j > 0 && r.GetSeq() != b.Results[j-1].GetSeq()+1 {
					t.Fatalf("kill %d: batch not contiguous", i)
				}
				after = k
				replayed++
			}
		}
		gapsSeen = max(gapsSeen, int64(len(gaps)))
		if st.Bytes > killCap {
			t.Fatalf("kill %d: spool holds %d bytes, cap %d", i, st.Bytes, killCap)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("spool SIGKILL: kills=%d reopened=%d replayed_records_validated=%d corrupt_records_skipped=%d max_pending_gaps=%d max_bytes_on_disk=%d cap=%d\n",
		kills, kills, replayed, corrupt, gapsSeen, maxBytes, killCap)
	if maxBytes > killCap {
		t.Fatalf("bytes on disk reached %d, cap %d", maxBytes, killCap)
	}
}
