package spool

// A disk that refuses writes (no space left, a quota, an I/O error) must
// neither stop the agent nor lose results silently. While it does, Disk
// keeps new results in a bounded memory tail, after every result on disk:
// they are sent from memory like any other (so with a live uplink nothing
// is lost), and written to disk, in order, once it takes writes again
// (tried at most every faultRetry, at the next Append). When the tail is
// full its oldest results not yet sent on the stream are dropped into a
// gap (GapReasonWriteFailed), counted like the spool-full drops. Results still only in memory when the
// agent stops are lost without a gap, as a torn tail is.

import (
	"errors"
	"log/slog"
	"slices"
	"syscall"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

const (
	// MaxMemoryBytes caps the default memory tail (Options.MemoryBytes).
	MaxMemoryBytes = 4 << 20
	// faultRetry is how often a spool whose disk refuses writes tries it
	// again (at an Append).
	faultRetry = time.Second
	// faultLogEvery is how often a lasting fault is logged again.
	faultLogEvery = 30 * time.Second
	// maxFaultError bounds the error text reported in SpoolState.
	maxFaultError = 96
)

// GapReasonWriteFailed is the reason of gaps made by dropping results that
// the disk refused while the memory tail was full.
const GapReasonWriteFailed = "spool disk refused writes and the memory buffer was full: results dropped"

// memRec is a result the disk refused, kept in memory.
type memRec struct {
	key Key
	res *vantagev1.ProbeResult
	rec []byte // framed, as it goes into a segment
}

// fault is the state of a disk that refuses writes.
type fault struct {
	err      string // short: the errno's text when there is one
	since    time.Time
	retryAt  time.Time
	loggedAt time.Time
	refused  uint64 // writes refused since the last log line
	overflow bool   // the memory tail overflowed (logged once per fault)
}

// shortErr is what SpoolState reports of err: the errno's text (e.g. "no
// space left on device") when there is one, else the error, cut to
// maxFaultError bytes.
func shortErr(err error) string {
	s := err.Error()
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s = errno.Error()
	}
	for len(s) > maxFaultError {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// failed records a write the disk refused; the caller holds d.mu.
func (d *Disk) failed(err error) {
	now := time.Now()
	if d.fault == nil {
		d.fault = &fault{err: shortErr(err), since: now, retryAt: now.Add(faultRetry), loggedAt: now}
		d.log.Warn("spool disk refuses writes; new results are kept in memory", slog.Any("error", err),
			slog.Int64("memory_bytes", d.opts.MemoryBytes))
		return
	}
	d.fault.err = shortErr(err)
	d.fault.retryAt = now.Add(faultRetry)
	d.fault.refused++
	if now.Sub(d.fault.loggedAt) >= faultLogEvery {
		d.log.Warn("spool disk still refuses writes", slog.Any("error", err),
			slog.Duration("failing_for", now.Sub(d.fault.since).Round(time.Second)), slog.Uint64("writes_refused", d.fault.refused),
			slog.Int("memory_results", len(d.mem)), slog.Uint64("write_dropped_results", d.writeDropped))
		d.fault.loggedAt, d.fault.refused = now, 0
	}
}

// recover tries the disk again when a fault's retry is due: the pending
// gaps file, the memory tail (oldest first), then the ack cursor. It reports whether the
// disk takes writes (no fault left); the caller holds d.mu.
func (d *Disk) recover(force bool) bool {
	if d.fault == nil {
		return true
	}
	if !force && time.Now().Before(d.fault.retryAt) {
		return false
	}
	if d.gapsDirty {
		if err := d.writeGaps(); err != nil {
			d.failed(err)
			return false
		}
		d.gapsDirty = false
	}
	if len(d.mem) > 0 {
		// Batch ends handed out while results were in memory point at
		// the end of the disk as it was; the walk from the head finds
		// them again.
		clear(d.readCache)
	}
	written := 0
	for len(d.mem) > 0 {
		m := d.mem[0]
		if err := d.write(m.key, m.rec); err != nil {
			d.failed(err)
			return false
		}
		d.memBytes -= int64(len(m.rec))
		d.mem[0] = memRec{}
		d.mem = d.mem[1:]
		written++
	}
	d.mem = nil
	// The ack cursor may have failed to be written meanwhile.
	if err := d.writeCursor(); err != nil {
		d.failed(err)
		return false
	}
	d.log.Info("spool writes resumed", slog.Duration("failed_for", time.Since(d.fault.since).Round(time.Second)),
		slog.Int("written_from_memory", written), slog.Uint64("write_dropped_results", d.writeDropped))
	d.fault = nil
	return true
}

// toMemory keeps a result the disk refused, dropping older ones into a gap
// while the tail would exceed MemoryBytes; the caller holds d.mu. Results
// Read handed out on the current stream (up to memSent) are kept while
// their ack may come: dropping one that is then acked would report it both
// delivered and lost. The oldest result not handed out goes instead, and
// only past twice MemoryBytes (a stream that hands out much and acks
// nothing) does the oldest go regardless.
func (d *Disk) toMemory(k Key, r *vantagev1.ProbeResult, rec []byte) {
	for len(d.mem) > 0 && d.memBytes+int64(len(rec)) > d.opts.MemoryBytes {
		i, _ := slices.BinarySearchFunc(d.mem, d.memSent, func(m memRec, k Key) int {
			if m.key.Compare(k) <= 0 {
				return -1
			}
			return 1
		})
		if i == len(d.mem) {
			if d.memBytes+int64(len(rec)) <= 2*d.opts.MemoryBytes {
				break
			}
			i = 0
		}
		d.dropMem(i)
	}
	d.mem = append(d.mem, memRec{key: k, res: r, rec: rec})
	d.memBytes += int64(len(rec))
}

// dropMem drops the memory tail's i-th result into a gap; the caller holds
// d.mu.
func (d *Disk) dropMem(i int) {
	old := d.mem[i]
	if i == 0 {
		d.mem[0] = memRec{}
		d.mem = d.mem[1:]
	} else {
		d.mem = slices.Delete(d.mem, i, i+1)
	}
	d.memBytes -= int64(len(old.rec))
	d.addGap(&vantagev1.Gap{Epoch: old.key.Epoch, FirstSeq: old.key.Seq, LastSeq: old.key.Seq, Reason: GapReasonWriteFailed})
	d.gapsDirty = true
	d.stats.DroppedResults++
	d.writeDropped++
	if d.fault != nil && !d.fault.overflow {
		d.fault.overflow = true
		d.log.Warn("spool memory full while the disk refuses writes; oldest unsent results dropped into a gap",
			slog.Int64("memory_bytes", d.opts.MemoryBytes), slog.Int("memory_results", len(d.mem)))
	}
}

// readMem appends to b the memory tail's results after `after` (and the
// head), contiguous with prev, up to maxResults; the caller holds d.mu.
func (d *Disk) readMem(b *Batch, after, prev Key, maxResults int) {
	for _, m := range d.mem {
		if len(b.Results) >= maxResults {
			return
		}
		if m.key.Compare(after) <= 0 || m.key.Compare(d.head.key) <= 0 {
			prev = m.key
			continue
		}
		if len(b.Results) > 0 && (m.key.Epoch != b.Epoch || m.key.Seq != prev.Seq+1) {
			return
		}
		b.Epoch = m.key.Epoch
		b.Results = append(b.Results, m.res)
		prev = m.key
		if m.key.Compare(d.memSent) > 0 {
			d.memSent = m.key
		}
	}
}

// ackMem forgets the memory tail's results up to upTo and reports whether
// the ack reached into the tail; the caller holds d.mu.
func (d *Disk) ackMem(upTo Key) bool {
	if len(d.mem) == 0 || upTo.Compare(d.mem[0].key) < 0 {
		return false
	}
	for len(d.mem) > 0 && d.mem[0].key.Compare(upTo) <= 0 {
		d.memBytes -= int64(len(d.mem[0].rec))
		d.mem[0] = memRec{}
		d.mem = d.mem[1:]
	}
	return true
}

// faultState fills the fault fields of a SpoolState; the caller holds d.mu.
func (d *Disk) faultState(st *vantagev1.SpoolState) {
	st.MemoryResults = uint64(len(d.mem))
	st.WriteDroppedResults = d.writeDropped
	if d.fault != nil {
		st.WriteError = d.fault.err
		st.WriteFailingSince = timestamppb.New(d.fault.since)
	}
}
