package spool

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

func openT(t *testing.T, dir string, epoch uint64, opts Options) *Disk {
	t.Helper()
	d, err := OpenDisk(dir, epoch, opts)
	if err != nil {
		t.Fatalf("OpenDisk(epoch %d): %v", epoch, err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// drain reads everything pending, checking each batch is one epoch and
// contiguous, and returns the keys in order.
func drain(t *testing.T, s Store) []Key {
	t.Helper()
	var keys []Key
	after := Key{}
	for {
		b, err := s.Read(after, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Results) == 0 {
			return keys
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

func dirBytes(t *testing.T, dir string) int64 {
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

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	slices.Sort(m)
	return m
}

func TestDiskReplayAcrossEpochs(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir, 1, Options{MaxBytes: 1 << 20, SegmentBytes: 8 << 10})
	fill(t, d, 1, 300)
	b, err := d.Read(Key{}, 120)
	if err != nil || len(b.Results) != 120 {
		t.Fatalf("Read = %d results, %v", len(b.Results), err)
	}
	if err := d.Ack(b.End(), nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := openT(t, dir, 2, Options{MaxBytes: 1 << 20, SegmentBytes: 8 << 10})
	if st := d2.Stats(); st.ReplayedResults != 180 || st.CorruptRecords != 0 {
		t.Fatalf("stats = %+v, want 180 replayed, 0 corrupt", st)
	}
	fill(t, d2, 1, 50)
	keys := drain(t, d2)
	if len(keys) != 230 || keys[0] != (Key{1, 121}) || keys[179] != (Key{1, 300}) || keys[180] != (Key{2, 1}) || keys[229] != (Key{2, 50}) {
		t.Fatalf("replay = %d keys %v..%v, want epoch 1 seq 121..300 then epoch 2 seq 1..50", len(keys), keys[0], keys[len(keys)-1])
	}
	if err := d2.Ack(Key{2, 50}, nil); err != nil {
		t.Fatal(err)
	}
	if st := d2.State(); st.GetPendingResults() != 0 {
		t.Fatalf("pending after full ack = %d", st.GetPendingResults())
	}
	if n := len(segFiles(t, dir)); n != 1 {
		t.Fatalf("%d segment files after full ack, want only the active one", n)
	}
	if _, err := OpenDisk(t.TempDir(), 0, Options{}); !errors.Is(err, ErrBadOption) {
		t.Fatalf("epoch 0: err = %v", err)
	}
}

func TestDiskEpochMustGrow(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir, 5, Options{})
	fill(t, d, 1, 3)
	_ = d.Close()
	if _, err := OpenDisk(dir, 5, Options{}); !errors.Is(err, ErrBadOption) {
		t.Fatalf("reopen with the same epoch: err = %v, want ErrBadOption", err)
	}
}

func TestDiskCorruption(t *testing.T) {
	tests := []struct {
		name string
		// damage edits the segment files (oldest first).
		damage      func(t *testing.T, segs []string)
		wantCorrupt uint64
		wantKeys    int
		wantGap     *[2]uint64
	}{
		{"clean", func(*testing.T, []string) {}, 0, 200, nil},
		{"torn tail", func(t *testing.T, segs []string) {
			last := segs[len(segs)-1]
			fi, _ := os.Stat(last)
			if err := os.Truncate(last, fi.Size()-5); err != nil {
				t.Fatal(err)
			}
		}, 1, 199, nil},
		{"garbage appended", func(t *testing.T, segs []string) {
			f, _ := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
			_, _ = f.Write([]byte{0xff, 0xff, 0xff, 0x7f, 1, 2, 3})
			_ = f.Close()
		}, 1, 200, nil},
		{"flipped byte mid-spool", func(t *testing.T, segs []string) {
			b, _ := os.ReadFile(segs[0])
			b[len(b)/2] ^= 0x40
			if err := os.WriteFile(segs[0], b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, 1, -1, &[2]uint64{0, 0}},
		{"header destroyed", func(t *testing.T, segs []string) {
			b, _ := os.ReadFile(segs[0])
			copy(b, "XXXXXXXX")
			_ = os.WriteFile(segs[0], b, 0o600)
		}, 1, -1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{MaxBytes: 1 << 20, SegmentBytes: 4 << 10}
			d := openT(t, dir, 1, opts)
			fill(t, d, 1, 200)
			_ = d.Close()
			segs := segFiles(t, dir)
			if len(segs) < 3 {
				t.Fatalf("want several segments, have %d", len(segs))
			}
			tc.damage(t, segs)
			d2 := openT(t, dir, 2, opts)
			st := d2.Stats()
			if st.CorruptRecords != tc.wantCorrupt {
				t.Fatalf("corrupt records = %d, want %d", st.CorruptRecords, tc.wantCorrupt)
			}
			keys := drain(t, d2)
			if tc.wantKeys >= 0 && len(keys) != tc.wantKeys {
				t.Fatalf("replayed %d, want %d", len(keys), tc.wantKeys)
			}
			// Whatever survived is in order, of epoch 1, and decodes; every
			// seq of 1..200 is either replayed or inside a reported gap, or
			// lost at the very end (a torn tail).
			b, _ := d2.Read(Key{}, 1)
			covered := map[uint64]bool{}
			for _, k := range keys {
				if k.Epoch != 1 || covered[k.Seq] {
					t.Fatalf("bad or repeated key %v", k)
				}
				covered[k.Seq] = true
			}
			for _, g := range b.Gaps {
				if g.GetReason() != GapReasonCorrupt {
					t.Fatalf("gap reason %q", g.GetReason())
				}
				for s := g.GetFirstSeq(); s <= g.GetLastSeq(); s++ {
					covered[s] = true
				}
			}
			if tc.wantGap != nil && len(b.Gaps) != 1 {
				t.Fatalf("gaps = %v, want one corrupt gap", b.Gaps)
			}
			first := uint64(1)
			if tc.name == "header destroyed" {
				first = keys[0].Seq // the whole first segment is gone, at the front
			}
			last := uint64(200)
			if tc.name == "torn tail" {
				last = 199
			}
			for s := first; s <= last; s++ {
				if !covered[s] {
					t.Fatalf("seq %d neither replayed nor in a gap", s)
				}
			}
			t.Logf("%s: %d replayed, %d corrupt records (%d bytes) skipped, gaps %v", tc.name, len(keys), st.CorruptRecords, st.CorruptBytes, b.Gaps)
		})
	}
}

func TestDiskCapDropsOldest(t *testing.T) {
	dir := t.TempDir()
	const capBytes = 64 << 10
	d := openT(t, dir, 3, Options{MaxBytes: capBytes})
	big := strings.Repeat("x", 150)
	var maxSeen int64
	const n = 5000
	for s := uint64(1); s <= n; s++ {
		if err := d.Append(&vantagev1.ProbeResult{Seq: s, TaskId: big, Target: "192.0.2.1"}); err != nil {
			t.Fatalf("Append(%d): %v", s, err)
		}
		if s%50 == 0 {
			maxSeen = max(maxSeen, dirBytes(t, dir))
		}
	}
	maxSeen = max(maxSeen, dirBytes(t, dir))
	if maxSeen > capBytes {
		t.Fatalf("spool dir reached %d bytes, cap %d", maxSeen, capBytes)
	}
	keys := drain(t, d)
	b, _ := d.Read(Key{}, 1)
	st := d.State()
	if len(b.Gaps) != 1 || b.Gaps[0].GetFirstSeq() != 1 || b.Gaps[0].GetLastSeq()+1 != keys[0].Seq || b.Gaps[0].GetReason() != GapReasonFull {
		t.Fatalf("gaps = %v, first kept seq %d: want one gap 1..first-1", b.Gaps, keys[0].Seq)
	}
	if st.GetDroppedResults() != keys[0].Seq-1 || uint64(len(keys))+st.GetDroppedResults() != n || keys[len(keys)-1].Seq != n {
		t.Fatalf("dropped %d + kept %d != %d", st.GetDroppedResults(), len(keys), n)
	}
	t.Logf("cap %d bytes: max on disk %d, kept %d, dropped %d as %d gap(s)", capBytes, maxSeen, len(keys), st.GetDroppedResults(), len(b.Gaps))
	// The gap survives a restart and is acknowledged separately.
	_ = d.Close()
	d2 := openT(t, dir, 4, Options{MaxBytes: capBytes})
	b2, _ := d2.Read(Key{}, 10)
	if len(b2.Gaps) != 1 || d2.State().GetDroppedResults() != st.GetDroppedResults() {
		t.Fatalf("after restart: gaps %v dropped %d", b2.Gaps, d2.State().GetDroppedResults())
	}
	if err := d2.Ack(b2.End(), b2.Gaps); err != nil {
		t.Fatal(err)
	}
	if b3, _ := d2.Read(Key{}, 10); len(b3.Gaps) != 0 {
		t.Fatalf("gap still pending after its ack: %v", b3.Gaps)
	}
}

func TestDiskTooLarge(t *testing.T) {
	d := openT(t, t.TempDir(), 1, Options{MaxBytes: 64 << 10})
	err := d.Append(&vantagev1.ProbeResult{Seq: 1, Error: strings.Repeat("e", 20<<10)})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// TestDiskSyncAfterAppend checks the syncer: records appended in one window
// are fsynced within SyncInterval of the first, and again after an idle spell.
func TestDiskSyncAfterAppend(t *testing.T) {
	const interval = 20 * time.Millisecond
	d := openT(t, t.TempDir(), 1, Options{SyncInterval: interval})
	dirty := func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.dirty
	}
	seq := uint64(0)
	for _, tc := range []struct {
		name  string
		n     int
		pause time.Duration
	}{
		{"one record", 1, 0},
		{"a burst", 50, 0},
		{"after idle", 3, 5 * interval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			time.Sleep(tc.pause)
			for range tc.n {
				seq++
				if err := d.Append(&vantagev1.ProbeResult{Seq: seq, Target: "192.0.2.1"}); err != nil {
					t.Fatalf("Append(%d): %v", seq, err)
				}
			}
			deadline := time.Now().Add(10 * interval)
			for dirty() {
				if time.Now().After(deadline) {
					t.Fatalf("still unsynced %v after the append (sync interval %v)", 10*interval, interval)
				}
				time.Sleep(interval / 4)
			}
		})
	}
}
