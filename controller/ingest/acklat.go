package ingest

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// AckBuckets is the number of buckets of the commit->ack histogram: bucket
// i counts latencies in [2^i, 2^(i+1)) microseconds (bucket 0 also holds
// everything under 2 us; the last, everything above).
const AckBuckets = 32

// ackHistogram records, per Ack sent, the time from the end of the commit
// that made it to the moment the Ack was handed to the stream.
type ackHistogram struct {
	b [AckBuckets]atomic.Uint64
}

func (h *ackHistogram) observe(d time.Duration) {
	us := uint64(max(d.Microseconds(), 1))
	i := min(bits.Len64(us)-1, AckBuckets-1)
	h.b[i].Add(1)
}

// AckLatencyBuckets returns the commit->ack histogram (see AckBuckets).
func (s *Server) AckLatencyBuckets() [AckBuckets]uint64 {
	var out [AckBuckets]uint64
	for i := range out {
		out[i] = s.ackLat.b[i].Load()
	}
	return out
}

// BucketQuantile returns the upper bound of the bucket holding quantile q
// of a histogram from AckLatencyBuckets (or a difference of two).
func BucketQuantile(b [AckBuckets]uint64, q float64) time.Duration {
	var n uint64
	for _, c := range b {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n))
	var seen uint64
	for i, c := range b {
		seen += c
		if seen > rank {
			return time.Duration(uint64(1)<<(i+1)) * time.Microsecond
		}
	}
	return time.Duration(uint64(1)<<AckBuckets) * time.Microsecond
}
