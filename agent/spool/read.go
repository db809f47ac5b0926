package spool

// Reading a Disk spool: batches for the uplink, from the segments and then
// from the memory tail (fault.go).

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Read implements Store. It fsyncs the active segment first, so nothing is
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
	if after.Compare(d.memSent) < 0 {
		d.memSent = after // a new stream: what went out before may never be acked
	}
	var b Batch
	for _, g := range d.gaps {
		b.Gaps = append(b.Gaps, proto.CloneOf(g))
		d.handedOut[Key{g.GetEpoch(), g.GetFirstSeq()}] = true
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
				d.log.Warn("spool record damaged on disk; rest of segment skipped", slog.String("file", s.path), slog.Any("error", err))
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
