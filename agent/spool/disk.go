package spool

// On-disk format (all integers little-endian):
//
//	spool dir/
//	  00000000000000000001.seg   segment files, append-only, named by a
//	  00000000000000000002.seg   20-digit increasing id
//	  gaps                        unacknowledged gaps and counters (rewritten)
//	  acked                       the ack cursor (rewritten)
//
// Every file starts with the 8-byte magic "VSPOOL1\n". Then come records:
//
//	u32 payload length | u32 CRC32C (Castagnoli) of the payload | payload
//
// A payload starts with a type byte:
//
//	1 result:   u64 epoch | u64 seq | ProbeResult (protobuf)
//	2 gap:      u64 epoch | u64 first_seq | u64 last_seq | reason (UTF-8)
//	3 cursor:   u64 segment id | u64 offset | u64 epoch | u64 seq
//	4 counters: u64 dropped results | u64 gaps
//
// Open reads every segment and checks every record; at the first record
// that is short, too long, fails its CRC or does not follow the previous
// key, the segment is truncated there (the torn or corrupt tail is counted
// and never replayed). A seq hole left inside an epoch by such a cut is
// reported as a Gap. Appends always go to a fresh segment.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	magic         = "VSPOOL1\n"
	headerSize    = int64(len(magic))
	recHeaderSize = 8
	segSuffix     = ".seg"
	gapsFile      = "gaps"
	ackedFile     = "acked"

	typeResult   = 1
	typeGap      = 2
	typeCursor   = 3
	typeCounters = 4

	// MaxRecordBytes bounds one record's payload; a longer length field is
	// corruption.
	MaxRecordBytes = 1 << 20

	// DefaultMaxBytes is the default cap on the spool's bytes on disk.
	DefaultMaxBytes = 256 << 20
	// DefaultSyncInterval is how often appended records are fsynced at the
	// latest.
	DefaultSyncInterval = 200 * time.Millisecond
	// MinMaxBytes is the smallest cap accepted.
	MinMaxBytes = 64 << 10
	// metaReserve is kept free for the acked file and the gaps file.
	ackedBytes = headerSize + recHeaderSize + 1 + 32
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadOption: an Options field is out of range.
var ErrBadOption = errors.New("bad spool option")

// Options configure a Disk spool.
type Options struct {
	// MaxBytes caps every byte the spool keeps on disk (segments, gaps and
	// cursor files); DefaultMaxBytes when zero, at least MinMaxBytes.
	MaxBytes int64
	// SegmentBytes is the size at which a segment is closed; when zero,
	// MaxBytes/16 clamped to [16 KiB, 16 MiB]. Dropping the oldest results
	// frees one segment at a time.
	SegmentBytes int64
	// SyncInterval bounds how long an appended record stays unsynced
	// (DefaultSyncInterval when zero). Records are also synced before Read
	// hands them out to be sent.
	SyncInterval time.Duration
	// MemoryBytes caps the results kept in memory while the disk refuses
	// writes (fault.go); when zero, SegmentBytes capped at MaxMemoryBytes.
	// Results sent and awaiting their ack may hold it up to twice that.
	MemoryBytes int64
	Logger      *slog.Logger
}

// Stats are what Open found and what the spool did since.
type Stats struct {
	Segments int
	// ReplayedResults are results of earlier runs found at Open.
	ReplayedResults uint64
	// CorruptRecords counts invalid records found at Open (a torn or corrupt
	// tail counts once: nothing after it in that segment can be framed) and
	// records that failed to decode at Read.
	CorruptRecords uint64
	// CorruptBytes were cut off at Open.
	CorruptBytes int64
	// DroppedResults were dropped because the spool was full (since the
	// spool was created; persisted).
	DroppedResults uint64
	// Bytes on disk now, as the cap counts them.
	Bytes int64
}

type epochRange struct {
	epoch, first, last uint64
}

type segment struct {
	id     uint64
	path   string
	size   int64
	ranges []epochRange
	// ordinals of the first and last record (lastOrd < firstOrd: empty)
	firstOrd, lastOrd uint64
}

func (s *segment) lastKey() (Key, bool) {
	if len(s.ranges) == 0 {
		return Key{}, false
	}
	r := s.ranges[len(s.ranges)-1]
	return Key{r.epoch, r.last}, true
}

