package spool

// Opening a Disk spool: the directory scan, segment validation, the ack
// cursor and the gaps file (disk.go has the format), and the pending gaps.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

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
				slog.Int64("bytes", fi.Size()-valid), slog.Any("error", err))
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
			d.log.Warn("spool gaps file unreadable; its gaps are lost", slog.Any("error", err))
		}
		return
	}
	for _, p := range ps {
		switch {
		case len(p) >= 25 && p[0] == typeGap:
			d.gaps = append(d.gaps, &vantagev1.Gap{Epoch: u64(p, 1), FirstSeq: u64(p, 9), LastSeq: u64(p, 17), Reason: string(p[25:])})
			d.handedOut[Key{u64(p, 1), u64(p, 9)}] = true // it may have been sent before the restart
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
		if !d.handedOut[Key{last.GetEpoch(), last.GetFirstSeq()}] && last.GetEpoch() == g.GetEpoch() &&
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
