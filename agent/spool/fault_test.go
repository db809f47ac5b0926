package spool

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// smallDisk mounts a tmpfs of size bytes under a temporary directory and
// returns its path; it is unmounted at cleanup. Skips without root.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("TestReal disk fault tests mount a tmpfs: run as root")
	}
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fillDisk writes a filler file until the disk is full and returns its
// path; removing it gives the space back.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	// A page may still fit in a partial block.
	for {
		if _, err := f.Write(buf[:64]); err != nil {
			return path
		}
	}
}

// keysAndGaps reads everything pending and returns the keys (checking each
// batch is contiguous) and the gaps handed out.
func keysAndGaps(t *testing.T, d *Disk) ([]Key, []*vantagev1.Gap) {
	t.Helper()
	var keys []Key
	var gaps []*vantagev1.Gap
	after := Key{}
	for {
		b, err := d.Read(after, 64)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		gaps = b.Gaps
		if len(b.Results) == 0 {
			return keys, gaps
		}
		for i, r := range b.Results {
			if i > 0 && r.GetSeq() != b.Results[i-1].GetSeq()+1 {
				t.Fatalf("batch not contiguous: %v", seqs(b.Results))
			}
			keys = append(keys, Key{b.Epoch, r.GetSeq()})
		}
		after = b.End()
	}
}

// inGaps reports whether seq of epoch is covered by one of gaps.
func inGaps(gaps []*vantagev1.Gap, epoch, seq uint64) bool {
	for _, g := range gaps {
		if g.GetEpoch() == epoch && g.GetFirstSeq() <= seq && seq <= g.GetLastSeq() {
			return true
		}
	}
	return false
}