func (s *segment) add(k Key, ord uint64) {
	if n := len(s.ranges); n > 0 && s.ranges[n-1].epoch == k.Epoch && s.ranges[n-1].last+1 == k.Seq {
		s.ranges[n-1].last = k.Seq
	} else {
		s.ranges = append(s.ranges, epochRange{k.Epoch, k.Seq, k.Seq})
	}
	if s.lastOrd < s.firstOrd {
		s.firstOrd = ord
	}
	s.lastOrd = ord
}

// pos is a place in the spool: the byte offset of the next record, the
// ordinal and key of the record just before it.
type pos struct {
	seg uint64
	off int64
	ord uint64
	key Key
}

// Disk is the on-disk Store. See the format at the top of this file and
// docs/OPERATIONS.md for the policy.
type Disk struct {
	dir   string
	epoch uint64
	opts  Options
	log   *slog.Logger

	stop    chan struct{}
	done    chan struct{}
	pending chan struct{} // one token: the active segment became dirty

	mu        sync.Mutex
	closed    bool
	segs      []*segment // oldest first; the last is the active one
	active    *os.File
	dirty     bool
	lastSeq   uint64 // of the current epoch
	lastOrd   uint64
	lastKey   Key
	head      pos // everything up to head is acked or dropped
	gaps      []*vantagev1.Gap
	gapsBytes int64
	nGaps     uint64
	stats     Stats
	readCache map[Key]pos // batch ends handed out by Read
	// handedOut: (epoch, first_seq) of gaps Read has returned (or found
	// at Open); they never grow again, as the controller keys gaps on
	// first_seq.
	handedOut map[Key]bool

	// While the disk refuses writes (fault.go): the results kept in
	// memory, after every result on disk, and their framed bytes.
	fault        *fault
	mem          []memRec
	memBytes     int64
	gapsDirty    bool   // d.gaps changed but the gaps file could not be written
	writeDropped uint64 // results dropped from memory into gaps since Open
	// memSent is the highest memory-tail key Read handed out on the
	// current stream (a Read from before it starts a new one).
	memSent Key
}

var _ Store = (*Disk)(nil)

