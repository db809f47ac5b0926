package sqlite

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	vantagev1 "github.com/vantage-net/vantage/proto/vantage/v1"
)

// Results are stored in chunks: one row of result_chunks holds the fresh
// results of one batch (one agent, one epoch) for one campaign, with the
// columns queries select on (campaign, agent, seq, round and sent_at
// ranges) and a body that is a vantage.v1.ResultBatch carrying only its
// results field. One row per batch instead of one per result is what lets
// a single SQLite writer keep up with a fleet: the per-row cost of a b-tree
// insert and of every index is paid once for hundreds of results. Queries
// select chunks by those ranges and filter the decoded results exactly.

// resultsField is ResultBatch.results: a chunk body is the encoding of a
// ResultBatch with only that field set.
const resultsField protowire.Number = 4

// chunk is one result_chunks row being built.
type chunk struct {
	campaign           string
	first, last        uint64 // seqs
	n                  int
	minRound, maxRound int64
	minSent, maxSent   int64 // unix nanoseconds
	body               []byte
}

// add appends one result (and its encoding) to the chunk.
func (c *chunk) add(r *vantagev1.ProbeResult, body []byte) {
	seq, round, sent := r.GetSeq(), r.GetRound(), nanos(r.GetSentAt().AsTime())
	if c.n == 0 {
		c.campaign = r.GetCampaign()
		c.first, c.last = seq, seq
		c.minRound, c.maxRound = round, round
		c.minSent, c.maxSent = sent, sent
	} else {
		c.first, c.last = min(c.first, seq), max(c.last, seq)
		c.minRound, c.maxRound = min(c.minRound, round), max(c.maxRound, round)
		c.minSent, c.maxSent = min(c.minSent, sent), max(c.maxSent, sent)
	}
	c.n++
	c.body = protowire.AppendTag(c.body, resultsField, protowire.BytesType)
	c.body = protowire.AppendBytes(c.body, body)
}

// chunksByCampaign groups results (with their encodings) into one chunk
// per campaign, in the order campaigns first appear. keep selects which
// results go in (nil: all).
func chunksByCampaign(results []*vantagev1.ProbeResult, bodies [][]byte, keep []bool) []*chunk {
	var out []*chunk
	for i, r := range results {
		if keep != nil && !keep[i] {
			continue
		}
		var c *chunk
		for _, x := range out {
			if x.campaign == r.GetCampaign() {
				c = x
				break
			}
		}
		if c == nil {
			c = &chunk{}
			out = append(out, c)
		}
		c.add(r, bodies[i])
	}
	return out
}

// decodeChunk parses a chunk body.
func decodeChunk(body []byte) ([]*vantagev1.ProbeResult, error) {
	var b vantagev1.ResultBatch
	if err := proto.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("decode result chunk: %w", err)
	}
	return b.GetResults(), nil
}