// TestRealDiskFull fills the spool's own disk (a 256 KiB tmpfs) while it
// runs: appends keep succeeding, into memory, the oldest of them dropped
// into a gap once the memory cap is reached; the state says so; reads hand
// out disk then memory; acks forget memory results; once space returns the
// next append after the retry writes memory to disk and clears the fault;
// a reopen finds every result that was not acked, and the gap. Before,
// every append on the full disk failed (the result was lost, its seq
// reused), and a failed segment rotation left a file that blocked every
// later rotation: the spool never wrote again.
func TestRealDiskFull(t *testing.T) {
	disk := smallDisk(t, "256k")
	dir := filepath.Join(disk, "spool")
	opts := Options{MaxBytes: 1 << 20, SegmentBytes: 16 << 10, MemoryBytes: 4 << 10}
	d := openT(t, dir, 1, opts)
	fill(t, d, 1, 50)
	filler := fillDisk(t, disk)
	// Enough to need a new segment and to overflow 4 KiB of memory.
	for seq := uint64(51); seq <= 400; seq++ {
		if err := d.Append(&vantagev1.ProbeResult{Seq: seq, TaskId: "x", Target: "192.0.2.1"}); err != nil {
			t.Fatalf("Append(%d) on a full disk: %v", seq, err)
		}
	}
	st := d.State()
	t.Logf("full disk: %v", st)
	if !strings.Contains(st.GetWriteError(), "no space left") || st.GetWriteFailingSince() == nil {
		t.Fatalf("state = %v, want write_error no space left and write_failing_since", st)
	}
	if st.GetMemoryResults() == 0 || st.GetWriteDroppedResults() == 0 || st.GetDroppedResults() != st.GetWriteDroppedResults() {
		t.Fatalf("state = %v, want results in memory and some dropped from it", st)
	}
	keys, gaps := keysAndGaps(t, d)
	if uint64(len(keys)) != st.GetPendingResults() {
		t.Fatalf("read %d results, state says %d pending", len(keys), st.GetPendingResults())
	}
	for seq := uint64(1); seq <= 400; seq++ {
		read := false
		for _, k := range keys {
			read = read || k.Seq == seq
		}
		if read == inGaps(gaps, 1, seq) {
			t.Fatalf("seq %d: read %v, in a gap %v (gaps %v); want exactly one", seq, read, inGaps(gaps, 1, seq), gaps)
		}
	}
	// Ack into memory: everything on disk and the first memory results.
	ackTo := keys[len(keys)-10]
	if err := d.Ack(ackTo, gaps); err != nil {
		t.Fatalf("Ack on a full disk: %v", err)
	}
	if st := d.State(); st.GetPendingResults() != 9 || st.GetMemoryResults() != 9 {
		t.Fatalf("after ack to %v: %v, want 9 pending, all in memory", ackTo, st)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	time.Sleep(faultRetry + 100*time.Millisecond) // the retry is due
	fill(t, d, 401, 401)
	st = d.State()
	if st.GetWriteError() != "" || st.GetMemoryResults() != 0 || st.GetPendingResults() != 10 {
		t.Fatalf("after space returned: %v, want no fault, nothing in memory, 10 pending", st)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := openT(t, dir, 2, opts)
	keys, gaps = keysAndGaps(t, d2)
	if len(keys) != 10 || keys[0] != (Key{1, ackTo.Seq + 1}) || keys[9] != (Key{1, 401}) || len(gaps) != 0 {
		t.Fatalf("reopened: keys %v, gaps %v; want seqs %d..401 and the acked gaps gone", keys, gaps, ackTo.Seq+1)
	}
}

// TestRealDiskFullAtOpen opens a spool on a disk that is already full: it
// opens (results wait in memory) rather than failing the agent's start,
// and writes once space returns.
func TestRealDiskFullAtOpen(t *testing.T) {
	disk := smallDisk(t, "64k")
	dir := filepath.Join(disk, "spool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	filler := fillDisk(t, disk)
	d, err := OpenDisk(dir, 1, Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatalf("OpenDisk on a full disk: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	fill(t, d, 1, 20)
	if st := d.State(); st.GetMemoryResults() != 20 || st.GetWriteError() == "" {
		t.Fatalf("state = %v, want 20 results in memory and the write error", st)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	time.Sleep(faultRetry + 100*time.Millisecond)
	fill(t, d, 21, 21)
	if st := d.State(); st.GetMemoryResults() != 0 || st.GetWriteError() != "" || st.GetPendingResults() != 21 {
		t.Fatalf("after space returned: %v, want 21 pending on disk", st)
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Fatalf("%d segment files, want 1", n)
	}
}

// TestRealDiskFullKeepsSentResults: results of the memory tail that Read
// handed out on the current stream are not dropped into a gap while their
// ack may still come, so a result is never both delivered and reported
// lost. Before, the oldest results were dropped even when in flight: once
// acked, the controller stored them and ignored their gap, and
// write_dropped_results counted more results than the stored gaps covered
// (TestAgentDiskFull: 274 dropped, 272 in gaps).
func TestRealDiskFullKeepsSentResults(t *testing.T) {
	disk := smallDisk(t, "256k")
	opts := Options{MaxBytes: 1 << 20, SegmentBytes: 16 << 10, MemoryBytes: 4 << 10}
	d := openT(t, filepath.Join(disk, "spool"), 1, opts)
	fillDisk(t, disk)
	// Append until results stay in memory (a partial page may still take
	// some), then ten more: all go out on the stream.
	seq := uint64(0)
	for d.State().GetMemoryResults() == 0 {
		seq++
		fill(t, d, seq, seq)
	}
	fill(t, d, seq+1, seq+10)
	firstMem := seq
	seq += 10
	sent, err := d.Read(Key{}, 1000)
	if err != nil || uint64(len(sent.Results)) != seq {
		t.Fatalf("Read = %d results, %v; want %d", len(sent.Results), err, seq)
	}
	fill(t, d, seq+1, seq+200) // far past 4 KiB of memory
	total := seq + 200
	st := d.State()
	keys, gaps := keysAndGaps(t, d)
	for s := firstMem; s <= firstMem+10; s++ {
		if inGaps(gaps, 1, s) {
			t.Errorf("seq %d was handed out from memory and is unacked, but it is in a gap (%v)", s, gaps)
		}
	}
	covered := uint64(0)
	for _, g := range gaps {
		covered += g.GetLastSeq() - g.GetFirstSeq() + 1
	}
	if st.GetWriteDroppedResults() == 0 || covered != st.GetWriteDroppedResults() {
		t.Errorf("write_dropped_results %d, gaps cover %d: want equal and > 0", st.GetWriteDroppedResults(), covered)
	}
	if uint64(len(keys))+covered != total {
		t.Errorf("%d results readable + %d in gaps, want %d", len(keys), covered, total)
	}
	if st.GetMemoryResults() > 2*uint64(opts.MemoryBytes)/20 {
		t.Errorf("%d results in memory: the tail is not bounded", st.GetMemoryResults())
	}
	// Once acked they are gone; the oldest unsent results are dropped as
	// before.
	if err := d.Ack(sent.End(), nil); err != nil {
		t.Fatal(err)
	}
	fill(t, d, total+1, total+100)
	if st2 := d.State(); st2.GetWriteDroppedResults() <= st.GetWriteDroppedResults() {
		t.Errorf("after the ack and 100 more results: %v, want more dropped", st2)
	}
}