// OpenDisk opens (creating if needed) the spool in dir for a run in epoch,
// which must be greater than every epoch already in the spool.
func OpenDisk(dir string, epoch uint64, opts Options) (*Disk, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxBytes < MinMaxBytes {
		return nil, fmt.Errorf("spool: max bytes %d: at least %d: %w", opts.MaxBytes, MinMaxBytes, ErrBadOption)
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = min(max(opts.MaxBytes/16, 16<<10), 16<<20)
	}
	if opts.SegmentBytes < 4<<10 || opts.SegmentBytes > opts.MaxBytes/4 {
		return nil, fmt.Errorf("spool: segment bytes %d: want 4 KiB..max bytes/4: %w", opts.SegmentBytes, ErrBadOption)
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.MemoryBytes <= 0 {
		opts.MemoryBytes = min(opts.SegmentBytes, MaxMemoryBytes)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if epoch == 0 {
		return nil, fmt.Errorf("spool: epoch: must be > 0: %w", ErrBadOption)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	d := &Disk{dir: dir, epoch: epoch, opts: opts, log: opts.Logger,
		stop: make(chan struct{}), done: make(chan struct{}), pending: make(chan struct{}, 1), readCache: map[Key]pos{}, handedOut: map[Key]bool{}}
	if err := d.load(); err != nil {
		return nil, err
	}
	if d.lastKey.Epoch >= epoch {
		return nil, fmt.Errorf("spool: epoch %d: spool already holds epoch %d: %w", epoch, d.lastKey.Epoch, ErrBadOption)
	}
	if err := d.rotate(); err != nil {
		// A full disk at start: the results wait in memory (fault.go).
		d.failed(err)
	}
	d.stats.Segments = len(d.segs)
	d.log.Info("spool opened", slog.String("dir", dir), slog.Uint64("replayed_results", d.stats.ReplayedResults),
		slog.Uint64("corrupt_records", d.stats.CorruptRecords), slog.Int64("corrupt_bytes", d.stats.CorruptBytes),
		slog.Int("gaps", len(d.gaps)), slog.Int64("bytes", d.bytesLocked()), slog.Int64("max_bytes", opts.MaxBytes))
	go d.syncLoop()
	return d, nil
}

func segName(id uint64) string { return fmt.Sprintf("%020d%s", id, segSuffix) }

func frame(payload []byte) []byte {
	out := make([]byte, recHeaderSize+len(payload))
	binary.LittleEndian.PutUint32(out[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(out[4:], crc32.Checksum(payload, castagnoli))
	copy(out[recHeaderSize:], payload)
	return out
}

// readRecord reads one framed record; io.EOF at a clean end, another error
// for a torn or corrupt record.
func readRecord(r io.Reader, hdr []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, hdr[:recHeaderSize]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("short record header: %w", err)
	}
	n := binary.LittleEndian.Uint32(hdr[0:])
	sum := binary.LittleEndian.Uint32(hdr[4:])
	if n == 0 || n > MaxRecordBytes {
		return nil, fmt.Errorf("record length %d out of range", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, fmt.Errorf("short record payload: %w", err)
	}
	if crc32.Checksum(p, castagnoli) != sum {
		return nil, errors.New("record checksum mismatch")
	}
	return p, nil
}

func u64(p []byte, i int) uint64 { return binary.LittleEndian.Uint64(p[i:]) }

// resultKey parses the key of a result payload.
func resultKey(p []byte) (Key, bool) {
	if len(p) < 17 || p[0] != typeResult {
		return Key{}, false
	}
	return Key{u64(p, 1), u64(p, 9)}, true
}

// rotate starts a new segment and then syncs and closes the active one. On
// error the active segment stays as it was (a full disk: the new one is
// removed again).
func (d *Disk) rotate() error {
	var id uint64 = 1
	if n := len(d.segs); n > 0 {
		id = d.segs[n-1].id + 1
	}
	path := filepath.Join(d.dir, segName(id))
	f, err := newSegment(path)
	if err != nil {
		return err
	}
	if d.active != nil {
		if err := d.active.Sync(); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return fmt.Errorf("spool: sync: %w", err)
		}
		_ = d.active.Close()
		d.active = nil
		d.dirty = false
	}
	syncDir(d.dir)
	d.active = f
	d.segs = append(d.segs, &segment{id: id, path: path, size: headerSize, firstOrd: d.lastOrd + 1, lastOrd: d.lastOrd})
	if len(d.segs) == 1 {
		d.head = pos{seg: id, off: headerSize, ord: d.lastOrd, key: d.head.key}
	}
	return nil
}

// newSegment creates a segment file with its magic, synced; nothing is
// left behind on error.
func newSegment(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: new segment: %w", err)
	}
	if _, err = f.Write([]byte(magic)); err == nil {
		err = f.Sync()
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("spool: new segment: %w", err)
	}
	return f, nil
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		_ = f.Close()
	}
}

func (d *Disk) bytesLocked() int64 {
	var n int64
	for _, s := range d.segs {
		n += s.size
	}
	return n + d.gapsBytes + ackedBytes
}

// Append implements Store. The record is written with one write(2), so a
// killed process leaves either the whole record or none of it in the page
// cache; it reaches the disk within SyncInterval (or before Read hands it
// out). While the disk refuses writes the result is kept in memory
// (fault.go) and Append succeeds.
func (d *Disk) Append(r *vantagev1.ProbeResult) error {
	body, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("spool: marshal result: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if r.GetSeq() != d.lastSeq+1 {
		return fmt.Errorf("spool: result seq %d: want %d: %w", r.GetSeq(), d.lastSeq+1, ErrSeq)
	}
	p := make([]byte, 17, 17+len(body))
	p[0] = typeResult
	binary.LittleEndian.PutUint64(p[1:], d.epoch)
	binary.LittleEndian.PutUint64(p[9:], r.GetSeq())
	p = append(p, body...)
	rec := frame(p)
	n := int64(len(rec))
	if len(p) > MaxRecordBytes || n+headerSize > d.opts.SegmentBytes {
		return fmt.Errorf("spool: result seq %d: %d bytes: %w", r.GetSeq(), n, ErrTooLarge)
	}
	k := Key{d.epoch, r.GetSeq()}
	if !d.recover(false) {
		d.toMemory(k, r, rec)
	} else if err := d.write(k, rec); errors.Is(err, ErrTooLarge) {
		return err
	} else if err != nil {
		d.failed(err)
		d.toMemory(k, r, rec)
	}
	d.lastSeq = r.GetSeq()
	d.lastKey = k
	return nil
}

// write appends one framed record to the active segment, rotating and
// dropping the oldest segments (the cap) as needed. A failed write leaves
// the segment as it was: a partial record is cut off again, or, if even
// that fails, the segment is closed and the next write starts a new one.
func (d *Disk) write(k Key, rec []byte) error {
	n := int64(len(rec))
	if d.active == nil || d.segs[len(d.segs)-1].size+n > d.opts.SegmentBytes {
		if err := d.rotate(); err != nil {
			return err
		}
	}
	for d.bytesLocked()+n+d.gapGrowth() > d.opts.MaxBytes {
		if err := d.dropOldest(); err != nil {
			return err
		}
	}
	act := d.segs[len(d.segs)-1]
	if _, err := d.active.Write(rec); err != nil {
		if terr := d.active.Truncate(act.size); terr != nil {
			// A torn record stays; it is cut at the next open, and
			// nothing may follow it.
			_ = d.active.Sync()
			_ = d.active.Close()
			d.active = nil
		}
		return fmt.Errorf("spool: append: %w", err)
	}
	act.size += n
	d.lastOrd++
	act.add(k, d.lastOrd)
	if !d.dirty {
		d.dirty = true
		select {
		case d.pending <- struct{}{}:
		default:
		}
	}
	return nil
}

// gapGrowth is room for the gaps a drop may add (two epochs per segment
// is typical; one more record of headroom each).
func (d *Disk) gapGrowth() int64 {
	return 2 * (recHeaderSize + 25 + int64(len(GapReasonFull)))
}

// dropOldest removes the oldest segment and records its pending results
// as gaps.
func (d *Disk) dropOldest() error {
	if len(d.segs) == 1 && d.segs[0].lastOrd < d.segs[0].firstOrd {
		return fmt.Errorf("spool: %d bytes of gaps leave no room for results: %w", d.gapsBytes, ErrTooLarge)
	}
	if len(d.segs) == 1 {
		if err := d.rotate(); err != nil {
			return err
		}
	}
	old := d.segs[0]
	var dropped uint64
	for _, r := range old.ranges {
		first := r.first
		if r.epoch < d.head.key.Epoch || (r.epoch == d.head.key.Epoch && r.last <= d.head.key.Seq) {
			continue
		}
		if r.epoch == d.head.key.Epoch && d.head.key.Seq >= first {
			first = d.head.key.Seq + 1
		}
		d.addGap(&vantagev1.Gap{Epoch: r.epoch, FirstSeq: first, LastSeq: r.last, Reason: GapReasonFull})
		dropped += r.last - first + 1
	}
	d.stats.DroppedResults += dropped
	if err := os.Remove(old.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: drop segment: %w", err)
	}
	d.segs = d.segs[1:]
	k := d.head.key
	if lk, ok := old.lastKey(); ok && lk.Compare(k) > 0 {
		k = lk
	}
	d.head = pos{seg: d.segs[0].id, off: headerSize, ord: max(d.head.ord, old.lastOrd), key: k}
	d.pruneCache()
	// The drop stands (the segment is gone); the gaps file is written
	// again once the disk takes writes (fault.go), and a lost cursor only
	// means re-sends.
	if err := d.writeGaps(); err != nil {
		d.gapsDirty = true
		d.failed(err)
	} else if err := d.writeCursor(); err != nil {
		d.failed(err)
	}
	d.log.Warn("spool full: oldest results dropped", slog.Uint64("dropped", dropped), slog.Int("gaps", len(d.gaps)))
	return nil
}

func (d *Disk) pruneCache() {
	for k := range d.readCache {
		if k.Compare(d.head.key) <= 0 {
			delete(d.readCache, k)
		}
	}
}

func (d *Disk) segIndex(id uint64) int {
	return sort.Search(len(d.segs), func(i int) bool { return d.segs[i].id >= id })
}

// syncActive fsyncs the active segment if it has unsynced records.
func (d *Disk) syncActive() error {
	if !d.dirty || d.active == nil {
		return nil
	}
	if err := d.active.Sync(); err != nil {
		return fmt.Errorf("spool: sync: %w", err)
	}
	d.dirty = false
	return nil
}

// syncLoop fsyncs the active segment SyncInterval after it first became
// dirty: one fsync per window however many records were appended in it, and
// no wake-up at all while nothing is appended (a ticker cost an idle agent
// five wake-ups a second).
func (d *Disk) syncLoop() {
	defer close(d.done)
	t := time.NewTimer(d.opts.SyncInterval)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-d.pending:
		}
		t.Reset(d.opts.SyncInterval)
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.mu.Lock()
			if err := d.syncActive(); err != nil {
				d.failed(err)
			}
			d.mu.Unlock()
		}
	}
}

