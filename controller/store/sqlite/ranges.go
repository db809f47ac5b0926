package sqlite

// Deduplication by sequence ranges. Results are stored in chunks (see
// chunks.go), so (agent, epoch, seq) is no longer a row key that an INSERT
// can collide on. Instead result_ranges holds, per (agent, epoch), the
// disjoint and non-adjacent ranges of seqs already accounted for: stored,
// or recorded as a gap. Each seq is thus counted once, as a result or as
// a gap, however often and in whichever form it arrives. An agent sends
// its seqs in order, so an (agent, epoch) normally has one range that each
// batch extends; a gap (spool drop) or a batch lost and re-sent later leaves
// a hole that is filled when the re-sent batch arrives.

// seqRange is the closed range of seqs [first, last].
type seqRange struct{ first, last uint64 }

// cover merges the range r into the stored ranges it touches. touching are
// the stored ranges that overlap r or are adjacent to it, sorted by first,
// disjoint and non-adjacent among themselves (as result_ranges keeps them).
// It returns the parts of r not stored yet (the fresh seqs, in order) and
// the one range that replaces touching and r.
func cover(r seqRange, touching []seqRange) (fresh []seqRange, merged seqRange) {
	merged = r
	next := r.first // the lowest seq of r not yet accounted for
	for _, t := range touching {
		merged.first = min(merged.first, t.first)
		merged.last = max(merged.last, t.last)
		if t.first > next && next <= r.last {
			fresh = append(fresh, seqRange{next, min(t.first-1, r.last)})
		}
		if t.last >= next {
			next = t.last + 1
		}
	}
	if next <= r.last && next >= r.first {
		fresh = append(fresh, seqRange{next, r.last})
	}
	return fresh, merged
}

// touches reports whether stored range s overlaps or is adjacent to r.
func touches(s, r seqRange) bool {
	return s.last+1 >= r.first && s.first <= r.last+1
}
