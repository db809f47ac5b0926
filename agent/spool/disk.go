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
	"bufio"
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
	"strconv"
	"strings"
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

// Disk is the on-disk Spool. See the format at the top of this file and
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
	sentGaps  map[Key]bool

	// While the disk refuses writes (fault.go): the results kept in
	// memory, after every result on disk, and their framed bytes.
	fault        *fault
	mem          []memRec
	memBytes     int64
	gapsDirty    bool   // d.gaps changed but the gaps file could not be written
	writeDropped uint64 // results dropped from memory into gaps since Open
}

var _ Spool = (*Disk)(nil)

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
		stop: make(chan struct{}), done: make(chan struct{}), pending: make(chan struct{}, 1), readCache: map[Key]pos{}, sentGaps: map[Key]bool{}}
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

// load scans the directory: segments, the ack cursor and the gaps file.
func (d *Disk) load() error {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var ids []uint64
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp") {
			_ = os.Remove(filepath.Join(d.dir, name)) // an interrupted rewrite
			continue
		}
		base, ok := strings.CutSuffix(name, segSuffix)
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(base, 10, 64)
		if err != nil || len(base) != 20 {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	cur, curOK := d.readCursor()
	for _, id := range ids {
		if curOK && id < cur.seg {
			// Fully acknowledged; the crash came before its removal.
			_ = os.Remove(filepath.Join(d.dir, segName(id)))
			continue
		}
		if err := d.loadSegment(id); err != nil {
			return err
		}
	}
	// Place the head: at the cursor if it sits on a record boundary of the
	// first segment, else before everything (re-sends are deduplicated).
	// The head key is the last acknowledged key even when the offset cannot
	// be used: Read never hands out a result at or below it.
	d.head = pos{}
	if curOK {
		d.head.key = cur.key
	}
	if len(d.segs) > 0 {
		d.head = pos{seg: d.segs[0].id, off: headerSize, ord: d.segs[0].firstOrd - 1, key: d.head.key}
		if curOK && cur.seg == d.segs[0].id {
			// The cursor's key may be beyond its record: results acked
			// while they were only in memory (fault.go).
			if p, ok := d.scanTo(d.segs[0], cur.key); ok && p.off == cur.off && p.key.Compare(cur.key) <= 0 {
				p.key = cur.key
				d.head = p
			}
		}
	}
	d.stats.ReplayedResults = d.lastOrd - d.head.ord
	d.loadGaps()
	d.findHoles()
	return nil
}