// Ack implements Store: the head moves past upTo and fully acknowledged
// segments are deleted.
func (d *Disk) Ack(upTo Key, gaps []*vantagev1.Gap) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if len(gaps) > 0 {
		kept := d.gaps[:0]
		for _, g := range d.gaps {
			if !slices.ContainsFunc(gaps, func(a *vantagev1.Gap) bool {
				return a.GetEpoch() == g.GetEpoch() && a.GetFirstSeq() == g.GetFirstSeq()
			}) {
				kept = append(kept, g)
			}
		}
		if len(kept) != len(d.gaps) {
			clear(d.gaps[len(kept):])
			d.gaps = kept
			if err := d.writeGaps(); err != nil {
				// Acked gaps kept on disk would only be sent again.
				d.gapsDirty = true
				d.failed(err)
			}
		}
	}
	if upTo.Compare(d.head.key) <= 0 {
		return nil
	}
	np, ok := d.readCache[upTo]
	if !ok {
		np = d.head
		if err := d.walk(d.head, func(rec []byte, next pos) bool {
			if next.key.Compare(upTo) > 0 {
				return false
			}
			np = next
			return true
		}); err != nil {
			return err
		}
	}
	if d.ackMem(upTo) {
		// Every result on disk is acked, and some in memory: the head
		// is the end of the disk, its key the last result acked.
		np.key = upTo
	}
	if np.key.Compare(d.head.key) > 0 {
		d.head = np
	}
	// Delete segments wholly behind the head (never the active one).
	for len(d.segs) > 1 {
		s := d.segs[0]
		if s.id < d.head.seg || (s.id == d.head.seg && d.head.off >= s.size) {
			if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("spool: remove acked segment: %w", err)
			}
			d.segs = d.segs[1:]
			if d.head.seg <= s.id {
				d.head.seg, d.head.off = d.segs[0].id, headerSize
			}
			continue
		}
		break
	}
	d.pruneCache()
	if err := d.writeCursor(); err != nil {
		d.failed(err) // a lost cursor only means re-sends
	}
	return nil
}