// loadSegment validates one segment, truncating a torn or corrupt tail.
func (d *Disk) loadSegment(id uint64) error {
	path := filepath.Join(d.dir, segName(id))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	seg := &segment{id: id, path: path, firstOrd: d.lastOrd + 1, lastOrd: d.lastOrd}
	r := newCountingReader(f)
	hdr := make([]byte, recHeaderSize)
	m := make([]byte, headerSize)
	if _, err := io.ReadFull(r, m); err != nil || string(m) != magic {
		// Not even a header: a segment created just before a crash.
		if fi.Size() > 0 {
			d.stats.CorruptRecords++
			d.stats.CorruptBytes += fi.Size()
			d.log.Warn("spool segment without a valid header removed", slog.String("file", path), slog.Int64("bytes", fi.Size()))
		}
		_ = f.Close()
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		return nil
	}
	valid := headerSize
	for {
		p, err := readRecord(r, hdr)
		if errors.Is(err, io.EOF) {
			break
		}
		k, ok := resultKey(p)
		if err == nil && (!ok || k.Compare(d.lastKey) <= 0) {
			err = errors.New("record is not a result in key order")
		}
		if err != nil {
			d.stats.CorruptRecords++
			d.stats.CorruptBytes += fi.Size() - valid
			d.log.Warn("spool: torn or corrupt tail cut", slog.String("file", path), slog.Int64("offset", valid),
				slog.Int64("bytes", fi.Size()-valid), slog.String("reason", err.Error()))
			if err := f.Truncate(valid); err != nil {
				return fmt.Errorf("spool: truncate %s: %w", path, err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			break
		}
		d.lastOrd++
		d.lastKey = k
		seg.add(k, d.lastOrd)
		valid = r.n
	}
	seg.size = valid
	if valid == headerSize {
		// No record: nothing to keep.
		_ = f.Close()
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		return nil
	}
	d.segs = append(d.segs, seg)
	return nil
}

func bufioReader(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 64<<10) }

type countingReader struct {
	r io.Reader
	n int64
}

func newCountingReader(f *os.File) *countingReader {
	return &countingReader{r: bufioReader(f)}
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// scanTo walks seg from its start to just after the last record <= k.
func (d *Disk) scanTo(seg *segment, k Key) (pos, bool) {
	f, err := os.Open(seg.path)
	if err != nil {
		return pos{}, false
	}
	defer f.Close()
	r := &countingReader{r: bufioReader(io.NewSectionReader(f, 0, seg.size))}
	m := make([]byte, headerSize)
	if _, err := io.ReadFull(r, m); err != nil {
		return pos{}, false
	}
	p := pos{seg: seg.id, off: headerSize, ord: seg.firstOrd - 1}
	hdr := make([]byte, recHeaderSize)
	for {
		rec, err := readRecord(r, hdr)
		if err != nil {
			return p, true
		}
		rk, _ := resultKey(rec)
		if rk.Compare(k) > 0 {
			return p, true
		}
		p.off, p.ord, p.key = r.n, p.ord+1, rk
	}
}

// readCursor reads the acked file.
func (d *Disk) readCursor() (pos, bool) {
	ps, err := readMetaFile(filepath.Join(d.dir, ackedFile))
	if err != nil || len(ps) != 1 || len(ps[0]) != 33 || ps[0][0] != typeCursor {
		return pos{}, false
	}
	p := ps[0]
	return pos{seg: u64(p, 1), off: int64(u64(p, 9)), key: Key{u64(p, 17), u64(p, 25)}}, true
}

func readMetaFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < int(headerSize) || string(b[:headerSize]) != magic {
		return nil, errors.New("bad magic")
	}
	r := strings.NewReader(string(b[headerSize:]))
	hdr := make([]byte, recHeaderSize)
	var out [][]byte
	for {
		p, err := readRecord(r, hdr)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
}

// writeMetaFile replaces path atomically with the given payloads.
func writeMetaFile(path string, payloads [][]byte, sync bool) (int64, error) {
	buf := []byte(magic)
	for _, p := range payloads {
		buf = append(buf, frame(p)...)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	if _, err := f.Write(buf); err != nil {
		_ = f.Close()
		return 0, fmt.Errorf("spool: write %s: %w", tmp, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return 0, fmt.Errorf("spool: sync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	return int64(len(buf)), nil
}

func gapPayload(g *vantagev1.Gap) []byte {
	p := make([]byte, 25, 25+len(g.GetReason()))
	p[0] = typeGap
	binary.LittleEndian.PutUint64(p[1:], g.GetEpoch())
	binary.LittleEndian.PutUint64(p[9:], g.GetFirstSeq())
	binary.LittleEndian.PutUint64(p[17:], g.GetLastSeq())
	return append(p, g.GetReason()...)
}

func (d *Disk) loadGaps() {
	ps, err := readMetaFile(filepath.Join(d.dir, gapsFile))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			d.stats.CorruptRecords++
			d.log.Warn("spool gaps file unreadable; its gaps are lost", slog.String("error", err.Error()))
		}
		return
	}
	for _, p := range ps {
		switch {
		case len(p) >= 25 && p[0] == typeGap:
			d.gaps = append(d.gaps, &vantagev1.Gap{Epoch: u64(p, 1), FirstSeq: u64(p, 9), LastSeq: u64(p, 17), Reason: string(p[25:])})
			d.sentGaps[Key{u64(p, 1), u64(p, 9)}] = true // it may have been sent before the restart
		case len(p) == 17 && p[0] == typeCounters:
			d.stats.DroppedResults, d.nGaps = u64(p, 1), u64(p, 9)
		}
	}
	d.gapsBytes = d.gapsFileSize(d.gaps)
}

func (d *Disk) gapsFileSize(gaps []*vantagev1.Gap) int64 {
	n := headerSize + recHeaderSize + 17
	for _, g := range gaps {
		n += recHeaderSize + 25 + int64(len(g.GetReason()))
	}
	return n
}

func (d *Disk) writeGaps() error {
	payloads := make([][]byte, 0, len(d.gaps)+1)
	c := make([]byte, 17)
	c[0] = typeCounters
	binary.LittleEndian.PutUint64(c[1:], d.stats.DroppedResults)
	binary.LittleEndian.PutUint64(c[9:], d.nGaps)
	payloads = append(payloads, c)
	for _, g := range d.gaps {
		payloads = append(payloads, gapPayload(g))
	}
	n, err := writeMetaFile(filepath.Join(d.dir, gapsFile), payloads, true)
	if err != nil {
		return err
	}
	d.gapsBytes = n
	return nil
}

func (d *Disk) writeCursor() error {
	p := make([]byte, 33)
	p[0] = typeCursor
	binary.LittleEndian.PutUint64(p[1:], d.head.seg)
	binary.LittleEndian.PutUint64(p[9:], uint64(d.head.off))
	binary.LittleEndian.PutUint64(p[17:], d.head.key.Epoch)
	binary.LittleEndian.PutUint64(p[25:], d.head.key.Seq)
	// Not fsynced: a cursor lost in a power cut only means re-sends, which
	// the controller deduplicates.
	_, err := writeMetaFile(filepath.Join(d.dir, ackedFile), [][]byte{p}, false)
	return err
}

// addGap records a gap unless one with the same (epoch, first_seq) exists.
// A gap that continues the last one is merged into it while that one has
// never been handed out (the controller keys gaps on first_seq, so a gap
// must not change once sent).
func (d *Disk) addGap(g *vantagev1.Gap) {
	for _, o := range d.gaps {
		if o.GetEpoch() == g.GetEpoch() && o.GetFirstSeq() == g.GetFirstSeq() {
			return
		}
	}
	if n := len(d.gaps); n > 0 {
		last := d.gaps[n-1]
		if !d.sentGaps[Key{last.GetEpoch(), last.GetFirstSeq()}] && last.GetEpoch() == g.GetEpoch() &&
			last.GetReason() == g.GetReason() && last.GetLastSeq()+1 == g.GetFirstSeq() {
			last.LastSeq = g.GetLastSeq()
			return
		}
	}
	d.gaps = append(d.gaps, g)
	d.nGaps++
}

// findHoles reports seq holes inside an epoch among pending results: they
// can only come from records cut at open.
func (d *Disk) findHoles() {
	prev := d.head.key
	added := false
	for _, s := range d.segs {
		for _, r := range s.ranges {
			if (Key{r.epoch, r.last}).Compare(d.head.key) <= 0 {
				continue
			}
			if r.epoch == prev.Epoch && r.first > prev.Seq+1 {
				d.addGap(&vantagev1.Gap{Epoch: r.epoch, FirstSeq: prev.Seq + 1, LastSeq: r.first - 1, Reason: GapReasonCorrupt})
				added = true
			}
			prev = Key{r.epoch, r.last}
		}
	}
	if added {
		if err := d.writeGaps(); err != nil {
			d.gapsDirty = true // written again when the disk takes writes (fault.go)
			d.failed(err)
		}
	}
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

// Append implements Spool. The record is written with one write(2), so a
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

// Read implements Spool. It fsyncs the active segment first, so nothing is
// sent that a power cut could take back (unless the disk refuses: then
// results are sent anyway, as those in memory are). The results on disk
// come first, then those in memory (fault.go).
func (d *Disk) Read(after Key, maxResults int) (Batch, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Batch{}, ErrClosed
	}
	if err := d.syncActive(); err != nil {
		d.failed(err)
	}
	var b Batch
	for _, g := range d.gaps {
		b.Gaps = append(b.Gaps, proto.CloneOf(g))
		d.sentGaps[Key{g.GetEpoch(), g.GetFirstSeq()}] = true
	}
	start := d.head
	if after.Compare(d.head.key) > 0 {
		if p, ok := d.readCache[after]; ok {
			start = p
		}
	}
	p := start
	prev := p.key
	stopped := false // the walk ended before the end of the disk
	err := d.walk(p, func(rec []byte, next pos) bool {
		k, _ := resultKey(rec)
		if k.Compare(after) <= 0 || k.Compare(d.head.key) <= 0 {
			prev = k
			p = next
			return true
		}
		if len(b.Results) > 0 && (k.Epoch != b.Epoch || k.Seq != prev.Seq+1) {
			stopped = true
			return false
		}
		res := &vantagev1.ProbeResult{}
		if err := proto.Unmarshal(rec[17:], res); err != nil || res.GetSeq() != k.Seq {
			d.stats.CorruptRecords++
			d.log.Warn("spool record does not decode; skipped", slog.Uint64("epoch", k.Epoch), slog.Uint64("seq", k.Seq))
			if len(b.Results) > 0 {
				stopped = true
				return false
			}
			prev, p = k, next
			return true
		}
		b.Epoch = k.Epoch
		b.Results = append(b.Results, res)
		prev, p = k, next
		stopped = len(b.Results) >= maxResults
		return !stopped
	})
	if err != nil {
		return Batch{}, err
	}
	if !stopped {
		// p is the end of the disk: a batch ending in memory is cached
		// there, and the cache is cleared when memory goes to disk.
		d.readMem(&b, after, prev, maxResults)
	}
	if len(b.Results) > 0 {
		if len(d.readCache) > 4096 {
			clear(d.readCache)
		}
		d.readCache[b.End()] = p
	}
	return b, nil
}

// walk calls fn for every result record from p on, with the position just
// after it, until fn returns false or the spool ends.
func (d *Disk) walk(p pos, fn func(rec []byte, next pos) bool) error {
	hdr := make([]byte, recHeaderSize)
	for i := d.segIndex(p.seg); i < len(d.segs); i++ {
		s := d.segs[i]
		off := headerSize
		if s.id == p.seg {
			off = p.off
		}
		if off >= s.size {
			continue
		}
		f, err := os.Open(s.path)
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		r := &countingReader{r: bufioReader(io.NewSectionReader(f, off, s.size-off)), n: off}
		ord := s.firstOrd - 1
		if s.id == p.seg {
			ord = p.ord
		}
		for {
			rec, err := readRecord(r, hdr)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				// Damaged after open: the rest of this segment is skipped.
				d.stats.CorruptRecords++
				d.log.Warn("spool record damaged on disk; rest of segment skipped", slog.String("file", s.path), slog.String("error", err.Error()))
				break
			}
			ord++
			k, _ := resultKey(rec)
			if !fn(rec, pos{seg: s.id, off: r.n, ord: ord, key: k}) {
				_ = f.Close()
				return nil
			}
		}
		_ = f.Close()
	}
	return nil
}

// Ack implements Spool: the head moves past upTo and fully acknowledged
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

// State implements Spool.
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