// Last implements Store.
func (d *Disk) Last() Key {
	d.mu.Lock()
	defer d.mu.Unlock()
	return Key{d.epoch, d.lastSeq}
}

// State implements Store.
func (d *Disk) State() *vantagev1.SpoolState {
	d.mu.Lock()
	defer d.mu.Unlock()
	var pb int64
	for _, s := range d.segs {
		pb += s.size - headerSize
	}
	if len(d.segs) > 0 {
		pb -= d.head.off - headerSize
	}
	st := &vantagev1.SpoolState{PendingResults: d.lastOrd - d.head.ord + uint64(len(d.mem)),
		PendingBytes: uint64(max(pb, 0) + d.memBytes), DroppedResults: d.stats.DroppedResults, Gaps: d.nGaps}
	d.faultState(st)
	return st
}

// Stats reports what Open found and what the spool did since.
func (d *Disk) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Segments = len(d.segs)
	s.Bytes = d.bytesLocked()
	return s
}

// Close syncs and closes the active segment and stops the syncer.
func (d *Disk) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.stop)
	if !d.recover(true) {
		d.log.Warn("spool closed while its disk refuses writes; results only in memory are lost",
			slog.Int("memory_results", len(d.mem)), slog.Bool("gaps_unsaved", d.gapsDirty))
	}
	err := d.syncActive()
	if d.active != nil {
		if cerr := d.active.Close(); err == nil {
			err = cerr
		}
		d.active = nil
	}
	d.mu.Unlock()
	<-d.done
	return err
}
